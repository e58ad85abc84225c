-- Latest ML score per person with score_date <= as_of (docs/METRICS.md#machine-learning), for persons with analytics
-- consent as of d only: a person who withdrew it after being scored keeps no score anywhere downstream (dim_persons,
-- audiences). ml.scores is written by the scoring batch; on-run-start creates it empty (typed) until then, so this
-- model is always valid.
with

scores as (
    select * from {{ source('ml', 'scores') }}
),

persons as (
    select person_id from {{ ref('int_persons') }}
    where consent_analytics
),

final as (
    select {{ first_row_select('s.person_id') }}
        s.person_id,
        s.score_date,
        cast(s.churn_probability as {{ type_double() }}) as churn_probability,
        cast(s.predicted_ltv_365 as decimal(18, 2)) as predicted_ltv_365,
        s.churn_model_version,
        s.ltv_model_version
    from scores as s
    inner join persons as p on s.person_id = p.person_id
    where s.score_date <= {{ as_of_date() }}
    {{ first_row_per('s.person_id', 's.score_date desc') }}
)

select * from final
