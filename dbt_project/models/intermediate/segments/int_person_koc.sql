-- KOC flag (docs/METRICS.md#segmentation-and-tiers): persons with >= koc_min_ugc_posts `ugc_post` events (up to d)
-- whose share links led to >= koc_min_attributed_purchases purchases by other persons in (d - koc_window_days, d].
-- One row per person who posted UGC or whose share links led to a purchase in the window.
with

share_links as (
    select distinct share_id, sharer_person_id
    from {{ ref('int_share_attribution') }}
    where share_date <= {{ as_of_date() }}
),

orders as (
    select order_id, person_id, share_id
    from {{ ref('int_orders') }}
    where is_purchase
      and share_id is not null
      and {{ marts_in_window('order_date', p('koc_window_days')) }}
),

attributed_purchases as (
    select
        share_links.sharer_person_id as person_id,
        count(distinct orders.order_id) as attributed_purchases
    from orders
    inner join share_links on share_links.share_id = orders.share_id
    where orders.person_id <> share_links.sharer_person_id
    group by share_links.sharer_person_id
),

ugc as (
    select person_id, ugc_posts
    from {{ ref('int_person_activity_summary') }}
    where ugc_posts > 0
),

final as (
    select
        coalesce(ugc.person_id, attributed_purchases.person_id) as person_id,
        coalesce(ugc.ugc_posts, 0) as ugc_posts,
        coalesce(attributed_purchases.attributed_purchases, 0) as share_attributed_purchases,
        coalesce(ugc.ugc_posts, 0) >= {{ p('koc_min_ugc_posts') }}
            and coalesce(attributed_purchases.attributed_purchases, 0) >= {{ p('koc_min_attributed_purchases') }}
            as is_koc
    from ugc
    full outer join attributed_purchases on attributed_purchases.person_id = ugc.person_id
)

select * from final
