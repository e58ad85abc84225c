-- One row per person with any activity up to the as-of date: lifetime activity/purchase dates and the windowed
-- purchase aggregates every segment needs (docs/METRICS.md#activity-primitives,
-- docs/METRICS.md#segmentation-and-tiers). One pass over the sparse daily activity so downstream models never rescan
-- it.
with

daily as (
    select * from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }}
),

final as (
    select
        person_id,
        min(activity_date) as first_active_date,
        max(activity_date) as last_active_date,
        min(case when is_purchase_day then activity_date end) as first_purchase_date,
        max(case when is_purchase_day then activity_date end) as last_purchase_date,
        count(case when is_purchase_day then 1 end) as purchase_days,
        {{ money_total('coalesce(sum(net_revenue), 0)') }} as realized_net_revenue,

        -- RFM window (d - rfm_window_days, d]
        count(case when is_purchase_day and {{ marts_in_window('activity_date', p('rfm_window_days')) }}
                   then 1 end) as rfm_purchase_days,
        cast(coalesce(sum(case when {{ marts_in_window('activity_date', p('rfm_window_days')) }}
                               then net_revenue end), 0) as decimal(38, 2)) as rfm_net_revenue,

        -- diamond value-tier window (d - value_tier_diamond_window_days, d]
        count(case when is_purchase_day and {{ marts_in_window('activity_date', p('value_tier_diamond_window_days')) }}
                   then 1 end) as diamond_window_purchase_days,
        cast(coalesce(sum(case when {{ marts_in_window('activity_date', p('value_tier_diamond_window_days')) }}
                               then n_purchases end), 0) as bigint) as diamond_window_purchases,
        cast(coalesce(sum(case when {{ marts_in_window('activity_date', p('value_tier_diamond_window_days')) }}
                               then net_revenue end), 0) as decimal(38, 2)) as diamond_window_net_revenue,

        -- behaviour dates used by the intervention rules (docs/METRICS.md#interventions)
        max(case when n_live_enter > 0 then activity_date end) as last_live_enter_date,
        cast(coalesce(sum(n_ugc_post), 0) as bigint) as ugc_posts
    from daily
    group by person_id
)

select * from final
