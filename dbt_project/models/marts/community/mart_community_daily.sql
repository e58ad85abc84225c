-- Community engagement per business day up to d: check-in rate (persons checking in / active persons),
-- UGC share (persons posting UGC / active persons), content interaction rate ((likes + comments +
-- favorites) / content views, docs/METRICS.md#kpis), new members and members to date (first community join).
with

{{ marts_community_period_metrics('day') }},

final as (
    select
        period_start as activity_date
        {%- for column in marts_community_metric_columns() %},
        {{ column }}
        {%- endfor %}
    from period_metrics
)

select * from final
