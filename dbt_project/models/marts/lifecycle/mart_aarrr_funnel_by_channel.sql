-- AARRR funnel (docs/METRICS.md#aarrr-funnel) per acquisition cohort (registration day, rolled up to week and month)
-- x acquisition channel, platforms not split: every count is over all the channel's cohort persons and every rate
-- is recomputed from those counts (never a mean of platform rates). Same rules and maturity flags as
-- mart_aarrr_funnel (shared macro marts_aarrr_funnel(), macros/marts_funnel.sql): a step's count and rate are both
-- null until is_mature_<step>.
{{ marts_aarrr_funnel(['acquisition_channel']) }}
