-- Sparse person x business-day activity (docs/METRICS.md#activity-primitives): only days with an event or an order.
{%- set columns = ['person_id', 'activity_date', 'n_events', 'n_app_open', 'n_product_view', 'n_content_view', 'n_like', 'n_comment', 'n_favorite', 'n_share', 'n_live_enter', 'n_community_join', 'n_community_open', 'n_check_in', 'n_ugc_post', 'n_invite_sent', 'n_assist', 'n_orders', 'n_purchases', 'is_purchase_day', 'is_active_day', 'net_revenue', 'gmv'] %}
with

activity as (
    select * from {{ ref('int_person_daily_activity') }}
),

final as (
    select
        {{ columns | join(',\n        ') }}
    from activity
    where activity_date <= {{ as_of_date() }}
)

select * from final
