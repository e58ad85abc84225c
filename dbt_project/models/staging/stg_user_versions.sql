-- Every accepted version of every account, as a type-2 history (docs/METRICS.md#consent-and-attribute-changes):
-- the loader appends a users row for a known account as a new version when its consent_updated_at is newer
-- (docs/PRIVACY.md#consent-and-attribute-changes). PII replaced by keyed hashes (docs/METRICS.md#privacy); whether
-- an identifier may link accounts is decided here, on the raw value, by identifier_block_reason()
-- (docs/METRICS.md#identity). Accounts with an erasure request are excluded.
with

users as (
    select * from {{ source('raw', 'users') }}
    where user_id is not null
),

erased as (
    select distinct user_id from {{ source('raw', 'erasure_requests') }}
),

versions as (
    select {{ first_row_select('user_id, consent_updated_at') }}
        *,
        row_number() over (
            partition by user_id
            order by consent_updated_at nulls first, _loaded_at, _load_id, _source_file
        ) as version_number
    from users
    where user_id not in (select user_id from erased)
    -- the loader never lands two versions with the same consent_updated_at; if a file was loaded twice
    -- under different names, the earliest load wins
    {{ first_row_per('user_id, consent_updated_at', '_loaded_at, _load_id, _source_file') }}
),

final as (
    select
        v.user_id,
        cast(v.version_number as integer) as version_number,
        -- the first version holds from registration on; a later one from its consent_updated_at
        case when v.version_number = 1 then v.registered_at else v.consent_updated_at end as valid_from,
        lead(v.consent_updated_at) over (partition by v.user_id order by v.version_number) as valid_to,
        v.platform,
        v.registered_at,
        {{ business_date('v.registered_at') }} as registered_date,
        v.acquisition_channel,
        v.kol_id,
        v.referrer_user_id,
        v.city_tier,
        v.age_band,
        v.region,
        {{ hash_pii('v.phone') }} as phone_hash,
        {{ hash_pii('v.device_id') }} as device_hash,
        {{ hash_pii('v.union_id') }} as union_id_hash,
        {{ identifier_block_reason('v.phone', 'phone') }} as phone_block_reason,
        {{ identifier_block_reason('v.union_id', 'union_id') }} as union_id_block_reason,
        coalesce(v.consent_analytics, false) as consent_analytics,
        coalesce(v.consent_marketing, false) as consent_marketing,
        v.consent_updated_at,
        v._loaded_at as loaded_at
    from versions as v
)

select * from final
