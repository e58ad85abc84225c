{#-
  PII hashing (docs/METRICS.md#privacy): HMAC-SHA256 keyed by the secret in env DBT_ENV_SECRET_ULM_PII_KEY.
  DuckDB has no built-in HMAC, so the dbt-duckdb plugin `ulm.privacy` registers a vectorized UDF
  `ulm_hmac_sha256(varchar) -> varchar`; the key never appears in compiled SQL or logs.
-#}
{% macro hash_pii(col) -%}
  {{ return(adapter.dispatch('hash_pii', 'ulm')(col)) }}
{%- endmacro %}

{% macro default__hash_pii(col) -%}
  {{ exceptions.raise_compiler_error("hash_pii: no implementation for adapter " ~ adapter.type()) }}
{%- endmacro %}

{% macro duckdb__hash_pii(col) -%}
  ulm_hmac_sha256(nullif(trim({{ col }}), ''))
{%- endmacro %}

{#- PostgreSQL: pgcrypto's hmac() with the key of the session setting ulm.pii_key (set through PGOPTIONS by
    ulm.transform.dbt, never in SQL), hex as Python's hexdigest(); the value stripped of exactly the characters
    Python's str.strip() strips (the DuckDB UDF strips them, ulm/privacy/hashing.py), blank -> NULL. -#}
{% macro postgres__hash_pii(col) -%}
  encode(hmac(convert_to(nullif(btrim({{ col }}, {{ pii_strip_chars() }}), ''), 'UTF8'),
              convert_to(current_setting('ulm.pii_key'), 'UTF8'), 'sha256'), 'hex')
{%- endmacro %}

{#- The whitespace of Python's str.isspace() as a PostgreSQL string literal (U&'' escapes). -#}
{% macro pii_strip_chars() -%}
  U&'\0009\000A\000B\000C\000D\001C\001D\001E\001F\0020\0085\00A0\1680\2000\2001\2002\2003\2004\2005\2006\2007\2008\2009\200A\2028\2029\202F\205F\3000'
{%- endmacro %}

{#- Deterministic person key: a stable hash of the smallest member user_id (docs/METRICS.md#identity). -#}
{% macro person_key(min_user_id_col) -%}
  {{ dbt.hash(min_user_id_col) }}
{%- endmacro %}
