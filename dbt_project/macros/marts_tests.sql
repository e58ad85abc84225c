{#- Generic data test: the combination of `columns` is unique in the model (no dbt_utils dependency). -#}
{% test marts_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Generic data test: a numeric column lies in [min_value, max_value] (nulls pass). -#}
{% test marts_between(model, column_name, min_value, max_value) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}
