-- Invites between persons (referred: docs/METRICS.md#aarrr-funnel; K-factor: docs/METRICS.md#kpis; spreader reach:
-- docs/METRICS.md#segmentation-and-tiers).
with

invites as (
    select * from {{ ref('stg_invites') }}
),

identity as (
    select * from {{ ref('int_identity') }}
),

final as (
    select
        v.invite_id,
        inviter.person_id as inviter_person_id,
        invitee.person_id as invitee_person_id,
        v.sent_date,
        v.accepted_date,
        v.accepted_date is not null as is_accepted
    from invites as v
    inner join identity as inviter on v.inviter_user_id = inviter.user_id
    left join identity as invitee on v.invitee_user_id = invitee.user_id
)

select * from final
