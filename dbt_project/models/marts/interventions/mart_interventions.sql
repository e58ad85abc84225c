-- Person-level audiences (docs/METRICS.md#interventions) for the as-of date: (audience_date, rule_id, person_id,
-- action, is_holdout). Only persons with marketing consent; a deterministic holdout_pct % per rule (hash of person_id
-- and rule_id) is flagged is_holdout and must receive no action. Rules on model scores yield nothing until scores
-- exist.
--
-- History: incremental by audience_date; each run replaces the rows of its own as-of date, so daily runs
-- accumulate history and a re-run of a day is idempotent. A full refresh could NOT reproduce past audiences
-- (consent and scores are only known as of now), so full_refresh is disabled for this model; rows of persons
-- that no longer exist (erasure, docs/METRICS.md#privacy) are deleted on every run.
{{
    config(
        materialized=('table' if target.type == 'spark' else 'incremental'),
        incremental_strategy='append',
        full_refresh=false,
        pre_hook=[
            "{% if is_incremental() %}delete from {{ this }} where audience_date = {{ as_of_date() }} or person_id not in (select person_id from {{ ref('int_persons') }}){% else %}select 1{% endif %}",
        ],
    )
}}
with

persons as (
    select person_id, registered_date, consent_marketing
    from {{ ref('int_persons') }}
    where registered_date <= {{ as_of_date() }}
),

activity as (
    select * from {{ ref('int_person_activity_summary') }}
),

community_members as (
    select person_id, days_since_last_open from {{ ref('int_community_members') }}
),

social_tiers as (
    select person_id, social_tier, previous_social_tier from {{ ref('int_person_social_tiers') }}
),

scores_today as (
    select person_id, churn_probability, predicted_ltv_365
    from {{ ref('int_scores_latest') }}
    where score_date <= {{ as_of_date() }}
),

scores_lookback as (
    -- each person's latest score as of d - ltv_drop_lookback_days
    select person_id, predicted_ltv_365
    from (
        select
            person_id,
            predicted_ltv_365,
            row_number() over (partition by person_id order by score_date desc) as recency_rank
        from {{ source('ml', 'scores') }}
        where score_date <= {{ marts_days_before(p('ltv_drop_lookback_days')) }}
    ) as lookback
    where recency_rank = 1
),

rule_new_user_silent as (
    -- registered within N days and no active day in the last M days (counted from registration if never active)
    select persons.person_id, 'new_user_silent_3d' as rule_id
    from persons
    left join activity on activity.person_id = persons.person_id
    where {{ marts_in_window('persons.registered_date', p('new_user_window_days')) }}
      and {{ days_between('greatest(persons.registered_date, coalesce(activity.last_active_date, persons.registered_date))', as_of_date()) }}
          >= {{ p('new_user_silent_days') }}
),

rule_live_lapsed as (
    select person_id, 'live_lapsed_7d' as rule_id
    from activity
    where last_live_enter_date is not null
      and {{ days_between('last_live_enter_date', as_of_date()) }} >= {{ p('live_lapsed_days') }}
),

rule_community_silent as (
    select person_id, 'community_silent_7d' as rule_id
    from community_members
    where days_since_last_open >= {{ p('community_silent_days') }}
),

churn_ranked as (
    select
        person_id,
        rank() over (order by churn_probability desc) as churn_rank,
        count(*) over () as n_scored
    from scores_today
    where churn_probability is not null
),

rule_churn_risk as (
    -- top decile of the scored population (ties share the rank, so a tie at the cut is kept whole)
    select person_id, 'churn_risk_high' as rule_id
    from churn_ranked
    where churn_rank - 1 < {{ marts_exact('churn_risk_top_fraction') }} * n_scored
),

rule_ltv_drop as (
    select scores_today.person_id, 'ltv_drop_20pct_30d' as rule_id
    from scores_today
    inner join scores_lookback on scores_lookback.person_id = scores_today.person_id
    where scores_lookback.predicted_ltv_365 > 0
      and scores_today.predicted_ltv_365 < {{ marts_exact('ltv_drop_ratio') }} * scores_lookback.predicted_ltv_365
),

rule_social_upgrade as (
    select social_tiers.person_id, 'social_upgrade' as rule_id
    from social_tiers
    inner join persons on persons.person_id = social_tiers.person_id
    where social_tiers.previous_social_tier = 'basic'
      and social_tiers.social_tier = 'potential'
      and persons.registered_date < {{ as_of_date() }}
),

candidates as (
    select * from rule_new_user_silent
    union all select * from rule_live_lapsed
    union all select * from rule_community_silent
    union all select * from rule_churn_risk
    union all select * from rule_ltv_drop
    union all select * from rule_social_upgrade
),

actions as (
    {{ marts_rule_actions('person') }}
),

final as (
    select
        {{ as_of_date() }} as audience_date,
        candidates.rule_id,
        candidates.person_id,
        actions.action,
        {{ marts_is_holdout('candidates.person_id', 'candidates.rule_id') }} as is_holdout
    from candidates
    inner join persons on persons.person_id = candidates.person_id
    inner join actions on actions.rule_id = candidates.rule_id
    where persons.consent_marketing
)

select * from final
