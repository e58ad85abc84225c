-- AARRR funnel (docs/METRICS.md#aarrr-funnel) per acquisition cohort (registration day, rolled up to week and month)
-- x channel x platform. A step's count and rate are both null until the step is mature for the whole cohort:
-- as_of >= last cohort day + N, N being the window of that step (activation_window_days, each retention day,
-- monetized / referred window days); is_mature_<step> says which, is_mature that all are. The SQL is the shared
-- macro marts_aarrr_funnel() (macros/marts_funnel.sql), also behind mart_aarrr_funnel_by_channel.
{{ marts_aarrr_funnel(['acquisition_channel', 'platform']) }}
