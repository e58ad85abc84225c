-- Marketing spend per day, channel and platform up to the as-of day (docs/METRICS.md#landing-contract,
-- docs/METRICS.md#channel-economics).
with

spend as (
    select * from {{ source('raw', 'marketing_spend') }}
),

deduplicated as (
    select *
    from spend
    where spend_date <= {{ as_of_date() }}
    qualify row_number() over (
        partition by spend_date, acquisition_channel, platform order by _loaded_at, _load_id, _source_file) = 1
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
