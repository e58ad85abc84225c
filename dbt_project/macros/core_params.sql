{#-
  The run context and the parameters, each read one way (docs/ARCHITECTURE.md, "one run").

  ulm_context(name) -> a field of the run context, from env ULM_<NAME> (ulm.core.context.RunContext.dbt_env
                       is the only writer): as_of, schema_prefix, run_id, target, warehouse
  as_of_date()      -> the as-of business date as a DATE literal. Read at execution time only, so a new day does
                       not invalidate dbt's partial parse; unit tests set it with `overrides: env_vars: {ULM_AS_OF}`.
  p(name)           -> a parameter: vars.ulm of dbt_project.yml with the JSON overrides of env ULM_PARAMS applied
                       (Python's ulm.core.settings.params() applies the same overrides)
-#}

{% macro ulm_context(name, default='') -%}
  {{ return(env_var('ULM_' ~ name | upper, default)) }}
{%- endmacro %}

{% macro p(name) -%}
  {%- set params = var('ulm') -%}
  {%- set overrides = fromjson(env_var('ULM_PARAMS', '{}') or '{}') -%}
  {%- if name in overrides -%}
    {{ return(overrides[name]) }}
  {%- endif -%}
  {%- if name not in params -%}
    {{ exceptions.raise_compiler_error("unknown parameter '" ~ name ~ "': add it to vars.ulm in dbt_project.yml") }}
  {%- endif -%}
  {{ return(params[name]) }}
{%- endmacro %}

{% macro as_of_date() -%}
  {%- set raw = ulm_context('as_of') if execute else '1970-01-01' -%}
  {%- if raw == '' -%}
    {{ exceptions.raise_compiler_error("as-of date missing: run through `ulm build --as-of YYYY-MM-DD` (or set env ULM_AS_OF)") }}
  {%- endif -%}
  {%- if not modules.re.match('^\\d{4}-\\d{2}-\\d{2}$', raw) -%}
    {{ exceptions.raise_compiler_error("as-of date must be 'YYYY-MM-DD', got '" ~ raw ~ "'") }}
  {%- endif -%}
  cast('{{ raw }}' as date)
{%- endmacro %}

{#- generate_schema_name: published schemas are exactly staging / intermediate / marts, optionally prefixed
    with the context's schema_prefix (e.g. 'audit_') so an orchestrator can build and audit before swapping. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- if custom_schema_name is none -%}
    {{ target.schema }}
  {%- else -%}
    {{ ulm_context('schema_prefix') ~ custom_schema_name | trim }}
  {%- endif -%}
{%- endmacro %}
