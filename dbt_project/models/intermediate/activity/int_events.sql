{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='fail',
    pre_hook="{{ incremental_cleanup('event_date', 'user_id') }}"
) }}
-- depends_on: {{ ref('int_identity_changes') }}
-- Events keyed by person. Reprocesses the incremental day window, rows loaded since the previous build
-- and every event of accounts whose person changed (identity merges), so person_id never goes stale.
with

events as (
    select * from {{ ref('stg_events') }}
),

identity as (
    select * from {{ ref('int_identity') }}
),

{% if is_incremental() %}
changed_accounts as (
    select distinct user_id from {{ ref('int_identity_changes') }} where change_side = 'new'
),
{% endif %}

selected as (
    select *
    from events
    where {{ incremental_window('event_date', '_loaded_at') }}
    {%- if is_incremental() %}
       or user_id in (select user_id from changed_accounts)
    {%- endif %}
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
    from selected as e
    inner join identity as i on e.user_id = i.user_id
)

select * from final
