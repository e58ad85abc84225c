{#-
  docs/METRICS.md#aarrr-funnel: the AARRR funnel per registration cohort (day, rolled up to ISO week and month) x
  `group_cols`: ['acquisition_channel', 'platform'] for mart_aarrr_funnel, ['acquisition_channel'] for
  mart_aarrr_funnel_by_channel. Each windowed step (activation, D1/D7/D30 retention, monetized, referred) has a
  maturity flag is_mature_<step> (d >= last cohort day + the step's window, N days): its count and its rate are both
  null until then. is_mature = every step mature. acquired is never windowed.
-#}
{% macro marts_aarrr_funnel(group_cols) -%}
{%- set retention_days = p('retention_days') %}
with

persons as (
    select person_id, registered_date, {{ group_cols | join(', ') }} from {{ ref('int_persons') }}
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
        {%- for g in group_cols %}
        p.{{ g }},
        {%- endfor %}
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
        {%- for g in group_cols %}
        {{ g }},
        {%- endfor %}
        count(*) as acquired,
        count(*) filter (where activated) as activated,
        {%- for n in retention_days %}
        count(*) filter (where retained_d{{ n }}) as retained_d{{ n }},
        {%- endfor %}
        count(*) filter (where monetized) as monetized,
        count(*) filter (where referred) as referred
    from person_flags
    group by {{ range(1, (group_cols | length) + 4) | join(', ') }}
),
{% endfor %}

cohorts as (
    select * from day_cohorts
    union all
    select * from week_cohorts
    union all
    select * from month_cohorts
),

maturity as (
    -- a step is mature once every cohort person could have completed it: d >= last cohort day + the step's window
    select
        *,
        {{ as_of_date() }} >= {{ add_days('cohort_last_day', p('activation_window_days')) }} as is_mature_activation,
        {%- for n in retention_days %}
        {{ as_of_date() }} >= {{ add_days('cohort_last_day', n) }} as is_mature_d{{ n }},
        {%- endfor %}
        {{ as_of_date() }} >= {{ add_days('cohort_last_day', p('monetized_window_days')) }} as is_mature_monetized,
        {{ as_of_date() }} >= {{ add_days('cohort_last_day', p('referred_window_days')) }} as is_mature_referred
    from cohorts
),

final as (
    -- a step's count and rate are both null until the step is mature (a partial count next to a null rate invites
    -- the division this rule prevents); acquired is never windowed
    select
        cohort_grain,
        cohort_date,
        {%- for g in group_cols %}
        {{ g }},
        {%- endfor %}
        cast(acquired as integer) as acquired,
        case when is_mature_activation then cast(activated as integer) end as activated,
        {%- for n in retention_days %}
        case when is_mature_d{{ n }} then cast(retained_d{{ n }} as integer) end as retained_d{{ n }},
        {%- endfor %}
        case when is_mature_monetized then cast(monetized as integer) end as monetized,
        case when is_mature_referred then cast(referred as integer) end as referred,
        case when is_mature_activation then {{ div('activated', 'acquired') }} end as activation_rate,
        {%- for n in retention_days %}
        case when is_mature_d{{ n }} then {{ div('retained_d' ~ n, 'acquired') }} end as retained_d{{ n }}_rate,
        {%- endfor %}
        case when is_mature_monetized then {{ div('monetized', 'acquired') }} end as monetized_rate,
        case when is_mature_referred then {{ div('referred', 'acquired') }} end as referred_rate,
        is_mature_activation
        {%- for n in retention_days %}
        and is_mature_d{{ n }}
        {%- endfor %}
        and is_mature_monetized and is_mature_referred as is_mature,
        is_mature_activation,
        {%- for n in retention_days %}
        is_mature_d{{ n }},
        {%- endfor %}
        is_mature_monetized,
        is_mature_referred
    from maturity
)

select * from final
{%- endmacro %}
