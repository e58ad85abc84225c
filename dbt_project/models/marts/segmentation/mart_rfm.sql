-- RFM scores (docs/METRICS.md#segmentation-and-tiers) and segments as of d: one row per person with a purchase in (d - rfm_window_days, d].
with

rfm as (
    select * from {{ ref('int_person_rfm') }}
),

final as (
    select
        person_id,
        recency_days,
        frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        rfm_segment
    from rfm
)

select * from final
