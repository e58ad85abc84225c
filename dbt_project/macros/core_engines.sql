{#-
  Engine-specific SQL behind adapter.dispatch (issue #15): every model runs unchanged on DuckDB (the default
  target) and on PostgreSQL. The duckdb__ implementations are exactly the SQL the models used before, so DuckDB
  results do not change; the postgres__ ones give the same values.

  type_double()                 DOUBLE (DuckDB) / double precision (PostgreSQL): 8-byte float
  first_row_select(keys)        goes right after SELECT; with first_row_per(keys, order_cols) at the end of the
  first_row_per(keys, order)    same query keeps the first row per `keys` in `order` (QUALIFY row_number() = 1 on
                                DuckDB, DISTINCT ON (keys) ... ORDER BY keys, order on PostgreSQL)
  arg_min(value, order_expr)    `value` of the row with the smallest `order_expr`, rows where either is NULL ignored
  median(expr)                  the interpolated median (percentile_cont(0.5) on PostgreSQL)
  int_series(start, stop[, type]) a set-returning select-list expression: one row per integer start..stop (cast to
                                `type`: Spark allows no generator inside an expression)
  int_div(a, b)                 integer division of integers (DuckDB //, PostgreSQL /)
-#}

{% macro type_double() -%}
  {{ return(adapter.dispatch('type_double', 'ulm')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
  {{ dbt.type_float() }}
{%- endmacro %}

{% macro duckdb__type_double() -%}
  double
{%- endmacro %}

{% macro postgres__type_double() -%}
  double precision
{%- endmacro %}

{% macro first_row_select(keys) -%}
  {{ return(adapter.dispatch('first_row_select', 'ulm')(keys)) }}
{%- endmacro %}

{% macro default__first_row_select(keys) -%}
{%- endmacro %}

{% macro postgres__first_row_select(keys) -%}
  distinct on ({{ keys }})
{%- endmacro %}

{% macro first_row_per(keys, order_cols) -%}
  {{ return(adapter.dispatch('first_row_per', 'ulm')(keys, order_cols)) }}
{%- endmacro %}

{% macro default__first_row_per(keys, order_cols) -%}
  qualify row_number() over (partition by {{ keys }} order by {{ order_cols }}) = 1
{%- endmacro %}

{% macro postgres__first_row_per(keys, order_cols) -%}
  order by {{ keys }}, {{ order_cols }}
{%- endmacro %}

{% macro arg_min(value, order_expr) -%}
  {{ return(adapter.dispatch('arg_min', 'ulm')(value, order_expr)) }}
{%- endmacro %}

{% macro default__arg_min(value, order_expr) -%}
  arg_min({{ value }}, {{ order_expr }})
{%- endmacro %}

{% macro postgres__arg_min(value, order_expr) -%}
  (array_agg({{ value }} order by {{ order_expr }})
    filter (where {{ value }} is not null and {{ order_expr }} is not null))[1]
{%- endmacro %}

{% macro median(expr) -%}
  {{ return(adapter.dispatch('median', 'ulm')(expr)) }}
{%- endmacro %}

{% macro default__median(expr) -%}
  median({{ expr }})
{%- endmacro %}

{% macro postgres__median(expr) -%}
  percentile_cont(0.5) within group (order by {{ expr }})
{%- endmacro %}

{% macro int_series(start, stop, type=none) -%}
  {{ return(adapter.dispatch('int_series', 'ulm')(start, stop, type)) }}
{%- endmacro %}

{% macro default__int_series(start, stop, type=none) -%}
  {%- if type is none -%}
  unnest(generate_series({{ start }}, {{ stop }}))
  {%- else -%}
  cast(unnest(generate_series({{ start }}, {{ stop }})) as {{ type }})
  {%- endif -%}
{%- endmacro %}

{% macro postgres__int_series(start, stop, type=none) -%}
  {%- if type is none -%}
  generate_series({{ start }}, {{ stop }})
  {%- else -%}
  cast(generate_series({{ start }}, {{ stop }}) as {{ type }})
  {%- endif -%}
{%- endmacro %}

{% macro int_div(a, b) -%}
  {{ return(adapter.dispatch('int_div', 'ulm')(a, b)) }}
{%- endmacro %}

{% macro default__int_div(a, b) -%}
  ({{ a }} // {{ b }})
{%- endmacro %}

{% macro postgres__int_div(a, b) -%}
  ({{ a }} / {{ b }})
{%- endmacro %}

{#- a / b as DuckDB computes it: a double quotient, also of integers and decimals (PostgreSQL would divide integers
    as integers and decimals exactly). -#}
{% macro div(a, b) -%}
  {{ return(adapter.dispatch('div', 'ulm')(a, b)) }}
{%- endmacro %}

{% macro default__div(a, b) -%}
  {{ a }} / {{ b }}
{%- endmacro %}

{% macro postgres__div(a, b) -%}
  cast({{ a }} as double precision) / {{ b }}
{%- endmacro %}

{#- A money amount divided by a count (a mean or per-person amount), rounded to cents as DuckDB rounds its double
    quotient (public.ulm_money on PostgreSQL, ulm/warehouse/postgres.py); wrap it in money_total(). -#}
{% macro money_ratio(a, b) -%}
  {{ return(adapter.dispatch('money_ratio', 'ulm')(a, b)) }}
{%- endmacro %}

{% macro default__money_ratio(a, b) -%}
  {{ a }} / {{ b }}
{%- endmacro %}

{% macro postgres__money_ratio(a, b) -%}
  ulm_money(cast({{ a }} as double precision) / {{ b }})
{%- endmacro %}

{#- A variable-length string type for casts in model SQL (Spark wants `string`: its varchar needs a length). -#}
{% macro type_varchar() -%}
  {{ return(adapter.dispatch('type_varchar', 'ulm')()) }}
{%- endmacro %}

{% macro default__type_varchar() -%}
  varchar
{%- endmacro %}
