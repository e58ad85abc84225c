-- AARRR funnel (docs/METRICS.md#aarrr-funnel) per acquisition cohort (registration day, rolled up to week and month)
-- x channel x platform. A rate is null until every cohort day is fully observed: as_of >= last cohort day + N, N
-- being the window of that step (activation_window_days, each retention day, monetized / referred window days).
{%- set retention_days = p('retention_days') %}
with

persons as (
    select person_id, registered_date, acquisition_channel, platform from {{ ref('int_persons') }}
),

activity as (
    select person_id, activity_date, is_active_day, is_purchase_day
    from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }}
),

invites as (
    select inviter_person_id as person_id, sent_date
    from {{ ref('int_invites') }}
    where is_accepted
),

person_activity as (
    select
        p.person_id,
        min(case when a.is_purchase_day then {{ days_between('p.registered_date', 'a.activity_date') }} end)
            as first_purchase_day,
        {%- for n in retention_days %}
        bool_or(a.is_active_day and a.activity_date = {{ add_days('p.registered_date', n) }}) as retained_d{{ n }},
        {%- endfor %}
        bool_or(a.is_purchase_day
                and a.activity_date >= p.registered_date
                and a.activity_date < {{ add_days('p.registered_date', p('monetized_window_days')) }}) as monetized
    from persons as p
    inner join activity as a on p.person_id = a.person_id
    group by p.person_id
),

person_referrals as (
    select distinct p.person_id
    from persons as p
    inner join invites as i on p.person_id = i.person_id
    where i.sent_date >= p.registered_date
      and i.sent_date < {{ add_days('p.registered_date', p('referred_window_days')) }}
),

person_flags as (
    select
        p.person_id,
        p.registered_date,
        p.acquisition_channel,
        p.platform,
        coalesce(pa.first_purchase_day between 0 and {{ p('activation_window_days') - 1 }}, false) as activated,
        {%- for n in retention_days %}
        coalesce(pa.retained_d{{ n }}, false) as retained_d{{ n }},
        {%- endfor %}
        coalesce(pa.monetized, false) as monetized,
        pr.person_id is not null as referred
    from persons as p
    left join person_activity as pa on p.person_id = pa.person_id
    left join person_referrals as pr on p.person_id = pr.person_id
),

{% for grain in ['day', 'week', 'month'] %}
{{ grain }}_cohorts as (
    select
        '{{ grain }}' as cohort_grain,
        {{ period_start(grain, 'registered_date') }} as cohort_date,
        {{ add_days(add_periods(grain, period_start(grain, 'registered_date'), 1), -1) }} as cohort_last_day,
        acquisition_channel,
        platform,
        count(*) as acquired,
        count(*) filter (where activated) as activated,
        {%- for n in retention_days %}
        count(*) filter (where retained_d{{ n }}) as retained_d{{ n }},
        {%- endfor %}
        count(*) filter (where monetized) as monetized,
        count(*) filter (where referred) as referred
    from person_flags
    group by 1, 2, 3, 4, 5
),
{% endfor %}

cohorts as (
    select * from day_cohorts
    union all
    select * from week_cohorts
    union all
    select * from month_cohorts
),

final as (
    select
        cohort_grain,
        cohort_date,
        acquisition_channel,
        platform,
        cast(acquired as integer) as acquired,
        cast(activated as integer) as activated,
        {%- for n in retention_days %}
        cast(retained_d{{ n }} as integer) as retained_d{{ n }},
        {%- endfor %}
        cast(monetized as integer) as monetized,
        cast(referred as integer) as referred,
        case when {{ as_of_date() }} >= {{ add_days('cohort_last_day', p('activation_window_days')) }}
             then activated / acquired end as activation_rate,
        {%- for n in retention_days %}
        case when {{ as_of_date() }} >= {{ add_days('cohort_last_day', n) }}
             then retained_d{{ n }} / acquired end as retained_d{{ n }}_rate,
        {%- endfor %}
        case when {{ as_of_date() }} >= {{ add_days('cohort_last_day', p('monetized_window_days')) }}
             then monetized / acquired end as monetized_rate,
        case when {{ as_of_date() }} >= {{ add_days('cohort_last_day', p('referred_window_days')) }}
             then referred / acquired end as referred_rate
    from cohorts
)

select * from final
