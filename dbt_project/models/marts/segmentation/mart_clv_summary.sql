-- Per-person purchase summary in the lifetimes / BG-NBD convention (SPEC §9), as of d, in days:
-- frequency = repeat purchase days (distinct purchase days - 1), recency_days = first -> last purchase day,
-- t_days = first purchase day -> d, monetary_value = mean net revenue of the repeat purchase days
-- (the first purchase day excluded; 0 when frequency = 0). Persons with >= 1 purchase day up to d.
with

purchase_days as (
    select person_id, activity_date, net_revenue
    from {{ ref('int_person_daily_activity') }}
    where is_purchase_day
      and activity_date <= {{ as_of_date() }}
),

numbered as (
    select
        *,
        row_number() over (partition by person_id order by activity_date) as purchase_day_number
    from purchase_days
),

per_person as (
    select
        person_id,
        count(*) - 1 as frequency,
        min(activity_date) as first_purchase_date,
        max(activity_date) as last_purchase_date,
        sum(case when purchase_day_number > 1 then net_revenue end) as repeat_net_revenue
    from numbered
    group by person_id
),

final as (
    select
        person_id,
        frequency,
        {{ days_between('first_purchase_date', 'last_purchase_date') }} as recency_days,
        {{ days_between('first_purchase_date', as_of_date()) }} as t_days,
        cast(case when frequency > 0 then repeat_net_revenue / frequency else 0 end as decimal(18, 2))
            as monetary_value
    from per_person
)

select * from final
