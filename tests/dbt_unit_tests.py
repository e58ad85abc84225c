"""The dbt unit tests the project must define, by model (shared by test_dbt_project.py and test_privacy.py).

dbt ignores a `unit_tests:` key nested under a model entry without a word, so the exact set is pinned here: a test
that stops being parsed (or one added without being listed) fails `tests/test_dbt_project.py`.
"""
from __future__ import annotations

UNIT_TESTS_BY_MODEL: dict[str, tuple[str, ...]] = {
    # staging
    "stg_events": ("business_day_is_shanghai_not_utc",),
    "stg_orders": ("purchase_rules_refunded_cancelled_zero_amount",),
    # intermediate
    "int_identity_keys": ("identity_keys_guards_blocked_pattern_fan_out_and_normal_link",),
    "int_identity_components": ("identity_chain_of_four_accounts_multi_hop", "identity_refused_keys_link_nothing"),
    "int_lifecycle_stage_points": ("stage_thresholds_29_30_89_90",),
    "int_community_members": ("community_member_stages_first_match_wins",),
    "int_person_rfm": (
        "rfm_scores_rank_worst_first_ties_share_a_score",
        "rfm_window_boundary_is_365_days_exclusive",
    ),
    "int_person_segments": ("value_tier_precedence_and_aov_exactly_800_is_not_diamond",),
    "int_person_ltv": ("ltv_tier_boundaries_2000_and_5000_inclusive_in_potential",),
    "int_person_social_tiers": ("social_tier_boundaries_and_three_day_share_streak_upgrade",),
    "int_person_spreaders": ("spreader_tiers_top_pct_with_ties_broken_by_person_id",),
    "int_person_koc": ("koc_needs_ugc_and_five_share_purchases_by_others_in_window",),
    # marts
    "mart_aarrr_funnel": ("activation_day_6_vs_7_and_retention_maturity",),
    "mart_aarrr_funnel_by_channel": ("funnel_by_channel_sums_platforms_and_nulls_immature_counts",),
    "mart_cohort_retention": ("cohort_retention_period_containing_as_of_is_null_until_it_ends",),
    "mart_scorecard": ("scorecard_levels_and_direction",),
    "mart_community_monthly": ("community_funnel_counts_days_0_to_29_after_join_and_waits_for_maturity",),
    "mart_channel_economics": ("channel_pause_strictly_below_threshold_and_payback",),
    "mart_channel_monthly": ("channel_monthly_sums_platforms_before_dividing_and_waits_for_maturity",),
    "mart_channel_summary": ("channel_summary_pools_matured_months_and_reads_payback_from_the_observed_curve",),
    "fct_clv_snapshots": ("clv_summary_excludes_first_purchase_day_from_monetary_value",),
    "mart_referral": ("referral_k_factor_is_accepted_invites_per_active_person",),
    "mart_kocs": ("kocs_lists_only_flagged_persons_with_their_measures",),
    "mart_interventions": ("interventions_marketing_consent_gating_rules_and_deterministic_holdout",),
    "mart_intervention_outcomes": ("intervention_outcomes_compare_treated_and_holdout_after_the_window",),
    "mart_alerts": (
        "d7_retention_alert_strictly_below_threshold",
        "d7_retention_alert_fires_below_threshold",
        "giant_identity_component_alert_strictly_above_threshold",
    ),
}

UNIT_TESTS: frozenset[str] = frozenset(name for names in UNIT_TESTS_BY_MODEL.values() for name in names)
