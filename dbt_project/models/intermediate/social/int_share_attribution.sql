-- Share links and the persons they brought in (fission ratio: docs/METRICS.md#kpis; spreader reach:
-- docs/METRICS.md#segmentation-and-tiers). One row per (share link, new person); a link that brought nobody has one
-- row with new_person_id null. A new person is attributed to a link when the person's first-ever event carries that
-- share_id and the person is not the sharer.
with

events as (
    select person_id, event_id, event_ts, event_date, event_type, share_id from {{ ref('int_events') }}
),

persons as (
    select person_id, registered_date from {{ ref('int_persons') }}
),

shares as (
    select
        share_id,
        {{ arg_min('person_id', 'event_ts') }} as sharer_person_id,
        min(event_date) as share_date,
        cast(count(*) as integer) as n_share_events
    from events
    where event_type = 'share' and share_id is not null
    group by share_id
),

first_events as (
    select
        person_id,
        {{ arg_min('share_id', '(event_ts, event_id)') }} as share_id,
        min(event_date) as first_event_date
    from events
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
        a.new_person_registered_date
    from shares as s
    left join arrivals as a
        on s.share_id = a.share_id and a.new_person_id <> s.sharer_person_id
)

select * from final
