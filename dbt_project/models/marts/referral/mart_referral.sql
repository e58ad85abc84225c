-- Referral and fission KPIs per business month up to the as-of month (docs/METRICS.md#kpis).
-- K-factor = invites sent per active person x acceptance rate = accepted invites / active persons, where
-- invites are those sent in the month and accepted by d (so the product identity holds exactly).
-- Fission ratio "1:N" = new persons whose first event came through a share link (registered in the month)
-- / `share` events in the month. The as-of month is partial (is_complete_month = false).
with

daily as (
    select person_id, activity_date, n_share
    from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }}
),

activity_months as (
    select
        {{ period_start('month', 'activity_date') }} as month,
        count(distinct person_id) as active_persons,
        cast(sum(n_share) as bigint) as share_events
    from daily
    group by 1
),

invite_months as (
    select
        {{ period_start('month', 'sent_date') }} as month,
        count(*) as invites_sent,
        count(case when accepted_date <= {{ as_of_date() }} then 1 end) as invites_accepted
    from {{ ref('int_invites') }}
    where sent_date <= {{ as_of_date() }}
    group by 1
),

share_registrations as (
    select distinct share_attribution.new_person_id, persons.registered_date
    from {{ ref('int_share_attribution') }} as share_attribution
    inner join {{ ref('int_persons') }} as persons on persons.person_id = share_attribution.new_person_id
    where persons.registered_date <= {{ as_of_date() }}
),

share_months as (
    select {{ period_start('month', 'registered_date') }} as month, count(distinct new_person_id) as new_persons_via_share
    from share_registrations
    group by 1
),

months as (
    select month from activity_months
    union
    select month from invite_months
    union
    select month from share_months
),

final as (
    select
        months.month,
        {{ marts_month_end('months.month') }} <= {{ as_of_date() }} as is_complete_month,
        coalesce(activity_months.active_persons, 0) as active_persons,
        coalesce(invite_months.invites_sent, 0) as invites_sent,
        coalesce(invite_months.invites_accepted, 0) as invites_accepted,
        cast(invite_months.invites_accepted as {{ type_double() }}) / nullif(invite_months.invites_sent, 0) as acceptance_rate,
        cast(coalesce(invite_months.invites_sent, 0) as {{ type_double() }}) / nullif(activity_months.active_persons, 0) as invites_per_active_person,
        cast(coalesce(invite_months.invites_accepted, 0) as {{ type_double() }}) / nullif(activity_months.active_persons, 0) as k_factor,
        coalesce(activity_months.share_events, 0) as share_events,
        coalesce(share_months.new_persons_via_share, 0) as new_persons_via_share,
        cast(coalesce(share_months.new_persons_via_share, 0) as {{ type_double() }}) / nullif(activity_months.share_events, 0) as fission_ratio
    from months
    left join activity_months on activity_months.month = months.month
    left join invite_months on invite_months.month = months.month
    left join share_months on share_months.month = months.month
)

select * from final
