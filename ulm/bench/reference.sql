-- Hand-written reference for the benchmark (D79, docs/PERFORMANCE.md): the core marts computed from
-- schema `raw` in one plain DuckDB script, written from the definitions of docs/METRICS.md and docs/SPEC_NOTES.md
-- (not from the dbt models), into schema `ref`. Set-based; no dbt, no macros, no incremental logic, no tests.
-- Placeholders ($as_of, $tz, ...) are filled by ulm.bench.reference from the project parameters (dbt_project.yml).
-- Exclusions the dbt build applies, applied here on the same grounds:
--   quarantine: raw.<table> holds accepted rows only (quarantined rows live in raw.quarantine), so nothing to do;
--   duplicates: a key landed twice keeps its earliest load (_loaded_at, _load_id, _source_file);
--   erasure: every account named in raw.erasure_requests is gone from every table built here;
--   as-of: accounts registered after d, and events / orders / answers after business day d, are not visible;
--   consent: gates person-level models and audiences only - aggregates and these marts count everyone, so it is
--   carried as a column (consent of every account, as in force at the end of d) and filters nothing.
create schema if not exists ref;

-- ------------------------------------------------------------------------------------------ accounts as of d
create or replace temp table r_erased as select distinct user_id from raw.erasure_requests;

-- one row per account: the version whose consent_updated_at is the newest on or before d (the first from registration)
create or replace temp table r_accounts as
with versions as (
    select
        *,
        row_number() over (partition by user_id order by consent_updated_at nulls first,
                                                         _loaded_at, _load_id, _source_file) as version_number
    from (
        select *
        from raw.users
        where user_id is not null and user_id not in (select user_id from r_erased)
        qualify row_number() over (partition by user_id, consent_updated_at
                                   order by _loaded_at, _load_id, _source_file) = 1
    )
)
select
    user_id, platform, registered_at,
    cast(timezone('$tz', timezone('UTC', registered_at)) as date) as registered_date,
    acquisition_channel, region,
    coalesce(consent_analytics, false) as consent_analytics,
    coalesce(consent_marketing, false) as consent_marketing,
    nullif(trim(phone), '') as phone, nullif(trim(union_id), '') as union_id
from versions
where cast(timezone('$tz', timezone('UTC', registered_at)) as date) <= $as_of
  and (version_number = 1 or cast(timezone('$tz', timezone('UTC', consent_updated_at)) as date) <= $as_of)
qualify row_number() over (partition by user_id order by version_number desc) = 1;

-- ------------------------------------------------------------------------------------------ identity (OneID)
-- accounts sharing a phone or union_id are one person; a blocked value, a blocked pattern, or a value held by more
-- than $max_accounts accounts links nothing. Equal keyed hashes are equal trimmed values, so raw values link here.
create or replace temp table r_links as
with keys as (
    select user_id, 'phone' as kind, phone as value from r_accounts where phone is not null
    union all
    select user_id, 'union_id', union_id from r_accounts where union_id is not null
)
select user_id, kind, value
from keys
where not ($blocked)
qualify count(*) over (partition by kind, value) <= $max_accounts;

-- connected components: every account takes the smallest user_id it can reach (multi-hop)
create or replace temp table r_members as
with recursive
edges as (
    select distinct a.user_id as src, b.user_id as dst
    from r_links as a join r_links as b on a.kind = b.kind and a.value = b.value and a.user_id <> b.user_id
),
reach (user_id, root) as (
    select user_id, user_id from r_accounts
    union
    select e.dst, r.root from reach as r join edges as e on e.src = r.user_id where r.root < e.dst
)
select user_id, md5(min(root)) as person_id from reach group by user_id;

create or replace table ref.persons as
select
    m.person_id,
    arg_min(a.registered_date, (a.registered_at, a.user_id)) as registered_date,
    arg_min(a.acquisition_channel, (a.registered_at, a.user_id)) as acquisition_channel,
    arg_min(a.platform, (a.registered_at, a.user_id)) as platform,
    bool_or(coalesce(a.region = 'EU', false)) as is_eu,
    bool_and(a.consent_analytics) as consent_analytics,
    bool_and(a.consent_marketing) as consent_marketing,
    count(*)::integer as n_accounts,
    count(distinct a.platform)::integer as n_platforms
from r_members as m join r_accounts as a using (user_id)
group by m.person_id;

