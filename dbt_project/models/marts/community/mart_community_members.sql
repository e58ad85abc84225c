-- Community member lifecycle (docs/METRICS.md#community-member-lifecycle) as of d: one row per person who joined a
-- community up to d.
with

members as (
    select * from {{ ref('int_community_members') }}
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
        member_stage
    from members
)

select * from final
