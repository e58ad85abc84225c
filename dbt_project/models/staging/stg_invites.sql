-- Invites sent by the as-of day (docs/METRICS.md#landing-contract). An acceptance after the as-of day is not yet
-- visible (null). Invites sent by an erased account are dropped; an erased or not-yet-registered invitee is nulled
-- (the acceptance still counts in aggregates, without the identifier).
with

invites as (
    select * from {{ source('raw', 'invites') }}
),

users as (
    select user_id from {{ ref('stg_users') }}
),

deduplicated as (
    select {{ first_row_select('invite_id') }} *
    from invites
    {{ first_row_per('invite_id', '_loaded_at, _load_id, _source_file') }}
),

dated as (
    select
        invite_id,
        inviter_user_id,
        sent_at,
        {{ business_date('sent_at') }} as sent_date,
        invitee_user_id,
        accepted_at,
        {{ business_date('accepted_at') }} as accepted_date
    from deduplicated
),

final as (
    select
        d.invite_id,
        d.inviter_user_id,
        d.sent_at,
        d.sent_date,
        case when d.accepted_date <= {{ as_of_date() }} then invitee.user_id end as invitee_user_id,
        case when d.accepted_date <= {{ as_of_date() }} then d.accepted_at end as accepted_at,
        case when d.accepted_date <= {{ as_of_date() }} then d.accepted_date end as accepted_date
    from dated as d
    inner join users as inviter on d.inviter_user_id = inviter.user_id
    left join users as invitee on d.invitee_user_id = invitee.user_id
    where d.sent_date <= {{ as_of_date() }}
)

select * from final
