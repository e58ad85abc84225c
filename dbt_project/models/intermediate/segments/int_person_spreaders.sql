-- Spreader tier (docs/METRICS.md#segmentation-and-tiers). Reach = distinct persons brought in directly by the person
-- (accepted invites, share-link registrations) plus the persons those brought in (2 hops), never counting the person.
-- Among persons with reach >= 1, ordered by reach desc then person_id: the first spreader_core_top_pct are
-- `core_spreader`, up to spreader_secondary_top_pct (cumulative) `secondary_spreader`, rest `ordinary_spreader`.
with

persons as (
    select person_id, registered_date from {{ ref('int_persons') }}
    where registered_date <= {{ as_of_date() }}
),

invite_edges as (
    select inviter_person_id as src_person_id, invitee_person_id as dst_person_id
    from {{ ref('int_invites') }}
    where invitee_person_id is not null
      and accepted_date <= {{ as_of_date() }}
),

share_edges as (
    select share_attribution.sharer_person_id as src_person_id, share_attribution.new_person_id as dst_person_id
    from {{ ref('int_share_attribution') }} as share_attribution
    inner join persons on persons.person_id = share_attribution.new_person_id
    where share_attribution.new_person_id is not null
),

edges as (
    select distinct src_person_id, dst_person_id
    from (select * from invite_edges union all select * from share_edges) as all_edges
    where src_person_id <> dst_person_id
),

reached as (
    select src_person_id, dst_person_id, 1 as hop from edges
    union all
    select first_hop.src_person_id, second_hop.dst_person_id, 2 as hop
    from edges as first_hop
    inner join edges as second_hop on second_hop.src_person_id = first_hop.dst_person_id
    where second_hop.dst_person_id <> first_hop.src_person_id
),

reach as (
    select
        src_person_id as person_id,
        count(distinct case when hop = 1 then dst_person_id end) as direct_reach,
        count(distinct dst_person_id) as reach
    from reached
    group by src_person_id
),

ranked as (
    select
        *,
        row_number() over (order by reach desc, person_id) as spreader_rank,
        count(*) over () as n_spreaders
    from reach
),

final as (
    select
        person_id,
        direct_reach,
        reach,
        spreader_rank,
        case
            when spreader_rank - 1 < {{ marts_exact('spreader_core_top_pct') }} * n_spreaders then 'core_spreader'
            when spreader_rank - 1 < {{ marts_exact('spreader_secondary_top_pct') }} * n_spreaders then 'secondary_spreader'
            else 'ordinary_spreader'
        end as spreader_tier
    from ranked
)

select * from final
