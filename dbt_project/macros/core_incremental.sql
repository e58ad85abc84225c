{#-
  Incremental event models: reprocess by business day with a lookback of p('incremental_lookback_days') days
  for late events, plus rows loaded after the previous build (released quarantine rows, late files).
  A full refresh and a sequence of daily incremental runs give identical tables.

  incremental_start(date_col): first business day to reprocess (a scalar subquery on {{ this }}).
  incremental_window(date_col, loaded_col, this_date_col): predicate selecting the rows to (re)process; `true` on
    full builds. this_date_col names the day column of {{ this }} when it differs from date_col.
  incremental_raw_prefilter(ts_col, date_col, loaded_col): the same window on a raw UTC timestamp (before the
    business-day conversion), so an incremental run converts and deduplicates only the recent rows.
  incremental_cleanup(date_col, user_col): pre-hook deleting rows after as_of (a backfill moved as_of back)
    and rows of erased accounts (docs/METRICS.md#privacy), so they never survive in an incremental table.
-#}

{% macro incremental_start(date_col) -%}
  (select {{ add_days('least(coalesce(max(' ~ date_col ~ '), ' ~ as_of_date() ~ '), ' ~ as_of_date() ~ ')',
                      -1 * p('incremental_lookback_days')) }} from {{ this }})
{%- endmacro %}

{% macro incremental_window(date_col, loaded_col=none, this_date_col=none) -%}
  {%- if is_incremental() -%}
    ({{ date_col }} >= {{ incremental_start(this_date_col or date_col) }}
    {%- if loaded_col is not none %}
      or {{ loaded_col }} > (select coalesce(max({{ loaded_col }}), cast('1900-01-01' as timestamp)) from {{ this }})
    {%- endif -%})
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}

{% macro incremental_raw_prefilter(ts_col, date_col, loaded_col) -%}
  {%- if is_incremental() -%}
    ({{ ts_col }} >= {{ business_day_start_utc(incremental_start(date_col)) }}
      or {{ loaded_col }} > (select coalesce(max({{ loaded_col }}), cast('1900-01-01' as timestamp)) from {{ this }}))
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}

{% macro incremental_cleanup(date_col, user_col=none) -%}
  {%- if is_incremental() -%}
    delete from {{ this }} where {{ date_col }} > {{ as_of_date() }}
    {%- if user_col is not none %}
      or {{ user_col }} in (select user_id from {{ source('raw', 'erasure_requests') }})
    {%- endif -%}
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}

{#-
  incremental_any(sql): on an incremental run, whether the query `sql` returns a row (run once when the model is
  compiled, after its parents were built); true on full builds and at parse time. Lets an incremental model leave out
  a branch (late rows, identity changes) on the days nothing of that kind arrived, instead of filtering every row.
  Portable: a plain `select 1 ... limit 1`.
-#}
{% macro incremental_any(sql) -%}
  {%- if not execute or not is_incremental() -%}
    {{ return(true) }}
  {%- endif -%}
  {{ return(query_any(sql)) }}
{%- endmacro %}

{#-
  query_any(sql): whether the query `sql` returns a row, on every run (full builds too); true at parse time. For
  branches that are exact but costly and almost always empty (stg_events' dedup of keys on more than one raw row).
  A dbt unit test's inputs are CTEs of the test's own query, not relations a probe could read: there it is true too,
  so unit tests run the full branch.
-#}
{% macro query_any(sql) -%}
  {%- if not execute or model.resource_type == 'unit_test' -%}
    {{ return(true) }}
  {%- endif -%}
  {%- set result = run_query('select 1 as found from (' ~ sql ~ ') as probe limit 1') -%}
  {{ return(result.rows | length > 0) }}
{%- endmacro %}
