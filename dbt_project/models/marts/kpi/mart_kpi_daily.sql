-- KPIs (docs/METRICS.md#kpis), one row per business day up to as_of (from the first day in the data, or the last
-- p('kpi_daily_history_days') days when > 0). Window KPIs come from per-day aggregates with window sums and from
-- per-person change points (rolling_person_deltas), never from a persons x days grid.
-- Conventions where docs/METRICS.md#kpis is silent (see docs/SPEC_NOTES.md): "month" windows (K-factor, NPS) are
-- (d-30, d]; high_value_person_share divides by MAU; monthly_churn_rate is that of the last complete month
-- (mart_kpi_monthly); repurchase_cycle_days is evaluated on month ends and on as_of (a median is not
-- window-decomposable), null on other days; cross_platform_rate uses the identity graph as of as_of.
{%- set big = 100000000 %}
with

activity as (
    select *, {{ day_num('activity_date') }} as day_num
    from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }}
),

active_src as (select person_id, day_num from activity where is_active_day),
purchase_src as (select person_id, day_num from activity where is_purchase_day),
order_src as (select person_id, day_num, net_revenue, gmv from activity where n_orders > 0),
share_src as (select person_id, day_num, n_share from activity where n_share > 0),

orders as (
    select * from {{ ref('int_orders') }} where order_date <= {{ as_of_date() }}
),

persons as (
    select person_id, registered_date from {{ ref('int_persons') }}
),

accounts as (
    select * from {{ ref('dim_accounts') }}
),

history as (
    select
        person_id,
        stage,
        {{ day_num('valid_from') }} as vf,
        coalesce({{ day_num('valid_to') }}, {{ big }}) as vt
    from {{ ref('fct_lifecycle_stage_history') }}
),

stage_daily as (
    select {{ day_num('stage_date') }} as day_num, stage, persons from {{ ref('mart_lifecycle_daily') }}
),

monthly as (
    select month_start, monthly_churn_rate from {{ ref('mart_kpi_monthly') }}
),

spine as (
    select spine_date as kpi_date, {{ day_num('spine_date') }} as day_num
    from ({{ day_spine('(select least(min(registered_date), ' ~ as_of_date() ~ ') from persons)', as_of_date()) }}) as s
),

-- per-day aggregates -----------------------------------------------------------------------------------
activity_days as (
    select
        day_num,
        count(*) filter (where is_active_day) as dau,
        sum(n_like + n_comment + n_favorite) as content_interactions,
        sum(n_content_view) as content_views,
        sum(n_share) as share_events
    from activity
    group by day_num
),

order_days as (
    select
        {{ day_num('order_date') }} as day_num,
        {{ money_total('sum(gmv_amount)') }} as gmv,
        {{ money_total('sum(net_amount)') }} as net_revenue,
        count(*) as orders,
        count(*) filter (where is_purchase) as purchases,
        {{ money_total("sum(gmv_amount) filter (where scenario = 'community')") }} as community_gmv
    from orders
    group by 1
),

new_person_days as (
    select {{ day_num('registered_date') }} as day_num, count(*) as new_persons from persons group by 1
),

fission_days as (
    select {{ day_num('new_person_first_event_date') }} as day_num, count(distinct new_person_id) as share_new_persons
    from {{ ref('int_share_attribution') }}
    where new_person_id is not null
    group by 1
),

nps_days as (
    select
        {{ day_num('response_date') }} as day_num,
        count(*) as nps_responses,
        count(*) filter (where score >= 9) as promoters,
        count(*) filter (where score <= 6) as detractors
    from {{ ref('stg_nps_responses') }}
    group by 1
),

-- per-person rolling windows (change points -> deltas) ----------------------------------------------------
{{ presence_deltas('active', 'active_src', {'wau': 7, 'mau': 30, 'active90': p('share_rate_window_days')}) }},
{{ presence_deltas('purchase', 'purchase_src', {'payers30': 30, 'payers90': p('repurchase_window_days')}) }},
{{ rolling_person_deltas('repayers90', 'purchase_src', p('repurchase_window_days'), 'roll_value >= 2') }},
{{ rolling_person_deltas('highvalue', 'order_src', 30, 'roll_value > ' ~ p('high_value_net_revenue_30d'),
                         'net_revenue', 'gmv') }},
{{ rolling_person_deltas('sharers', 'share_src', p('share_rate_window_days'),
                         'roll_value >= ' ~ p('share_rate_min_shares'), 'n_share') }},

-- invites sent in (d-30, d] and accepted by d: counted from max(sent, accepted) until sent + 30
invite_deltas as (
    select day_num, sum(delta) as delta_persons, 0 as delta_value
    from (
        select {{ day_num('greatest(sent_date, accepted_date)') }} as day_num, 1 as delta
        from {{ ref('int_invites') }}
        where is_accepted and greatest(sent_date, accepted_date) < {{ add_days('sent_date', 30) }}
        union all
        select {{ day_num(add_days('sent_date', 30)) }}, -1
        from {{ ref('int_invites') }}
        where is_accepted and greatest(sent_date, accepted_date) < {{ add_days('sent_date', 30) }}
    ) as d
    group by day_num
),

