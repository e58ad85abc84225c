{{ config(materialized='view') }}
-- Events keyed by person: a view over the deduplicated staging events and the identity map. The event rows are
-- stored once (stg_events, incremental); person_id is always that of the current identity graph, so an identity
-- merge never rewrites event history, and a full refresh and daily runs agree by construction.
-- Consumers filter it (int_person_daily_activity: the incremental day window); DuckDB pushes those filters into
-- the stg_events scan and joins the ~1 row per account identity map.
with

events as (
    select * from {{ ref('stg_events') }}
),

identity as (
    select user_id, person_id from {{ ref('int_identity') }}
),

final as (
    select
        e.event_id,
        i.person_id,
        e.user_id,
        e.event_type,
        e.event_ts,
        e.event_date,
        e.platform,
        e.content_id,
        e.kol_id,
        e.community_id,
        e.share_id,
        e.product_id,
        e._loaded_at
    from events as e
    inner join identity as i on e.user_id = i.user_id
)

select * from final
