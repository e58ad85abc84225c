-- Identity keys (docs/METRICS.md#identity): one row per (account, identifier) of every account in stg_users, with
-- whether the identifier may link accounts. key_type 'phone' | 'union_id' ('device' only with p('link_on_device')).
-- refusal_reason, in order of precedence:
--   blocked_value / blocked_pattern - decided on the raw value in staging (macro identifier_block_reason);
--   fan_out - held by more than p('max_accounts_per_identifier') accounts;
--   NULL - the key links its accounts (int_identity_components uses only these).
-- Read by name by the erasure (ulm.privacy.erasure): user_id, key_type, key_hash, refusal_reason.
{{ config(materialized='table') }}
with

users as (
    select
        user_id,
        phone_hash,
        union_id_hash,
        device_hash,
        phone_block_reason,
        union_id_block_reason
    from {{ ref('stg_users') }}
),

keys as (
    select user_id, 'phone' as key_type, phone_hash as key_hash, phone_block_reason as block_reason
    from users where phone_hash is not null
    union all
    select user_id, 'union_id' as key_type, union_id_hash as key_hash, union_id_block_reason as block_reason
    from users where union_id_hash is not null
    {%- if p('link_on_device') %}
    union all
    -- staging decides no block reason for device ids: only the fan-out guard applies to them
    select user_id, 'device' as key_type, device_hash as key_hash, cast(null as {{ type_varchar() }}) as block_reason
    from users where device_hash is not null
    {%- endif %}
),

sharing as (
    select
        key_type,
        key_hash,
        count(distinct user_id) as accounts_sharing,
        -- one raw value has one hash and one block reason; max() only guards against a mixed key
        max(block_reason) as block_reason
    from keys
    group by key_type, key_hash
),

final as (
    select distinct
        k.user_id,
        k.key_type,
        k.key_hash,
        case
            when s.block_reason is not null then s.block_reason
            when s.accounts_sharing > {{ p('max_accounts_per_identifier') }} then 'fan_out'
        end as refusal_reason,
        cast(s.accounts_sharing as integer) as accounts_sharing
    from keys as k
    inner join sharing as s on s.key_type = k.key_type and s.key_hash = k.key_hash
)

select * from final
