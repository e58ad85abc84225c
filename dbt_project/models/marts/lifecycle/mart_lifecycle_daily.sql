-- Persons per customer lifecycle stage (docs/METRICS.md#customer-lifecycle-stages) per day, from the stage intervals:
-- +1 at valid_from, -1 at valid_to, running sum over a days x stages spine (never persons x days). Every stage
-- appears every day (0 when empty).
with

history as (
    select * from {{ ref('fct_lifecycle_stage_history') }}
),

stages as (
    {%- for s in ['prospect', 'new', 'growing', 'mature', 'declining', 'churned'] %}
    select '{{ s }}' as stage, {{ loop.index }} as stage_order {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

days as (
    {{ day_spine('(select min(valid_from) from history)', as_of_date()) }}
),

deltas as (
    select valid_from as delta_date, stage, count(*) as delta from history group by 1, 2
    union all
    select valid_to, stage, -count(*) from history where valid_to is not null group by 1, 2
),

daily_deltas as (
    select delta_date, stage, sum(delta) as delta from deltas group by 1, 2
),

final as (
    select
        d.spine_date as stage_date,
        s.stage,
        s.stage_order,
        cast(sum(coalesce(dd.delta, 0)) over (
            partition by s.stage order by d.spine_date rows between unbounded preceding and current row
        ) as integer) as persons
    from days as d
    cross join stages as s
    left join daily_deltas as dd on dd.delta_date = d.spine_date and dd.stage = s.stage
)

select * from final
