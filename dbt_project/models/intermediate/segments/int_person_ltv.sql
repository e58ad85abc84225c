-- Realized and predicted lifetime value per person as of d (LTV tier: docs/METRICS.md#segmentation-and-tiers; also
-- docs/METRICS.md#channel-economics and the scores of docs/METRICS.md#machine-learning). predicted_total_ltv =
-- realized net revenue to date + the model's predicted next-365-day net revenue; it equals the realized value while
-- no score exists for the person.
with

persons as (
    select person_id from {{ ref('int_persons') }}
    where registered_date <= {{ as_of_date() }}
),

activity as (
    select person_id, realized_net_revenue from {{ ref('int_person_activity_summary') }}
),

scores as (
    select person_id, score_date, churn_probability, predicted_ltv_365
    from {{ ref('int_scores_latest') }}
    where score_date <= {{ as_of_date() }}
),

joined as (
    select
        persons.person_id,
        {{ money_total('coalesce(activity.realized_net_revenue, 0)') }} as realized_ltv,
        cast(scores.predicted_ltv_365 as decimal(18, 2)) as predicted_ltv_365,
        scores.churn_probability,
        scores.score_date
    from persons
    left join activity on activity.person_id = persons.person_id
    left join scores on scores.person_id = persons.person_id
),

final as (
    select
        person_id,
        realized_ltv,
        predicted_ltv_365,
        churn_probability,
        score_date,
        {{ money_total('realized_ltv + coalesce(predicted_ltv_365, 0)') }} as predicted_total_ltv,
        case
            when realized_ltv + coalesce(predicted_ltv_365, 0) > {{ p('ltv_tier_core_min') }} then 'core'
            when realized_ltv + coalesce(predicted_ltv_365, 0) >= {{ p('ltv_tier_potential_min') }} then 'potential'
            else 'basic'
        end as ltv_tier
    from joined
)

select * from final
