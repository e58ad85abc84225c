{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='event_id',
    on_schema_change='fail',
    pre_hook="{{ incremental_cleanup('event_date', 'user_id') }}"
) }}
-- Behaviour events of known, non-erased accounts up to the as-of day, deduplicated
-- (docs/METRICS.md#landing-contract). Incremental by business day with a lookback (late events) plus rows loaded
-- since the previous build. Carries only the columns later layers read (int_events); session_id, category and
-- properties stay in raw.events. The loader keeps event_id unique in raw (ulm/ingest/batch.py), so only keys seen
-- on more than one raw row (raw written by other means) go through the first-row dedup; every other row passes as is.
-- Whether any key repeats is probed once, when the model compiles (query_any, over the raw rows this run reads): on
-- the usual run none does and the rows pass straight through. A dedup branch in the query itself made DuckDB
-- materialize every windowed row for its three readers (about 70 s of 290 s at 100M events, docs/DECISIONS.md D94).
{%- set has_repeats = query_any(
    "select event_id from " ~ source('raw', 'events')
    ~ " where event_ts < " ~ business_day_start_utc(add_days(as_of_date(), 1))
    ~ " and " ~ incremental_raw_prefilter('event_ts', 'event_date', '_loaded_at')
    ~ " group by event_id having count(*) > 1") %}
with

events as (
    select event_id, user_id, event_type, event_ts, platform, product_id, content_id, kol_id, community_id, share_id,
           _loaded_at, _load_id, _source_file
    from {{ source('raw', 'events') }}
    -- cheap pre-filters on the raw timestamp (zone maps) before the business-day conversion
    where event_ts < {{ business_day_start_utc(add_days(as_of_date(), 1)) }}
      and {{ incremental_raw_prefilter('event_ts', 'event_date', '_loaded_at') }}
),

users as (
    select user_id from {{ ref('stg_users') }}
),

with_dates as (
    select
        *,
        {{ business_date('event_ts') }} as event_date
    from events
),

windowed as (
    select *
    from with_dates
    where event_date <= {{ as_of_date() }}
      and {{ incremental_window('event_date', '_loaded_at') }}
),

{%- if has_repeats %}
repeated_keys as (
    select event_id from windowed group by event_id having count(*) > 1
),

deduplicated as (
    select * from windowed where event_id not in (select event_id from repeated_keys)
    union all
    select * from (
        select {{ first_row_select('event_id') }} *
        from windowed
        where event_id in (select event_id from repeated_keys)
        {{ first_row_per('event_id', '_loaded_at, _load_id, _source_file') }}
    ) as first_rows
),
{%- else %}
deduplicated as (
    select * from windowed
),
{%- endif %}

final as (
    select
        e.event_id,
        e.user_id,
        e.event_type,
        e.event_ts,
        e.event_date,
        e.platform,
        e.product_id,
        e.content_id,
        e.kol_id,
        e.community_id,
        e.share_id,
        e._loaded_at
    from deduplicated as e
    inner join users as u on e.user_id = u.user_id
)

select * from final
