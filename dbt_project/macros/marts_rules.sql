{#-
  docs/METRICS.md#interventions intervention rules as data: rule_id -> action, and which level it works on.
  Person-level rules feed mart_interventions; channel/KPI-level rules feed mart_alerts.
-#}
{% macro marts_intervention_rules() -%}
  {{ return([
    {'rule_id': 'new_user_silent_3d',  'level': 'person',  'action': 'new_user_gift_pack'},
    {'rule_id': 'live_lapsed_7d',      'level': 'person',  'action': 'live_preview_push'},
    {'rule_id': 'community_silent_7d', 'level': 'person',  'action': 'wake_up_message_and_offer'},
    {'rule_id': 'churn_risk_high',     'level': 'person',  'action': 'exclusive_coupon_and_care'},
    {'rule_id': 'ltv_drop_20pct_30d',  'level': 'person',  'action': 'churn_alert'},
    {'rule_id': 'social_upgrade',      'level': 'person',  'action': 'upgrade_perks'},
    {'rule_id': 'channel_pause',       'level': 'channel', 'action': 'pause_spend'},
    {'rule_id': 'd7_retention_low',    'level': 'kpi',     'action': 'retention_alert'},
  ]) }}
{%- endmacro %}

{#- `select rule_id, action` rows for the rules of one level (a VALUES relation). -#}
{% macro marts_rule_actions(level) -%}
  {%- set rows = [] -%}
  {%- for r in marts_intervention_rules() if r['level'] == level -%}
    {%- do rows.append("select '" ~ r['rule_id'] ~ "' as rule_id, '" ~ r['action'] ~ "' as action") -%}
  {%- endfor -%}
  {{ rows | join('\n  union all\n  ') }}
{%- endmacro %}
