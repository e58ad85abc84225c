{#-
  Date helpers (docs/METRICS.md#conventions). Everything DuckDB-specific sits behind adapter.dispatch.
  business_date(ts)      naive-UTC timestamp -> DATE in p('business_timezone')
  add_days(date, n)      DATE + n days -> DATE
  days_between(a, b)     b - a in whole days (integer)
  period_start(grain, d) start DATE of the day / ISO week (Monday) / month containing d
  add_periods(grain, d, n) the period start n periods after period start d
-#}

{% macro business_date(ts_col) -%}
  {{ return(adapter.dispatch('business_date', 'ulm')(ts_col)) }}
{%- endmacro %}

{% macro default__business_date(ts_col) -%}
  {{ exceptions.raise_compiler_error("business_date: no implementation for adapter " ~ adapter.type()) }}
{%- endmacro %}

{% macro duckdb__business_date(ts_col) -%}
  cast(timezone('{{ p("business_timezone") }}', timezone('UTC', {{ ts_col }})) as date)
{%- endmacro %}

{#- PostgreSQL's timezone(zone, timestamp) / timezone(zone, timestamptz) mean what DuckDB's do. -#}
{% macro postgres__business_date(ts_col) -%}
  {{ duckdb__business_date(ts_col) }}
{%- endmacro %}

{#- The UTC instant (naive) at which business day `date_expr` starts; used for cheap pre-filters on raw timestamps. -#}
{% macro business_day_start_utc(date_expr) -%}
  {{ return(adapter.dispatch('business_day_start_utc', 'ulm')(date_expr)) }}
{%- endmacro %}

{% macro duckdb__business_day_start_utc(date_expr) -%}
  cast(timezone('UTC', timezone('{{ p("business_timezone") }}', cast({{ date_expr }} as timestamp))) as timestamp)
{%- endmacro %}

{% macro postgres__business_day_start_utc(date_expr) -%}
  {{ duckdb__business_day_start_utc(date_expr) }}
{%- endmacro %}

{% macro add_days(date_expr, n) -%}
  {{ return(adapter.dispatch('add_days', 'ulm')(date_expr, n)) }}
{%- endmacro %}

{% macro default__add_days(date_expr, n) -%}
  cast({{ dbt.dateadd('day', n, date_expr) }} as date)
{%- endmacro %}

{% macro duckdb__add_days(date_expr, n) -%}
  (cast({{ date_expr }} as date) + cast({{ n }} as integer))
{%- endmacro %}

{#- PostgreSQL: date + integer is a date, date - date an integer, as on DuckDB. -#}
{% macro postgres__add_days(date_expr, n) -%}
  {{ duckdb__add_days(date_expr, n) }}
{%- endmacro %}

{% macro days_between(start_expr, end_expr) -%}
  {{ return(adapter.dispatch('days_between', 'ulm')(start_expr, end_expr)) }}
{%- endmacro %}

{% macro default__days_between(start_expr, end_expr) -%}
  {{ dbt.datediff(start_expr, end_expr, 'day') }}
{%- endmacro %}

{% macro duckdb__days_between(start_expr, end_expr) -%}
  cast(cast({{ end_expr }} as date) - cast({{ start_expr }} as date) as integer)
{%- endmacro %}

{% macro postgres__days_between(start_expr, end_expr) -%}
  {{ duckdb__days_between(start_expr, end_expr) }}
{%- endmacro %}

{% macro period_start(grain, date_expr) -%}
  {%- if grain == 'day' -%}
    cast({{ date_expr }} as date)
  {%- elif grain in ('week', 'month') -%}
    cast({{ dbt.date_trunc(grain, date_expr) }} as date)
  {%- else -%}
    {{ exceptions.raise_compiler_error("period grain must be day, week or month, got " ~ grain) }}
  {%- endif -%}
{%- endmacro %}

{% macro add_periods(grain, period_start_expr, n) -%}
  {%- if grain == 'day' -%}
    {{ add_days(period_start_expr, n) }}
  {%- elif grain == 'week' -%}
    {{ add_days(period_start_expr, '7 * (' ~ n ~ ')') }}
  {%- else -%}
    {{ add_months_date(period_start_expr, n) }}
  {%- endif -%}
{%- endmacro %}

{#- Number of whole periods from period start a to period start b. -#}
{% macro periods_between(grain, start_expr, end_expr) -%}
  {%- if grain == 'day' -%}
    {{ days_between(start_expr, end_expr) }}
  {%- elif grain == 'week' -%}
    {{ int_div(days_between(start_expr, end_expr), 7) }}
  {%- else -%}
    {{ months_between_dates(start_expr, end_expr) }}
  {%- endif -%}
{%- endmacro %}

{#- DATE + n months -> DATE, and the month boundaries between two dates (integer): dbt's cross-database forms, except
    on Spark, where dbt-spark's go through unix timestamps that naive (TIMESTAMP_NTZ) sessions turn into NULL. -#}
{% macro add_months_date(date_expr, n) -%}
  {{ return(adapter.dispatch('add_months_date', 'ulm')(date_expr, n)) }}
{%- endmacro %}

{% macro default__add_months_date(date_expr, n) -%}
  cast({{ dbt.dateadd('month', n, date_expr) }} as date)
{%- endmacro %}

{% macro months_between_dates(start_expr, end_expr) -%}
  {{ return(adapter.dispatch('months_between_dates', 'ulm')(start_expr, end_expr)) }}
{%- endmacro %}

{% macro default__months_between_dates(start_expr, end_expr) -%}
  cast({{ dbt.datediff(start_expr, end_expr, 'month') }} as integer)
{%- endmacro %}

{#- A date spine [start, end] (one row per day, column `spine_date`). -#}
{% macro day_spine(start_expr, end_expr) -%}
  {{ return(adapter.dispatch('day_spine', 'ulm')(start_expr, end_expr)) }}
{%- endmacro %}

{% macro duckdb__day_spine(start_expr, end_expr) -%}
  select cast(generate_series as date) as spine_date
  from generate_series(cast({{ start_expr }} as date), cast({{ end_expr }} as date), interval 1 day)
{%- endmacro %}

{% macro postgres__day_spine(start_expr, end_expr) -%}
  select cast(d as date) as spine_date
  from generate_series(cast({{ start_expr }} as timestamp), cast({{ end_expr }} as timestamp), interval '1 day') as g(d)
{%- endmacro %}
