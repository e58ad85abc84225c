-- Monthly roll-ups of the KPIs (docs/METRICS.md#kpis) (business months) incl. monthly churn, K-factor, NPS and the
-- private-domain funnel. The month containing as_of is partial (month_complete = false); nothing after as_of is used.
with

activity as (
    select *
    from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }}
),

orders as (
    select * from {{ ref('int_orders') }} where order_date <= {{ as_of_date() }}
),

persons as (
    select person_id, registered_date from {{ ref('int_persons') }}
),

invites as (
    select * from {{ ref('int_invites') }}
),

nps as (
    select response_date, score from {{ ref('stg_nps_responses') }}
),

joins as (
    select person_id, min(activity_date) as join_date, {{ period_start('month', 'activity_date') }} as month_start
    from activity
    where n_community_join > 0
    group by person_id, {{ period_start('month', 'activity_date') }}
),

months as (
    select distinct {{ period_start('month', 'spine_date') }} as month_start
    from ({{ day_spine('(select min(activity_date) from activity)', as_of_date()) }}) as s
),

person_months as (
    select distinct person_id, {{ period_start('month', 'activity_date') }} as month_start
    from activity
    where is_active_day
),

churn as (
    select
        {{ add_periods('month', 'prev.month_start', 1) }} as month_start,
        count(*) as active_previous_month,
        count(*) filter (where cur.person_id is null) as churned_persons
    from person_months as prev
    left join person_months as cur
        on prev.person_id = cur.person_id and cur.month_start = {{ add_periods('month', 'prev.month_start', 1) }}
    group by 1
),

activity_months as (
    select
        {{ period_start('month', 'activity_date') }} as month_start,
        count(distinct case when is_active_day then person_id end) as active_persons,
        count(distinct case when is_purchase_day then person_id end) as purchasing_persons,
        sum(n_like + n_comment + n_favorite) as content_interactions,
        sum(n_content_view) as content_views,
        sum(n_share) as share_events
    from activity
    group by 1
),

order_months as (
    select
        {{ period_start('month', 'order_date') }} as month_start,
        {{ money_total('sum(gmv_amount)') }} as gmv,
        {{ money_total('sum(net_amount)') }} as net_revenue,
        count(*) as orders,
        count(*) filter (where is_purchase) as purchases,
        {{ money_total("sum(gmv_amount) filter (where scenario = 'community')") }} as community_gmv
    from orders
    group by 1
),

new_person_months as (
    select {{ period_start('month', 'registered_date') }} as month_start, count(*) as new_persons
    from persons
    where registered_date <= {{ as_of_date() }}
    group by 1
),

invite_months as (
    select
        {{ period_start('month', 'sent_date') }} as month_start,
        count(*) as invites_sent,
        count(*) filter (
            where accepted_date <= least({{ add_days(add_periods('month', period_start('month', 'sent_date'), 1), -1) }},
                                         {{ as_of_date() }})
        ) as invites_accepted
    from invites
    group by 1
),

nps_months as (
    select
        {{ period_start('month', 'response_date') }} as month_start,
        count(*) as nps_responses,
        count(*) filter (where score >= 9) as promoters,
        count(*) filter (where score <= 6) as detractors
    from nps
    group by 1
),

joiner_flags as (
    select
        j.month_start,
        j.person_id,
        coalesce(bool_or(a.n_product_view > 0), false) as viewed_product,
        coalesce(bool_or(a.is_purchase_day), false) as purchased
    from joins as j
    left join activity as a
        on a.person_id = j.person_id
       and a.activity_date >= j.join_date
       and a.activity_date < {{ add_days('j.join_date', p('private_domain_funnel_days')) }}
    group by j.month_start, j.person_id
),

funnel as (
    select
        month_start,
        count(*) as community_joiners,
        count(*) filter (where viewed_product) as joiners_with_product_view,
        count(*) filter (where purchased) as joiners_with_purchase
    from joiner_flags
    group by month_start
),

final as (
    select
        m.month_start,
        {{ add_days(add_periods('month', 'm.month_start', 1), -1) }} <= {{ as_of_date() }} as month_complete,
        cast(coalesce(a.active_persons, 0) as integer) as mau,
        cast(coalesce(n.new_persons, 0) as integer) as new_persons,
        {{ money_total('coalesce(o.gmv, 0)') }} as gmv,
        {{ money_total('coalesce(o.net_revenue, 0)') }} as net_revenue,
        cast(coalesce(o.orders, 0) as integer) as orders,
        cast(coalesce(o.purchases, 0) as integer) as purchases,
        cast(coalesce(a.purchasing_persons, 0) as integer) as purchasing_persons,
        {{ div('o.net_revenue', 'nullif(o.purchases, 0)') }} as aov,
        {{ div('o.net_revenue', 'nullif(a.active_persons, 0)') }} as arpu,
        {{ div('o.net_revenue', 'nullif(a.purchasing_persons, 0)') }} as arppu,
        {{ div('a.purchasing_persons', 'nullif(a.active_persons, 0)') }} as paid_conversion,
        {{ div('c.churned_persons', 'nullif(c.active_previous_month, 0)') }} as monthly_churn_rate,
        {{ div('a.content_interactions', 'nullif(a.content_views, 0)') }} as content_interaction_rate,
        cast(coalesce(i.invites_sent, 0) as integer) as invites_sent,
        cast(coalesce(i.invites_accepted, 0) as integer) as invites_accepted,
        {{ div('coalesce(i.invites_accepted, 0)', 'nullif(a.active_persons, 0)') }} as k_factor,
        cast(coalesce(s.nps_responses, 0) as integer) as nps_responses,
        {{ div('100.0 * (s.promoters - s.detractors)', 'nullif(s.nps_responses, 0)') }} as nps,
        {{ div('coalesce(o.community_gmv, 0)', 'nullif(o.gmv, 0)') }} as private_domain_gmv_share,
        cast(coalesce(f.community_joiners, 0) as integer) as community_joiners,
        {{ div('f.joiners_with_product_view', 'nullif(f.community_joiners, 0)') }} as community_joiner_product_view_rate,
        {{ div('f.joiners_with_purchase', 'nullif(f.community_joiners, 0)') }} as community_joiner_purchase_rate
    from months as m
    left join activity_months as a on m.month_start = a.month_start
    left join order_months as o on m.month_start = o.month_start
    left join new_person_months as n on m.month_start = n.month_start
    left join churn as c on m.month_start = c.month_start
    left join invite_months as i on m.month_start = i.month_start
    left join nps_months as s on m.month_start = s.month_start
    left join funnel as f on m.month_start = f.month_start
)

select * from final
