-- Recurring retention matrix (docs/METRICS.md#cohort-retention): cohort = registration week / month; cell k = share
-- of the cohort active (and, separately, purchasing) in period k after the cohort period. k runs up to the period
-- containing as_of. A cell is mature (is_mature) once period k has ended by as_of; the period containing as_of is
-- partial unless as_of is its last day, and its counts and rates are null (the row stays, so the grid is complete).
with

persons as (
    select person_id, registered_date from {{ ref('int_persons') }}
),

activity as (
    select person_id, activity_date, is_active_day, is_purchase_day
    from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }} and (is_active_day or is_purchase_day)
),

{% for grain in ['week', 'month'] %}
{{ grain }}_members as (
    select person_id, {{ period_start(grain, 'registered_date') }} as cohort_start from persons
),

{{ grain }}_sizes as (
    select cohort_start, count(*) as cohort_size from {{ grain }}_members group by cohort_start
),

{{ grain }}_cells as (
    select
        m.cohort_start,
        {{ periods_between(grain, 'm.cohort_start', period_start(grain, 'a.activity_date')) }} as period_number,
        count(distinct case when a.is_active_day then m.person_id end) as active_persons,
        count(distinct case when a.is_purchase_day then m.person_id end) as purchasing_persons
    from {{ grain }}_members as m
    inner join activity as a on m.person_id = a.person_id
    where a.activity_date >= m.cohort_start
    group by 1, 2
),

{{ grain }}_grid as (
    select
        s.cohort_start,
        s.cohort_size,
        {{ int_series(
            0, periods_between(grain, 's.cohort_start', period_start(grain, as_of_date())), 'integer') }}
            as period_number
    from {{ grain }}_sizes as s
),

{{ grain }}_matrix as (
    select
        '{{ grain }}' as cohort_grain,
        g.cohort_start,
        g.period_number,
        g.cohort_size,
        {{ add_days(add_periods(grain, 'g.cohort_start', 'g.period_number + 1'), -1) }} <= {{ as_of_date() }}
            as is_mature,
        coalesce(c.active_persons, 0) as active_persons,
        coalesce(c.purchasing_persons, 0) as purchasing_persons
    from {{ grain }}_grid as g
    left join {{ grain }}_cells as c
        on g.cohort_start = c.cohort_start and g.period_number = c.period_number
),
{% endfor %}

final as (
    select
        cohort_grain,
        cohort_start,
        period_number,
        cast(cohort_size as integer) as cohort_size,
        case when is_mature then cast(active_persons as integer) end as active_persons,
        case when is_mature then cast(purchasing_persons as integer) end as purchasing_persons,
        case when is_mature then {{ div('active_persons', 'cohort_size') }} end as active_rate,
        case when is_mature then {{ div('purchasing_persons', 'cohort_size') }} end as purchase_rate,
        is_mature
    from (
        select * from week_matrix
        union all
        select * from month_matrix
    ) as matrix
)

select * from final
