-- Customer lifecycle stage transitions (docs/METRICS.md#customer-lifecycle-stages) per day. from_stage null = the
-- person enters on its registration day. A move out of `churned` is a reactivation (win-back).
with

history as (
    select * from {{ ref('fct_lifecycle_stage_history') }}
),

final as (
    select
        valid_from as transition_date,
        previous_stage as from_stage,
        stage as to_stage,
        cast(count(*) as integer) as persons,
        coalesce(previous_stage = 'churned', false) as is_reactivation
    from history
    group by valid_from, previous_stage, stage
)

select * from final
