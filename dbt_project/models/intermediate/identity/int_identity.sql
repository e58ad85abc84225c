-- Account -> person map (docs/METRICS.md#identity). person_id = stable hash of the smallest member user_id.
-- depends_on: {{ ref('int_identity_changes') }}
with

components as (
    select * from {{ ref('int_identity_components') }}
),

final as (
    select
        user_id,
        person_id
    from components
)

select * from final
