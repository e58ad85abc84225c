"""Calibration knobs of the synthetic generator (not the metric parameters of dbt_project.yml).

Parameter values (windows, thresholds) live in ``dbt_project.yml`` and are read through
``ulm.core.settings.param``; the numbers below only shape the simulated field (how people behave), and were
tuned so the default run lands in the ranges documented in ``docs/GENERATOR.md``.
Vectors indexed by channel / platform follow the order of ``ulm.core.contract.CHANNELS`` / ``PLATFORMS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

DEFAULT_END_DATE = date(2025, 12, 31)

# Browse-event mix per platform over BROWSE_TYPES (rows: content, live, private, group_buy).
BROWSE_TYPES = ("product_view", "content_view", "search", "like", "comment", "favorite", "follow",
                "live_enter", "coupon_claim")
BROWSE_MIX = (
    (0.20, 0.36, 0.10, 0.12, 0.03, 0.06, 0.03, 0.05, 0.05),
    (0.20, 0.15, 0.06, 0.10, 0.04, 0.03, 0.04, 0.33, 0.05),
    (0.38, 0.22, 0.10, 0.08, 0.03, 0.05, 0.02, 0.04, 0.08),
    (0.45, 0.12, 0.14, 0.05, 0.02, 0.06, 0.01, 0.03, 0.12),
)
# Order scenario mix per platform over contract.SCENARIOS (content, live, community, group_buy, search, other).
SCENARIO_MIX = (
    (0.72, 0.03, 0.00, 0.00, 0.15, 0.10),
    (0.05, 0.80, 0.00, 0.00, 0.07, 0.08),
    (0.05, 0.03, 0.75, 0.05, 0.04, 0.08),
    (0.03, 0.02, 0.12, 0.75, 0.04, 0.04),
)
CATEGORIES = ("beauty", "apparel", "food", "home", "digital", "mother_baby", "health", "sports", "pets", "books")
CATEGORY_WEIGHTS = (0.18, 0.17, 0.16, 0.11, 0.08, 0.08, 0.07, 0.06, 0.05, 0.04)
CATEGORY_PRICE = (1.0, 1.05, 0.55, 1.0, 2.2, 1.1, 0.9, 1.0, 0.8, 0.45)
COUPON_VALUES_CNY = (5, 10, 10, 20, 20, 30, 50, 100)
HOURLY_WEIGHTS = (0.6, 0.35, 0.2, 0.12, 0.1, 0.15, 0.35, 0.7, 1.0, 1.1, 1.15, 1.2,
                  1.35, 1.25, 1.05, 1.0, 1.0, 1.05, 1.15, 1.35, 1.6, 1.75, 1.55, 1.0)


@dataclass(frozen=True)
class GenSettings:
    # --- acquisition (per channel, contract.CHANNELS order) ---
    channel_mix: tuple[float, ...] = (0.28, 0.17, 0.14, 0.12, 0.10, 0.09, 0.10)
    # platform mix of the first account per channel (rows: channels; cols: platforms)
    channel_platform: tuple[tuple[float, ...], ...] = (
        (0.70, 0.15, 0.05, 0.10),
        (0.12, 0.78, 0.04, 0.06),
        (0.05, 0.05, 0.60, 0.30),
        (0.15, 0.15, 0.30, 0.40),
        (0.35, 0.25, 0.10, 0.30),
        (0.50, 0.10, 0.10, 0.30),
        (0.35, 0.25, 0.20, 0.20),
    )
    # quality multipliers per channel: purchase rate, spend, dropout
    channel_lam: tuple[float, ...] = (1.0, 1.1, 1.25, 1.2, 0.7, 1.1, 1.0)
    channel_spend: tuple[float, ...] = (1.05, 0.95, 1.0, 0.95, 0.9, 1.1, 1.0)
    channel_drop: tuple[float, ...] = (1.0, 1.1, 0.8, 0.85, 1.35, 0.9, 1.0)
    # target cost per acquired person (CNY); organic has no spend, referral is an invite reward
    channel_cac: tuple[float, ...] = (95.0, 80.0, 30.0, 12.0, 170.0, 45.0, 0.0)
    share_link_share_of_community: float = 0.5  # community-channel newcomers arriving through a share link
    first_social_day: int = 7  # no referral / share-link registrations before this day index
    # --- latent behaviour ---
    tourist_share: float = 0.30  # drop out right after day 0 with tourist_drop
    tourist_drop: float = 0.8
    act_beta: tuple[float, float] = (1.5, 2.0)  # daily visit probability while alive
    drop_beta: tuple[float, float] = (1.0, 9.0)  # dropout probability after each active day
    lam_gamma_shape: float = 2.0  # gamma-distributed purchase rate per alive day
    lam_mean: float = 0.015
    first_order_boost: float = 10.0  # extra purchase hazard before the first order, decays over days 0..6
    first_order_decay_days: float = 3.0
    novelty_days: int = 14
    novelty_boost: float = 1.3
    spend_median_cny: float = 122.0  # lognormal person spend scale
    spend_sigma: float = 1.05
    order_gamma_shape: float = 4.0  # order value noise around the person's scale (gamma-gamma)
    browse_mean: float = 5.0
    second_order_prob: float = 0.12
    # --- orders ---
    cancel_prob: float = 0.05
    refund_prob: float = 0.08
    full_refund_share: float = 0.55
    zero_amount_prob: float = 0.015
    coupon_prob: float = 0.25
    coupon_prob_promo: float = 0.45
    coupon_min_spend_ratio: int = 3
    promo_discount_pct: float = 0.10
    # --- social ---
    sharer_share: float = 0.22  # persons who share regularly
    share_rate_sharer: float = 1.8  # shares per active day (regular sharers)
    share_rate_other: float = 0.04
    click_prob: float = 0.07  # active person arrives through a share link today
    click_order_attrib: float = 0.7
    invite_rate_mean: float = 0.05
    assist_rate_group_buy: float = 0.6
    assist_rate_other: float = 0.08
    community_member_social: float = 0.7  # community / private / group_buy persons that join a community
    community_member_other: float = 0.12
    community_day_prob: float = 0.6
    check_in_prob: float = 0.4
    ugc_rate: float = 0.08
    kol_zipf: float = 1.1
    # --- identity / PII ---
    multi_account_share: float = 0.16
    three_account_share: float = 0.2  # of multi-account persons
    phone_link_share: float = 0.55  # 2-account persons linked by phone (else union_id)
    second_account_gap_days: float = 3.0
    union_id_share: float = 0.6
    shared_device_share: float = 0.03
    region_mix: tuple[float, ...] = (0.94, 0.03, 0.02, 0.01)  # CN, EU, US, OTHER
    consent_analytics: float = 0.90
    consent_marketing_given_analytics: float = 0.75
    consent_marketing_without_analytics: float = 0.25
    late_user_share: float = 0.005
    # --- misc ---
    nps_prob: float = 0.005
    erasure_prob: float = 0.00025
    city_tier_mix: tuple[float, ...] = (0.12, 0.20, 0.25, 0.23, 0.20)
    age_mix: tuple[float, ...] = (0.04, 0.24, 0.28, 0.26, 0.12, 0.06)
