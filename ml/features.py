"""Point-in-time feature snapshots and labels (SPEC §9), computed in DuckDB from the intermediate models.

One row per person per cutoff ``t`` (month ends up to the as-of day for training; any day for scoring).
Population: registered on or before ``t``, active in ``(t - snapshot_population_active_days, t]``, analytics
consent. Every feature reads only rows dated ``<= t``; labels read ``(t, t + h]`` and are NULL until
``t + h <= as_of`` (not yet fully observed):

* ``churn_<h>d`` for h in (``churn_horizon_days``, ``churn_horizon_days_alt``): 1 = no active day in ``(t, t+h]``;
* ``ltv_<h>d``: net revenue in ``(t, t+h]`` for each h in ``channel_realized_ltv_days`` up to
  ``ltv_horizon_days`` (365; the shorter ones serve when history is too short for a full year).

Inputs: ``intermediate.int_persons``, ``int_person_daily_activity``, ``int_orders``, ``int_invites``.
Output: table ``ml.feature_snapshots`` (rebuilt for all month-end cutoffs; labels mature as time passes).
"""
from __future__ import annotations

import os

import logging
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from ulm.config import param
from ulm.errors import UlmError
from ulm.contract import EVENT_TYPES

log = logging.getLogger("ml.features")

# The intermediate schema read: `audit_intermediate` (what `ulm run` builds and the published marts come from) or
# `intermediate` (a plain `ulm build`), whichever holds the newer activity; ULM_ML_SOURCE_SCHEMA forces one.
SOURCE_SCHEMAS = ("audit_intermediate", "intermediate")
SRC = "intermediate"


def source_schema(con: duckdb.DuckDBPyConnection) -> str:
    forced = os.environ.get("ULM_ML_SOURCE_SCHEMA")
    if forced:
        return forced
    best: tuple | None = None
    for schema in SOURCE_SCHEMAS:
        try:
            newest = con.execute(f"select max(activity_date) from {schema}.int_person_daily_activity").fetchone()[0]
        except duckdb.Error:
            continue
        if newest is not None and (best is None or newest > best[0]):
            best = (newest, schema)
    if best is None:
        raise UlmError("no int_person_daily_activity in schema intermediate or audit_intermediate: "
                       "run `ulm build` or `ulm run` first")
    return best[1]


def _use_source(con: duckdb.DuckDBPyConnection) -> None:
    """Point the SQL builders of this module at the current intermediate schema."""
    global SRC
    SRC = source_schema(con)
FEATURE_WINDOWS = (7, 30, 90, 365)  # SPEC §9: active / purchase days in 7/30/90/365 days
MONEY_WINDOWS = (30, 90, 365)  # SPEC §9: net revenue and AOV in 30/90/365 days
EVENT_WINDOW = 30  # SPEC §9: counts by event type in 30 days
CATEGORICAL = ("acquisition_channel", "platform", "age_band")
KEY_COLUMNS = ("snapshot_date", "person_id")
ATTRIBUTE_COLUMNS = ("city_tier", "age_band")  # also features; used by the fairness audit


def churn_horizons() -> list[int]:
    return sorted({int(param("churn_horizon_days")), int(param("churn_horizon_days_alt"))}, reverse=True)


def ltv_horizons() -> list[int]:
    full = int(param("ltv_horizon_days"))
    return sorted({full, *(int(h) for h in param("channel_realized_ltv_days") if int(h) <= full)}, reverse=True)


def label_columns() -> list[str]:
    return [f"churn_{h}d" for h in churn_horizons()] + [f"ltv_{h}d" for h in ltv_horizons()]


def _event_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """``n_<event_type>`` columns that int_person_daily_activity provides (contract order)."""
    _use_source(con)
    have = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [SRC, "int_person_daily_activity"]).fetchall()}
    return [f"n_{t}" for t in EVENT_TYPES if f"n_{t}" in have]


