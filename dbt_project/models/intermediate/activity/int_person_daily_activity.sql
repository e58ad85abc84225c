{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='delete+insert',
    unique_key=['person_id', 'activity_date'],
    on_schema_change='fail',
    pre_hook=[
        "{{ incremental_cleanup('activity_date') }}",
        "{% if is_incremental() %}delete from {{ this }} where person_id in (select person_id from {{ ref('int_identity_changes') }}){% else %}select 1{% endif %}",
    ]
) }}
-- depends_on: {{ ref('int_identity_changes') }}
-- depends_on: {{ ref('int_identity') }}
-- depends_on: {{ ref('stg_events') }}
-- Sparse person x business-day activity (docs/METRICS.md#activity-primitives): one row per day with >= 1 event
-- or >= 1 order. is_active_day = >= 1 event or >= 1 purchase (a day with only a cancelled/fully refunded order is
-- not active). Incremental: the day window, days touched by rows loaded since the previous build, and every day of
-- persons whose membership changed (their old rows were deleted by the pre-hook).
-- The late and identity branches are left out on days nothing of that kind arrived (incremental_any: one cheap probe
-- each), so a quiet day reads only the day window of int_events: late = rows loaded since the previous build dated
-- before the window; identity = a current person named by int_identity_changes (either side: the pre-hook deleted
-- its rows) holding an account that existed before (a person made only of new accounts has no older rows: all its
-- rows are in the window or among the late rows).
{%- set event_types = ['app_open', 'product_view', 'content_view', 'like', 'comment', 'favorite', 'share',
                       'live_enter', 'community_join', 'community_open', 'check_in', 'ugc_post',
                       'invite_sent', 'assist'] %}
{#- int_events (a view) and int_orders are named in each branch, not through a CTE: a CTE named more than once is
    materialized whole by DuckDB (and by Postgres), which on an incremental day copied all 100M events at 100M-event
    scale before any branch's filter applied -#}
{%- set events = ref('int_events') %}
{%- set orders = ref('int_orders') %}
with

{% if is_incremental() %}
{%- set watermark = "(select coalesce(max(_max_loaded_at), cast('1900-01-01' as timestamp)) from " ~ this ~ ")" %}
{%- set window_start = incremental_start('activity_date') %}
{%- set has_late = incremental_any(
    "select event_id from " ~ ref('stg_events') ~ " where _loaded_at > " ~ watermark
    ~ " and event_date < " ~ window_start
    ~ " union all select order_id from " ~ ref('int_orders') ~ " where _loaded_at > " ~ watermark
    ~ " and order_date < " ~ window_start) %}
{%- set changed_sql -%}
    select distinct i.person_id, i.user_id
    from {{ ref('int_identity') }} as i
    where i.person_id in (select person_id from {{ ref('int_identity_changes') }})
{%- endset %}
{%- set new_accounts_sql -%}
    select user_id from {{ ref('int_identity_changes') }} where change_side = 'new'
    except
    select user_id from {{ ref('int_identity_changes') }} where change_side = 'old'
{%- endset %}
{%- set rebuilt_sql -%}
    select person_id from ({{ changed_sql }}) as c where user_id not in ({{ new_accounts_sql }})
{%- endset %}
{%- set has_changed = incremental_any(rebuilt_sql) %}
{%- if has_changed %}
changed_persons as (
    select distinct person_id from ({{ rebuilt_sql }}) as r
),

changed_accounts as (
    select user_id from {{ ref('int_identity') }} where person_id in (select person_id from changed_persons)
),
{%- endif %}
{%- if has_late %}

late_days as (
    select distinct person_id, event_date as activity_date from {{ events }}
    where _loaded_at > {{ watermark }} and event_date < {{ window_start }}
    union
    select distinct person_id, order_date from {{ orders }}
    where _loaded_at > {{ watermark }} and order_date < {{ window_start }}
),
{%- endif %}
{% endif %}

{#- int_events is a view: each branch below is a filter DuckDB can push into the stg_events scan or the identity
    side of its join (an OR across them would force joining every event first). -#}
selected_events as (
    select * from {{ events }}
    where {{ incremental_window('event_date', this_date_col='activity_date') }}
    {%- if is_incremental() and has_changed %}
    union
    select * from {{ events }} where user_id in (select user_id from changed_accounts)
    {%- endif %}
    {%- if is_incremental() and has_late %}
    union
    select e.* from {{ events }} as e
    where exists (select 1 from late_days as l where e.person_id = l.person_id and e.event_date = l.activity_date)
    {%- endif %}
),

selected_orders as (
    select * from {{ orders }}
    where {{ incremental_window('order_date', this_date_col='activity_date') }}
    {%- if is_incremental() and has_changed %}
       or person_id in (select person_id from changed_persons)
    {%- endif %}
    {%- if is_incremental() and has_late %}
       or (person_id, order_date) in (select person_id, activity_date from late_days)
    {%- endif %}
),

event_days as (
    select
        person_id,
        event_date as activity_date,
        count(*) as n_events,
        {%- for t in event_types %}
        count(*) filter (where event_type = '{{ t }}') as n_{{ t }},
        {%- endfor %}
        max(_loaded_at) as _max_loaded_at
    from selected_events
    group by person_id, event_date
),

order_days as (
    select
        person_id,
        order_date as activity_date,
        count(*) as n_orders,
        count(*) filter (where is_purchase) as n_purchases,
        {{ money_total('sum(net_amount)') }} as net_revenue,
        {{ money_total('sum(gmv_amount)') }} as gmv,
        max(_loaded_at) as _max_loaded_at
    from selected_orders
    group by person_id, order_date
),

final as (
    select
        coalesce(e.person_id, o.person_id) as person_id,
        coalesce(e.activity_date, o.activity_date) as activity_date,
        cast(coalesce(e.n_events, 0) as integer) as n_events,
        {%- for t in event_types %}
        cast(coalesce(e.n_{{ t }}, 0) as integer) as n_{{ t }},
        {%- endfor %}
        cast(coalesce(o.n_orders, 0) as integer) as n_orders,
        cast(coalesce(o.n_purchases, 0) as integer) as n_purchases,
        coalesce(o.n_purchases, 0) > 0 as is_purchase_day,
        (coalesce(e.n_events, 0) > 0 or coalesce(o.n_purchases, 0) > 0) as is_active_day,
        {{ money_total('coalesce(o.net_revenue, 0)') }} as net_revenue,
        {{ money_total('coalesce(o.gmv, 0)') }} as gmv,
        greatest(e._max_loaded_at, o._max_loaded_at) as _max_loaded_at
    from event_days as e
    full outer join order_days as o
        on e.person_id = o.person_id and e.activity_date = o.activity_date
)

select * from final
