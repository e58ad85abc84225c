-- One row per person (docs/METRICS.md#identity): registration, channel, platform, kol and referrer of the earliest
-- account; profile attributes from the earliest account that has them; consent only when every account consents;
-- is_eu when any account is in region EU (data residency, docs/METRICS.md#privacy).
with

identity as (
    select * from {{ ref('int_identity') }}
),

users as (
    select * from {{ ref('stg_users') }}
),

accounts as (
    select
        i.person_id,
        u.*,
        row_number() over (partition by i.person_id order by u.registered_at, u.user_id) as account_rank
    from users as u
    inner join identity as i on u.user_id = i.user_id
),

earliest as (
    select * from accounts where account_rank = 1
),

person_rollup as (
    select
        person_id,
        {{ arg_min('city_tier', 'case when city_tier is not null then account_rank end') }} as city_tier,
        {{ arg_min('age_band', 'case when age_band is not null then account_rank end') }} as age_band,
        {{ arg_min('region', 'case when region is not null then account_rank end') }} as region,
        bool_or(coalesce(region = 'EU', false)) as is_eu,
        bool_and(consent_analytics) as consent_analytics,
        bool_and(consent_marketing) as consent_marketing,
        count(*) as n_accounts,
        count(distinct platform) as n_platforms
    from accounts
    group by person_id
),

final as (
    select
        e.person_id,
        e.registered_at,
        e.registered_date,
        e.acquisition_channel,
        e.platform,
        e.kol_id,
        e.referrer_user_id,
        referrer.person_id as referrer_person_id,
        r.city_tier,
        r.age_band,
        r.region,
        r.is_eu,
        r.consent_analytics,
        r.consent_marketing,
        cast(r.n_accounts as integer) as n_accounts,
        cast(r.n_platforms as integer) as n_platforms
    from earliest as e
    inner join person_rollup as r on e.person_id = r.person_id
    left join identity as referrer on e.referrer_user_id = referrer.user_id
)

select * from final