-- win-back: churned on e = d-30 and active in (e, e+30]. A churned interval ends only at an active day (vt),
-- so e qualifies for e in [max(vf, vt-30), vt); shifted to d = e + 30.
winback_deltas as (
    select day_num, sum(delta) as delta_persons, 0 as delta_value
    from (
        select greatest(vf, vt - 30) + 30 as day_num, 1 as delta
        from history where stage = 'churned' and vt < {{ big }}
        union all
        select vt + 30, -1 from history where stage = 'churned' and vt < {{ big }}
    ) as d
    group by day_num
),

-- silent reactivation: declining on e = d-30 and new/growing/mature on d.
reactivation_spans as (
    select
        greatest(dcl.vf, good.vf - 30) as span_start,
        least(dcl.vt, good.vt - 30) as span_end
    from history as dcl
    inner join history as good
        on dcl.person_id = good.person_id
       and good.stage in ('new', 'growing', 'mature')
       and good.vf - 30 < dcl.vt
       and good.vt - 30 > dcl.vf
    where dcl.stage = 'declining'
),

reactivation_deltas as (
    select day_num, sum(delta) as delta_persons, 0 as delta_value
    from (
        select span_start + 30 as day_num, 1 as delta from reactivation_spans where span_start < span_end
        union all
        select span_end + 30, -1 from reactivation_spans where span_start < span_end and span_end < {{ big }}
    ) as d
    group by day_num
),

-- cross-platform persons: the day a person's second platform appears
platform_firsts as (
    select person_id, platform, min(registered_date) as first_date
    from accounts
    group by person_id, platform
),

cross_platform_days as (
    select {{ day_num('first_date') }} as day_num, count(*) as new_cross_platform
    from (
        select person_id, first_date,
               row_number() over (partition by person_id order by first_date, platform) as platform_rank
        from platform_firsts
    ) as r
    where platform_rank = 2
    group by 1
),

-- repurchase cycle on month ends and as_of
cycle_dates as (
    select distinct kpi_date as eval_date, day_num as eval_num
    from spine
    where kpi_date = {{ as_of_date() }} or {{ add_days('kpi_date', 1) }} = {{ period_start('month', add_days('kpi_date', 1)) }}
),

cycle_persons as (
    select
        c.eval_num,
        a.person_id,
        {{ div('(max(a.day_num) - min(a.day_num))', '(count(*) - 1)') }} as mean_gap_days
    from cycle_dates as c
    inner join purchase_src as a
        on a.day_num > c.eval_num - {{ p('repurchase_cycle_window_days') }} and a.day_num <= c.eval_num
    group by c.eval_num, a.person_id
    having count(*) >= 2
),

cycle as (
    select eval_num as day_num, {{ median('mean_gap_days') }} as repurchase_cycle_days
    from cycle_persons
    group by eval_num
),

-- assemble ---------------------------------------------------------------------------------------------
daily as (
    select
        s.kpi_date,
        s.day_num,
        coalesce(ad.dau, 0) as dau,
        coalesce(np.new_persons, 0) as new_persons,
        coalesce(od.gmv, 0) as gmv,
        coalesce(od.net_revenue, 0) as net_revenue,
        coalesce(od.orders, 0) as orders,
        coalesce(od.purchases, 0) as purchases,
        coalesce(od.community_gmv, 0) as community_gmv,
        coalesce(ad.content_interactions, 0) as content_interactions,
        coalesce(ad.content_views, 0) as content_views,
        coalesce(ad.share_events, 0) as share_events,
        coalesce(fd.share_new_persons, 0) as share_new_persons,
        coalesce(nd.nps_responses, 0) as nps_responses,
        coalesce(nd.promoters, 0) as promoters,
        coalesce(nd.detractors, 0) as detractors,
        coalesce(cp.new_cross_platform, 0) as new_cross_platform,
        {%- for m in ['wau', 'mau', 'active90', 'payers30', 'payers90', 'repayers90', 'highvalue', 'sharers',
                      'invite', 'winback', 'reactivation'] %}
        coalesce({{ m }}.delta_persons, 0) as {{ m }}_delta,
        coalesce({{ m }}.delta_value, 0) as {{ m }}_value_delta{{ ',' if not loop.last }}
        {%- endfor %}
    from spine as s
    left join activity_days as ad on s.day_num = ad.day_num
    left join order_days as od on s.day_num = od.day_num
    left join new_person_days as np on s.day_num = np.day_num
    left join fission_days as fd on s.day_num = fd.day_num
    left join nps_days as nd on s.day_num = nd.day_num
    left join cross_platform_days as cp on s.day_num = cp.day_num
    {%- for m in ['wau', 'mau', 'active90', 'payers30', 'payers90', 'repayers90', 'highvalue', 'sharers',
                  'invite', 'winback', 'reactivation'] %}
    left join {{ m }}_deltas as {{ m }} on s.day_num = {{ m }}.day_num
    {%- endfor %}
),

