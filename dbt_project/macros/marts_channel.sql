{#-
  docs/METRICS.md#channel-economics: the channel economics of one grain, as of d. `group_cols` are the columns the
  cohorts are split by besides cohort_month: ['acquisition_channel', 'platform'] for mart_channel_economics,
  ['acquisition_channel'] for mart_channel_monthly (platforms summed). Every ratio is computed from the summed
  numerator and denominator of its grain, never as a mean of finer ratios. with_totals adds the additive totals
  (predicted_ltv_total, realized_net_revenue_<N>d) so that coarser grains can be summed from this one.
-#}
{% macro marts_channel_economics(group_cols, with_totals=false) -%}
{%- set ltv_days = p('channel_realized_ltv_days') %}
{%- set keys = group_cols + ['cohort_month'] %}
{%- set n_keys = keys | length %}
{%- set key_positions = range(1, n_keys + 1) | join(', ') %}
with

persons as (
    select
        person_id,
        {{ group_cols | join(',\n        ') }},
        registered_date,
        {{ period_start('month', 'registered_date') }} as cohort_month
    from {{ ref('int_persons') }}
    where registered_date <= {{ as_of_date() }}
),

spend as (
    select
        {{ group_cols | join(',\n        ') }},
        {{ period_start('month', 'spend_date') }} as cohort_month,
        {{ money_total('sum(spend)') }} as spend
    from {{ ref('stg_marketing_spend') }}
    where spend_date <= {{ as_of_date() }}
    group by {{ key_positions }}
),

ltv as (
    select person_id, predicted_total_ltv, predicted_ltv_365 from {{ ref('int_person_ltv') }}
),

activity as (
    select person_id, first_purchase_date from {{ ref('int_person_activity_summary') }}
),

revenue_days as (
    select
        {%- for k in keys %}
        persons.{{ k }},
        {%- endfor %}
        {{ days_between('persons.registered_date', 'daily.activity_date') }} as day_offset,
        daily.net_revenue
    from {{ ref('int_person_daily_activity') }} as daily
    inner join persons on persons.person_id = daily.person_id
    where daily.activity_date <= {{ as_of_date() }}
      and daily.net_revenue <> 0
),

revenue_by_offset as (
    select {{ keys | join(', ') }}, day_offset,
           {{ money_total('sum(net_revenue)') }} as net_revenue
    from revenue_days
    group by {{ key_positions }}, {{ n_keys + 1 }}
),

cohorts as (
    select
        {%- for k in keys %}
        persons.{{ k }},
        {%- endfor %}
        count(*) as new_persons,
        count(activity.first_purchase_date) as paying_persons,
        {{ money_total('sum(ltv.predicted_total_ltv)') }} as total_predicted_ltv,
        count(ltv.predicted_ltv_365) > 0 as has_model_scores
    from persons
    left join activity on activity.person_id = persons.person_id
    left join ltv on ltv.person_id = persons.person_id
    group by {{ key_positions }}
),

realized as (
    select
        {{ keys | join(',\n        ') }}
        {%- for n in ltv_days %},
        {{ money_total('sum(case when day_offset < ' ~ n ~ ' then net_revenue else 0 end)') }} as net_revenue_{{ n }}d
        {%- endfor %}
    from revenue_by_offset
    group by {{ key_positions }}
),

economics as (
    select
        {%- for k in keys %}
        coalesce(cohorts.{{ k }}, spend.{{ k }}) as {{ k }},
        {%- endfor %}
        {{ money_total('coalesce(spend.spend, 0)') }} as spend,
        coalesce(cohorts.new_persons, 0) as new_persons,
        coalesce(cohorts.paying_persons, 0) as paying_persons,
        cohorts.total_predicted_ltv,
        coalesce(cohorts.has_model_scores, false) as has_model_scores
    from cohorts
    full outer join spend
        on {% for k in keys %}{% if not loop.first %}
        and {% endif %}spend.{{ k }} = cohorts.{{ k }}{% endfor %}
),

with_cac as (
    select
        economics.*,
        -- means of cohort totals: bounded only by the total (a one-person cohort), so DECIMAL(38,2) as well
        {{ money_total(money_ratio('spend', 'nullif(new_persons, 0)')) }} as cac,
        {{ money_total(money_ratio('spend', 'nullif(paying_persons, 0)')) }} as cost_per_paying_person
    from economics
),

payback as (
    select
        {%- for k in keys %}
        with_cac.{{ k }},
        {%- endfor %}
        min(cumulative.day_offset) as payback_days
    from with_cac
    inner join (
        select
            *,
            cast(sum(net_revenue) over (
                partition by {{ keys | join(', ') }}
                order by day_offset
                rows between unbounded preceding and current row
            ) as decimal(38, 2)) as cumulative_net_revenue
        from revenue_by_offset
    ) as cumulative
        on {% for k in keys %}{% if not loop.first %}
        and {% endif %}cumulative.{{ k }} = with_cac.{{ k }}{% endfor %}
    where with_cac.new_persons > 0
      -- cumulative net revenue per person >= CAC  <=>  cumulative cohort net revenue >= cohort spend
      and cumulative.cumulative_net_revenue >= with_cac.spend
    group by {{ key_positions }}
),

final as (
    select
        {%- for k in keys %}
        with_cac.{{ k }},
        {%- endfor %}
        with_cac.spend,
        with_cac.new_persons,
        with_cac.paying_persons,
        with_cac.cac,
        with_cac.cost_per_paying_person,
        {%- if with_totals %}
        {%- for n in ltv_days %}
        -- cohort total over days 0..{{ n - 1 }}, null (like the per-person value) until the cohort month is {{ n }} days old
        cast(case
            when with_cac.new_persons > 0
                 and {{ marts_month_end('with_cac.cohort_month') }} <= {{ marts_days_before(n) }}
                then {{ money_total('coalesce(realized.net_revenue_' ~ n ~ 'd, 0)') }}
        end as decimal(38, 2)) as realized_net_revenue_{{ n }}d,
        {%- endfor %}
        {%- endif %}
        {%- for n in ltv_days %}
        cast(case
            when with_cac.new_persons > 0
                 and {{ marts_month_end('with_cac.cohort_month') }} <= {{ marts_days_before(n) }}
                then {{ money_ratio('coalesce(realized.net_revenue_' ~ n ~ 'd, 0)', 'with_cac.new_persons') }}
        end as decimal(38, 2)) as realized_net_revenue_per_person_{{ n }}d,
        {%- endfor %}
        {%- if with_totals %}
        with_cac.total_predicted_ltv as predicted_ltv_total,
        {%- endif %}
        {{ money_total(money_ratio('with_cac.total_predicted_ltv', 'nullif(with_cac.new_persons, 0)')) }} as predicted_ltv_per_person,
        case when with_cac.has_model_scores then 'model' else 'realized' end as ltv_source,
        -- (total LTV / persons) / (spend / persons), computed without intermediate rounding
        cast(case when with_cac.new_persons > 0 and with_cac.spend > 0
                  then {{ div('with_cac.total_predicted_ltv', 'with_cac.spend') }} end as {{ type_double() }}) as ltv_cac_ratio,
        -- strictly below the threshold, compared exactly in decimals; unknown ratio (no CAC) -> not paused
        coalesce(with_cac.new_persons > 0 and with_cac.spend > 0
                 and with_cac.total_predicted_ltv < {{ p('ltv_cac_pause_threshold') }} * with_cac.spend, false)
            as pause_recommended,
        case when with_cac.new_persons > 0 and with_cac.spend = 0 then 0 else payback.payback_days end
            as payback_days
    from with_cac
    left join realized
        on {% for k in keys %}{% if not loop.first %}
        and {% endif %}realized.{{ k }} = with_cac.{{ k }}{% endfor %}
    left join payback
        on {% for k in keys %}{% if not loop.first %}
        and {% endif %}payback.{{ k }} = with_cac.{{ k }}{% endfor %}
)

select * from final
{%- endmacro %}
