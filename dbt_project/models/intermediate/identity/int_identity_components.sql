-- OneID (docs/METRICS.md#identity): persons are the connected components of the graph linking accounts that share a
-- hashed phone or union_id (device ids link nothing unless p('link_on_device')). Only keys that pass the identity
-- guards link (int_identity_keys.refusal_reason IS NULL): a blocked or fanned-out key never enters the edge set, so a
-- junk phone held by thousands of accounts costs no self-join. Multi-hop: the recursive CTE propagates component
-- labels through the edges; the label is the smallest member user_id (deterministic).
with recursive

users as (
    select user_id from {{ ref('stg_users') }}
),

link_keys as (
    select user_id, key_type, key_hash
    from {{ ref('int_identity_keys') }}
    where refusal_reason is null
),

-- account -> account edges through a shared linking key: at most max_accounts_per_identifier accounts per key
edges as (
    select distinct a.user_id as from_user_id, b.user_id as to_user_id
    from link_keys as a
    inner join link_keys as b on a.key_type = b.key_type and a.key_hash = b.key_hash
    where a.user_id <> b.user_id
),

-- (account, label) for labels reachable from the account. A label only travels to accounts with a larger
-- user_id: the smallest member reaches every account of its component, the others are pruned (fewer rows).
{{ identity_reachable_cte('users', 'edges') }}

final as (
    select
        user_id,
        min(label) as min_member_user_id
    from reachable
    group by user_id
)

select
    user_id,
    min_member_user_id,
    {{ person_key('min_member_user_id') }} as person_id
from final
