-- Social tier (docs/METRICS.md#segmentation-and-tiers) per person, evaluated as of d and as of d-1 (the previous tier
-- feeds the `social_upgrade` rule of docs/METRICS.md#interventions). Only persons with activity in (d-1-W, d] appear;
-- everyone else is `basic`.
{%- set window_days = p('social_tier_window_days') %}
{%- set streak_days = p('social_tier_consecutive_share_days') %}
with

eval_dates as (
    select {{ as_of_date() }} as eval_date, 'current' as which
    union all
    select {{ marts_days_before(1) }} as eval_date, 'previous' as which
),

daily as (
    select person_id, activity_date, n_share, net_revenue
    from {{ ref('int_person_daily_activity') }}
    where {{ marts_in_window('activity_date', window_days + 1) }}
),

windowed as (
    select
        daily.person_id,
        eval_dates.which,
        {{ money_total('sum(daily.net_revenue)') }} as net_revenue_window,
        cast(sum(daily.n_share) as bigint) as shares_window,
        count(case when daily.n_share > 0
                    and daily.activity_date > {{ marts_days_before(streak_days, 'eval_dates.eval_date') }}
                   then 1 end) as share_days_streak_window
    from daily
    inner join eval_dates
        on {{ marts_in_window('daily.activity_date', window_days, 'eval_dates.eval_date') }}
    group by daily.person_id, eval_dates.which
),

tiered as (
    select
        *,
        case
            when net_revenue_window > {{ p('social_tier_core_min_revenue') }}
                 and shares_window >= {{ p('social_tier_core_min_shares') }} then 'core'
            when net_revenue_window between {{ p('social_tier_potential_min_revenue') }}
                                        and {{ p('social_tier_core_min_revenue') }}
                 and shares_window >= {{ p('social_tier_potential_min_shares') }} then 'potential'
            -- upgrade: a `basic` person who shared on each of the last N days ending on the eval date
            when share_days_streak_window >= {{ streak_days }} then 'potential'
            else 'basic'
        end as social_tier
    from windowed
),

final as (
    select
        person_id,
        {{ money_total("max(case when which = 'current' then net_revenue_window end)") }} as net_revenue_30d,
        coalesce(max(case when which = 'current' then shares_window end), 0) as shares_30d,
        coalesce(max(case when which = 'current' then share_days_streak_window end), 0) >= {{ streak_days }}
            as has_share_streak,
        coalesce(max(case when which = 'current' then social_tier end), 'basic') as social_tier,
        coalesce(max(case when which = 'previous' then social_tier end), 'basic') as previous_social_tier
    from tiered
    group by person_id
)

select * from final
