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

{#- Deterministic person key: a stable hash of the smallest member user_id (docs/METRICS.md#identity). -#}
{% macro person_key(min_user_id_col) -%}
  {{ dbt.hash(min_user_id_col) }}
{%- endmacro %}
