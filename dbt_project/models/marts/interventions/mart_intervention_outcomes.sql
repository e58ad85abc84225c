-- Uplift (docs/METRICS.md#interventions) per audience_date x person-level rule: treated vs holdout persons and the
-- share of each active (>= 1 active day) on days 1..uplift_window_days after the audience date. Shares and uplift are
-- null until the window has fully passed (audience_date + uplift_window_days <= d).
{%- set window_days = p('uplift_window_days') %}
with

audiences as (
    select audience_date, rule_id, person_id, is_holdout from {{ ref('mart_interventions') }}
    where audience_date <= {{ as_of_date() }}
),

windows as (
    select distinct audience_date from audiences
),

activity as (
    select daily.person_id, daily.activity_date
    from {{ ref('int_person_daily_activity') }} as daily
    where daily.activity_date <= {{ as_of_date() }}
      and daily.activity_date > (select min(audience_date) from windows)
      and daily.activity_date <= (select {{ add_days('max(audience_date)', window_days) }} from windows)
),

active_after as (
    select distinct audiences.audience_date, audiences.rule_id, audiences.person_id
    from audiences
    inner join activity
        on activity.person_id = audiences.person_id
        and activity.activity_date > audiences.audience_date
        and activity.activity_date <= {{ add_days('audiences.audience_date', window_days) }}
),

per_rule as (
    select
        audiences.audience_date,
        audiences.rule_id,
        count(case when not audiences.is_holdout then 1 end) as treated_persons,
        count(case when audiences.is_holdout then 1 end) as holdout_persons,
        count(case when not audiences.is_holdout and active_after.person_id is not null then 1 end)
            as treated_active_persons,
        count(case when audiences.is_holdout and active_after.person_id is not null then 1 end)
            as holdout_active_persons
    from audiences
    left join active_after
        on active_after.audience_date = audiences.audience_date
        and active_after.rule_id = audiences.rule_id
        and active_after.person_id = audiences.person_id
    group by 1, 2
),

final as (
    select
        audience_date,
        rule_id,
        {{ add_days('audience_date', window_days) }} <= {{ as_of_date() }} as is_window_complete,
        treated_persons,
        holdout_persons,
        case when {{ add_days('audience_date', window_days) }} <= {{ as_of_date() }}
             then treated_active_persons end as treated_active_persons,
        case when {{ add_days('audience_date', window_days) }} <= {{ as_of_date() }}
             then holdout_active_persons end as holdout_active_persons,
        case when {{ add_days('audience_date', window_days) }} <= {{ as_of_date() }}
             then cast(treated_active_persons as {{ type_double() }}) / nullif(treated_persons, 0) end as treated_active_share,
        case when {{ add_days('audience_date', window_days) }} <= {{ as_of_date() }}
             then cast(holdout_active_persons as {{ type_double() }}) / nullif(holdout_persons, 0) end as holdout_active_share,
        case when {{ add_days('audience_date', window_days) }} <= {{ as_of_date() }}
             then cast(treated_active_persons as {{ type_double() }}) / nullif(treated_persons, 0)
                  - cast(holdout_active_persons as {{ type_double() }}) / nullif(holdout_persons, 0) end as uplift
    from per_rule
)

select * from final