def _history_aggregates(event_cols: list[str]) -> str:
    # Windowed counts and sums are written `count(case when <window> then 1 end)` / `sum(case when <window> then x
    # end)` rather than `... filter (where <window>)`: same values and types (NULL when no row qualifies), but
    # DuckDB's hash aggregate runs them about a third faster (it slices the input once per FILTER clause). Only
    # arg_min keeps FILTER: there the filtered rows must not compete for the minimum.
    w = "activity_date > $cutoff - {d}"

    def count_if(cond: str) -> str:
        return f"count(case when {cond} then 1 end)"

    def sum_if(col: str, cond: str) -> str:
        return f"coalesce(sum(case when {cond} then {col} end), 0)"

    parts = ["max(activity_date) as last_active_date",
             "min(case when is_purchase_day then activity_date end) as first_purchase_date",
             "max(case when is_purchase_day then activity_date end) as last_purchase_date",
             f"{count_if('is_purchase_day')} as purchase_days_total",
             "sum(case when is_purchase_day then net_revenue end) as net_revenue_total",
             "arg_min(net_revenue, activity_date) filter (where is_purchase_day) as first_purchase_day_revenue"]
    for d in FEATURE_WINDOWS:
        parts.append(f"{count_if(w.format(d=d))} as active_days_{d}d")
        parts.append(f"{count_if('is_purchase_day and ' + w.format(d=d))} as purchase_days_{d}d")
    for d in MONEY_WINDOWS:
        parts.append(f"{sum_if('n_purchases', w.format(d=d))} as purchases_{d}d")
        parts.append(f"{sum_if('net_revenue', w.format(d=d))} as net_revenue_{d}d")
    for c in event_cols:
        parts.append(f"{sum_if(c, w.format(d=EVENT_WINDOW))} as {c}_{EVENT_WINDOW}d")
    if "n_share" in event_cols:
        parts.append(f"{sum_if('n_share', w.format(d=90))} as n_share_90d")
    if "n_community_open" in event_cols:
        parts.append(f"{count_if('n_community_open > 0 and ' + w.format(d=30))} as community_open_days_30d")
    if "n_community_join" in event_cols:
        parts.append("cast(coalesce(max(n_community_join) > 0, false) as integer) as is_community_member")
    if "n_live_enter" in event_cols:
        parts.append(f"{count_if('n_live_enter > 0 and ' + w.format(d=30))} as live_days_30d")
    if "n_ugc_post" in event_cols:
        parts.append(f"{sum_if('n_ugc_post', w.format(d=365))} as n_ugc_post_365d")
    return ",\n        ".join(parts)


def _label_aggregates() -> str:
    parts = []
    for h in churn_horizons():
        parts.append(f"case when $cutoff + {h} <= $as_of then cast(count(a.activity_date) filter "
                     f"(where a.activity_date <= $cutoff + {h}) = 0 as integer) end as churn_{h}d")
    for h in ltv_horizons():
        parts.append(f"case when $cutoff + {h} <= $as_of then coalesce(sum(a.net_revenue) filter "
                     f"(where a.activity_date <= $cutoff + {h}), 0) end as ltv_{h}d")
    return ",\n        ".join(parts)


def snapshot_sql(event_cols: list[str], with_labels: bool = True) -> str:
    """SQL for one cutoff (parameters ``$cutoff`` and, with labels, ``$as_of``)."""
    active_days = int(param("snapshot_population_active_days"))
    labels = f"""
, future as (
    select pop.person_id, {_label_aggregates()}
    from pop left join {SRC}.int_person_daily_activity as a
      on a.person_id = pop.person_id and a.is_active_day and a.activity_date > $cutoff
     and a.activity_date <= least($as_of, $cutoff + {max(churn_horizons() + ltv_horizons())})
    group by pop.person_id
)""" if with_labels else ""
    label_select = ", ".join(f"future.{c}" for c in label_columns()) if with_labels else ""
    return f"""
with pop as (
    select p.person_id, p.registered_date, p.acquisition_channel, p.platform, p.city_tier, p.age_band
    from {SRC}.int_persons as p
    where coalesce(p.consent_analytics, false) and p.registered_date <= $cutoff
      and p.person_id in (select person_id from {SRC}.int_person_daily_activity
                          where is_active_day and activity_date > $cutoff - {active_days} and activity_date <= $cutoff)
),
hist as (
    select a.person_id,
        {_history_aggregates(event_cols)}
    from {SRC}.int_person_daily_activity as a
    where a.is_active_day and a.activity_date <= $cutoff and a.person_id in (select person_id from pop)
    group by a.person_id
),
kol as (
    select o.person_id,
        sum(o.net_amount) filter (where o.kol_id is not null) / nullif(sum(o.net_amount), 0) as kol_revenue_share_365d
    from {SRC}.int_orders as o
    where o.is_purchase and o.order_date > $cutoff - 365 and o.order_date <= $cutoff
      and o.person_id in (select person_id from pop)
    group by o.person_id
),
inv as (
    select inviter_person_id as person_id,
        count(*) filter (where sent_date > $cutoff - 30) as invites_sent_30d,
        count(*) filter (where accepted_date > $cutoff - 30 and accepted_date <= $cutoff) as invites_accepted_30d,
        count(*) filter (where accepted_date <= $cutoff) as invites_accepted_total
    from {SRC}.int_invites
    where sent_date <= $cutoff
    group by inviter_person_id
),
links as (
    select inviter_person_id as person_id, invitee_person_id as friend_id from {SRC}.int_invites
    where accepted_date <= $cutoff and invitee_person_id is not null
    union
    select invitee_person_id, inviter_person_id from {SRC}.int_invites
    where accepted_date <= $cutoff and invitee_person_id is not null
),
friends as (
    select l.person_id, sum(a.n_purchases) as friends_purchases_30d
    from links as l
    join {SRC}.int_person_daily_activity as a
      on a.person_id = l.friend_id and a.activity_date > $cutoff - 30 and a.activity_date <= $cutoff
    where l.person_id in (select person_id from pop)
    group by l.person_id
){labels}
select
    cast($cutoff as date) as snapshot_date,
    pop.person_id,
    pop.acquisition_channel, pop.platform, pop.city_tier, pop.age_band,
    $cutoff - pop.registered_date as tenure_days,
    $cutoff - hist.last_active_date as days_since_last_active,
    $cutoff - hist.last_purchase_date as days_since_last_purchase,
    hist.* exclude (person_id, last_active_date, first_purchase_date, last_purchase_date,
                    net_revenue_total, first_purchase_day_revenue),
    {", ".join(f"hist.net_revenue_{d}d / nullif(hist.purchases_{d}d, 0) as aov_{d}d" for d in MONEY_WINDOWS)},
    kol.kol_revenue_share_365d,
    coalesce(inv.invites_sent_30d, 0) as invites_sent_30d,
    coalesce(inv.invites_accepted_30d, 0) as invites_accepted_30d,
    coalesce(inv.invites_accepted_total, 0) as invites_accepted_total,
    coalesce(friends.friends_purchases_30d, 0) as friends_purchases_30d,
    case when hist.purchase_days_total > 0 then hist.purchase_days_total - 1 end as clv_frequency,
    hist.last_purchase_date - hist.first_purchase_date as clv_recency_days,
    $cutoff - hist.first_purchase_date as clv_t_days,
    case when hist.purchase_days_total > 1
         then (hist.net_revenue_total - hist.first_purchase_day_revenue) / (hist.purchase_days_total - 1)
         when hist.purchase_days_total = 1 then 0 end as clv_monetary_value
    {"," if with_labels else ""} {label_select}
from pop
join hist using (person_id)
left join kol using (person_id)
left join inv using (person_id)
left join friends using (person_id)
{"left join future using (person_id)" if with_labels else ""}
"""


