-- Counts of persons per spreader tier and of KOCs as of d (docs/METRICS.md#segmentation-and-tiers); zero rows are
-- kept.
with

segments as (
    select 'spreader_tier' as segment_type, 'core_spreader' as segment
    union all select 'spreader_tier', 'secondary_spreader'
    union all select 'spreader_tier', 'ordinary_spreader'
    union all select 'koc', 'koc'
),

counts as (
    select 'spreader_tier' as segment_type, spreader_tier as segment, count(*) as persons
    from {{ ref('mart_referral_persons') }}
    where spreader_tier <> 'none'
    group by 1, 2
    union all
    select 'koc', 'koc', count(*)
    from {{ ref('mart_referral_persons') }}
    where is_koc
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        segments.segment_type,
        segments.segment,
        coalesce(counts.persons, 0) as persons
    from segments
    left join counts on counts.segment_type = segments.segment_type and counts.segment = segments.segment
)

select * from final
