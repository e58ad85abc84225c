-- Community member lifecycle (docs/METRICS.md#community-member-lifecycle) as of d, one row per person who joined a
-- community up to d. Join date = first-ever `community_join` day. Stages, first match wins:
--   new_member (joined within community_new_member_days), core_member (>= community_core_min_open_days open
--   days and >= community_core_min_ugc_posts UGC posts in the core window), active_member (a community open in
--   the active window), churn_warning_member (no open for >= community_churn_warning_days; a member who never
--   opened counts from the join day); `member` only if the active and warning windows leave a gap (not by default).
with

daily as (
    select person_id, activity_date, n_community_join, n_community_open, n_ugc_post
    from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }}
      and (n_community_join > 0 or n_community_open > 0 or n_ugc_post > 0)
),

per_person as (
    select
        person_id,
        min(case when n_community_join > 0 then activity_date end) as first_join_date,
        max(case when n_community_open > 0 then activity_date end) as last_open_date,
        count(case when n_community_open > 0
                    and {{ marts_in_window('activity_date', p('community_core_window_days')) }} then 1 end)
            as open_days_core_window,
        cast(coalesce(sum(case when {{ marts_in_window('activity_date', p('community_core_window_days')) }}
                               then n_ugc_post end), 0) as bigint) as ugc_posts_core_window,
        count(case when n_community_open > 0
                    and {{ marts_in_window('activity_date', p('community_active_window_days')) }} then 1 end)
            as open_days_active_window
    from daily
    group by person_id
),

members as (
    select
        *,
        {{ days_between('coalesce(greatest(last_open_date, first_join_date), first_join_date)', as_of_date()) }}
            as days_since_last_open
    from per_person
    where first_join_date is not null
),

final as (
    select
        person_id,
        first_join_date,
        last_open_date,
        open_days_core_window,
        ugc_posts_core_window,
        open_days_active_window,
        days_since_last_open,
        case
            when {{ marts_in_window('first_join_date', p('community_new_member_days')) }} then 'new_member'
            when open_days_core_window >= {{ p('community_core_min_open_days') }}
                 and ugc_posts_core_window >= {{ p('community_core_min_ugc_posts') }} then 'core_member'
            when open_days_active_window > 0 then 'active_member'
            when days_since_last_open >= {{ p('community_churn_warning_days') }} then 'churn_warning_member'
            -- reachable only when community_active_window_days < community_churn_warning_days
            else 'member'
        end as member_stage
    from members
)

select * from final
