{#-
  Rolling per-person window counts WITHOUT a persons x days grid (docs/METRICS.md#kpis window KPIs).

  rolling_person_deltas(name, source, window_days, condition, value_col, contribution_col)
    `source`: a relation/CTE with columns person_id, day_num (integer business day number), plus value columns.
    A person qualifies on day d when `condition` holds for roll_value = sum(value_col) over (d - window_days, d].
    The rolling sum can only change on a source day or window_days after one, so it is evaluated there only
    (change points); qualification starts/stops become +1/-1 deltas per day. Optional contribution_col adds
    delta_value = change of (qualifies ? rolling sum of contribution_col : 0), e.g. GMV of qualifying persons.
    Emits CTEs `<name>_deltas(day_num, delta_persons, delta_value)`; a cumulative sum over a day spine gives
    the count per day.

  presence_deltas(prefix, source, windows)
    The special case `roll_value >= 1` of a count (a person is in the window on day d when it has a source day in
    (d - w, d]), for several window lengths from one pass: the person's runs of days in the window start on a
    source day more than w days after the previous one (+1) and end w days after a source day followed by none
    within w days (-1). One lag/lead window over `source` (unique person_id, day_num) instead of a union, a range
    window and a lag per window length. Emits `<prefix>_gaps` and, for each `name: w` of `windows`,
    `<name>_deltas(day_num, delta_persons, delta_value = 0)`, the same as rolling_person_deltas(name, source, w,
    'roll_value >= 1') per day.

  day_num(date) / from_day_num(n): integer day numbers for RANGE windows.
-#}

{% macro day_num(date_expr) -%}
  {{ days_between("cast('1970-01-01' as date)", date_expr) }}
{%- endmacro %}

{% macro from_day_num(n) -%}
  {{ add_days("cast('1970-01-01' as date)", n) }}
{%- endmacro %}

{% macro rolling_person_deltas(name, source, window_days, condition, value_col='1', contribution_col=none) -%}
{{ name }}_points as (
    select person_id, day_num, {{ value_col }} as v,
           {{ contribution_col if contribution_col is not none else '0' }} as cv
    from {{ source }}
    union all
    select person_id, day_num + {{ window_days }}, 0, 0
    from {{ source }}
),

{{ name }}_rolled as (
    select
        person_id,
        day_num,
        sum(sum(v)) over w as roll_value,
        sum(sum(cv)) over w as roll_contribution
    from {{ name }}_points
    group by person_id, day_num
    window w as (partition by person_id order by day_num
                 range between {{ window_days - 1 }} preceding and current row)
),

{{ name }}_state as (
    select
        person_id,
        day_num,
        case when {{ condition }} then 1 else 0 end as q,
        case when {{ condition }} then roll_contribution else 0 end as qv
    from {{ name }}_rolled
),

{{ name }}_changes as (
    select
        day_num,
        q - coalesce(lag(q) over (partition by person_id order by day_num), 0) as dq,
        qv - coalesce(lag(qv) over (partition by person_id order by day_num), 0) as dqv
    from {{ name }}_state
),

{{ name }}_deltas as (
    select day_num, sum(dq) as delta_persons, sum(dqv) as delta_value
    from {{ name }}_changes
    group by day_num
    having sum(dq) <> 0 or sum(dqv) <> 0
)
{%- endmacro %}

{% macro presence_deltas(prefix, source, windows) -%}
{{ prefix }}_gaps as (
    select
        day_num,
        day_num - (lag(day_num) over person_days) as gap_before,
        (lead(day_num) over person_days) - day_num as gap_after
    from {{ source }}
    window person_days as (partition by person_id order by day_num)
)
{%- for name, w in windows.items() %},

{{ name }}_deltas as (
    select day_num, sum(delta) as delta_persons, 0 as delta_value
    from (
        select day_num, 1 as delta from {{ prefix }}_gaps where gap_before is null or gap_before > {{ w }}
        union all
        select day_num + {{ w }}, -1 from {{ prefix }}_gaps where gap_after is null or gap_after > {{ w }}
    ) as d
    group by day_num
)
{%- endfor %}
{%- endmacro %}