-- ------------------------------------------------------------------------------------------ facts of visible accounts
create or replace temp table r_events as
select m.person_id, e.event_date, e.event_type
from (
    select user_id, event_type, cast(timezone('$tz', timezone('UTC', event_ts)) as date) as event_date
    from raw.events
    qualify row_number() over (partition by event_id order by _loaded_at, _load_id, _source_file) = 1
) as e
join r_members as m using (user_id)
where e.event_date <= $as_of;

create or replace temp table r_orders as
select
    m.person_id, o.order_date, o.scenario,
    o.status = 'paid' or (o.status = 'refunded' and o.refund_amount < o.paid_amount) as is_purchase,
    cast(case when o.status = 'cancelled' then 0 else o.paid_amount - o.refund_amount end as decimal(18, 2)) as net,
    cast(case when o.status in ('paid', 'refunded') then o.gross_amount else 0 end as decimal(18, 2)) as gmv
from (
    select *, cast(timezone('$tz', timezone('UTC', order_ts)) as date) as order_date
    from raw.orders
    qualify row_number() over (partition by order_id order by _loaded_at, _load_id, _source_file) = 1
) as o
join r_members as m using (user_id)
where o.order_date <= $as_of;

-- ------------------------------------------------------------------------------------------ person-day activity
create or replace table ref.person_activity_daily as
with ev as (
    select
        person_id, event_date as activity_date,
        count(*) as n_events,
        $event_counts
    from r_events group by all
),
od as (
    select
        person_id, order_date as activity_date,
        count(*) as n_orders,
        count(*) filter (where is_purchase) as n_purchases,
        sum(net) as net_revenue,
        sum(gmv) as gmv
    from r_orders group by all
)
select
    person_id, activity_date,
    coalesce(n_events, 0)::integer as n_events,
    $event_columns
    coalesce(n_orders, 0)::integer as n_orders,
    coalesce(n_purchases, 0)::integer as n_purchases,
    coalesce(n_purchases, 0) > 0 as is_purchase_day,
    coalesce(n_events, 0) > 0 or coalesce(n_purchases, 0) > 0 as is_active_day,
    cast(coalesce(net_revenue, 0) as decimal(38, 2)) as net_revenue,
    cast(coalesce(gmv, 0) as decimal(38, 2)) as gmv
from ev full outer join od using (person_id, activity_date);

-- ------------------------------------------------------------------------------------------ daily KPIs
-- A person counts in a trailing n-day window on day d when one of its qualifying days lies in (d-n, d]. Each
-- qualifying day a covers the days [a, min(a + n, next qualifying day)); these spans are disjoint per person, so the
-- window count on d is the running sum of +1 / -1 at the span ends (no persons x days grid). ">= 2 purchase days in
-- the window" is covered from a purchase day on until the previous one leaves the window.
create or replace temp table r_spans as
with active as (
    select person_id, activity_date as a,
           lead(activity_date) over (partition by person_id order by activity_date) as next_a
    from ref.person_activity_daily where is_active_day
),
purchase as (
    select person_id, activity_date as a,
           lead(activity_date) over (partition by person_id order by activity_date) as next_a,
           lag(activity_date) over (partition by person_id order by activity_date) as prev_a
    from ref.person_activity_daily where is_purchase_day
),
spans as (
    select 'wau' as kpi, a as span_from, least(a + 7, coalesce(next_a, a + 7)) as span_to from active
    union all
    select 'mau', a, least(a + 30, coalesce(next_a, a + 30)) from active
    union all
    select 'payers30', a, least(a + 30, coalesce(next_a, a + 30)) from purchase
    union all
    select 'payers90', a, least(a + $repurchase_days, coalesce(next_a, a + $repurchase_days)) from purchase
    union all
    select 'repayers90', a, least(prev_a + $repurchase_days, coalesce(next_a, prev_a + $repurchase_days))
    from purchase where prev_a is not null and a < prev_a + $repurchase_days
)
select kpi, day, sum(delta) as delta
from (
    select kpi, span_from as day, 1 as delta from spans
    union all
    select kpi, span_to, -1 from spans
)
group by all;

