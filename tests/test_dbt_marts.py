"""dbtmarts warehouse tests: real dbt-duckdb runs on a small synthetic raw layer and on CDNOW (no mocks).

- mart_rfm equals an independent pandas recomputation from the raw orders (business days, purchase rule,
  net amounts, rank() worst first, quintile formula, segment rules);
- mart_clv_summary equals a pandas recomputation, and on CDNOW_sample as of 1997-09-30 has 2,357 customers of
  whom 946 repeat buyers (the lifetimes / Fader-Hardie reference counts);
- mart_interventions: only persons with marketing consent, holdout flags equal an md5 recomputation and are
  ~holdout_pct % of a large audience; daily runs accumulate history and re-running a day is idempotent.
The boundary rules themselves (ties, AOV exactly 800, LTV 2000/5000, pause < 3, ...) are dbt unit tests in the
models' _models.yml files; they run with every `dbt build`.
"""
from __future__ import annotations

import hashlib
import os
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ulm.core.context import RunContext
from ulm.core.contract import CHANNELS, PLATFORMS, TABLES, raw_ddl
from ulm.core.settings import cdnow_dir, param
from ulm.transform.dbt import run_dbt

pytestmark = pytest.mark.slow

# only data tests whose every parent is selected
os.environ.setdefault("DBT_INDIRECT_SELECTION", "cautious")

CDNOW_SAMPLE = cdnow_dir() / "CDNOW_sample.txt"
AS_OF = date(2025, 6, 30)
NEXT_DAY = AS_OF + timedelta(days=1)
START = datetime(2024, 6, 1)
SEGMENT_MARTS = "+path:models/marts/segmentation +path:models/marts/interventions"
# the audience model and its segment inputs only (dbtcore's models stay as built for AS_OF: enough to test history)
SEGMENT_INCREMENTAL = "int_person_activity_summary int_community_members int_person_social_tiers mart_interventions"

RFM_SEGMENTS = [  # docs/METRICS.md#segmentation-and-tiers, first match wins: (code, predicate on r, f, m)
    ("champions", lambda r, f, m: r >= 4 and f >= 4 and m >= 4),
    ("loyal", lambda r, f, m: r >= 3 and f >= 3),
    ("new", lambda r, f, m: r == 5 and f == 1),
    ("promising", lambda r, f, m: 3 <= r <= 4 and f == 1),
    ("potential_loyalist", lambda r, f, m: r >= 3 and f == 2),
    ("cant_lose", lambda r, f, m: r == 1 and f >= 4 and m >= 4),
    ("at_risk", lambda r, f, m: r <= 2 and f >= 3),
    ("need_attention", lambda r, f, m: r == 2 and f == 2),
    ("about_to_sleep", lambda r, f, m: r == 2 and f == 1),
    ("hibernating", lambda r, f, m: r == 1 and f == 2),
    ("lost", lambda r, f, m: r == 1 and f == 1),
]


# ---------------------------------------------------------------- synthetic raw layer

def _ts(seconds: np.ndarray) -> pd.Series:
    return pd.Series(pd.Timestamp(START) + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us]")


def _frame(table: str, data: dict) -> pd.DataFrame:
    """All contract columns of `table` (missing ones null) in contract order."""
    n = len(next(iter(data.values())))
    return pd.DataFrame({c: data.get(c, [None] * n) for c in TABLES[table].column_names})


