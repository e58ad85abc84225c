-- Point-in-time purchase summaries in the lifetimes / BG-NBD convention (docs/METRICS.md#machine-learning), in days:
-- one row per (snapshot_date, person) with >= 1 purchase day up to snapshot_date, for snapshot_date = every month end
-- from the month of the first purchase day up to d, plus d itself. THE definition of the summary; mart_clv_summary
-- is its d row, and ML reads the month ends (training cutoffs) and d (scoring) from here:
-- frequency = repeat purchase days (distinct purchase days - 1), recency_days = first -> last purchase day,
-- t_days = first purchase day -> snapshot_date, monetary_value = mean net revenue of the repeat purchase days
-- (the first purchase day excluded; 0 when frequency = 0). Each value reads only purchase days <= snapshot_date.
with

purchase_days as (
    select person_id, activity_date, net_revenue
    from {{ ref('int_person_daily_activity') }}
    where is_purchase_day
      and activity_date <= {{ as_of_date() }}
),

snapshot_dates as (
    select spine_date as snapshot_date
    from ({{ day_spine('(select min(activity_date) from purchase_days)', as_of_date()) }}) as s
    where spine_date = {{ marts_month_end(period_start('month', 'spine_date')) }}
       or spine_date = {{ as_of_date() }}
),

numbered as (
    select
        *,
        row_number() over (partition by person_id order by activity_date) as purchase_day_number,
        coalesce(lead(activity_date) over (partition by person_id order by activity_date),
                 {{ add_days(as_of_date(), 1) }}) as next_purchase_date
    from purchase_days
),

-- running totals: row k holds the summary of purchase days 1..k, valid from day k until the next purchase day (d + 1 for the last)
running as (
    select
        person_id,
        activity_date as last_purchase_date,
        next_purchase_date,
        min(activity_date) over (partition by person_id) as first_purchase_date,
        purchase_day_number - 1 as frequency,
        cast(sum(case when purchase_day_number > 1 then net_revenue end) over (
            partition by person_id order by activity_date rows between unbounded preceding and current row
        ) as decimal(38, 2)) as repeat_net_revenue
    from numbered
),

final as (
    select
        s.snapshot_date,
        r.person_id,
        r.frequency,
        {{ days_between('r.first_purchase_date', 'r.last_purchase_date') }} as recency_days,
        {{ days_between('r.first_purchase_date', 's.snapshot_date') }} as t_days,
        -- a mean of person-day totals (bounded only by the largest one): DECIMAL(38,2) like the totals
        {{ money_total('case when r.frequency > 0 then ' ~ money_ratio('r.repeat_net_revenue', 'r.frequency') ~ ' else 0 end') }}
            as monetary_value
    from running as r
    inner join snapshot_dates as s
        on s.snapshot_date >= r.last_purchase_date
       and s.snapshot_date < r.next_purchase_date
)

select * from final