create or replace table ref.kpi_daily as
with spine as (
    select cast(range as date) as kpi_date
    from range((select least(min(registered_date), $as_of) from ref.persons), $as_of + 1, interval 1 day)
),
activity as (
    select activity_date as kpi_date,
           count(*) filter (where is_active_day) as dau,
           sum(n_like + n_comment + n_favorite) as interactions,
           sum(n_content_view) as content_views,
           sum(n_share) as share_events
    from ref.person_activity_daily group by all
),
orders as (
    select order_date as kpi_date, sum(gmv) as gmv, sum(net) as net_revenue, count(*) as orders,
           count(*) filter (where is_purchase) as purchases,
           sum(gmv) filter (where scenario = 'community') as community_gmv
    from r_orders group by all
),
registrations as (select registered_date as kpi_date, count(*) as new_persons from ref.persons group by all),
nps as (
    select response_date as kpi_date, count(*) as responses,
           count(*) filter (where score >= 9) as promoters, count(*) filter (where score <= 6) as detractors
    from (
        select user_id, score, cast(timezone('$tz', timezone('UTC', responded_at)) as date) as response_date
        from raw.nps_responses
        qualify row_number() over (partition by response_id order by _loaded_at, _load_id, _source_file) = 1
    ) as r
    where response_date <= $as_of and user_id in (select user_id from r_accounts)
    group by all
),
windows as (pivot r_spans on kpi in ('wau', 'mau', 'payers30', 'payers90', 'repayers90') using sum(delta)
            group by day),
daily as (
    select
        s.kpi_date,
        coalesce(a.dau, 0) as dau,
        sum(coalesce(w.wau, 0)) over running as wau,
        sum(coalesce(w.mau, 0)) over running as mau,
        sum(coalesce(w.payers30, 0)) over running as payers30,
        sum(coalesce(w.payers90, 0)) over running as payers90,
        sum(coalesce(w.repayers90, 0)) over running as repayers90,
        coalesce(r.new_persons, 0) as new_persons,
        sum(coalesce(r.new_persons, 0)) over running as persons_to_date,
        coalesce(o.gmv, 0) as gmv,
        coalesce(o.net_revenue, 0) as net_revenue,
        coalesce(o.orders, 0) as orders,
        coalesce(o.purchases, 0) as purchases,
        coalesce(o.community_gmv, 0) as community_gmv,
        sum(coalesce(o.net_revenue, 0)) over last30 as net_revenue_30d,
        sum(coalesce(o.gmv, 0)) over last30 as gmv_30d,
        sum(coalesce(a.interactions, 0)) over last30 as interactions_30d,
        sum(coalesce(a.content_views, 0)) over last30 as content_views_30d,
        sum(coalesce(a.share_events, 0)) over last30 as share_events_30d,
        sum(coalesce(n.responses, 0)) over last30 as nps_responses_30d,
        sum(coalesce(n.promoters, 0) - coalesce(n.detractors, 0)) over last30 as nps_net_30d
    from spine as s
    left join activity as a using (kpi_date)
    left join orders as o using (kpi_date)
    left join registrations as r using (kpi_date)
    left join nps as n using (kpi_date)
    left join windows as w on w.day = s.kpi_date
    window running as (order by s.kpi_date rows between unbounded preceding and current row),
           last30 as (order by s.kpi_date range between interval 29 day preceding and current row)
)
select
    kpi_date,
    dau::integer as dau, wau::integer as wau, mau::integer as mau,
    dau / nullif(mau, 0)::double as stickiness,
    new_persons::integer as new_persons,
    cast(gmv as decimal(38, 2)) as gmv,
    cast(net_revenue as decimal(38, 2)) as net_revenue,
    orders::integer as orders, purchases::integer as purchases,
    net_revenue::double / nullif(purchases, 0) as aov,
    cast(net_revenue_30d as decimal(38, 2)) as net_revenue_30d,
    cast(gmv_30d as decimal(38, 2)) as gmv_30d,
    net_revenue_30d::double / nullif(mau, 0) as arpu_30d,
    net_revenue_30d::double / nullif(payers30, 0) as arppu_30d,
    payers30::integer as paying_persons_30d,
    payers30::double / nullif(mau, 0) as paid_conversion_30d,
    repayers90::double / nullif(payers90, 0) as repurchase_rate_90d,
    interactions_30d::double / nullif(content_views_30d, 0) as content_interaction_rate_30d,
    share_events_30d::integer as share_events_30d,
    nps_responses_30d::integer as nps_responses_30d,
    100.0 * nps_net_30d / nullif(nps_responses_30d, 0) as nps,
    community_gmv::double / nullif(gmv, 0) as private_domain_gmv_share,
    persons_to_date::integer as persons_to_date
from daily;

