-- Channel economics per acquisition channel x cohort month, platforms summed (docs/METRICS.md#channel-economics), as
-- of d. Same rules as mart_channel_economics (shared macro marts_channel_economics(), macros/marts_channel.sql), one
-- grain coarser: every total is summed over the platforms first and every ratio (CAC, realized per person, LTV/CAC,
-- pause, payback) is recomputed from those sums, never averaged. Adds the cohort totals behind the per-person values
-- (predicted_ltv_total, realized_net_revenue_<N>d) so coarser roll-ups (mart_channel_summary) stay exact.
{{ marts_channel_economics(['acquisition_channel'], with_totals=true) }}
