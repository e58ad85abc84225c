-- KOCs (key opinion consumers) as of d, one row per KOC person (docs/METRICS.md#segmentation-and-tiers): the persons
-- int_person_koc flags (>= koc_min_ugc_posts `ugc_post` events up to d and >= koc_min_attributed_purchases purchases
-- by other persons through their share links in (d - koc_window_days, d]), with the two measures that qualify them
-- and their reach. The same persons as is_koc in mart_referral_persons. Like every person-level mart outside the
-- audiences, it lists everyone; the two consent flags say who may be analysed person by person (consent_analytics:
-- docs/METRICS.md#privacy) and who may be contacted (consent_marketing: audiences require it).
with

koc as (
    select person_id, ugc_posts, share_attributed_purchases
    from {{ ref('int_person_koc') }}
    where is_koc
),

persons as (
    select person_id, consent_analytics, consent_marketing from {{ ref('int_persons') }}
),

spreaders as (
    select person_id, direct_reach, reach, spreader_rank, spreader_tier from {{ ref('int_person_spreaders') }}
),

final as (
    select
        koc.person_id,
        cast(koc.ugc_posts as bigint) as ugc_posts,
        cast(koc.share_attributed_purchases as bigint) as share_attributed_purchases,
        cast(coalesce(spreaders.direct_reach, 0) as bigint) as direct_reach,
        cast(coalesce(spreaders.reach, 0) as bigint) as reach,
        spreaders.spreader_rank,
        coalesce(spreaders.spreader_tier, 'none') as spreader_tier,
        coalesce(persons.consent_analytics, false) as consent_analytics,
        coalesce(persons.consent_marketing, false) as consent_marketing
    from koc
    left join persons on persons.person_id = koc.person_id
    left join spreaders on spreaders.person_id = koc.person_id
)

select * from final
