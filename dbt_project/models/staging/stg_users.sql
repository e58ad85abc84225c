-- Accounts registered by the as-of day, deduplicated, PII replaced by keyed hashes (docs/METRICS.md#landing-contract,
-- docs/METRICS.md#privacy). Accounts with an erasure request are excluded from here on.
with

users as (
    select * from {{ source('raw', 'users') }}
),

erased as (
    select distinct user_id from {{ source('raw', 'erasure_requests') }}
),

deduplicated as (
    select *
    from users
    where user_id is not null
    qualify row_number() over (partition by user_id order by _loaded_at, _load_id, _source_file) = 1
),

final as (
    select
        u.user_id,
        u.platform,
        u.registered_at,
        {{ business_date('u.registered_at') }} as registered_date,
        u.acquisition_channel,
        u.kol_id,
        u.referrer_user_id,
        u.city_tier,
        u.age_band,
        u.region,
        {{ hash_pii('u.phone') }} as phone_hash,
        {{ hash_pii('u.device_id') }} as device_hash,
        {{ hash_pii('u.union_id') }} as union_id_hash,
        coalesce(u.consent_analytics, false) as consent_analytics,
        coalesce(u.consent_marketing, false) as consent_marketing,
        u.consent_updated_at
    from deduplicated as u
    where u.user_id not in (select user_id from erased)
      and {{ business_date('u.registered_at') }} <= {{ as_of_date() }}
)

select * from final
