{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='person_id',
    on_schema_change='fail',
    pre_hook=[
        "{% if is_incremental() %}delete from {{ this }} where person_id in (select person_id from {{ ref('int_identity_changes') }}){% else %}select 1{% endif %}",
    ]
) }}
-- depends_on: {{ ref('int_identity_changes') }}
-- Customer lifecycle stage (docs/METRICS.md#customer-lifecycle-stages) evaluated only on change points: registration
-- day, active days, (registration or active day) + at_risk / churn days, first purchase + new_customer_days, purchase
-- day + declining / mature window days. Between two change points the stage cannot change, so the stage on any day is
-- the stage of the latest change point <= that day. Never a dense person x day grid.
-- Incremental by person: a person's points are rebuilt (all of them) when the person has activity in the day window
-- or loaded since the previous build, when int_identity_changes names it (the pre-hook deleted its rows), or when one
-- of its change points falls in the window (a threshold day reached as as_of advances). Every other person's points
-- <= the previous as_of are unchanged by construction (each row looks only backwards; first_purchase_date changes
-- only with activity). A run whose as_of is before the latest stored point (a backfill) rebuilds every person.
{%- set window_start = incremental_start('point_date') %}
with

all_persons as (
    select person_id, registered_date from {{ ref('int_persons') }}
),

all_activity as (
    select person_id, activity_date, is_active_day, is_purchase_day, _max_loaded_at
    from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }}
      and (is_active_day or is_purchase_day)
),

{% if is_incremental() %}
rebuilt as (
    select person_id from all_activity
    where activity_date >= {{ window_start }}
       or _max_loaded_at > (select coalesce(max(_max_loaded_at), cast('1900-01-01' as timestamp)) from {{ this }})
       or (is_active_day and ({{ add_days('activity_date', p('at_risk_inactive_days')) }} >= {{ window_start }}
                              and {{ add_days('activity_date', p('at_risk_inactive_days')) }} <= {{ as_of_date() }}
                           or {{ add_days('activity_date', p('churn_inactive_days')) }} >= {{ window_start }}
                              and {{ add_days('activity_date', p('churn_inactive_days')) }} <= {{ as_of_date() }}))
       or (is_purchase_day and ({{ add_days('activity_date', p('declining_no_purchase_days')) }} >= {{ window_start }}
                                and {{ add_days('activity_date', p('declining_no_purchase_days')) }} <= {{ as_of_date() }}
                             or {{ add_days('activity_date', p('mature_window_days')) }} >= {{ window_start }}
                                and {{ add_days('activity_date', p('mature_window_days')) }} <= {{ as_of_date() }}
                             or {{ add_days('activity_date', p('new_customer_days')) }} >= {{ window_start }}
                                and {{ add_days('activity_date', p('new_customer_days')) }} <= {{ as_of_date() }}))
    union
    select person_id from all_persons
    where registered_date >= {{ window_start }}
       or {{ add_days('registered_date', p('at_risk_inactive_days')) }} >= {{ window_start }}
          and {{ add_days('registered_date', p('at_risk_inactive_days')) }} <= {{ as_of_date() }}
       or {{ add_days('registered_date', p('churn_inactive_days')) }} >= {{ window_start }}
          and {{ add_days('registered_date', p('churn_inactive_days')) }} <= {{ as_of_date() }}
       or (select max(point_date) from {{ this }}) > {{ as_of_date() }}
    union
    select person_id from {{ ref('int_identity_changes') }}
),
{% endif %}

persons as (
    select person_id, registered_date from all_persons
    {%- if is_incremental() %}
    where person_id in (select person_id from rebuilt)
    {%- endif %}
),

activity as (
    select person_id, activity_date, is_active_day, is_purchase_day, _max_loaded_at from all_activity
    {%- if is_incremental() %}
    where person_id in (select person_id from rebuilt)
    {%- endif %}
),

person_loaded as (
    select person_id, max(_max_loaded_at) as _max_loaded_at from activity group by person_id
),

first_purchase as (
    select person_id, min(activity_date) as first_purchase_date
    from activity
    where is_purchase_day
    group by person_id
),

candidates as (
    -- registration day and its thresholds (days since last active counts from registration before activity)
    select person_id, {{ add_days('registered_date', 0) }} as point_date, false as is_active, false as is_purchase
    from persons
    union all
    select person_id, {{ add_days('registered_date', p('at_risk_inactive_days')) }}, false, false from persons
    union all
    select person_id, {{ add_days('registered_date', p('churn_inactive_days')) }}, false, false from persons
    -- active and purchase days
    union all
    select person_id, activity_date, is_active_day, is_purchase_day from activity
    union all
    select person_id, {{ add_days('activity_date', p('at_risk_inactive_days')) }}, false, false
    from activity where is_active_day
    union all
    select person_id, {{ add_days('activity_date', p('churn_inactive_days')) }}, false, false
    from activity where is_active_day
    union all
    select person_id, {{ add_days('activity_date', p('declining_no_purchase_days')) }}, false, false
    from activity where is_purchase_day
    union all
    select person_id, {{ add_days('activity_date', p('mature_window_days')) }}, false, false
    from activity where is_purchase_day
    union all
    select person_id, {{ add_days('first_purchase_date', p('new_customer_days')) }}, false, false
    from first_purchase
),

points as (
    select
        c.person_id,
        c.point_date,
        {{ day_num('c.point_date') }} as point_num,
        bool_or(c.is_active) as is_active,
        bool_or(c.is_purchase) as is_purchase
    from candidates as c
    inner join persons as p on c.person_id = p.person_id
    where c.point_date <= {{ as_of_date() }}
      and c.point_date >= p.registered_date
    group by c.person_id, c.point_date
),

measured as (
    select
        pt.person_id,
        pt.point_date,
        pe.registered_date,
        fp.first_purchase_date,
        max(case when pt.is_active then pt.point_date end) over w_cum as last_active_date,
        max(case when pt.is_purchase then pt.point_date end) over w_cum as last_purchase_date,
        count(case when pt.is_purchase then 1 end) over w_mature as purchase_days_mature_window,
        pl._max_loaded_at
    from points as pt
    inner join persons as pe on pt.person_id = pe.person_id
    left join first_purchase as fp on pt.person_id = fp.person_id
    left join person_loaded as pl on pt.person_id = pl.person_id
    window
        w_cum as (partition by pt.person_id order by pt.point_num rows between unbounded preceding and current row),
        w_mature as (partition by pt.person_id order by pt.point_num
                     range between {{ p('mature_window_days') - 1 }} preceding and current row)
),

final as (
    select
        person_id,
        point_date,
        {{ days_between('coalesce(last_active_date, registered_date)', 'point_date') }} as days_since_active,
        first_purchase_date,
        last_purchase_date,
        purchase_days_mature_window,
        case
            when {{ days_between('coalesce(last_active_date, registered_date)', 'point_date') }}
                 >= {{ p('churn_inactive_days') }} then 'churned'
            when {{ days_between('coalesce(last_active_date, registered_date)', 'point_date') }}
                 >= {{ p('at_risk_inactive_days') }}
              or (last_purchase_date is not null
                  and {{ days_between('last_purchase_date', 'point_date') }} >= {{ p('declining_no_purchase_days') }})
                then 'declining'
            when last_purchase_date is null then 'prospect'
            when {{ days_between('first_purchase_date', 'point_date') }} < {{ p('new_customer_days') }} then 'new'
            when purchase_days_mature_window >= {{ p('mature_min_purchase_days_90d') }} then 'mature'
            else 'growing'
        end as stage,
        _max_loaded_at
    from measured
)

select * from final
