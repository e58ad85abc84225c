{#-
  Single-source parameters and the as-of date (SPEC §0).
  p(name)      -> var('ulm')[name]  (dbt_project.yml vars.ulm is the only place numbers live)
  as_of_date() -> the as-of business date as a DATE literal (var `as_of` or env ULM_AS_OF, 'YYYY-MM-DD')
-#}

{% macro p(name) -%}
  {%- set params = var('ulm') -%}
  {%- if name not in params -%}
    {{ exceptions.raise_compiler_error("unknown parameter '" ~ name ~ "': add it to vars.ulm in dbt_project.yml") }}
  {%- endif -%}
  {{ return(params[name]) }}
{%- endmacro %}

{% macro as_of_date() -%}
  {#- An explicit var (`--vars`, a unit test's overrides) wins; `ulm build` passes env ULM_AS_OF instead, read only at
      execution time, so changing the day does not invalidate dbt's partial parse (a var change forces a full re-parse). -#}
  {%- set raw = var('as_of', none) -%}
  {%- if raw is none -%}
    {%- set raw = env_var('ULM_AS_OF', '') if execute else '1970-01-01' -%}
    {%- if raw == '' -%}
      {{ exceptions.raise_compiler_error("as-of date missing: pass --vars '{as_of: YYYY-MM-DD}' or set env ULM_AS_OF") }}
    {%- endif -%}
  {%- endif -%}
  {%- set raw = raw | string -%}
  {%- if not modules.re.match('^\\d{4}-\\d{2}-\\d{2}$', raw) -%}
    {{ exceptions.raise_compiler_error("var as_of must be 'YYYY-MM-DD', got '" ~ raw ~ "'") }}
  {%- endif -%}
  cast('{{ raw }}' as date)
{%- endmacro %}

{#- generate_schema_name: published schemas are exactly staging / intermediate / marts, optionally prefixed
    with var `schema_prefix` (e.g. 'audit_') so an orchestrator can build and audit before swapping. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- if custom_schema_name is none -%}
    {{ target.schema }}
  {%- else -%}
    {{ var('schema_prefix', '') ~ custom_schema_name | trim }}
  {%- endif -%}
{%- endmacro %}
