-- One row per (non-erased) platform account with its person (docs/METRICS.md#identity). No PII.
with

users as (
    select * from {{ ref('stg_users') }}
),

identity as (
    select * from {{ ref('int_identity') }}
),

final as (
    select
        u.user_id,
        i.person_id,
        u.platform,
        u.registered_date,
        u.acquisition_channel
    from users as u
    inner join identity as i on u.user_id = i.user_id
)

select * from final
