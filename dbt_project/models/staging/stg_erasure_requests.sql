-- Erasure requests (docs/METRICS.md#privacy). Every request applies regardless of the as-of date. The account is
-- kept only as a keyed hash: the request itself (raw.erasure_requests) is the legal record; no layer after raw
-- names an erased account.
with

requests as (
    select * from {{ source('raw', 'erasure_requests') }}
),

final as (
    select {{ first_row_select('request_id') }}
        request_id,
        {{ hash_pii('user_id') }} as user_id_hash,
        requested_at
    from requests
    {{ first_row_per('request_id', '_loaded_at, _load_id, _source_file') }}
)

select * from final
