"""Point-in-time feature snapshots and labels (docs/METRICS.md#machine-learning), computed in DuckDB from the
published marts.

One row per person per cutoff ``t`` (month ends up to the as-of day for training; the as-of day for scoring).
Population: registered on or before ``t``, active in ``(t - snapshot_population_active_days, t]``, analytics
consent. Every feature reads only rows dated ``<= t``; labels read ``(t, t + h]`` and are NULL until
``t + h <= as_of`` (not yet fully observed):

* ``churn_<h>d`` for h in (``churn_horizon_days``, ``churn_horizon_days_alt``): 1 = no active day in ``(t, t+h]``;
* ``ltv_<h>d``: net revenue in ``(t, t+h]`` for each h in ``channel_realized_ltv_days`` up to
  ``ltv_horizon_days`` (365; the shorter ones serve when history is too short for a full year).

Inputs (:data:`INTERFACE`): the contracted dbt models ``dim_persons``, ``fct_person_activity_daily``,
``fct_orders``, ``fct_invites`` and ``fct_clv_snapshots`` of the published schema (``ulm.warehouse.PUBLISHED``;
every function takes the schema as an argument). The ``clv_*`` features are the ``fct_clv_snapshots`` row at
``t``, which exists for month ends and the as-of day of the marts only: other cutoffs are refused.
Output: table ``ml.feature_snapshots`` (rebuilt for all month-end cutoffs; labels mature as time passes).

On the ``postgres`` target (issue #15, docs/DECISIONS.md D63) :func:`published_marts` reads the :data:`INTERFACE`
tables from the Postgres warehouse's published marts into an in-memory DuckDB, and the same feature SQL runs there:
one feature implementation, the target's data. On ``spark`` the same from the published Spark database (D85).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from ulm.core.contract import EVENT_TYPES
from ulm.core.errors import UlmError
from ulm.core.settings import param
from ulm.warehouse import PUBLISHED, connect, ensure_ml_schema, table_exists, transaction

log = logging.getLogger("ulm.ml.features")

# the published (contracted) dbt models ML reads; ulm.ml.synthetic writes the same tables for tests and benchmarks
INTERFACE = ("dim_persons", "fct_person_activity_daily", "fct_orders", "fct_invites", "fct_clv_snapshots")
CLV_COLUMNS = ("frequency", "recency_days", "t_days", "monetary_value")  # of fct_clv_snapshots / mart_clv_summary
FEATURE_WINDOWS = (7, 30, 90, 365)  # docs/METRICS.md#machine-learning: active / purchase days in 7/30/90/365 days
MONEY_WINDOWS = (30, 90, 365)  # docs/METRICS.md#machine-learning: net revenue and AOV in 30/90/365 days
EVENT_WINDOW = 30  # docs/METRICS.md#machine-learning: counts by event type in 30 days
CATEGORICAL = ("acquisition_channel", "platform", "age_band")
KEY_COLUMNS = ("snapshot_date", "person_id")
ATTRIBUTE_COLUMNS = ("city_tier", "age_band")  # also features; used by the fairness audit


# Why a person of dim_persons is not scored on a day (the dbt column dim_persons.unscored_reason uses the same names,
# plus 'no_scoring_run' and 'changed_since_scoring'); docs/ML.md#score-coverage
UNSCORED_REASONS = ("no_analytics_consent", "registered_after_scoring", "inactive")


def population_rule() -> str:
    """The snapshot / scoring population in words (logged with every training run)."""
    days = int(param("snapshot_population_active_days"))
    return f"registered on or before t, an active day in (t - {days}, t], analytics consent"


def churn_horizons() -> list[int]:
    return sorted({int(param("churn_horizon_days")), int(param("churn_horizon_days_alt"))}, reverse=True)


def ltv_horizons() -> list[int]:
    full = int(param("ltv_horizon_days"))
    return sorted({full, *(int(h) for h in param("channel_realized_ltv_days") if int(h) <= full)}, reverse=True)


def label_columns() -> list[str]:
    return [f"churn_{h}d" for h in churn_horizons()] + [f"ltv_{h}d" for h in ltv_horizons()]


def require_interface(con: duckdb.DuckDBPyConnection, schema: str = PUBLISHED) -> None:
    """UlmError naming the first of :data:`INTERFACE` missing from ``schema``."""
    for name in INTERFACE:
        if not table_exists(con, schema, name):
            raise UlmError(f"table {schema}.{name} missing (rule: ML reads the published marts; "
                           "run `ulm run` (or `ulm build` and publish) first)")


def _event_columns(con: duckdb.DuckDBPyConnection, schema: str = PUBLISHED) -> list[str]:
    """``n_<event_type>`` columns that fct_person_activity_daily provides (contract order)."""
    require_interface(con, schema)
    have = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, "fct_person_activity_daily"]).fetchall()}
    return [f"n_{t}" for t in EVENT_TYPES if f"n_{t}" in have]


def _history_aggregates(event_cols: list[str]) -> str:
    # Windowed counts and sums are written `count(case when <window> then 1 end)` / `sum(case when <window> then x
    # end)` rather than `... filter (where <window>)`: same values and types (NULL when no row qualifies), and
    # DuckDB's hash aggregate slices its input once per FILTER clause, but only once for CASE expressions.
    w = "activity_date > $cutoff - {d}"

    def count_if(cond: str) -> str:
        return f"count(case when {cond} then 1 end)"

    def sum_if(col: str, cond: str) -> str:
        return f"coalesce(sum(case when {cond} then {col} end), 0)"

    parts = ["max(activity_date) as last_active_date",
             "max(case when is_purchase_day then activity_date end) as last_purchase_date",
             f"{count_if('is_purchase_day')} as purchase_days_total"]
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


def snapshot_sql(event_cols: list[str], with_labels: bool = True, schema: str = PUBLISHED) -> str:
    """SQL for one cutoff (parameters ``$cutoff`` and, with labels, ``$as_of``) on the marts of ``schema``."""
    active_days = int(param("snapshot_population_active_days"))
    activity = f"{schema}.fct_person_activity_daily"
    labels = f"""
