-- Engagement lifecycle (docs/METRICS.md#engagement-lifecycle) per period (PostHog / Adobe "active growth"), grains
-- day / week / month. new = first-ever active period (over full history); returning = active in P and P-1;
-- resurrecting = active in P, not in P-1, not new; dormant = active in P-1, not in P.
with

active_days as (
    select person_id, activity_date
    from {{ ref('int_person_daily_activity') }}
    where is_active_day and activity_date <= {{ as_of_date() }}
),

{% for grain in ['day', 'week', 'month'] %}
{{ grain }}_periods as (
    select distinct person_id, {{ period_start(grain, 'activity_date') }} as period_start
    from active_days
),

{{ grain }}_sequenced as (
    select
        person_id,
        period_start,
        lag(period_start) over (partition by person_id order by period_start) as previous_period,
        lead(period_start) over (partition by person_id order by period_start) as next_period
    from {{ grain }}_periods
),

{{ grain }}_statuses as (
    select
        '{{ grain }}' as grain,
        period_start,
        case
            when previous_period is null then 'new'
            when previous_period = {{ add_periods(grain, 'period_start', -1) }} then 'returning'
            else 'resurrecting'
        end as status
    from {{ grain }}_sequenced
    union all
    select
        '{{ grain }}' as grain,
        {{ add_periods(grain, 'period_start', 1) }} as period_start,
        'dormant' as status
    from {{ grain }}_sequenced
    where (next_period is null or next_period <> {{ add_periods(grain, 'period_start', 1) }})
      and {{ add_periods(grain, 'period_start', 1) }} <= {{ as_of_date() }}
),
{% endfor %}

all_statuses as (
    select * from day_statuses
    union all
    select * from week_statuses
    union all
    select * from month_statuses
),

final as (
    select
        grain,
        period_start,
        status,
        cast(count(*) as integer) as persons
    from all_statuses
    group by grain, period_start, status
)

select * from final
