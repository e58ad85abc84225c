-- Marketing spend per day, channel and platform up to the as-of day (docs/METRICS.md#landing-contract,
-- docs/METRICS.md#channel-economics).
with

spend as (
    select * from {{ source('raw', 'marketing_spend') }}
),

deduplicated as (
    select {{ first_row_select('spend_date, acquisition_channel, platform') }} *
    from spend
    where spend_date <= {{ as_of_date() }}
    {{ first_row_per('spend_date, acquisition_channel, platform', '_loaded_at, _load_id, _source_file') }}
),

final as (
    select
        spend_date,
        acquisition_channel,
        platform,
        cast(spend as decimal(18, 2)) as spend
    from deduplicated
)

select * from final