, future as (
    select pop.person_id, {_label_aggregates()}
    from pop left join {activity} as a
      on a.person_id = pop.person_id and a.is_active_day and a.activity_date > $cutoff
     and a.activity_date <= least($as_of, $cutoff + {max(churn_horizons() + ltv_horizons())})
    group by pop.person_id
)""" if with_labels else ""
    label_select = ", ".join(f"future.{c}" for c in label_columns()) if with_labels else ""
    return f"""
with pop as (
    select p.person_id, p.registered_date, p.acquisition_channel, p.platform, p.city_tier, p.age_band
    from {schema}.dim_persons as p
    where coalesce(p.consent_analytics, false) and p.registered_date <= $cutoff
      and p.person_id in (select person_id from {activity}
                          where is_active_day and activity_date > $cutoff - {active_days} and activity_date <= $cutoff)
),
hist as (
    select a.person_id,
        {_history_aggregates(event_cols)}
    from {activity} as a
    where a.is_active_day and a.activity_date <= $cutoff and a.person_id in (select person_id from pop)
    group by a.person_id
),
kol as (
    select o.person_id,
        sum(o.net_amount) filter (where o.kol_id is not null) / nullif(sum(o.net_amount), 0) as kol_revenue_share_365d
    from {schema}.fct_orders as o
    where o.is_purchase and o.order_date > $cutoff - 365 and o.order_date <= $cutoff
      and o.person_id in (select person_id from pop)
    group by o.person_id
),
inv as (
    select inviter_person_id as person_id,
        count(*) filter (where sent_date > $cutoff - 30) as invites_sent_30d,
        count(*) filter (where accepted_date > $cutoff - 30 and accepted_date <= $cutoff) as invites_accepted_30d,
        count(*) filter (where accepted_date <= $cutoff) as invites_accepted_total
    from {schema}.fct_invites
    where sent_date <= $cutoff
    group by inviter_person_id
),
links as (
    select inviter_person_id as person_id, invitee_person_id as friend_id from {schema}.fct_invites
    where accepted_date <= $cutoff and invitee_person_id is not null
    union
    select invitee_person_id, inviter_person_id from {schema}.fct_invites
    where accepted_date <= $cutoff and invitee_person_id is not null
),
friends as (
    select l.person_id, sum(a.n_purchases) as friends_purchases_30d
    from links as l
    join {activity} as a
      on a.person_id = l.friend_id and a.activity_date > $cutoff - 30 and a.activity_date <= $cutoff
    where l.person_id in (select person_id from pop)
    group by l.person_id
),
clv as (
    select person_id, {", ".join(CLV_COLUMNS)}
    from {schema}.fct_clv_snapshots
    where snapshot_date = $cutoff and person_id in (select person_id from pop)
){labels}
select
    cast($cutoff as date) as snapshot_date,
    pop.person_id,
    pop.acquisition_channel, pop.platform, pop.city_tier, pop.age_band,
    $cutoff - pop.registered_date as tenure_days,
    $cutoff - hist.last_active_date as days_since_last_active,
    $cutoff - hist.last_purchase_date as days_since_last_purchase,
    hist.* exclude (person_id, last_active_date, last_purchase_date),
    {", ".join(f"hist.net_revenue_{d}d / nullif(hist.purchases_{d}d, 0) as aov_{d}d" for d in MONEY_WINDOWS)},
    kol.kol_revenue_share_365d,
    coalesce(inv.invites_sent_30d, 0) as invites_sent_30d,
    coalesce(inv.invites_accepted_30d, 0) as invites_accepted_30d,
    coalesce(inv.invites_accepted_total, 0) as invites_accepted_total,
    coalesce(friends.friends_purchases_30d, 0) as friends_purchases_30d,
    {", ".join(f"clv.{c} as clv_{c}" for c in CLV_COLUMNS)}
    {"," if with_labels else ""} {label_select}
