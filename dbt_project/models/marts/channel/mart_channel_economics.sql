-- Channel economics (docs/METRICS.md#channel-economics) as of d, one row per acquisition_channel x platform x cohort
-- month (month of the person's registration day) that has spend or new persons up to d. Realized net revenue per
-- person at N days counts days 0..N-1 after registration and is null until the whole cohort month is observed (last
-- day of the month + N <= d). predicted_ltv_per_person is the mean predicted total LTV (realized to date + model's
-- next 365 days; realized alone where no score exists).
-- The SQL is the shared macro marts_channel_economics() (macros/marts_channel.sql), also behind mart_channel_monthly.
{{ marts_channel_economics(['acquisition_channel', 'platform']) }}