def make_raw(path: Path, n_users: int = 500, seed: int = 11) -> dict[str, pd.DataFrame]:
    """Small raw layer: one person per account (distinct phones), orders with ties and partial/full refunds,
    order times spread over the UTC hours that straddle the Shanghai midnight, events for the intervention rules."""
    rng = np.random.default_rng(seed)
    horizon = (datetime.combine(NEXT_DAY, datetime.min.time()) - START).days
    user_id = np.array([f"u{i:04d}" for i in range(n_users)])
    # a third registered in the last 14 days before AS_OF, so new_user_silent_3d has a large audience
    reg_day = np.where(rng.random(n_users) < 0.35, rng.integers(horizon - 16, horizon - 1, n_users),
                       rng.integers(0, horizon - 20, n_users))
    reg_sec = reg_day * 86400 + rng.integers(0, 86400, n_users)
    users = _frame("users", {
        "user_id": user_id,
        "platform": rng.choice(PLATFORMS, n_users),
        "registered_at": _ts(reg_sec),
        "acquisition_channel": rng.choice(CHANNELS, n_users),
        "city_tier": rng.integers(1, 6, n_users).astype("int32"),
        "age_band": rng.choice(["18-24", "25-30", "31-40"], n_users),
        "region": "CN",
        "phone": [f"1390000{i:04d}" for i in range(n_users)],
        "device_id": [f"dev{i}" for i in range(n_users)],
        "consent_analytics": True,
        "consent_marketing": rng.random(n_users) < 0.7,
        "consent_updated_at": _ts(reg_sec),
    })

    # orders: only the older two thirds of accounts buy; some after AS_OF (must be ignored)
    buyers = np.flatnonzero(reg_day < horizon - 20)
    n_orders = 1600
    owner = rng.choice(buyers, n_orders)
    after_reg = rng.integers(0, 400, n_orders) * 86400 + rng.choice([3600 * 15, 3600 * 15 + 3599, 3600 * 16, 3600 * 20], n_orders)
    order_sec = np.minimum(reg_sec[owner] + after_reg, horizon * 86400 + 3600 * 10)
    gross = rng.choice([0, 50, 100, 100, 250, 800, 1200], n_orders).astype(float)  # repeated values -> M ties
    discount = np.where(rng.random(n_orders) < 0.2, np.minimum(gross, 20.0), 0.0)
    paid = gross - discount
    status = rng.choice(["paid", "refunded", "cancelled"], n_orders, p=[0.8, 0.12, 0.08])
    refund = np.where(status == "refunded", np.where(rng.random(n_orders) < 0.5, paid, np.round(paid / 2, 2)), 0.0)
    orders = _frame("orders", {
        "order_id": [f"o{i:05d}" for i in range(n_orders)],
        "user_id": user_id[owner],
        "order_ts": _ts(order_sec),
        "status": status,
        "gross_amount": gross, "discount_amount": discount, "paid_amount": paid, "refund_amount": refund,
        "scenario": "content",
    })

    # events: one app_open per order day (activity) + live entries for the live_lapsed rule
    n_live = 400
    live_owner = rng.choice(n_users, n_live)
    live_sec = np.maximum(reg_sec[live_owner], (horizon - rng.integers(1, 30, n_live)) * 86400)
    events = _frame("events", {
        "event_id": [f"e{i:05d}" for i in range(n_orders + n_live)],
        "user_id": np.concatenate([user_id[owner], user_id[live_owner]]),
        "event_type": ["app_open"] * n_orders + ["live_enter"] * n_live,
        "event_ts": pd.concat([_ts(order_sec), _ts(live_sec)], ignore_index=True),
    })

    loaded_at = datetime.combine(NEXT_DAY + timedelta(days=3), datetime.min.time())
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema if not exists raw")
        for table in TABLES:
            con.execute(raw_ddl(table))
        for table, df in (("users", users), ("orders", orders), ("events", events)):
            con.register("df", df)
            cols = ", ".join(f'"{c}"' for c in TABLES[table].column_names)
            con.execute(f"insert into raw.{table} select {cols}, 'test-load', ?, 'test.parquet' from df", [loaded_at])
            con.unregister("df")
    finally:
        con.close()
    return {"users": users, "orders": orders, "events": events}


def _query(wh: Path, sql: str) -> pd.DataFrame:
    # default config: dbt-duckdb keeps the file open in this process and DuckDB only shares an instance
    # with a connection of the same configuration (read_only=True would be refused)
    with duckdb.connect(str(wh)) as con:
        return con.execute(sql).df()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pd.DataFrame]]:
    wh = tmp_path_factory.mktemp("marts") / "warehouse.duckdb"
    raw = make_raw(wh)
    run_dbt(RunContext.create(as_of=AS_OF, warehouse=wh), "run", select=SEGMENT_MARTS, progress=False)
    return wh, raw


# ---------------------------------------------------------------- independent pandas recomputation

def _person_days(wh: Path, raw: dict[str, pd.DataFrame], as_of: date) -> pd.DataFrame:
    """Per person and business day up to as_of: is_purchase_day, net revenue (from raw orders, docs/METRICS.md#activity-primitives)."""
    identity = _query(wh, "select user_id, person_id from intermediate.int_identity")
    o = raw["orders"].merge(identity, on="user_id")
    local = o["order_ts"].dt.tz_localize("UTC").dt.tz_convert(param("business_timezone"))
    o["day"] = pd.to_datetime(local.dt.date)
    o = o[o["day"] <= pd.Timestamp(as_of)]
    o["is_purchase"] = (o["status"] == "paid") | ((o["status"] == "refunded") & (o["refund_amount"] < o["paid_amount"]))
    o["net"] = np.where(o["status"] == "cancelled", 0.0, o["paid_amount"] - o["refund_amount"])
    return o.groupby(["person_id", "day"]).agg(is_purchase_day=("is_purchase", "any"), net=("net", "sum")).reset_index()


