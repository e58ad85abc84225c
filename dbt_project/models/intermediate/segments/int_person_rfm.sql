-- RFM (docs/METRICS.md#segmentation-and-tiers) over persons with a purchase in (d - rfm_window_days, d].
-- Scores: least(5, 1 + floor(5 * (rank - 1) / n)) with rank() worst first, so ties share a score.
-- Segments are snake_case codes of the segment names in docs/METRICS.md (first match wins, in that order).
with

summary as (
    select * from {{ ref('int_person_activity_summary') }}
),

rfm_population as (
    select
        person_id,
        {{ days_between('last_purchase_date', as_of_date()) }} as recency_days,
        rfm_purchase_days as frequency,
        rfm_net_revenue as monetary
    from summary
    where {{ marts_in_window('last_purchase_date', p('rfm_window_days')) }}
),

ranked as (
    select
        *,
        rank() over (order by recency_days desc) as r_rank,
        rank() over (order by frequency asc) as f_rank,
        rank() over (order by monetary asc) as m_rank,
        count(*) over () as n_persons
    from rfm_population
),

scored as (
    select
        person_id,
        recency_days,
        frequency,
        monetary,
        cast({{ marts_quintile_score('r_rank', 'n_persons') }} as integer) as r_score,
        cast({{ marts_quintile_score('f_rank', 'n_persons') }} as integer) as f_score,
        cast({{ marts_quintile_score('m_rank', 'n_persons') }} as integer) as m_score
    from ranked
),

final as (
    select
        *,
        case
            when r_score >= 4 and f_score >= 4 and m_score >= 4 then 'champions'
            when r_score >= 3 and f_score >= 3 then 'loyal'
            when r_score = 5 and f_score = 1 then 'new'
            when r_score between 3 and 4 and f_score = 1 then 'promising'
            when r_score >= 3 and f_score = 2 then 'potential_loyalist'
            when r_score = 1 and f_score >= 4 and m_score >= 4 then 'cant_lose'
            when r_score <= 2 and f_score >= 3 then 'at_risk'
            when r_score = 2 and f_score = 2 then 'need_attention'
            when r_score = 2 and f_score = 1 then 'about_to_sleep'
            when r_score = 1 and f_score = 2 then 'hibernating'
            when r_score = 1 and f_score = 1 then 'lost'
        end as rfm_segment
    from scored
)

select * from final