cumulative as (
    select
        *,
        {%- for m in ['wau', 'mau', 'active90', 'payers30', 'payers90', 'repayers90', 'highvalue', 'sharers',
                      'invite', 'winback', 'reactivation'] %}
        sum({{ m }}_delta) over w_all as {{ m }}_persons,
        {%- endfor %}
        {{ money_total('sum(highvalue_value_delta) over w_all') }} as highvalue_gmv_30d,
        sum(new_persons) over w_all as persons_to_date,
        sum(new_cross_platform) over w_all as cross_platform_persons,
        {{ money_total('sum(net_revenue) over w_30') }} as net_revenue_30d,
        {{ money_total('sum(gmv) over w_30') }} as gmv_30d,
        sum(content_interactions) over w_30 as content_interactions_30d,
        sum(content_views) over w_30 as content_views_30d,
        sum(share_events) over w_30 as share_events_30d,
        sum(share_new_persons) over w_30 as share_new_persons_30d,
        sum(nps_responses) over w_30 as nps_responses_30d,
        sum(promoters) over w_30 as promoters_30d,
        sum(detractors) over w_30 as detractors_30d
    from daily
    window
        w_all as (order by day_num rows between unbounded preceding and current row),
        w_30 as (order by day_num rows between 29 preceding and current row)
),

final as (
    select
        c.kpi_date,
        cast(c.dau as integer) as dau,
        cast(c.wau_persons as integer) as wau,
        cast(c.mau_persons as integer) as mau,
        {{ div('c.dau', 'nullif(c.mau_persons, 0)') }} as stickiness,
        cast(c.new_persons as integer) as new_persons,
        {{ money_total('c.gmv') }} as gmv,
        {{ money_total('c.net_revenue') }} as net_revenue,
        cast(c.orders as integer) as orders,
        cast(c.purchases as integer) as purchases,
        {{ div('c.net_revenue', 'nullif(c.purchases, 0)') }} as aov,
        {{ money_total('c.net_revenue_30d') }} as net_revenue_30d,
        {{ money_total('c.gmv_30d') }} as gmv_30d,
        {{ div('c.net_revenue_30d', 'nullif(c.mau_persons, 0)') }} as arpu_30d,
        {{ div('c.net_revenue_30d', 'nullif(c.payers30_persons, 0)') }} as arppu_30d,
        cast(c.payers30_persons as integer) as paying_persons_30d,
        {{ div('c.payers30_persons', 'nullif(c.mau_persons, 0)') }} as paid_conversion_30d,
        {{ div('c.repayers90_persons', 'nullif(c.payers90_persons, 0)') }} as repurchase_rate_90d,
        cy.repurchase_cycle_days,
        m.monthly_churn_rate,
        {{ div('c.sharers_persons', 'nullif(c.active90_persons, 0)') }} as share_rate_90d,
        {{ div('c.content_interactions_30d', 'nullif(c.content_views_30d, 0)') }} as content_interaction_rate_30d,
        cast(c.highvalue_persons as integer) as high_value_persons,
        {{ div('c.highvalue_persons', 'nullif(c.mau_persons, 0)') }} as high_value_person_share,
        {{ div('c.highvalue_gmv_30d', 'nullif(c.gmv_30d, 0)') }} as high_value_gmv_share,
        cast(c.invite_persons as integer) as accepted_invites_30d,
        {{ div('c.invite_persons', 'nullif(c.mau_persons, 0)') }} as k_factor,
        cast(c.share_new_persons_30d as integer) as share_new_persons_30d,
        cast(c.share_events_30d as integer) as share_events_30d,
        {{ div('c.share_new_persons_30d', 'nullif(c.share_events_30d, 0)') }} as fission_ratio_30d,
        cast(c.nps_responses_30d as integer) as nps_responses_30d,
        {{ div('100.0 * (c.promoters_30d - c.detractors_30d)', 'nullif(c.nps_responses_30d, 0)') }} as nps,
        {{ div('c.winback_persons', 'nullif(churned_then.persons, 0)') }} as winback_rate_30d,
        {{ div('c.reactivation_persons', 'nullif(declining_then.persons, 0)') }} as silent_reactivation_rate_30d,
        {{ div('c.community_gmv', 'nullif(c.gmv, 0)') }} as private_domain_gmv_share,
        cast(c.persons_to_date as integer) as persons_to_date,
        {{ div('c.cross_platform_persons', 'nullif(c.persons_to_date, 0)') }} as cross_platform_rate
    from cumulative as c
    left join stage_daily as churned_then on churned_then.day_num = c.day_num - 30 and churned_then.stage = 'churned'
    left join stage_daily as declining_then
        on declining_then.day_num = c.day_num - 30 and declining_then.stage = 'declining'
    left join cycle as cy on c.day_num = cy.day_num
    left join monthly as m
        on m.month_start = {{ add_periods('month', period_start('month', add_days('c.kpi_date', 1)), -1) }}
    {%- if p('kpi_daily_history_days') > 0 %}
    where c.kpi_date > {{ add_days(as_of_date(), -1 * p('kpi_daily_history_days')) }}
    {%- endif %}
)

select * from final
