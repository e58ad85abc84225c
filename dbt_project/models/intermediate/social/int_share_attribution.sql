{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key='share_id',
    on_schema_change='fail',
    pre_hook=[
        "{% if is_incremental() %}delete from {{ this }} where (select max(_as_of) from {{ this }}) > {{ as_of_date() }} or sharer_person_id in (select person_id from {{ ref('int_identity_changes') }}) or new_person_id in (select person_id from {{ ref('int_identity_changes') }}){% else %}select 1{% endif %}",
    ]
) }}
-- depends_on: {{ ref('int_identity_changes') }}
-- depends_on: {{ ref('int_identity') }}
-- Share links and the persons they brought in (fission ratio: docs/METRICS.md#kpis; spreader reach:
-- docs/METRICS.md#segmentation-and-tiers). One row per (share link, new person); a link that brought nobody has one
-- row with new_person_id null. A new person is attributed to a link when the person's first-ever event carries that
-- share_id and the person is not the sharer.
-- Incremental by share link: a run recomputes (all rows of) only the links a new event can change. New events are
-- those dated after the previous build's as_of or loaded after it. Changed links: those of new events (a new or late
-- event that is now a person's first carries its link), the links persons with new events or an identity change
-- were attributed to before (from {{ this }}), every link on an event of a person whose accounts changed (the
-- merged person may start with any of them), the links of attributed persons whose registration date changed, and
-- the links whose sharer changed identity. A person with only new events dated after their first keeps their first
-- event, so their older links are not recomputed (D97). The pre-hook deletes the rows of persons
-- int_identity_changes names (a link whose sharer was erased may vanish) and, on a backfill (as_of before the
-- previous build's), every row. A link no new event touches keeps its rows: its sharer,
-- share events and the first events of the persons it brought in are unchanged.
{#- the events are named in each place, not through a CTE: a CTE named more than once is materialized whole by DuckDB
    (and Postgres), which copied all events before the incremental branches' filters applied -#}
{%- set events = "(select person_id, user_id, event_id, event_ts, event_date, event_type, share_id, _loaded_at from "
    ~ ref('int_events') ~ ")" %}
with

persons as (
    select person_id, registered_date from {{ ref('int_persons') }}
),

{% if is_incremental() %}
new_events as (
    select person_id, share_id from {{ events }} as ev
    where event_date > (select coalesce(max(_as_of), cast('1900-01-01' as date)) from {{ this }})
       or _loaded_at > (select coalesce(max(_max_loaded_at), cast('1900-01-01' as timestamp)) from {{ this }})
),

changed_persons as (
    select person_id from new_events
    union
    select person_id from {{ ref('int_identity_changes') }}
),

changed_shares as (
    select share_id from new_events where share_id is not null
    union
    select share_id from {{ this }} where new_person_id in (select person_id from changed_persons)
    union
    select share_id from {{ this }} where sharer_person_id in (select person_id from {{ ref('int_identity_changes') }})
    union
    -- an attributed person whose registration date changed (a new account version)
    select t.share_id from {{ this }} as t inner join persons as p on t.new_person_id = p.person_id
    where t.new_person_registered_date is distinct from p.registered_date
    union
    -- a person whose accounts changed may now start with any event of the merged accounts; a person with only new
    -- events starts either as before or with a new event, whose link is in new_events
    select e.share_id from {{ events }} as e
    where e.share_id is not null
      and e.user_id in (select user_id from {{ ref('int_identity') }}
                        where person_id in (select person_id from {{ ref('int_identity_changes') }}))
),

-- persons whose first event may carry a changed link: every person with an event carrying one
candidate_persons as (
    select distinct person_id from {{ events }} as ev where share_id in (select share_id from changed_shares)
),
{% endif %}

shares as (
    select
        share_id,
        {{ arg_min('person_id', 'event_ts') }} as sharer_person_id,
        min(event_date) as share_date,
        cast(count(*) as integer) as n_share_events
    from {{ events }} as ev
    where event_type = 'share' and share_id is not null
    {%- if is_incremental() %}
      and share_id in (select share_id from changed_shares)
    {%- endif %}
    group by share_id
),

first_events as (
    select
        person_id,
        {{ arg_min('share_id', '(event_ts, event_id)') }} as share_id,
        min(event_date) as first_event_date
    from {{ events }} as ev
    {%- if is_incremental() %}
    where user_id in (select user_id from {{ ref('int_identity') }}
                      where person_id in (select person_id from candidate_persons))
    {%- endif %}
    group by person_id
),

arrivals as (
    select
        f.share_id,
        f.person_id as new_person_id,
        f.first_event_date as new_person_first_event_date,
        p.registered_date as new_person_registered_date
    from first_events as f
    inner join persons as p on f.person_id = p.person_id
    where f.share_id is not null
),

final as (
    select
        s.share_id,
        s.sharer_person_id,
        s.share_date,
        s.n_share_events,
        a.new_person_id,
        a.new_person_first_event_date,
        a.new_person_registered_date,
        {{ as_of_date() }} as _as_of,
        (select max(_loaded_at) from {{ ref('stg_events') }}) as _max_loaded_at
    from shares as s
    left join arrivals as a
        on s.share_id = a.share_id and a.new_person_id <> s.sharer_person_id
)

select * from final
