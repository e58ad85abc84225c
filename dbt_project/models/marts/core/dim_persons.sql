-- One row per person as of d: profile (docs/METRICS.md#identity), current lifecycle stage
-- (docs/METRICS.md#customer-lifecycle-stages), segments (docs/METRICS.md#segmentation-and-tiers, from
-- int_person_segments) and the latest ML scores (docs/METRICS.md#machine-learning; null until the scoring batch ran),
-- with the reason when a person has none (int_score_coverage, docs/ML.md#score-coverage).
with

persons as (
    select * from {{ ref('int_persons') }}
),

current_stage as (
    select person_id, stage from {{ ref('fct_lifecycle_stage_history') }} where valid_to is null
),

segments as (
    select * from {{ ref('int_person_segments') }}
),

scores as (
    select * from {{ ref('int_scores_latest') }}
),

coverage as (
    select * from {{ ref('int_score_coverage') }}
),

final as (
    select
        p.person_id,
        p.registered_date,
        p.acquisition_channel,
        p.platform,
        p.city_tier,
        p.age_band,
        p.region,
        p.is_eu,
        p.consent_analytics,
        p.consent_marketing,
        p.n_accounts,
        p.n_platforms,
        cs.stage as lifecycle_stage,
        sg.value_tier,
        sg.ltv_tier,
        sg.social_tier,
        sg.spreader_tier,
        sg.is_koc,
        sg.rfm_segment,
        sg.r_score,
        sg.f_score,
        sg.m_score,
        sg.realized_ltv,
        sc.predicted_ltv_365,
        sc.churn_probability,
        sc.score_date,
        cv.unscored_reason
    from persons as p
    left join current_stage as cs on p.person_id = cs.person_id
    left join segments as sg on p.person_id = sg.person_id
    left join scores as sc on p.person_id = sc.person_id
    left join coverage as cv on p.person_id = cv.person_id
)

select * from final
