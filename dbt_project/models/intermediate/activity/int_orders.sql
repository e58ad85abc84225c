{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='order_id',
    on_schema_change='fail',
    pre_hook="{{ incremental_cleanup('order_date', 'user_id') }}"
) }}
-- depends_on: {{ ref('int_identity_changes') }}
-- Orders keyed by person. Incremental: the day window, rows loaded since the previous build and every order of
-- accounts whose person changed (identity merges), so person_id never goes stale.
with

orders as (
    select * from {{ ref('stg_orders') }}
),

identity as (
    select * from {{ ref('int_identity') }}
),

{% if is_incremental() %}
changed_accounts as (
    select distinct user_id from {{ ref('int_identity_changes') }} where change_side = 'new'
),
{% endif %}

selected as (
    select *
    from orders
    where {{ incremental_window('order_date', '_loaded_at') }}
    {%- if is_incremental() %}
       or user_id in (select user_id from changed_accounts)
    {%- endif %}
),

final as (
    select
        o.order_id,
        i.person_id,
        o.user_id,
        o.order_ts,
        o.order_date,
        o.status,
        o.gross_amount,
        o.discount_amount,
        o.paid_amount,
        o.refund_amount,
        o.net_amount,
        o.gmv_amount,
        o.is_purchase,
        o.scenario,
        o.kol_id,
        o.community_id,
        o.share_id,
        o.coupon_id,
        o._loaded_at
    from selected as o
    inner join identity as i on o.user_id = i.user_id
)

select * from final
