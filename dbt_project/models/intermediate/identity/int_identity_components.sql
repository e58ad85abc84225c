-- OneID (docs/METRICS.md#identity): persons are the connected components of the graph linking accounts that share a
-- hashed phone or union_id (device ids link nothing unless p('link_on_device')). Multi-hop: the recursive CTE
-- propagates component labels through shared keys; the label is the smallest member user_id.
with recursive

users as (
    select user_id, phone_hash, union_id_hash, device_hash from {{ ref('stg_users') }}
),

link_keys as (
    select user_id, 'phone:' || phone_hash as link_key from users where phone_hash is not null
    union all
    select user_id, 'union:' || union_id_hash from users where union_id_hash is not null
    {%- if p('link_on_device') %}
    union all
    select user_id, 'device:' || device_hash from users where device_hash is not null
    {%- endif %}
),

-- account -> account edges through a shared key (including self-edges, harmless)
edges as (
    select distinct a.user_id as from_user_id, b.user_id as to_user_id
    from link_keys as a
    inner join link_keys as b on a.link_key = b.link_key
    where a.user_id <> b.user_id
),

reachable (user_id, label) as (
    select user_id, user_id from users
    union
    select e.to_user_id, r.label
    from reachable as r
    inner join edges as e on r.user_id = e.from_user_id
),

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
