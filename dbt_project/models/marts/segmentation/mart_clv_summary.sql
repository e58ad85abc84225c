-- Per-person purchase summary in the lifetimes / BG-NBD convention (docs/METRICS.md#machine-learning), as of d:
-- the d snapshot of fct_clv_snapshots (defined there, once). Persons with >= 1 purchase day up to d.
with

snapshots as (
    select * from {{ ref('fct_clv_snapshots') }}
),

final as (
    select
        person_id,
        frequency,
        recency_days,
        t_days,
        monetary_value
    from snapshots
    where snapshot_date = {{ as_of_date() }}
)

select * from final