-- ------------------------------------------------------------------------------------------ stage intervals
-- The stage of a person on day p (first rule that matches): churned when p - last active day >= $churn_days
-- (before the first active day: counted from registration); declining when >= $at_risk_days, or purchased before
-- but no purchase day in (p-$declining_days, p]; prospect when never purchased; new when the first purchase day is
-- in (p-$new_days, p]; mature with >= $mature_days purchase days in (p-$declining_days, p]; else growing. The stage
-- can only change on an activity day or where a threshold is crossed, so it is evaluated on those days only
-- (from registration to d) and consecutive equal stages are merged into [valid_from, valid_to) intervals.
create or replace temp table r_stage_points as
with person_days as (
    select p.person_id, p.registered_date, a.activity_date, a.is_active_day, a.is_purchase_day,
           min(a.activity_date) filter (where a.is_purchase_day) over (partition by p.person_id) as first_purchase
    from ref.persons as p join ref.person_activity_daily as a using (person_id)
    where a.is_active_day or a.is_purchase_day
),
candidates as (
    select person_id, registered_date as point from ref.persons
    union select person_id, registered_date + $at_risk_days from ref.persons
    union select person_id, registered_date + $churn_days from ref.persons
    union select person_id, activity_date from person_days
    union select person_id, activity_date + $at_risk_days from person_days where is_active_day
    union select person_id, activity_date + $churn_days from person_days where is_active_day
    union select person_id, activity_date + $declining_days from person_days where is_purchase_day
    union select person_id, first_purchase + $new_days from person_days where first_purchase is not null
),
points as (
    select distinct c.person_id, c.point
    from candidates as c join ref.persons as p using (person_id)
    where c.point >= p.registered_date and c.point <= $as_of
),
-- per point, in one pass over the person's points and activity days in date order (a day's activity counts on that
-- day: range frames include the peers): last active day, first purchase day, purchase days in the trailing window
stream as (
    select person_id, point as day, true as is_point, false as is_active_day, false as is_purchase_day from points
    union all
    select person_id, activity_date, false, is_active_day, is_purchase_day from person_days
),
state as (
    select s.*, p.registered_date
    from (
        select
            person_id, day as point, is_point,
            max(day) filter (where is_active_day) over upto as last_active,
            min(day) filter (where is_purchase_day) over upto as first_purchase,
            count(*) filter (where is_purchase_day) over back as purchase_days_window
        from stream
        window upto as (partition by person_id order by day range between unbounded preceding and current row),
               back as (partition by person_id order by day
                            range between interval ($declining_days - 1) day preceding and current row)
    ) as s
    join ref.persons as p using (person_id)
    where s.is_point
),
staged as (
    select
        person_id, point,
        case
            when point - coalesce(last_active, registered_date) >= $churn_days then 'churned'
            when point - coalesce(last_active, registered_date) >= $at_risk_days
                 or (first_purchase is not null and purchase_days_window = 0) then 'declining'
            when first_purchase is null then 'prospect'
            when first_purchase > point - $new_days then 'new'
            when purchase_days_window >= $mature_days then 'mature'
            else 'growing'
        end as stage
    from state
)
select * from staged;

create or replace table ref.stage_intervals as
select person_id, stage, point as valid_from,
       lead(point) over (partition by person_id order by point) as valid_to, previous_stage
from (
    select *, lag(stage) over (partition by person_id order by point) as previous_stage from r_stage_points
)
where previous_stage is null or stage <> previous_stage;

-- ------------------------------------------------------------------------------------------ AARRR funnel
-- per registration cohort (day, ISO week, month) x channel x platform: acquired; activated = first purchase on day
-- 0..$activation_days-1; retained Dn = active on exactly day n; monetized = a purchase on day 0..$monetized_days-1;
-- referred = an accepted invite sent on day 0..$referred_days-1. A step's count and rate stay null until
-- d >= last cohort day + the step's window.
create or replace temp table r_person_flags as
with invites as (
    select m.person_id, i.sent_date
    from (
        select inviter_user_id as user_id, cast(timezone('$tz', timezone('UTC', sent_at)) as date) as sent_date,
               cast(timezone('$tz', timezone('UTC', accepted_at)) as date) as accepted_date
        from raw.invites
        qualify row_number() over (partition by invite_id order by _loaded_at, _load_id, _source_file) = 1
    ) as i
    join r_members as m using (user_id)
    where i.sent_date <= $as_of and i.accepted_date <= $as_of
),
days as (
    select
        a.person_id,
        min(a.activity_date - p.registered_date) filter (where a.is_purchase_day) as first_purchase_n,
        $retained_aggs
        bool_or(a.is_purchase_day and a.activity_date - p.registered_date between 0 and $monetized_days - 1)
            as monetized
    from ref.person_activity_daily as a join ref.persons as p using (person_id)
    group by a.person_id
),
referrers as (
    select distinct i.person_id
    from invites as i join ref.persons as p using (person_id)
    where i.sent_date - p.registered_date between 0 and $referred_days - 1
)
select
    p.person_id, p.registered_date, p.acquisition_channel, p.platform,
    coalesce(d.first_purchase_n between 0 and $activation_days - 1, false) as activated,
    $retained_flags
    coalesce(d.monetized, false) as monetized,
    r.person_id is not null as referred
