{#-
  The spark__ forms of the engine dispatch macros (issue #15; core_engines.sql, core_dates.sql, core_identity.sql,
  core_privacy.sql, marts_helpers.sql hold the DuckDB and PostgreSQL ones). Spark SQL 4.3 with the session settings
  of ulm/warehouse/spark.py: naive timestamps (TIMESTAMP_NTZ, session time zone UTC), ANSI mode off.
-#}

{#- Contract and cast type names: the project's portable names (varchar, double precision) in Spark's words. -#}
{% macro spark_type(type) -%}
  {%- set t = type | string | trim | lower -%}
  {%- if t in ('varchar', 'text') -%} string
  {%- elif t == 'double precision' -%} double
  {%- else -%} {{ type }}
  {%- endif -%}
{%- endmacro %}

{% macro spark__cast(field, type) -%}
  cast({{ field }} as {{ spark_type(type) }})
{%- endmacro %}

{% macro spark__type_double() -%}
  double
{%- endmacro %}

{% macro spark__type_varchar() -%}
  string
{%- endmacro %}

{#- Spark 4 has QUALIFY: the default (DuckDB) form. -#}
{% macro spark__first_row_select(keys) -%}
{%- endmacro %}

{% macro spark__first_row_per(keys, order_cols) -%}
  qualify row_number() over (partition by {{ keys }} order by {{ order_cols }}) = 1
{%- endmacro %}

{#- min_by skips rows whose ordering is NULL; a NULL value must be skipped too (as DuckDB's arg_min). -#}
{% macro spark__arg_min(value, order_expr) -%}
  min_by({{ value }}, case when {{ value }} is not null then {{ order_expr }} end)
{%- endmacro %}

{% macro spark__median(expr) -%}
  percentile({{ expr }}, 0.5)
{%- endmacro %}

{% macro spark__int_series(start, stop, type=none) -%}
  {%- if type is none -%}
  explode(sequence({{ start }}, {{ stop }}))
  {%- else -%}
  explode(transform(sequence({{ start }}, {{ stop }}), x -> cast(x as {{ spark_type(type) }})))
  {%- endif -%}
{%- endmacro %}

{% macro spark__int_div(a, b) -%}
  ({{ a }} div {{ b }})
{%- endmacro %}

{#- Spark divides a decimal by an integer as a decimal; DuckDB's quotient is a double. -#}
{% macro spark__div(a, b) -%}
  cast({{ a }} as double) / {{ b }}
{%- endmacro %}

{#- A money mean rounded to cents as DuckDB rounds its double quotient (x = 100 * quotient in double, then half away
    from zero; the steps of public.ulm_money on PostgreSQL): Spark's own double -> decimal cast rounds the shortest
    decimal form instead (2254.845 -> 2254.85, DuckDB 2254.84). -#}
{% macro spark__money_ratio(a, b) -%}
  {%- set x = "((cast(" ~ a ~ " as double) / (" ~ b ~ ")) * 100)" -%}
  (cast(cast({{ x }} as bigint) + case when abs({{ x }} - cast({{ x }} as bigint)) >= 0.5
        then cast(sign({{ x }}) as bigint) else 0 end as decimal(38, 0)) / 100)
{%- endmacro %}

{% macro spark__day_spine(start_expr, end_expr) -%}
  select explode(sequence(cast({{ start_expr }} as date), cast({{ end_expr }} as date), interval 1 day)) as spine_date
{%- endmacro %}

{#- The first 8 hex digits of the md5 as an unsigned 32-bit integer, as on DuckDB. -#}
{% macro spark__marts_hash_bucket(key_expr, buckets) -%}
  (cast(conv(left({{ dbt.hash(key_expr) }}, 8), 16, 10) as bigint) % {{ buckets }})
{%- endmacro %}

{#- naive UTC -> wall clock of the business time zone -> its date -#}
{% macro spark__business_date(ts_col) -%}
  cast(convert_timezone('UTC', '{{ p("business_timezone") }}', cast({{ ts_col }} as timestamp_ntz)) as date)
{%- endmacro %}

{% macro spark__business_day_start_utc(date_expr) -%}
  convert_timezone('{{ p("business_timezone") }}', 'UTC', cast(cast({{ date_expr }} as date) as timestamp_ntz))
{%- endmacro %}

{% macro spark__add_days(date_expr, n) -%}
  date_add(cast({{ date_expr }} as date), cast({{ n }} as integer))
{%- endmacro %}

{#- date - date is an interval on Spark; datediff is the whole days -#}
{% macro spark__days_between(start_expr, end_expr) -%}
  datediff(cast({{ end_expr }} as date), cast({{ start_expr }} as date))
{%- endmacro %}

{#- Java regular expressions (RE2's syntax for the project's patterns); a Spark literal unescapes backslashes. -#}
{% macro spark__identity_regex_full_match(expr, pattern) -%}
  ({{ expr }} rlike '^(?:{{ pattern | replace("\\", "\\\\") | replace("'", "\\'") }})$')
{%- endmacro %}

{#- HMAC-SHA256 by commons-codec (a Spark jar) through the built-in java_method; the key read by the JVM from its
    environment (ulm/warehouse/spark.py starts the JVM with it), never in SQL. The value stripped of exactly the
    characters Python's str.strip() strips (as the DuckDB UDF), blank -> NULL; NULL stays NULL. -#}
{% macro spark__hash_pii(col) -%}
  {%- set v = "nullif(trim(BOTH " ~ spark_pii_strip_chars() ~ " FROM " ~ col ~ "), '')" -%}
  case when {{ v }} is not null then
    java_method('org.apache.commons.codec.digest.HmacUtils', 'hmacSha256Hex',
      coalesce(nullif(java_method('java.lang.System', 'getenv', 'DBT_ENV_SECRET_ULM_PII_KEY'), 'null'),
               raise_error('PII key missing in the Spark JVM: set ULM_PII_KEY')),
      {{ v }})
  end
{%- endmacro %}

{% macro spark_pii_strip_chars() -%}
  '\u0009\u000A\u000B\u000C\u000D\u001C\u001D\u001E\u001F\u0020\u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000'
{%- endmacro %}

{#- The contract on Spark checks the column names, not their types: Spark names the project's types otherwise
    (string, int, timestamp_ntz) and derives other decimal precisions; the types of the published marts are those of
    DuckDB, and tests/test_spark.py compares Spark's values with DuckDB's (docs/DECISIONS.md#d69). -#}
{% macro spark__get_assert_columns_equivalent(sql) -%}
  {%- set sql_names = get_column_schema_from_query(sql) | map(attribute='name') | map('lower') | list -%}
  {%- set yml_names = model['columns'].values() | map(attribute='name') | map('lower') | list -%}
  {%- if sql_names | sort != yml_names | sort -%}
    {{ exceptions.raise_compiler_error("contract of " ~ model.name ~ ": the SQL has columns " ~ (sql_names | sort)
       ~ ", the yml " ~ (yml_names | sort)) }}
  {%- endif -%}
{%- endmacro %}

{#- dbt-spark adds the contract's NOT NULL / check constraints when file_format is unset (it assumes Delta); the
    models are Parquet tables, which hold no constraints: only an explicit Delta table gets them. -#}
{% macro spark__persist_constraints(relation, model) -%}
  {%- if config.get('contract').enforced and config.get('file_format') == 'delta' -%}
    {% do alter_table_add_constraints(relation, model.constraints) %}
    {% do alter_column_set_constraints(relation, model.columns) %}
  {%- endif -%}
{%- endmacro %}

{% macro spark__add_months_date(date_expr, n) -%}
  add_months(cast({{ date_expr }} as date), cast({{ n }} as integer))
{%- endmacro %}

{#- DuckDB's date_diff('month'): month boundaries crossed, whatever the days -#}
{% macro spark__months_between_dates(start_expr, end_expr) -%}
  cast((year(cast({{ end_expr }} as date)) * 12 + month(cast({{ end_expr }} as date)))
       - (year(cast({{ start_expr }} as date)) * 12 + month(cast({{ start_expr }} as date))) as integer)
{%- endmacro %}

