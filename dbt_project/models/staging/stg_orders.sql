{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='order_id',
    on_schema_change='fail',
    pre_hook="{{ incremental_cleanup('order_date', 'user_id') }}"
) }}
-- Orders of known, non-erased accounts up to the as-of day with the money rules of docs/METRICS.md#landing-contract:
-- purchase = paid, or refunded with refund < paid (partial refund); zero-amount paid orders are purchases;
-- net = paid - refund (cancelled: 0); GMV = gross over paid and refunded orders.
with

orders as (
    select *
    from {{ source('raw', 'orders') }}
    where order_ts < {{ business_day_start_utc(add_days(as_of_date(), 1)) }}
      and {{ incremental_raw_prefilter('order_ts', 'order_date', '_loaded_at') }}
),

users as (
    select user_id from {{ ref('stg_users') }}
),

with_dates as (
    select
        *,
        {{ business_date('order_ts') }} as order_date
    from orders
),

windowed as (
    select *
    from with_dates
    where order_date <= {{ as_of_date() }}
      and {{ incremental_window('order_date', '_loaded_at') }}
),

deduplicated as (
    select {{ first_row_select('order_id') }} *
    from windowed
    {{ first_row_per('order_id', '_loaded_at, _load_id, _source_file') }}
),

final as (
    select
        o.order_id,
        o.user_id,
        o.order_ts,
        o.order_date,
        o.status,
        cast(o.gross_amount as decimal(18, 2)) as gross_amount,
        cast(o.discount_amount as decimal(18, 2)) as discount_amount,
        cast(o.paid_amount as decimal(18, 2)) as paid_amount,
        cast(o.refund_amount as decimal(18, 2)) as refund_amount,
        cast(case when o.status = 'cancelled' then 0 else o.paid_amount - o.refund_amount end
             as decimal(18, 2)) as net_amount,
        cast(case when o.status in ('paid', 'refunded') then o.gross_amount else 0 end
             as decimal(18, 2)) as gmv_amount,
        (o.status = 'paid' or (o.status = 'refunded' and o.refund_amount < o.paid_amount)) as is_purchase,
        o.scenario,
        o.category,
        o.kol_id,
        o.community_id,
        o.share_id,
        o.coupon_id,
        o._loaded_at
    from deduplicated as o
    inner join users as u on o.user_id = u.user_id
)

select * from final
