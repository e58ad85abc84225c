-- Persons whose membership changed since the previous build (new accounts, merged components, erased
-- accounts). Incremental person-keyed models rebuild these persons completely; rows under a person_id that
-- no longer exists are deleted. Compares the new components with the previous int_identity table, read
-- before int_identity is replaced (int_identity depends on this model).
{%- set previous = adapter.get_relation(database=this.database, schema=this.schema, identifier='int_identity') %}
with

current_identity as (
    select user_id, person_id from {{ ref('int_identity_components') }}
),

previous_identity as (
    {%- if previous is not none %}
    select user_id, person_id from {{ previous }}
    {%- else %}
    select cast(null as {{ type_varchar() }}) as user_id, cast(null as {{ type_varchar() }}) as person_id where false
    {%- endif %}
),

changed_accounts as (
    select
        coalesce(c.user_id, p.user_id) as user_id,
        c.person_id as new_person_id,
        p.person_id as old_person_id
    from current_identity as c
    full outer join previous_identity as p on c.user_id = p.user_id
    where c.person_id is distinct from p.person_id
),

final as (
    select distinct user_id, new_person_id as person_id, 'new' as change_side
    from changed_accounts where new_person_id is not null
    union
    select distinct user_id, old_person_id as person_id, 'old' as change_side
    from changed_accounts where old_person_id is not null
)

select * from final