def _expected_rfm(days: pd.DataFrame, as_of: date) -> pd.DataFrame:
    d = pd.Timestamp(as_of)
    window = days[days["day"] > d - pd.Timedelta(days=param("rfm_window_days"))]
    purchase = window[window["is_purchase_day"]]
    g = purchase.groupby("person_id")
    rfm = pd.DataFrame({"recency_days": (d - g["day"].max()).dt.days, "frequency": g.size()})
    rfm["monetary"] = window.groupby("person_id")["net"].sum().reindex(rfm.index).round(2)
    n = len(rfm)

    def score(rank: pd.Series) -> pd.Series:
        return np.minimum(5, 1 + np.floor(5 * (rank - 1) / n)).astype(int)

    rfm["r_score"] = score(rfm["recency_days"].rank(method="min", ascending=False))
    rfm["f_score"] = score(rfm["frequency"].rank(method="min", ascending=True))
    rfm["m_score"] = score(rfm["monetary"].rank(method="min", ascending=True))
    rfm["rfm_segment"] = [next(code for code, rule in RFM_SEGMENTS if rule(r, f, m))
                          for r, f, m in zip(rfm["r_score"], rfm["f_score"], rfm["m_score"])]
    return rfm.sort_index()


def test_rfm_matches_independent_pandas_recomputation(warehouse) -> None:
    wh, raw = warehouse
    expected = _expected_rfm(_person_days(wh, raw, AS_OF), AS_OF)
    got = _query(wh, "select * from marts.mart_rfm").set_index("person_id").sort_index()
    assert len(expected) > 100 and expected["monetary"].duplicated().any(), "test data must contain M ties"
    assert list(got.index) == list(expected.index)
    got["monetary"] = got["monetary"].astype(float)
    cols = ["recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_segment"]
    pd.testing.assert_frame_equal(got[cols], expected[cols], check_dtype=False)
    assert got["rfm_segment"].nunique() >= 4


def test_clv_summary_matches_pandas(warehouse) -> None:
    wh, raw = warehouse
    days = _person_days(wh, raw, AS_OF)
    p = days[days["is_purchase_day"]].sort_values(["person_id", "day"])
    g = p.groupby("person_id")
    first = g["day"].transform("min")
    expected = pd.DataFrame({
        "frequency": g.size() - 1,
        "recency_days": (g["day"].max() - g["day"].min()).dt.days,
        "t_days": (pd.Timestamp(AS_OF) - g["day"].min()).dt.days,
        "monetary_value": p[p["day"] > first].groupby("person_id")["net"].mean(),
    }).fillna({"monetary_value": 0.0}).round({"monetary_value": 2}).sort_index()
    got = _query(wh, "select * from marts.mart_clv_summary").set_index("person_id").sort_index()
    got["monetary_value"] = got["monetary_value"].astype(float)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)


def _bucket(person_id: str, rule_id: str) -> int:
    return int(hashlib.md5(f"{person_id}|{rule_id}".encode()).hexdigest()[:8], 16) % 100


def test_interventions_consent_holdout_and_history(warehouse) -> None:
    wh, raw = warehouse
    aud = _query(wh, "select * from marts.mart_interventions")
    consent = _query(wh, "select person_id, consent_marketing from intermediate.int_persons")
    merged = aud.merge(consent, on="person_id", how="left")
    assert len(aud) > 100 and set(aud["audience_date"].dt.date) == {AS_OF}
    assert merged["consent_marketing"].eq(True).all(), "audience holds a person without marketing consent"
    expected_holdout = [_bucket(p, r) < param("holdout_pct") for p, r in zip(aud["person_id"], aud["rule_id"])]
    assert aud["is_holdout"].tolist() == expected_holdout
    silent = aud[aud["rule_id"] == "new_user_silent_3d"]
    assert len(silent) > 50 and 0.02 < silent["is_holdout"].mean() < 0.25

    # next day: history accumulates; re-running a day replaces (not duplicates) its rows
    run_dbt(RunContext.create(as_of=NEXT_DAY, warehouse=wh), "run", select=SEGMENT_INCREMENTAL, progress=False)
    first = _query(wh, "select audience_date, count(*) as n from marts.mart_interventions group by 1 order by 1")
    assert [d.date() for d in first["audience_date"]] == [AS_OF, NEXT_DAY]
    assert int(first["n"].iloc[0]) == len(aud)
    run_dbt(RunContext.create(as_of=NEXT_DAY, warehouse=wh), "run", select=SEGMENT_INCREMENTAL, progress=False)
    again = _query(wh, "select audience_date, count(*) as n from marts.mart_interventions group by 1 order by 1")
    pd.testing.assert_frame_equal(first, again)


def test_cdnow_clv_summary_reference_counts(cdnow_sample_warehouse: Path) -> None:
    wh = cdnow_sample_warehouse
    customers, repeat, t_max = _query(
        wh, "select count(*), count(*) filter (where frequency > 0), max(t_days) from marts.mart_clv_summary"
    ).iloc[0]
    assert (customers, repeat) == (2357, 946)
    assert t_max == (date(1997, 9, 30) - date(1997, 1, 1)).days
