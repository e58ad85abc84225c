"""Small synthetic warehouse for ML tests and benchmarks: writes the published tables ML reads, without dbt.

Not a replacement for ``ulm generate`` (which simulates raw landing files for the whole platform): this writes
the marts of ``ulm.ml.features.INTERFACE`` (``marts.dim_persons``, ``fct_person_activity_daily``, ``fct_orders``,
``fct_invites``, ``fct_clv_snapshots``) directly, with a latent engagement and lifetime per person so churn and
LTV are learnable. Columns are a subset of each model's dbt contract, with the contract's names and types
(:data:`TYPES`; ``tests/test_ml_benchmark.py`` compares them with ``marts/*/_models.yml``). Vectorized numpy;
200k persons x 1 year take a few seconds.

``fct_clv_snapshots`` is fixture data computed here with plain DuckDB SQL from the activity written (month ends
from the first purchase month up to ``end``, plus ``end``), following the dbt model's definition; it is not
checked against the model here (that needs dbt): the model itself is checked by its dbt unit test and by
``tests/test_dbt_marts.py`` / the CDNOW tests through ``mart_clv_summary``.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from ulm.core.contract import AGE_BANDS, CHANNELS, PLATFORMS
from ulm.warehouse import PUBLISHED, connect, quote, transaction

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
    # interactions (platform x channel); protected attributes do not drive behaviour that a linear model cannot
    # represent
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


def _invites(rng: np.random.Generator, persons: pd.DataFrame, activity: pd.DataFrame, end: date) -> pd.DataFrame:
    senders = activity[activity["n_invite_sent"] > 0][["person_id", "activity_date"]]
    k = len(senders)
    accepted = rng.random(k) < 0.4
    invitee = persons["person_id"].to_numpy()[rng.integers(0, len(persons), k)]
    accepted_date = senders["activity_date"].to_numpy() + pd.to_timedelta(rng.integers(0, 4, k), "D").to_numpy()
    accepted &= accepted_date <= np.datetime64(end)  # as in fct_invites: an acceptance after `end` is not visible
    return pd.DataFrame({
        "invite_id": [f"inv{j:08d}" for j in range(k)],
        "inviter_person_id": senders["person_id"].to_numpy(),
        "invitee_person_id": np.where(accepted, invitee, None),
        "sent_date": senders["activity_date"].to_numpy(),
        "accepted_date": np.where(accepted, accepted_date, np.datetime64("NaT")),
        "is_accepted": accepted,
    })


# per table: the columns written, with the types of the dbt contracts (marts/core and marts/segmentation _models.yml)
TYPES: dict[str, dict[str, str]] = {
    "dim_persons": {
        "person_id": "varchar", "registered_date": "date", "acquisition_channel": "varchar", "platform": "varchar",
        "city_tier": "integer", "age_band": "varchar", "region": "varchar", "consent_analytics": "boolean",
        "consent_marketing": "boolean"},
    "fct_person_activity_daily": {
        "person_id": "varchar", "activity_date": "date", "n_events": "integer",
        **{f"n_{name}": "integer" for name in EVENT_RATES}, "n_orders": "integer", "n_purchases": "integer",
        "is_purchase_day": "boolean", "is_active_day": "boolean", "net_revenue": "decimal(38,2)",
        "gmv": "decimal(38,2)"},
    "fct_orders": {
        "order_id": "varchar", "person_id": "varchar", "order_date": "date", "net_amount": "decimal(18,2)",
        "is_purchase": "boolean", "kol_id": "varchar"},
    "fct_invites": {
        "invite_id": "varchar", "inviter_person_id": "varchar", "invitee_person_id": "varchar", "sent_date": "date",
        "accepted_date": "date", "is_accepted": "boolean"},
    "fct_clv_snapshots": {
        "snapshot_date": "date", "person_id": "varchar", "frequency": "bigint", "recency_days": "integer",
        "t_days": "integer", "monetary_value": "decimal(38,2)"},
}

# fixture only (see the module docstring): the fct_clv_snapshots rows for the activity written
_CLV_SNAPSHOTS_SQL = """
with purchase_days as (
    select person_id, activity_date, net_revenue,
           row_number() over w as k,
           coalesce(lead(activity_date) over w, cast($end as date) + 1) as next_purchase_date
    from {schema}.fct_person_activity_daily
    where is_purchase_day and activity_date <= $end
    window w as (partition by person_id order by activity_date)
),
running as (
    select person_id, activity_date as last_purchase_date, next_purchase_date, k - 1 as frequency,
           min(activity_date) over (partition by person_id) as first_purchase_date,
           sum(case when k > 1 then net_revenue end) over (partition by person_id order by activity_date
                                                           rows between unbounded preceding and current row) as repeat
    from purchase_days
),
snapshot_dates as (
    select cast(d as date) as snapshot_date
    from generate_series((select min(activity_date) from purchase_days), cast($end as date), interval 1 day) as t(d)
    where cast(d as date) = last_day(cast(d as date)) or cast(d as date) = $end
)
select s.snapshot_date, r.person_id, r.frequency,
       cast(r.last_purchase_date - r.first_purchase_date as integer) as recency_days,
       cast(s.snapshot_date - r.first_purchase_date as integer) as t_days,
       cast(case when r.frequency > 0 then r.repeat / r.frequency else 0 end as decimal(38, 2)) as monetary_value
from running as r
join snapshot_dates as s on s.snapshot_date >= r.last_purchase_date and s.snapshot_date < r.next_purchase_date
"""


def _typed_select(table: str) -> str:
    return ", ".join(f"cast({quote(c)} as {t}) as {quote(c)}" for c, t in TYPES[table].items())


def write_interface(warehouse: Path, persons: int = 2000, days: int = 540, end: date = date(2025, 12, 31),
                    seed: int = 7, schema: str = PUBLISHED) -> dict[str, int]:
    """Create (replace) the tables of ``ulm.ml.features.INTERFACE`` in ``schema`` of ``warehouse``; row counts."""
    rng = np.random.default_rng(seed)
    p = _persons(rng, persons, end, days)
    act = _activity(rng, p, end)
    act = act[act["activity_date"] <= pd.Timestamp(end)]
    orders = act[act["is_purchase_day"]].reset_index(drop=True)
    fct_orders = pd.DataFrame({"order_id": [f"o{j:09d}" for j in range(len(orders))],
                               "person_id": orders["person_id"], "order_date": orders["activity_date"],
                               "net_amount": orders["net_revenue"], "is_purchase": True,
                               "kol_id": np.where(rng.random(len(orders)) < 0.3, "kol1", None)})
    inv = _invites(rng, p, act, end)
    frames = {"dim_persons": p, "fct_person_activity_daily": act, "fct_orders": fct_orders, "fct_invites": inv}
    with connect(warehouse) as con, transaction(con):
        con.execute(f"create schema if not exists {quote(schema)}")
        for name, frame in frames.items():
            con.register("frame", frame)
            con.execute(f"create or replace table {quote(schema)}.{name} as select {_typed_select(name)} from frame")
            con.unregister("frame")
        clv_sql = _CLV_SNAPSHOTS_SQL.format(schema=quote(schema))
        con.execute(f"create or replace table {quote(schema)}.fct_clv_snapshots as "
                    f"select {_typed_select('fct_clv_snapshots')} from ({clv_sql})", {"end": end})
        return {name: con.execute(f"select count(*) from {quote(schema)}.{name}").fetchone()[0] for name in TYPES}
