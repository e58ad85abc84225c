-- Community engagement per business month up to d (same measures as mart_community_daily) plus the private-domain
-- funnel (docs/METRICS.md#kpis): of persons whose first community join is in the month, the share with a
-- `product_view` and the share with a purchase on days 0..N-1 after joining (N = private_domain_funnel_days); null
-- until every joiner of the month is observed for N days (last day of the month + N <= d).
{%- set funnel_days = p('private_domain_funnel_days') %}
with

{{ marts_community_period_metrics('month') }},

joiners as (
    select person_id, first_join_date, {{ period_start('month', 'first_join_date') }} as join_month
    from {{ ref('int_community_members') }}
),

funnel_activity as (
    select
        joiners.person_id,
        max(case when daily.n_product_view > 0 then 1 else 0 end) as has_product_view,
        max(case when daily.is_purchase_day then 1 else 0 end) as has_purchase
    from joiners
    inner join daily
        on daily.person_id = joiners.person_id
        and daily.activity_date >= joiners.first_join_date
        and daily.activity_date < {{ add_days('joiners.first_join_date', funnel_days) }}
    group by joiners.person_id
),

funnel as (
    select
        joiners.join_month,
        count(*) as funnel_joiners,
        cast(sum(coalesce(funnel_activity.has_product_view, 0)) as bigint) as funnel_product_viewers,
        cast(sum(coalesce(funnel_activity.has_purchase, 0)) as bigint) as funnel_purchasers
    from joiners
    left join funnel_activity on funnel_activity.person_id = joiners.person_id
    group by joiners.join_month
),

final as (
    select
        period_metrics.period_start as month,
        {{ marts_month_end('period_metrics.period_start') }} <= {{ as_of_date() }} as is_complete_month,
        {%- for column in marts_community_metric_columns() %}
        period_metrics.{{ column }},
        {%- endfor %}
        coalesce(funnel.funnel_joiners, 0) as funnel_joiners,
        case when {{ marts_month_end('period_metrics.period_start') }} <= {{ marts_days_before(funnel_days) }}
             then cast(funnel.funnel_product_viewers as {{ type_double() }}) / nullif(funnel.funnel_joiners, 0) end as funnel_product_view_rate,
        case when {{ marts_month_end('period_metrics.period_start') }} <= {{ marts_days_before(funnel_days) }}
             then cast(funnel.funnel_purchasers as {{ type_double() }}) / nullif(funnel.funnel_joiners, 0) end as funnel_purchase_rate
    from period_metrics
    left join funnel on funnel.join_month = period_metrics.period_start
)

select * from final
