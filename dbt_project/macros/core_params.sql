{#-
  Single-source parameters and the as-of date (SPEC §0).
  p(name)      -> var('ulm')[name]  (dbt_project.yml vars.ulm is the only place numbers live)
  as_of_date() -> the as-of business date as a DATE literal (var `as_of`, 'YYYY-MM-DD')
-#}

{% macro p(name) -%}
  {%- set params = var('ulm') -%}
  {%- if name not in params -%}
    {{ exceptions.raise_compiler_error("unknown parameter '" ~ name ~ "': add it to vars.ulm in dbt_project.yml") }}
  {%- endif -%}
  {{ return(params[name]) }}
{%- endmacro %}

{% macro as_of_date() -%}
  {%- set raw = var('as_of') | string -%}
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
