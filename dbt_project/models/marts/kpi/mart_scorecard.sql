-- Composite scorecard (docs/METRICS.md#kpis) on the as_of day. Each KPI of vars.ulm.scorecard.kpis is scored against
-- its baseline / target / challenge levels: worse than baseline = 0, baseline..target = 60..80, target..challenge =
-- 80..100 (linear), beyond challenge = 100 (direction follows the order of the levels, so lower-is-better KPIs work
-- unchanged). group_score = mean score of the group's KPIs with a value; composite_index = weighted sum of group
-- scores (weights renormalised over groups that have a score). Scorecard-only KPIs: avg_realized_ltv_365d = mean net
-- revenue in days 0..364 after registration of persons registered in the 365 days ending as_of - 365 (fully
-- observed); d7_retention = retained_d7 / acquired over the daily cohorts registered in (as_of - 37, as_of - 7].
{%- set card = p('scorecard') %}
with

kpi as (
    select * from {{ ref('mart_kpi_daily') }} where kpi_date = {{ as_of_date() }}
),

funnel as (
    select {{ div('sum(retained_d7)', 'nullif(sum(acquired), 0)') }} as d7_retention
    from {{ ref('mart_aarrr_funnel') }}
    where cohort_grain = 'day'
      and is_mature_d7  -- always true in this window; said so that acquired and retained_d7 cover the same cohorts
      and cohort_date > {{ add_days(as_of_date(), -37) }}
      and cohort_date <= {{ add_days(as_of_date(), -7) }}
),

ltv_persons as (
    select
        p.person_id,
        {{ money_total('coalesce(sum(a.net_revenue), 0)') }} as realized_365
    from {{ ref('int_persons') }} as p
    left join {{ ref('int_person_daily_activity') }} as a
        on a.person_id = p.person_id
       and a.activity_date >= p.registered_date
       and a.activity_date < {{ add_days('p.registered_date', 365) }}
    where p.registered_date > {{ add_days(as_of_date(), -730) }}
      and p.registered_date <= {{ add_days(as_of_date(), -365) }}
    group by p.person_id
),

values_wide as (
    select
        (select avg(realized_365) from ltv_persons) as avg_realized_ltv_365d,
        (select d7_retention from funnel) as d7_retention,
        kpi.*
    from kpi
),

levels as (
    {%- for name, lv in card['kpis'].items() %}
    select
        '{{ name }}' as kpi,
        '{{ lv['group'] }}' as kpi_group,
        cast((select {{ name }} from values_wide) as {{ type_double() }}) as value,
        cast({{ lv['baseline'] }} as {{ type_double() }}) as baseline,
        cast({{ lv['target'] }} as {{ type_double() }}) as target,
        cast({{ lv['challenge'] }} as {{ type_double() }}) as challenge,
        {{ 'true' if lv['higher_is_better'] else 'false' }} as higher_is_better,
        cast({{ card['weights'][lv['group']] }} as {{ type_double() }}) as group_weight
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

scored as (
    select
        *,
        case
            when value is null then null
            when (value - baseline) / (target - baseline) < 0 then 0.0
            when (value - target) / (challenge - target) < 0 then 60 + 20 * (value - baseline) / (target - baseline)
            else 80 + 20 * least(1.0, (value - target) / (challenge - target))
        end as score
    from levels
),

groups as (
    select kpi_group, avg(score) as group_score, max(group_weight) as group_weight
    from scored
    group by kpi_group
),

composite as (
    select sum(group_score * group_weight) / nullif(sum(group_weight) filter (where group_score is not null), 0)
        as composite_index
    from groups
),

final as (
    select
        {{ as_of_date() }} as as_of_date,
        s.kpi,
        s.kpi_group,
        s.value,
        s.baseline,
        s.target,
        s.challenge,
        s.higher_is_better,
        case
            when s.value is null then null
            when s.score >= 100 then 'challenge'
            when s.score >= 80 then 'target'
            when s.score >= 60 then 'baseline'
            else 'below_baseline'
        end as level_reached,
        s.score,
        s.group_weight,
        g.group_score,
        c.composite_index
    from scored as s
    inner join groups as g on s.kpi_group = g.kpi_group
    cross join composite as c
)

select * from final
