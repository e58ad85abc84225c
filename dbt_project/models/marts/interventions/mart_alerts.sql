-- Channel-, KPI- and identity-level alerts (docs/METRICS.md#interventions, docs/METRICS.md#identity) for the as-of
-- date: (alert_date, rule_id, subject, value, threshold, person_id).
--   channel_pause: acquisition_channel/platform whose latest complete cohort month (the month before the
--     as-of month) has pause_recommended in mart_channel_economics; value = ltv_cac_ratio.
--   d7_retention_low: the daily registration cohort d-7 (the one whose D7 is observed on d) has D7
--     retention (persons active on day 7 / persons registered) below d7_retention_alert_threshold.
--   giant_identity_component: a person with more than giant_component_accounts accounts (a junk identifier
--     slipping past the guards chains strangers together); subject 'person/<person_id>', value = accounts. The only
--     rule with a person_id (null for the others).
-- Incremental by alert_date like mart_interventions (each run replaces its own day; full refresh disabled); rows of
-- persons that no longer exist (erasure, a split component) are deleted on every run. person_id was added later:
-- on_schema_change appends it to an existing table, and the pre-hook only uses it once it is there.
{{
    config(
        materialized=('table' if target.type == 'spark' else 'incremental'),
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='append_new_columns',
        pre_hook=[
            "{% if is_incremental() %}delete from {{ this }} where alert_date = {{ as_of_date() }}{% if 'person_id' in (adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list) %} or person_id not in (select person_id from {{ ref('int_persons') }}){% endif %}{% else %}select 1{% endif %}",
        ],
    )
}}
with

channel_economics as (
    select * from {{ ref('mart_channel_economics') }}
    where cohort_month = {{ add_periods('month', period_start('month', as_of_date()), -1) }}
),

channel_pause as (
    select
        'channel_pause' as rule_id,
        acquisition_channel || '/' || platform || '/' || cast(cohort_month as {{ type_varchar() }}) as subject,
        ltv_cac_ratio as value,
        cast({{ p('ltv_cac_pause_threshold') }} as {{ type_double() }}) as threshold
    from channel_economics
    where pause_recommended
),

d7_cohort as (
    select person_id
    from {{ ref('int_persons') }}
    where registered_date = {{ marts_days_before(7) }}
),

d7_active as (
    select distinct person_id
    from {{ ref('int_person_daily_activity') }}
    where activity_date = {{ as_of_date() }}
),

d7_retention as (
    select
        count(*) as acquired,
        count(d7_active.person_id) as retained
    from d7_cohort
    left join d7_active on d7_active.person_id = d7_cohort.person_id
),

d7_retention_low as (
    select
        'd7_retention_low' as rule_id,
        'registration_cohort/' || cast({{ marts_days_before(7) }} as {{ type_varchar() }}) as subject,
        cast(retained as {{ type_double() }}) / acquired as value,
        cast({{ p('d7_retention_alert_threshold') }} as {{ type_double() }}) as threshold
    from d7_retention
    where acquired > 0
      and retained < {{ marts_exact('d7_retention_alert_threshold') }} * acquired
),

giant_identity_component as (
    select
        'giant_identity_component' as rule_id,
        'person/' || person_id as subject,
        cast(n_accounts as {{ type_double() }}) as value,
        cast({{ p('giant_component_accounts') }} as {{ type_double() }}) as threshold,
        person_id
    from {{ ref('int_persons') }}
    where n_accounts > {{ p('giant_component_accounts') }}
),

final as (
    select {{ as_of_date() }} as alert_date, rule_id, subject, value, threshold, person_id
    from (
        select *, cast(null as {{ type_varchar() }}) as person_id from channel_pause
        union all
        select *, cast(null as {{ type_varchar() }}) as person_id from d7_retention_low
        union all
        select * from giant_identity_component
    ) as alerts
)

select * from final
