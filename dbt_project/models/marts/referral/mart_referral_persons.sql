-- Spreaders and KOCs as of d (docs/METRICS.md#segmentation-and-tiers): one row per person with reach >= 1 or flagged
-- KOC.
with

spreaders as (
    select * from {{ ref('int_person_spreaders') }}
),

koc as (
    select * from {{ ref('int_person_koc') }}
),

final as (
    select
        coalesce(spreaders.person_id, koc.person_id) as person_id,
        coalesce(spreaders.direct_reach, 0) as direct_reach,
        coalesce(spreaders.reach, 0) as reach,
        spreaders.spreader_rank,
        coalesce(spreaders.spreader_tier, 'none') as spreader_tier,
        coalesce(koc.ugc_posts, 0) as ugc_posts,
        coalesce(koc.share_attributed_purchases, 0) as share_attributed_purchases,
        coalesce(koc.is_koc, false) as is_koc
    from spreaders
    full outer join koc on koc.person_id = spreaders.person_id
    where spreaders.person_id is not null or koc.is_koc
)

select * from final
