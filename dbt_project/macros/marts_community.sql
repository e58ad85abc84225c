{#-
  Community engagement aggregates over a period grain ('day' or 'month') for mart_community_daily/monthly:
  active persons, check-in and UGC participation, content interaction rate, members to date.
-#}
{% macro marts_community_period_metrics(grain) -%}
{%- set period = 'activity_date' if grain == 'day' else period_start('month', 'activity_date') -%}
{%- set join_period = 'first_join_date' if grain == 'day' else period_start('month', 'first_join_date') -%}
daily as (
    select * from {{ ref('int_person_daily_activity') }}
    where activity_date <= {{ as_of_date() }}
),

period_activity as (
    select
        {{ period }} as period_start,
        count(distinct person_id) as active_persons,
        count(distinct case when n_check_in > 0 then person_id end) as check_in_persons,
        count(distinct case when n_ugc_post > 0 then person_id end) as ugc_posters,
        cast(sum(n_ugc_post) as bigint) as ugc_posts,
        cast(sum(n_content_view) as bigint) as content_views,
        cast(sum(n_like + n_comment + n_favorite) as bigint) as content_interactions
    from daily
    group by 1
),

period_joins as (
    select {{ join_period }} as period_start, count(*) as new_members
    from {{ ref('int_community_members') }}
    group by 1
),

periods as (
    select period_start from period_activity
    union
    select period_start from period_joins
),

period_metrics as (
    select
        periods.period_start,
        coalesce(period_activity.active_persons, 0) as active_persons,
        coalesce(period_joins.new_members, 0) as new_members,
        cast(sum(coalesce(period_joins.new_members, 0)) over (
            order by periods.period_start rows between unbounded preceding and current row
        ) as bigint) as members_to_date,
        coalesce(period_activity.check_in_persons, 0) as check_in_persons,
        cast(period_activity.check_in_persons as {{ type_double() }}) / nullif(period_activity.active_persons, 0) as check_in_rate,
        coalesce(period_activity.ugc_posters, 0) as ugc_posters,
        coalesce(period_activity.ugc_posts, 0) as ugc_posts,
        cast(period_activity.ugc_posters as {{ type_double() }}) / nullif(period_activity.active_persons, 0) as ugc_share,
        coalesce(period_activity.content_views, 0) as content_views,
        coalesce(period_activity.content_interactions, 0) as content_interactions,
        cast(period_activity.content_interactions as {{ type_double() }}) / nullif(period_activity.content_views, 0) as content_interaction_rate
    from periods
    left join period_activity on period_activity.period_start = periods.period_start
    left join period_joins on period_joins.period_start = periods.period_start
)
{%- endmacro %}

{#- The measure columns of period_metrics (everything except period_start), for explicit select lists. -#}
{% macro marts_community_metric_columns() -%}
  {{ return(['active_persons', 'new_members', 'members_to_date', 'check_in_persons', 'check_in_rate',
             'ugc_posters', 'ugc_posts', 'ugc_share', 'content_views', 'content_interactions',
             'content_interaction_rate']) }}
{%- endmacro %}
