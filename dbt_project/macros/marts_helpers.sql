{#-
  Helpers shared by the segmentation / channel / referral / community / intervention models (dbtmarts).
  Every number comes from vars.ulm through p(); the as-of date from as_of_date(); date arithmetic from
  core_dates.sql (add_days, days_between, period_start, add_periods).
-#}

{#- The date `n` business days before the as-of date (or before `date_expr`), as a DATE (core add_days). -#}
{% macro marts_days_before(n, date_expr=none) -%}
  {{ add_days(date_expr if date_expr is not none else as_of_date(), -1 * n) }}
{%- endmacro %}

{#- `date_col` lies in the window (d-n, d] (docs/METRICS.md#conventions notation), d = as-of date unless `end_expr` is given. -#}
{% macro marts_in_window(date_col, n, end_expr=none) -%}
  ({{ date_col }} > {{ marts_days_before(n, end_expr) }} and {{ date_col }} <= {{ end_expr if end_expr is not none else as_of_date() }})
{%- endmacro %}

{#- Last day of the month that starts on `month_start_expr` (a DATE). -#}
{% macro marts_month_end(month_start_expr) -%}
  {{ add_days(add_periods('month', month_start_expr, 1), -1) }}
{%- endmacro %}

{#- docs/METRICS.md#segmentation-and-tiers quintile score from rank() worst-first over n persons: ties share a score, 5 is best. -#}
{% macro marts_quintile_score(rank_expr, n_expr) -%}
  least(5, 1 + floor({{ div('5 * (' ~ rank_expr ~ ' - 1)', n_expr) }}))
{%- endmacro %}

{#- A param as an exact decimal so that fractions such as 0.1 * n compare without float error. -#}
{% macro marts_exact(name) -%}
  cast({{ p(name) }} as decimal(18, 6))
{%- endmacro %}

{#- Deterministic bucket 0..buckets-1 from a string key (stable across runs, versions and machines). -#}
{% macro marts_hash_bucket(key_expr, buckets) -%}
  {{ return(adapter.dispatch('marts_hash_bucket', 'ulm')(key_expr, buckets)) }}
{%- endmacro %}

{% macro default__marts_hash_bucket(key_expr, buckets) -%}
  {{ exceptions.raise_compiler_error("marts_hash_bucket: no implementation for adapter " ~ adapter.type()) }}
{%- endmacro %}

{% macro duckdb__marts_hash_bucket(key_expr, buckets) -%}
  (cast('0x' || left({{ dbt.hash(key_expr) }}, 8) as ubigint) % {{ buckets }})
{%- endmacro %}

{#- The same number on PostgreSQL: the first 8 hex digits of the md5 as an unsigned 32-bit integer. -#}
{% macro postgres__marts_hash_bucket(key_expr, buckets) -%}
  (cast(cast(('x' || left({{ dbt.hash(key_expr) }}, 8)) as bit(32)) as bigint) % {{ buckets }})
{%- endmacro %}

{#- docs/METRICS.md#interventions holdout flag: hash of person_id and rule_id, holdout_pct percent of persons per rule. -#}
{% macro marts_is_holdout(person_col, rule_col) -%}
  ({{ marts_hash_bucket(person_col ~ " || '|' || " ~ rule_col, 100) }} < {{ p('holdout_pct') }})
{%- endmacro %}

{#- docs/METRICS.md#conventions money: one order / spend row is DECIMAL(18,2); a money TOTAL (any sum over orders,
    persons, days, channels, months or cohorts, running sums, LTV, GMV, revenue, spend, CAC numerators, and a mean
    of such totals) is DECIMAL(38,2), DuckDB's widest decimal, so no realistic total overflows. -#}
{% macro money_total(expr) -%}
  cast({{ expr }} as decimal(38, 2))
{%- endmacro %}