def month_end_cutoffs(con: duckdb.DuckDBPyConnection, as_of: date) -> list[date]:
    """Month ends after the first activity day, up to ``as_of``."""
    _use_source(con)
    first = con.execute(f"select min(activity_date) from {SRC}.int_person_daily_activity where is_active_day").fetchone()[0]
    if first is None:
        return []
    ends = pd.date_range(pd.Timestamp(first), pd.Timestamp(as_of), freq="ME")
    return [d.date() for d in ends if d.date() > first]


def snapshot(con: duckdb.DuckDBPyConnection, cutoff: date, as_of: date | None = None) -> pd.DataFrame:
    """Features (and labels when ``as_of`` is given) for one cutoff, as a DataFrame."""
    _use_source(con)
    sql = snapshot_sql(_event_columns(con), with_labels=as_of is not None)
    params = {"cutoff": cutoff} if as_of is None else {"cutoff": cutoff, "as_of": as_of}
    return con.execute(f"select * from ({sql}) order by person_id", params).df()


def build_snapshots(warehouse: Path, as_of: date, cutoffs: list[date] | None = None) -> list[date]:
    """Rebuild ``ml.feature_snapshots`` for all month-end cutoffs up to ``as_of`` (atomic swap)."""
    with duckdb.connect(str(warehouse)) as con:
        cutoffs = cutoffs if cutoffs is not None else month_end_cutoffs(con, as_of)
        sql = snapshot_sql(_event_columns(con))
        con.execute("create schema if not exists ml")
        con.execute("begin")
        con.execute("drop table if exists ml.feature_snapshots__new")
        for i, cutoff in enumerate(cutoffs):
            start = time.perf_counter()
            verb = "create table ml.feature_snapshots__new as" if i == 0 else "insert into ml.feature_snapshots__new"
            con.execute(f"{verb} {sql}", {"cutoff": cutoff, "as_of": as_of})
            log.info("snapshot %s in %.1fs", cutoff, time.perf_counter() - start)
        if cutoffs:
            con.execute("drop table if exists ml.feature_snapshots")
            con.execute("alter table ml.feature_snapshots__new rename to feature_snapshots")
        con.execute("commit")
    return cutoffs


def clv_summary(con: duckdb.DuckDBPyConnection, cutoff: date) -> pd.DataFrame:
    """``mart_clv_summary`` columns as of ``cutoff`` (same definitions), for point-in-time BG/NBD evaluation."""
    _use_source(con)
    return con.execute(f"""
        with d as (
            select person_id, activity_date, net_revenue,
                   row_number() over (partition by person_id order by activity_date) as k
            from {SRC}.int_person_daily_activity where is_purchase_day and activity_date <= $cutoff)
        select person_id, count(*) - 1 as frequency, max(activity_date) - min(activity_date) as recency_days,
               $cutoff - min(activity_date) as t_days,
               coalesce(sum(net_revenue) filter (where k > 1) / nullif(count(*) - 1, 0), 0) as monetary_value
        from d group by person_id""", {"cutoff": cutoff}).df()


def normalize_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric feature columns -> float64, categoricals -> object, so the MLflow signature is stable."""
    out = frame.copy()
    for col in feature_columns(out):
        if col in CATEGORICAL:
            out[col] = out[col].astype("object").where(out[col].notna(), None)
        else:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
    return out


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Model inputs: everything but keys and labels."""
    skip = set(KEY_COLUMNS) | set(label_columns())
    return [c for c in frame.columns if c not in skip]
