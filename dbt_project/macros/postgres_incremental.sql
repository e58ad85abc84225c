{#-
  PostgreSQL only (issue #15): an incremental model's new rows are staged in a temporary table whose string
  columns are `text`, while the contract-enforced target declares `varchar` (`character varying` without a length,
  the same type to PostgreSQL). dbt-adapters' default diff calls that a type change, and `on_schema_change='fail'`
  then stops the second build. Here `text` and unbounded `character varying` are one type; every other difference
  is still reported exactly as the default does.
-#}
{% macro postgres__diff_column_data_types(source_columns, target_columns) %}
  {%- set unbounded = ['text', 'character varying'] -%}
  {%- set result = [] -%}
  {%- for sc in source_columns -%}
    {%- set tc = target_columns | selectattr('name', 'equalto', sc.name) | list | first -%}
    {%- if tc -%}
      {%- set same_string = sc.dtype | lower in unbounded and tc.dtype | lower in unbounded
            and sc.char_size is none and tc.char_size is none -%}
      {%- if sc.expanded_data_type != tc.expanded_data_type and not same_string
            and not sc.can_expand_to(other_column=tc) -%}
        {{ result.append({'column_name': tc.name, 'new_type': sc.expanded_data_type}) }}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {{ return(result) }}
{% endmacro %}
