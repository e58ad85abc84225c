-- Orders as of d keyed by person, with the money rules of docs/METRICS.md#landing-contract applied (net, GMV, purchase flag).
with

orders as (
    select * from {{ ref('int_orders') }}
),

final as (
    select
        order_id,
        person_id,
        user_id,
        order_ts,
        order_date,
        status,
        gross_amount,
        discount_amount,
        paid_amount,
        refund_amount,
        net_amount,
        gmv_amount,
        is_purchase,
        scenario,
        scenario = 'community' as is_private_domain,
        kol_id,
        community_id,
        share_id,
        coupon_id
    from orders
    where order_date <= {{ as_of_date() }}
)

select * from final
