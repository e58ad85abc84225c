-- Accounts registered by the as-of day, one row per account: the version in force at the end of the as-of day
-- (docs/METRICS.md#consent-and-attribute-changes), PII as keyed hashes (docs/METRICS.md#privacy). Accounts with an
-- erasure request are excluded (in stg_user_versions).
with

versions as (
    select * from {{ ref('stg_user_versions') }}
),

as_of_state as (
    select {{ first_row_select('user_id') }} *
    from versions
    where registered_date <= {{ as_of_date() }}
      and (version_number = 1 or {{ business_date('valid_from') }} <= {{ as_of_date() }})
    {{ first_row_per('user_id', 'version_number desc') }}
),

final as (
    select
        user_id,
        platform,
        registered_at,
        registered_date,
        acquisition_channel,
        kol_id,
        referrer_user_id,
        city_tier,
        age_band,
        region,
        phone_hash,
        device_hash,
        union_id_hash,
        phone_block_reason,
        union_id_block_reason,
        consent_analytics,
        consent_marketing,
        consent_updated_at,
        cast(version_number as integer) as version_number
    from as_of_state
)

select * from final
