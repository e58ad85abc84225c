-- Why a person has no ML score as of d (docs/ML.md#score-coverage). The scoring batch (ulm score) scores the
-- population of its day s: analytics consent, registered on or before s, an active day in
-- (s - snapshot_population_active_days, s]. This model names, for every person of int_persons without a score in
-- int_scores_latest, the first rule that left them out, against the last scoring day s <= d (NULL = scored):
--   no_scoring_run            ml.scores holds no scoring day on or before d
--   no_analytics_consent      no analytics consent (as of d)
--   registered_after_scoring  registered after s: new since the last scoring run
--   inactive                  no active day in (s - snapshot_population_active_days, s]
--   changed_since_scoring     eligible by the data of d but not scored on s: consent given or accounts merged
--                             into a new person after s
with

persons as (
    select person_id, registered_date, consent_analytics from {{ ref('int_persons') }}
),

scored as (
    select person_id from {{ ref('int_scores_latest') }}
),

last_run as (
    select max(score_date) as score_date from {{ source('ml', 'scores') }} where score_date <= {{ as_of_date() }}
),

active as (
    select distinct a.person_id
    from {{ ref('int_person_daily_activity') }} as a
    cross join last_run as r
    where a.is_active_day
      and a.activity_date > r.score_date - {{ p('snapshot_population_active_days') }}
      and a.activity_date <= r.score_date
),

final as (
    select
        p.person_id,
        r.score_date as last_score_date,
        case
            when s.person_id is not null then null
            when r.score_date is null then 'no_scoring_run'
            when not coalesce(p.consent_analytics, false) then 'no_analytics_consent'
            when p.registered_date > r.score_date then 'registered_after_scoring'
            when a.person_id is null then 'inactive'
            else 'changed_since_scoring'
        end as unscored_reason
    from persons as p
    cross join last_run as r
    left join scored as s on p.person_id = s.person_id
    left join active as a on p.person_id = a.person_id
)

select * from final
