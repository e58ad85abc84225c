-- One row per acquisition channel over its whole history up to d: every cohort month of mart_channel_monthly, from
-- the first with spend or new persons through the as-of month (docs/METRICS.md#channel-economics). Totals are sums of
-- the monthly totals; ratios are recomputed from those sums. Realized net revenue per person at N days pools only the
-- cohort months old enough for N (their totals over their persons: matured_persons_<N>d). payback_days reads the
-- channel's revenue curve: cumulative over day offsets k of (net revenue on day k / persons observed on day k, i.e.
-- registered on or before d - k), the first k where it reaches CAC; so young cohorts neither dilute nor inflate it.
{%- set ltv_days = p('channel_realized_ltv_days') %}
with

monthly as (
    select * from {{ ref('mart_channel_monthly') }}
),

totals as (
    select
        acquisition_channel,
        min(cohort_month) as first_cohort_month,
        max(cohort_month) as last_cohort_month,
        {{ money_total('sum(spend)') }} as spend,
        cast(sum(new_persons) as bigint) as new_persons,
        cast(sum(paying_persons) as bigint) as paying_persons,
        {%- for n in ltv_days %}
        cast(sum(case when realized_net_revenue_{{ n }}d is not null then new_persons else 0 end) as bigint)
            as matured_persons_{{ n }}d,
        {{ money_total('sum(realized_net_revenue_' ~ n ~ 'd)') }} as realized_net_revenue_{{ n }}d,
        {%- endfor %}
        {{ money_total('sum(predicted_ltv_total)') }} as predicted_ltv_total,
        bool_or(ltv_source = 'model') as has_model_scores
    from monthly
    group by 1
),

persons as (
    select person_id, acquisition_channel, registered_date
    from {{ ref('int_persons') }}
    where registered_date <= {{ as_of_date() }}
),

revenue_by_offset as (
    select
        persons.acquisition_channel,
        {{ days_between('persons.registered_date', 'daily.activity_date') }} as day_offset,
        {{ money_total('sum(daily.net_revenue)') }} as net_revenue
    from {{ ref('int_person_daily_activity') }} as daily
    inner join persons on persons.person_id = daily.person_id
    where daily.activity_date <= {{ as_of_date() }}
      and daily.net_revenue <> 0
    group by 1, 2
),

persons_by_age as (
    -- age = days observed after registration; a person of age a is observed on day offsets 0..a
    select acquisition_channel, {{ days_between('registered_date', as_of_date()) }} as age, count(*) as persons
    from persons
    group by 1, 2
),

ages as (
    -- every age 0..oldest per channel, so that each day offset finds its count by equality
    select acquisition_channel, {{ int_series(0, 'max(age)', 'integer') }} as age
    from persons_by_age
    group by 1
),

observed_persons as (
    -- persons observed on day offset k: those of age >= k (a suffix sum over ages)
    select
        ages.acquisition_channel,
        ages.age as day_offset,
        sum(coalesce(persons_by_age.persons, 0)) over (
            partition by ages.acquisition_channel
            order by ages.age desc
            rows between unbounded preceding and current row
        ) as observed_persons
    from ages
    left join persons_by_age
        on persons_by_age.acquisition_channel = ages.acquisition_channel and persons_by_age.age = ages.age
),

observed_by_offset as (
    select
        revenue_by_offset.acquisition_channel,
        revenue_by_offset.day_offset,
        revenue_by_offset.net_revenue,
        observed_persons.observed_persons
    from revenue_by_offset
    inner join observed_persons
        on observed_persons.acquisition_channel = revenue_by_offset.acquisition_channel
        and observed_persons.day_offset = revenue_by_offset.day_offset
),

revenue_curve as (
    select
        acquisition_channel,
        day_offset,
        sum(cast(net_revenue as {{ type_double() }}) / observed_persons) over (
            partition by acquisition_channel
            order by day_offset
            rows between unbounded preceding and current row
        ) as cumulative_net_revenue_per_person
    from observed_by_offset
),

payback as (
    select totals.acquisition_channel, min(revenue_curve.day_offset) as payback_days
    from totals
    inner join revenue_curve on revenue_curve.acquisition_channel = totals.acquisition_channel
    where totals.new_persons > 0
      and revenue_curve.cumulative_net_revenue_per_person >= cast(totals.spend as {{ type_double() }}) / totals.new_persons
    group by 1
),

final as (
    select
        totals.acquisition_channel,
        totals.first_cohort_month,
        totals.last_cohort_month,
        totals.spend,
        totals.new_persons,
        totals.paying_persons,
        {{ money_total(money_ratio('totals.spend', 'nullif(totals.new_persons, 0)')) }} as cac,
        {{ money_total(money_ratio('totals.spend', 'nullif(totals.paying_persons, 0)')) }} as cost_per_paying_person,
        {%- for n in ltv_days %}
        totals.matured_persons_{{ n }}d,
        totals.realized_net_revenue_{{ n }}d,
        {{ money_total(money_ratio('totals.realized_net_revenue_' ~ n ~ 'd', 'nullif(totals.matured_persons_' ~ n ~ 'd, 0)')) }}
            as realized_net_revenue_per_person_{{ n }}d,
        {%- endfor %}
        totals.predicted_ltv_total,
        {{ money_total(money_ratio('totals.predicted_ltv_total', 'nullif(totals.new_persons, 0)')) }} as predicted_ltv_per_person,
        case when totals.has_model_scores then 'model' else 'realized' end as ltv_source,
        cast(case when totals.new_persons > 0 and totals.spend > 0
                  then {{ div('totals.predicted_ltv_total', 'totals.spend') }} end as {{ type_double() }}) as ltv_cac_ratio,
        coalesce(totals.new_persons > 0 and totals.spend > 0
                 and totals.predicted_ltv_total < {{ p('ltv_cac_pause_threshold') }} * totals.spend, false)
            as pause_recommended,
        case when totals.new_persons > 0 and totals.spend = 0 then 0 else payback.payback_days end as payback_days
    from totals
    left join payback on payback.acquisition_channel = totals.acquisition_channel
)

select * from final