from pop
join hist using (person_id)
left join kol using (person_id)
left join inv using (person_id)
left join friends using (person_id)
left join clv using (person_id)
{"left join future using (person_id)" if with_labels else ""}
"""


def require_clv_snapshot(con: duckdb.DuckDBPyConnection, cutoff: date, schema: str = PUBLISHED) -> None:
    """UlmError unless ``fct_clv_snapshots`` holds ``cutoff`` (or nobody had purchased by then).

    The snapshots exist for month ends and the marts' as-of day only; any other cutoff would get NULL ``clv_*``
    features (and a cutoff after the marts' as-of day would read stale marts).
    """
    found = con.execute(f"select count(*) > 0 from {schema}.fct_clv_snapshots where snapshot_date = ?",
                        [cutoff]).fetchone()[0]
    if found:
        return
    bought = con.execute(f"select count(*) > 0 from {schema}.fct_person_activity_daily "
                         "where is_purchase_day and activity_date <= ?", [cutoff]).fetchone()[0]
    if bought:
        newest = con.execute(f"select max(snapshot_date) from {schema}.fct_clv_snapshots").fetchone()[0]
        raise UlmError(f"{schema}.fct_clv_snapshots: column snapshot_date has no {cutoff} (rule: snapshots exist "
                       f"for month ends and the as-of day of the marts, {newest}; use one of those days)")


def month_end_cutoffs(con: duckdb.DuckDBPyConnection, as_of: date, schema: str = PUBLISHED) -> list[date]:
    """Month ends after the first activity day, up to ``as_of``."""
    first = con.execute(f"select min(activity_date) from {schema}.fct_person_activity_daily "
                        "where is_active_day").fetchone()[0]
    if first is None:
        return []
    ends = pd.date_range(pd.Timestamp(first), pd.Timestamp(as_of), freq="ME")
    return [d.date() for d in ends if d.date() > first]


@contextmanager
def published_marts(con: duckdb.DuckDBPyConnection, target: str = "duckdb",
                    warehouse: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection whose published schema holds the target's published :data:`INTERFACE` marts: ``con``
    itself on ``duckdb``; on ``postgres`` an in-memory DuckDB with a copy of them read from PostgreSQL (ULM_PG_*);
    on ``spark`` the same from the Spark database ``audit.published_run`` names (``warehouse``: the DuckDB file the
    Spark warehouse sits beside)."""
    if target == "duckdb":
        yield con
        return
    if target not in ("postgres", "spark"):
        raise UlmError(f"ML features: target {target!r} is not supported yet")
    mem = duckdb.connect()
    try:
        t0 = time.perf_counter()
        if target == "postgres":
            from ulm.warehouse import postgres

            copied = postgres.copy_to_duckdb(postgres.PgConfig.from_env(), PUBLISHED, mem, tables=list(INTERFACE))
        else:  # the database Spark's audit.published_run names, through Arrow
            from ulm.privacy.keys import require_pii_key
            from ulm.warehouse import spark

            if warehouse is None:
                raise UlmError("ML features on Spark: the warehouse path is needed")
            key = require_pii_key()
            database = spark.published_database(spark.session(spark.spark_dir(warehouse), key), PUBLISHED)
            if database is None:
                raise UlmError("ML features: nothing is published on Spark yet; run `ulm build --target spark`")
            copied = spark.copy_to_duckdb(warehouse, key, database, mem, PUBLISHED, tables=list(INTERFACE))
        log.info("features read %d rows of %s from %s in %.1fs", sum(copied.values()),
                 ", ".join(sorted(copied)), "PostgreSQL" if target == "postgres" else "Spark",
                 time.perf_counter() - t0)
        yield mem
    finally:
        mem.close()


def snapshot(con: duckdb.DuckDBPyConnection, cutoff: date, as_of: date | None = None,
             schema: str = PUBLISHED) -> pd.DataFrame:
    """Features (and labels when ``as_of`` is given) for one cutoff, as a DataFrame."""
    sql = snapshot_sql(_event_columns(con, schema), with_labels=as_of is not None, schema=schema)
    require_clv_snapshot(con, cutoff, schema)
    params = {"cutoff": cutoff} if as_of is None else {"cutoff": cutoff, "as_of": as_of}
    return con.execute(f"select * from ({sql}) order by person_id", params).df()


def unscored_reasons(con: duckdb.DuckDBPyConnection, cutoff: date, schema: str = PUBLISHED) -> pd.DataFrame:
    """``(reason, persons)`` for the persons of ``dim_persons`` outside the population at ``cutoff``, first match in
    :data:`UNSCORED_REASONS` order. The population itself (reason NULL) is exactly :func:`snapshot`'s rows."""
    days = int(param("snapshot_population_active_days"))
    activity = f"{schema}.fct_person_activity_daily"
    return con.execute(f"""
        with active as (
            select distinct person_id from {activity}
            where is_active_day and activity_date > $cutoff - {days} and activity_date <= $cutoff
        )
        select case when not coalesce(p.consent_analytics, false) then 'no_analytics_consent'
                    when p.registered_date > $cutoff then 'registered_after_scoring'
                    when a.person_id is null then 'inactive' end as reason,
               count(*) as persons
        from {schema}.dim_persons as p left join active as a using (person_id)
        group by all order by persons desc""", {"cutoff": cutoff}).df()


def build_snapshots(warehouse: Path, as_of: date, cutoffs: list[date] | None = None,
                    schema: str = PUBLISHED) -> list[date]:
    """Rebuild ``ml.feature_snapshots`` for all month-end cutoffs up to ``as_of`` (atomic swap)."""
    with connect(warehouse) as con:
        sql = snapshot_sql(_event_columns(con, schema), schema=schema)
        cutoffs = cutoffs if cutoffs is not None else month_end_cutoffs(con, as_of, schema)
        if not cutoffs:
            raise UlmError(f"{schema}.fct_person_activity_daily: column activity_date: no month end with activity on "
                           f"or before {as_of} (rule: training needs point-in-time snapshots; is the as-of day "
                           "before the data?)")
        for cutoff in cutoffs:
            require_clv_snapshot(con, cutoff, schema)
        ensure_ml_schema(con)
        began = time.perf_counter()
        with transaction(con):
            con.execute("drop table if exists ml.feature_snapshots__new")
            for i, cutoff in enumerate(cutoffs):
                start = time.perf_counter()
                verb = ("create table ml.feature_snapshots__new as" if i == 0
                        else "insert into ml.feature_snapshots__new")
                con.execute(f"{verb} {sql}", {"cutoff": cutoff, "as_of": as_of})
                log.debug("snapshot %s in %.1fs", cutoff, time.perf_counter() - start)
            if cutoffs:
                con.execute("drop table if exists ml.feature_snapshots")
                con.execute("alter table ml.feature_snapshots__new rename to feature_snapshots")
    log.info("feature snapshots: %d month-end cutoffs %s .. %s in %.1fs", len(cutoffs), cutoffs[0], cutoffs[-1],
             time.perf_counter() - began)
    return cutoffs


def clv_snapshot(con: duckdb.DuckDBPyConnection, snapshot_date: date, schema: str = PUBLISHED) -> pd.DataFrame:
    """The ``mart_clv_summary`` columns as of ``snapshot_date``: the ``fct_clv_snapshots`` rows of that day
    (a month end or the marts' as-of day), for point-in-time BG/NBD evaluation."""
    require_clv_snapshot(con, snapshot_date, schema)
    return con.execute(f"select person_id, {', '.join(CLV_COLUMNS)} from {schema}.fct_clv_snapshots "
                       "where snapshot_date = ? order by person_id", [snapshot_date]).df()


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
