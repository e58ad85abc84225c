-- Erasure requests (docs/METRICS.md#privacy). Every request applies regardless of the as-of date.
with

requests as (
    select * from {{ source('raw', 'erasure_requests') }}
),

final as (
    select
        request_id,
        user_id,
        requested_at
    from requests
    qualify row_number() over (partition by request_id order by _loaded_at, _load_id, _source_file) = 1
)

select * from final
