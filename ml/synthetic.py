"""Small synthetic warehouse for ML tests and benchmarks: writes the four intermediate interface tables.

Not a replacement for ``ulm generate`` (which simulates raw landing files for the whole platform): this
writes ``intermediate.int_persons``, ``int_person_daily_activity``, ``int_orders`` and ``int_invites``
directly, with a latent engagement and lifetime per person so churn and LTV are learnable. Vectorized
numpy; 200k persons x 1 year take a few seconds.
"""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ulm.contract import AGE_BANDS, CHANNELS, PLATFORMS

EVENT_RATES = {"app_open": 2.0, "content_view": 3.0, "like": 1.0, "comment": 0.3, "favorite": 0.4,
               "share": 0.3, "live_enter": 0.5, "community_join": 0.02, "community_open": 0.4,
               "ugc_post": 0.1, "invite_sent": 0.05}


def _persons(rng: np.random.Generator, n: int, end: date, days: int) -> pd.DataFrame:
    reg_offset = rng.integers(0, days, n)
    return pd.DataFrame({
        "person_id": [f"p{i:07d}" for i in range(n)],
        "registered_date": pd.to_datetime(end) - pd.to_timedelta(reg_offset, unit="D"),
        "acquisition_channel": rng.choice(CHANNELS, n),
        "platform": rng.choice(PLATFORMS, n),
        "city_tier": rng.integers(1, 6, n).astype("int32"),
        "age_band": rng.choice(AGE_BANDS, n),
        "region": rng.choice(["CN", "CN", "CN", "EU", "US"], n),
        "consent_analytics": rng.random(n) < 0.95,
        "consent_marketing": rng.random(n) < 0.8,
    })


def _activity(rng: np.random.Generator, persons: pd.DataFrame, end: date) -> pd.DataFrame:
    n = len(persons)
    engagement = rng.gamma(2.0, 0.5, n)
    # interactions (platform x channel); protected attributes do not drive behaviour that a linear model cannot represent
    pi = pd.Categorical(persons["platform"], categories=PLATFORMS).codes
    ci = pd.Categorical(persons["acquisition_channel"], categories=CHANNELS).codes
    life_mult = rng.lognormal(0, 1.5, (len(PLATFORMS), len(CHANNELS)))[pi, ci]
    spend_mult = rng.lognormal(0, 0.4, (len(CHANNELS), len(PLATFORMS)))[ci, pi]
    lifetime = rng.exponential((60 + 60 * engagement) * life_mult)  # days until the person silently drops out
    observed = (pd.Timestamp(end) - persons["registered_date"]).dt.days.to_numpy() + 1
    alive = np.minimum(observed, np.ceil(lifetime)).astype(int)
    act_mult = rng.lognormal(0, 0.8, (len(CHANNELS), len(PLATFORMS)))[ci, pi]
    p_active = np.clip((0.03 + 0.1 * engagement) * act_mult, 0, 0.8)
    n_days = rng.binomial(alive, p_active)
    idx = np.repeat(np.arange(n), n_days)
    offset = np.floor(rng.random(len(idx)) * alive[idx]).astype(int)
    act = pd.DataFrame({"i": idx, "offset": offset}).drop_duplicates()
    i = act["i"].to_numpy()
    m = len(act)
    df = pd.DataFrame({"person_id": persons["person_id"].to_numpy()[i],
                       "activity_date": (persons["registered_date"].to_numpy()[i]
                                         + act["offset"].to_numpy().astype("timedelta64[D]"))})
    rate_scale = (0.5 + engagement[i])
    for name, rate in EVENT_RATES.items():
        df[f"n_{name}"] = rng.poisson(rate * rate_scale).astype("int32")
    df["n_events"] = df[[f"n_{k}" for k in EVENT_RATES]].sum(axis=1).astype("int32") + 1
    buy_prob = np.clip(rng.beta(1.2, 6.0, n) * (0.6 + 0.4 * engagement), 0, 0.9)
    spend = rng.lognormal(4.2, 0.3, n) * spend_mult
    is_purchase = rng.random(m) < buy_prob[i]
    revenue = np.where(is_purchase, np.round(rng.gamma(6.0, spend[i] / 6.0), 2), 0.0)
    df["n_orders"] = is_purchase.astype("int32")
    df["n_purchases"] = is_purchase.astype("int32")
    df["is_purchase_day"] = is_purchase
    df["is_active_day"] = True
    df["net_revenue"] = revenue
    df["gmv"] = np.round(revenue * 1.1, 2)
    return df


def _invites(rng: np.random.Generator, persons: pd.DataFrame, activity: pd.DataFrame) -> pd.DataFrame:
    senders = activity[activity["n_invite_sent"] > 0][["person_id", "activity_date"]]
    k = len(senders)
    accepted = rng.random(k) < 0.4
    invitee = persons["person_id"].to_numpy()[rng.integers(0, len(persons), k)]
    return pd.DataFrame({
        "invite_id": [f"inv{j:08d}" for j in range(k)],
        "inviter_person_id": senders["person_id"].to_numpy(),
        "invitee_person_id": np.where(accepted, invitee, None),
        "sent_date": senders["activity_date"].to_numpy(),
        "accepted_date": np.where(accepted, senders["activity_date"] + pd.to_timedelta(rng.integers(0, 4, k), "D"),
                                  pd.NaT),
    })


def write_intermediate(warehouse: Path, persons: int = 2000, days: int = 540, end: date = date(2025, 12, 31),
                       seed: int = 7) -> None:
    """Create (replace) the four intermediate tables in ``warehouse``."""
    rng = np.random.default_rng(seed)
    p = _persons(rng, persons, end, days)
    act = _activity(rng, p, end)
    act = act[act["activity_date"] <= pd.Timestamp(end)]
    orders = act[act["is_purchase_day"]].reset_index(drop=True)
    int_orders = pd.DataFrame({"order_id": [f"o{j:09d}" for j in range(len(orders))],
                               "person_id": orders["person_id"], "order_date": orders["activity_date"],
                               "net_amount": orders["net_revenue"], "is_purchase": True,
                               "kol_id": np.where(rng.random(len(orders)) < 0.3, "kol1", None)})
    inv = _invites(rng, p, act)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists intermediate")
        for name, frame in {"int_persons": p, "int_person_daily_activity": act, "int_orders": int_orders,
                            "int_invites": inv}.items():
            con.register("frame", frame)
            con.execute(f"create or replace table intermediate.{name} as select * from frame")
            con.unregister("frame")
        con.execute("alter table intermediate.int_persons alter registered_date type date")
        con.execute("alter table intermediate.int_person_daily_activity alter activity_date type date")
        con.execute("alter table intermediate.int_person_daily_activity alter net_revenue type decimal(18,2)")
        con.execute("alter table intermediate.int_orders alter order_date type date")
        con.execute("alter table intermediate.int_orders alter net_amount type decimal(18,2)")
        con.execute("alter table intermediate.int_invites alter sent_date type date")
        con.execute("alter table intermediate.int_invites alter accepted_date type date")


def days_before(d: date, n: int) -> date:
    return d - timedelta(days=n)
