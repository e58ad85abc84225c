-- Invites between persons sent up to as_of (docs/METRICS.md#aarrr-funnel referred, K-factor, spreader reach), keyed
-- by person: no account ids, no PII. An acceptance after as_of is not yet visible (stg_invites nulls it).
with

invites as (
    select * from {{ ref('int_invites') }}
),

final as (
    select
        invite_id,
        inviter_person_id,
        invitee_person_id,
        sent_date,
        accepted_date,
        is_accepted
    from invites
    where sent_date <= {{ as_of_date() }}
)

select * from final
