-- Customer lifecycle stage history (docs/METRICS.md#customer-lifecycle-stages) as intervals: [valid_from, valid_to)
-- per person, valid_to null = current stage.
with

points as (
    select person_id, point_date, stage from {{ ref('int_lifecycle_stage_points') }}
),

changes as (
    select
        person_id,
        point_date,
        stage,
        lag(stage) over (partition by person_id order by point_date) as previous_stage
    from points
),

final as (
    select
        person_id,
        stage,
        point_date as valid_from,
        lead(point_date) over (partition by person_id order by point_date) as valid_to,
        previous_stage
    from changes
    where previous_stage is null or stage <> previous_stage
)

select * from final
