-- All segments of docs/METRICS.md#segmentation-and-tiers per person as of d (one row per person registered by d);
-- dim_persons left-joins it. value_tier: diamond (>= N purchase days in the diamond window and AOV of those purchases
-- > min AOV), gold / silver (a purchase in the last 60 / 90 days), churn_warning (purchased before), none.
with

persons as (
    select person_id from {{ ref('int_persons') }}
    where registered_date <= {{ as_of_date() }}
),

activity as (
    select * from {{ ref('int_person_activity_summary') }}
),

ltv as (
    select * from {{ ref('int_person_ltv') }}
),

rfm as (
    select * from {{ ref('int_person_rfm') }}
),

social as (
    select person_id, social_tier from {{ ref('int_person_social_tiers') }}
),

spreaders as (
    select person_id, spreader_tier from {{ ref('int_person_spreaders') }}
),

koc as (
    select person_id, is_koc from {{ ref('int_person_koc') }}
),

value_tiers as (
    select
        person_id,
        case
            when diamond_window_purchase_days >= {{ p('value_tier_diamond_min_purchase_days') }}
                 -- AOV > min  <=>  net revenue > min * purchases (exact, no division)
                 and diamond_window_net_revenue > {{ p('value_tier_diamond_min_aov') }} * diamond_window_purchases
                then 'diamond'
            when last_purchase_date > {{ marts_days_before(p('value_tier_gold_days')) }} then 'gold'
            when last_purchase_date > {{ marts_days_before(p('value_tier_silver_days')) }} then 'silver'
            when last_purchase_date is not null then 'churn_warning'
            else 'none'
        end as value_tier
    from activity
),

final as (
    select
        persons.person_id,
        coalesce(value_tiers.value_tier, 'none') as value_tier,
        ltv.ltv_tier,
        coalesce(social.social_tier, 'basic') as social_tier,
        coalesce(spreaders.spreader_tier, 'none') as spreader_tier,
        coalesce(koc.is_koc, false) as is_koc,
        rfm.rfm_segment,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        ltv.realized_ltv,
        ltv.predicted_ltv_365,
        ltv.churn_probability
    from persons
    left join value_tiers on value_tiers.person_id = persons.person_id
    left join ltv on ltv.person_id = persons.person_id
    left join rfm on rfm.person_id = persons.person_id
    left join social on social.person_id = persons.person_id
    left join spreaders on spreaders.person_id = persons.person_id
    left join koc on koc.person_id = persons.person_id
)

select * from final
