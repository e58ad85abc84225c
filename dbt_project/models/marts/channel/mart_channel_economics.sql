-- Channel economics (docs/METRICS.md#channel-economics) as of d, one row per acquisition_channel x platform x cohort
-- month (month of the person's registration day) that has spend or new persons up to d. Realized net revenue per
-- person at N days counts days 0..N-1 after registration and is null until the whole cohort month is observed (last
-- day of the month + N <= d). predicted_ltv_per_person is the mean predicted total LTV (realized to date + model's
-- next 365 days; realized alone where no score exists).
{%- set ltv_days = p('channel_realized_ltv_days') %}
with

persons as (
    select
        person_id,
        acquisition_channel,
        platform,
        registered_date,
        {{ period_start('month', 'registered_date') }} as cohort_month
    from {{ ref('int_persons') }}
    where registered_date <= {{ as_of_date() }}
),

spend as (
    select
        acquisition_channel,
        platform,
        {{ period_start('month', 'spend_date') }} as cohort_month,
        {{ money_total('sum(spend)') }} as spend
    from {{ ref('stg_marketing_spend') }}
    where spend_date <= {{ as_of_date() }}
    group by 1, 2, 3
),

ltv as (
    select person_id, predicted_total_ltv, predicted_ltv_365 from {{ ref('int_person_ltv') }}
),

activity as (
    select person_id, first_purchase_date from {{ ref('int_person_activity_summary') }}
),

revenue_days as (
    select
        persons.acquisition_channel,
        persons.platform,
        persons.cohort_month,
        {{ days_between('persons.registered_date', 'daily.activity_date') }} as day_offset,
        daily.net_revenue
    from {{ ref('int_person_daily_activity') }} as daily
    inner join persons on persons.person_id = daily.person_id
    where daily.activity_date <= {{ as_of_date() }}
      and daily.net_revenue <> 0
),

revenue_by_offset as (
    select acquisition_channel, platform, cohort_month, day_offset,
           {{ money_total('sum(net_revenue)') }} as net_revenue
    from revenue_days
    group by 1, 2, 3, 4
),

cohorts as (
    select
        persons.acquisition_channel,
        persons.platform,
        persons.cohort_month,
        count(*) as new_persons,
        count(activity.first_purchase_date) as paying_persons,
        {{ money_total('sum(ltv.predicted_total_ltv)') }} as total_predicted_ltv,
        count(ltv.predicted_ltv_365) > 0 as has_model_scores
    from persons
    left join activity on activity.person_id = persons.person_id
    left join ltv on ltv.person_id = persons.person_id
    group by 1, 2, 3
),

realized as (
    select
        acquisition_channel,
        platform,
        cohort_month
        {%- for n in ltv_days %},
        {{ money_total('sum(case when day_offset < ' ~ n ~ ' then net_revenue else 0 end)') }} as net_revenue_{{ n }}d
        {%- endfor %}
    from revenue_by_offset
    group by 1, 2, 3
),

economics as (
    select
        coalesce(cohorts.acquisition_channel, spend.acquisition_channel) as acquisition_channel,
        coalesce(cohorts.platform, spend.platform) as platform,
        coalesce(cohorts.cohort_month, spend.cohort_month) as cohort_month,
        {{ money_total('coalesce(spend.spend, 0)') }} as spend,
        coalesce(cohorts.new_persons, 0) as new_persons,
        coalesce(cohorts.paying_persons, 0) as paying_persons,
        cohorts.total_predicted_ltv,
        coalesce(cohorts.has_model_scores, false) as has_model_scores
    from cohorts
    full outer join spend
        on spend.acquisition_channel = cohorts.acquisition_channel
        and spend.platform = cohorts.platform
        and spend.cohort_month = cohorts.cohort_month
),

with_cac as (
    select
        economics.*,
        -- means of cohort totals: bounded only by the total (a one-person cohort), so DECIMAL(38,2) as well
        {{ money_total('spend / nullif(new_persons, 0)') }} as cac,
        {{ money_total('spend / nullif(paying_persons, 0)') }} as cost_per_paying_person
    from economics
),

payback as (
    select
        with_cac.acquisition_channel,
        with_cac.platform,
        with_cac.cohort_month,
        min(cumulative.day_offset) as payback_days
    from with_cac
    inner join (
        select
            *,
            cast(sum(net_revenue) over (
                partition by acquisition_channel, platform, cohort_month
                order by day_offset
                rows between unbounded preceding and current row
            ) as decimal(38, 2)) as cumulative_net_revenue
        from revenue_by_offset
    ) as cumulative
        on cumulative.acquisition_channel = with_cac.acquisition_channel
        and cumulative.platform = with_cac.platform
        and cumulative.cohort_month = with_cac.cohort_month
    where with_cac.new_persons > 0
      -- cumulative net revenue per person >= CAC  <=>  cumulative cohort net revenue >= cohort spend
      and cumulative.cumulative_net_revenue >= with_cac.spend
    group by 1, 2, 3
),

final as (
    select
        with_cac.acquisition_channel,
        with_cac.platform,
        with_cac.cohort_month,
        with_cac.spend,
        with_cac.new_persons,
        with_cac.paying_persons,
        with_cac.cac,
        with_cac.cost_per_paying_person,
        {%- for n in ltv_days %}
        cast(case
            when with_cac.new_persons > 0
                 and {{ marts_month_end('with_cac.cohort_month') }} <= {{ marts_days_before(n) }}
                then coalesce(realized.net_revenue_{{ n }}d, 0) / with_cac.new_persons
        end as decimal(38, 2)) as realized_net_revenue_per_person_{{ n }}d,
        {%- endfor %}
        {{ money_total('with_cac.total_predicted_ltv / nullif(with_cac.new_persons, 0)') }} as predicted_ltv_per_person,
        case when with_cac.has_model_scores then 'model' else 'realized' end as ltv_source,
        -- (total LTV / persons) / (spend / persons), computed without intermediate rounding
        cast(case when with_cac.new_persons > 0 and with_cac.spend > 0
                  then with_cac.total_predicted_ltv / with_cac.spend end as double) as ltv_cac_ratio,
        -- strictly below the threshold, compared exactly in decimals; unknown ratio (no CAC) -> not paused
        coalesce(with_cac.new_persons > 0 and with_cac.spend > 0
                 and with_cac.total_predicted_ltv < {{ p('ltv_cac_pause_threshold') }} * with_cac.spend, false)
            as pause_recommended,
        case when with_cac.new_persons > 0 and with_cac.spend = 0 then 0 else payback.payback_days end
            as payback_days
    from with_cac
    left join realized
        on realized.acquisition_channel = with_cac.acquisition_channel
        and realized.platform = with_cac.platform
        and realized.cohort_month = with_cac.cohort_month
    left join payback
        on payback.acquisition_channel = with_cac.acquisition_channel
        and payback.platform = with_cac.platform
        and payback.cohort_month = with_cac.cohort_month
)

select * from final
