-- NPS answers of non-erased accounts up to the as-of day (docs/METRICS.md#landing-contract, docs/METRICS.md#kpis).
with

responses as (
    select * from {{ source('raw', 'nps_responses') }}
),

users as (
    select user_id from {{ ref('stg_users') }}
),

deduplicated as (
    select {{ first_row_select('response_id') }} *
    from responses
    {{ first_row_per('response_id', '_loaded_at, _load_id, _source_file') }}
),

final as (
    select
        r.response_id,
        r.user_id,
        r.responded_at,
        {{ business_date('r.responded_at') }} as response_date,
        r.score
    from deduplicated as r
    inner join users as u on r.user_id = u.user_id
    where {{ business_date('r.responded_at') }} <= {{ as_of_date() }}
)

select * from final