from ref.persons as p
left join days as d using (person_id)
left join referrers as r using (person_id);

create or replace table ref.aarrr_funnel as
with cohorts as (
    select grain as cohort_grain,
           case grain when 'day' then registered_date
                      when 'week' then cast(date_trunc('week', registered_date) as date)
                      else cast(date_trunc('month', registered_date) as date) end as cohort_date,
           acquisition_channel, platform,
           count(*) as acquired,
           count(*) filter (where activated) as activated,
           $retained_counts
           count(*) filter (where monetized) as monetized,
           count(*) filter (where referred) as referred
    from r_person_flags cross join (values ('day'), ('week'), ('month')) as g(grain)
    group by all
),
dated as (
    select *, case cohort_grain when 'day' then cohort_date
                                when 'week' then cohort_date + 6
                                else cast(cohort_date + interval 1 month as date) - 1 end as last_day
    from cohorts
)
select
    cohort_grain, cohort_date, acquisition_channel, platform,
    acquired::integer as acquired,
    case when $as_of >= last_day + $activation_days then activated::integer end as activated,
    $retained_columns
    case when $as_of >= last_day + $monetized_days then monetized::integer end as monetized,
    case when $as_of >= last_day + $referred_days then referred::integer end as referred,
    case when $as_of >= last_day + $activation_days then activated / acquired end as activation_rate,
    $retained_rates
    case when $as_of >= last_day + $monetized_days then monetized / acquired end as monetized_rate,
    case when $as_of >= last_day + $referred_days then referred / acquired end as referred_rate
from dated;

-- ------------------------------------------------------------------------------------------ RFM
-- over persons with a purchase in (d-$rfm_days, d]: R = days since the last purchase day, F = purchase days,
-- M = net revenue, all in that window; score least(5, 1 + floor(5 * (rank() worst first - 1) / n)).
create or replace table ref.rfm as
with population as (
    select
        person_id,
        ($as_of - max(activity_date) filter (where is_purchase_day))::integer as recency_days,
        count(*) filter (where is_purchase_day) as frequency,
        cast(sum(net_revenue) as decimal(38, 2)) as monetary
    from ref.person_activity_daily
    where activity_date > $as_of - $rfm_days
    group by person_id
    having count(*) filter (where is_purchase_day) > 0
),
scored as (
    select
        person_id, recency_days, frequency, monetary,
        least(5, 1 + floor(5 * (rank() over (order by recency_days desc) - 1) / count(*) over ()))::integer as r_score,
        least(5, 1 + floor(5 * (rank() over (order by frequency) - 1) / count(*) over ()))::integer as f_score,
        least(5, 1 + floor(5 * (rank() over (order by monetary) - 1) / count(*) over ()))::integer as m_score
    from population
)
select
    *,
    case
        when r_score >= 4 and f_score >= 4 and m_score >= 4 then 'champions'
        when r_score >= 3 and f_score >= 3 then 'loyal'
        when r_score = 5 and f_score = 1 then 'new'
        when r_score between 3 and 4 and f_score = 1 then 'promising'
        when r_score >= 3 and f_score = 2 then 'potential_loyalist'
        when r_score = 1 and f_score >= 4 and m_score >= 4 then 'cant_lose'
        when r_score <= 2 and f_score >= 3 then 'at_risk'
        when r_score = 2 and f_score = 2 then 'need_attention'
        when r_score = 2 and f_score = 1 then 'about_to_sleep'
        when r_score = 1 and f_score = 2 then 'hibernating'
        when r_score = 1 and f_score = 1 then 'lost'
    end as rfm_segment
from scored;
