-- Refused identity links (docs/METRICS.md#identity): one row per (refused key, account holding it), with the
-- account's person. A key is refused when it is blocked (block list, blocked pattern) or held by more than
-- max_accounts_per_identifier accounts (fan_out); it then links none of its accounts. persons_sharing > 1 means the
-- refusal keeps those accounts apart; 1 means they are one person through other keys anyway.
-- Keyed hashes only (int_identity_keys), never a raw identifier.
with

refused as (
    select user_id, key_type, key_hash, refusal_reason, accounts_sharing
    from {{ ref('int_identity_keys') }}
    where refusal_reason is not null
),

identity as (
    select user_id, person_id from {{ ref('int_identity') }}
),

held as (
    select
        r.key_type,
        r.key_hash,
        r.refusal_reason,
        r.accounts_sharing,
        r.user_id,
        i.person_id
    from refused as r
    inner join identity as i on i.user_id = r.user_id
),

persons_per_key as (
    select key_type, key_hash, count(distinct person_id) as persons_sharing
    from held
    group by key_type, key_hash
),

final as (
    select
        h.key_type,
        h.key_hash,
        h.refusal_reason,
        cast(h.accounts_sharing as integer) as accounts_sharing,
        cast(p.persons_sharing as integer) as persons_sharing,
        h.user_id,
        h.person_id
    from held as h
    inner join persons_per_key as p on p.key_type = h.key_type and p.key_hash = h.key_hash
)

select * from final
