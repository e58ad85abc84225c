{#-
  Identity guards (docs/METRICS.md#identity): why an identifier value may not link accounts, evaluated on the raw
  value in staging (the only layer that sees it). NULL = the value may link. Reasons:
    blocked_value   - in the block list p('identity_blocked_values')
    blocked_pattern - matches one of p('identity_blocked_patterns') (RE2 full match)
  The fan-out limit (one identifier shared by more than p('max_accounts_per_identifier') accounts) is applied in
  int_identity_keys, where all accounts are seen together (reason 'fan_out').
-#}
{% macro identifier_block_reason(col, kind) -%}
  {%- set values = p('identity_blocked_values') or [] -%}
  {%- set patterns = p('identity_blocked_patterns') or [] -%}
  case
    when nullif(trim({{ col }}), '') is null then null
    {%- if values %}
    when trim({{ col }}) in ({% for v in values %}'{{ v | string | replace("'", "''") }}'{% if not loop.last %}, {% endif %}{% endfor %}) then 'blocked_value'
    {%- endif %}
    {%- for pat in patterns %}
    when {{ identity_regex_full_match('trim(' ~ col ~ ')', pat) }} then 'blocked_pattern'
    {%- endfor %}
  end
{%- endmacro %}

{#- `expr` matches the regular expression `pattern` as a whole (RE2 on DuckDB, POSIX ERE on PostgreSQL). -#}
{% macro identity_regex_full_match(expr, pattern) -%}
  {{ return(adapter.dispatch('identity_regex_full_match', 'ulm')(expr, pattern)) }}
{%- endmacro %}

{% macro default__identity_regex_full_match(expr, pattern) -%}
  {{ exceptions.raise_compiler_error("identity_regex_full_match: no implementation for adapter " ~ adapter.type()) }}
{%- endmacro %}

{% macro duckdb__identity_regex_full_match(expr, pattern) -%}
  regexp_full_match({{ expr }}, '{{ pattern | replace("'", "''") }}')
{%- endmacro %}

{% macro postgres__identity_regex_full_match(expr, pattern) -%}
  ({{ expr }} ~ '^(?:{{ pattern | replace("'", "''") }})$')
{%- endmacro %}

{#- The refusal reasons of int_identity_keys, in order of precedence (NULL = the key links). -#}
{% macro identity_refusal_reasons() -%}
  {{ return(['blocked_value', 'blocked_pattern', 'fan_out']) }}
{%- endmacro %}

{#-
  Generic data test on an account -> person model (int_identity_components): every key that links
  (refusal_reason IS NULL in `keys`) is held by at most p('max_accounts_per_identifier') accounts, and all the
  accounts holding it are one person. Returns the offending keys.
-#}
{% test identity_links_respect_guards(model, keys) %}
select
    k.key_type,
    k.key_hash,
    count(distinct k.user_id) as accounts,
    count(distinct m.person_id) as persons
from {{ keys }} as k
left join {{ model }} as m on m.user_id = k.user_id
where k.refusal_reason is null
group by k.key_type, k.key_hash
having count(distinct k.user_id) > {{ p('max_accounts_per_identifier') }}
    or count(distinct m.person_id) <> 1
    or count(m.user_id) <> count(*)
{% endtest %}

{#-
  Generic data test on int_identity_keys: refusal_reason follows from the block reason and accounts_sharing
  (fan_out exactly when an unblocked key is held by more than p('max_accounts_per_identifier') accounts).
-#}
{% test identity_fan_out_matches_sharing(model) %}
select key_type, key_hash, refusal_reason, accounts_sharing
from {{ model }}
where (refusal_reason = 'fan_out' and accounts_sharing <= {{ p('max_accounts_per_identifier') }})
   or (refusal_reason is null and accounts_sharing > {{ p('max_accounts_per_identifier') }})
{% endtest %}

{#- The CTE `reachable (user_id, label)` of int_identity_components: (account, label) for every label reachable
    from the account over `edges`, a label travelling only to accounts with a larger user_id. A recursive UNION
    (distinct) stops at the fixed point on DuckDB and PostgreSQL. -#}
{% macro identity_reachable_cte(users, edges) -%}
  {{ return(adapter.dispatch('identity_reachable_cte', 'ulm')(users, edges)) }}
{%- endmacro %}

{% macro default__identity_reachable_cte(users, edges) -%}
reachable (user_id, label) as (
    select user_id, user_id from {{ users }}
    union
    select e.to_user_id, r.label
    from reachable as r
    inner join {{ edges }} as e on r.user_id = e.from_user_id
    where r.label < e.to_user_id
),
{%- endmacro %}

{#- Spark's recursive CTEs allow UNION ALL only, which would walk a cycle forever: each row carries the path it
    took and never revisits an account (simple paths; their number grows with a component's density, bounded by
    the fan-out guard max_accounts_per_identifier), then (account, label) pairs are deduplicated. -#}
{% macro spark__identity_reachable_cte(users, edges) -%}
reachable_paths (user_id, label, path) as (
    select user_id, user_id, array(user_id) from {{ users }}
    union all
    select e.to_user_id, r.label, concat(r.path, array(e.to_user_id))
    from reachable_paths as r
    inner join {{ edges }} as e on r.user_id = e.from_user_id
    where r.label < e.to_user_id and not array_contains(r.path, e.to_user_id)
),

reachable as (
    select distinct user_id, label from reachable_paths
),
{%- endmacro %}
