"""Snapshot access and every query of the dashboard: the only module of :mod:`ulm.dashboard` with SQL.

**Freshness.** Every query batch (a rerun's cache misses, :func:`batch`; else a single query) opens its own
connection and closes it; nothing is held between reruns. The connection is a new in-memory DuckDB that ATTACHes the snapshot file read-only, not ``duckdb.connect(path)``:
within one process DuckDB hands out the database instance already open for a path, so while any other
connection of the process (another session's query) had the old snapshot open, a plain connect would keep
returning it after the pipeline renamed a new one over it. An attached file is opened afresh each time.

**Caching.** Results are cached with ``st.cache_data`` keyed on the snapshot's identity: (path, mtime_ns, inode,
size) of the file, read before the query. A new snapshot is a new file (rename), so the key changes and every
cached result of the old one goes stale by itself. If the file changes while a query runs, the result is returned
without being cached (the next rerun reads the new key).

**Privacy.** Person-level frames (a row per person) come only from :func:`_person_level`: persons without
analytics consent (``marts.dim_persons.consent_analytics`` not true) are left out, and no identifier other than
the hashed ``person_id`` leaves this module. Aggregates count everyone (docs/METRICS.md#privacy).

**Missing tables.** The snapshot holds whatever was published; a table that is absent gives an empty frame
(:func:`has` tells the pages which). Marts that newer builds add are used when present, never required.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import streamlit as st

CATALOG = "serving"
# columns that may identify an account or a person other than by the hashed person_id: never shown
_HIDDEN_ID = re.compile(r"(^|_)(user_id|phone|device_id|union_id|email|name|address|ip)$", re.IGNORECASE)


# ------------------------------------------------------------------------------------------ the snapshot
@dataclass(frozen=True)
class Snapshot:
    """One version of the snapshot file, identified by its stat (a new publish is a new file)."""

    path: str
    mtime_ns: int
    inode: int
    size: int

    @property
    def key(self) -> tuple[str, int, int, int]:
        return (self.path, self.mtime_ns, self.inode, self.size)


@dataclass(frozen=True)
class Filters:
    """The sidebar: a date range and channel / platform selections (empty = all)."""

    start: date | None = None
    end: date | None = None
    channels: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()


class _Stale(Exception):
    """The file changed while the query ran: return the result, but do not cache it under the old key."""


def open_snapshot(path: Path | str) -> Snapshot | None:
    """The snapshot at ``path`` as it is now, or None when there is none yet."""
    path = Path(path).expanduser().resolve()
    try:
        st_ = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not path.is_file():
        return None
    return Snapshot(str(path), st_.st_mtime_ns, st_.st_ino, st_.st_size)


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config={"threads": 2})
    try:
        con.execute(f"ATTACH '{path.replace(chr(39), chr(39) * 2)}' AS {CATALOG} (READ_ONLY)")
        con.execute(f"USE {CATALOG}")
    except BaseException:
        con.close()
        raise
    return con


class _Batch:
    """The connection a rerun's cache misses share: opened on the first, closed when the rerun ends."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.con: duckdb.DuckDBPyConnection | None = None

    def connection(self, key: tuple) -> duckdb.DuckDBPyConnection | None:
        if key != self.snap.key:
            return None
        if self.con is None:
            con = _connect(self.snap.path)
            now = open_snapshot(self.snap.path)
            if now is None or now.key != self.snap.key:  # swapped meanwhile: what we attached is not this version
                con.close()
                return None
            self.con = con
        return self.con

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


_local = threading.local()


@contextlib.contextmanager
def batch(snap: Snapshot) -> Iterator[None]:
    """Within the block, queries on ``snap`` that miss the cache share one connection, closed at the end.

    The entry script wraps each rerun in it: one ATTACH per rerun instead of one per query, and still nothing
    held open between reruns. Queries outside a batch open and close their own connection.
    """
    previous = getattr(_local, "batch", None)
    _local.batch = current = _Batch(snap)
    try:
        yield
    finally:
        _local.batch = previous
        current.close()


def _fetch(key: tuple[str, int, int, int], sql: str, params: tuple) -> pd.DataFrame:
    current = getattr(_local, "batch", None)
    shared = current.connection(key) if current is not None else None
    if shared is not None:
        return shared.execute(sql, list(params)).df()
    con = _connect(key[0])
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.close()


@st.cache_data(max_entries=2048, show_spinner=False)
def _cached(key: tuple[str, int, int, int], sql: str, params: tuple) -> pd.DataFrame:
    frame = _fetch(key, sql, params)
    now = open_snapshot(key[0])
    if now is None or now.key != key:
        raise _Stale(frame)
    return frame


def query(snap: Snapshot, sql: str, params: tuple | list = ()) -> pd.DataFrame:
    """Run one SELECT on the snapshot (cached per snapshot version)."""
    try:
        return _cached(snap.key, sql, tuple(params))
    except _Stale as stale:
        return stale.args[0]


def clear_cache() -> None:
    _cached.clear()


def tables(snap: Snapshot) -> frozenset[str]:
    """``schema.table`` of every table in the snapshot."""
    df = query(snap, "SELECT schema_name || '.' || table_name AS t FROM duckdb_tables() WHERE database_name = ?",
               (CATALOG,))
    return frozenset(df["t"])


def has(snap: Snapshot, table: str) -> bool:
    return table in tables(snap)


def columns(snap: Snapshot, table: str) -> tuple[str, ...]:
    schema, name = table.split(".")
    df = query(snap, "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
                     "AND table_name = ? ORDER BY column_index", (CATALOG, schema, name))
    return tuple(df["column_name"])


def _q(snap: Snapshot, table: str, sql: str, params: list | tuple = ()) -> pd.DataFrame:
    """``sql`` when ``table`` is in the snapshot, else an empty frame."""
    if not has(snap, table):
        return pd.DataFrame()
    return query(snap, sql, params)


# ----------------------------------------------------------------------------------------------- filters
class _Where:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []

    def add(self, sql: str, *params: Any) -> _Where:
        self.parts.append(sql)
        self.params.extend(params)
        return self

    def dates(self, f: Filters, column: str, grain: str = "day") -> _Where:
        if f.start is not None:
            self.add(f"{column} >= ?", period_start(f.start, grain))
        if f.end is not None:
            self.add(f"{column} <= ?", f.end)
        return self

    def dims(self, f: Filters, channel: str | None = "acquisition_channel", platform: str | None = "platform") -> _Where:
        for column, values in ((channel, f.channels), (platform, f.platforms)):
            if column and values:
                self.add(f"{column} IN ({', '.join('?' * len(values))})", *values)
        return self

    def person_dims(self, f: Filters, column: str = "person_id") -> _Where:
        """Channel / platform of a person-keyed table, through dim_persons."""
        inner = _Where().dims(f)
        if inner.parts:
            self.add(f"{column} IN (SELECT person_id FROM marts.dim_persons {inner.sql()})", *inner.params)
        return self

    def consented(self, column: str = "person_id") -> _Where:
        return self.add(f"{column} IN (SELECT person_id FROM marts.dim_persons WHERE consent_analytics IS TRUE)")

    def sql(self, keyword: str = "WHERE") -> str:
        return f"{keyword} " + " AND ".join(self.parts) if self.parts else ""


def period_start(day: date, grain: str) -> date:
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    return day


def _person_level(snap: Snapshot, table: str, select: str, f: Filters, *, where: str = "",
                  order: str = "", limit: int | None = None, alias: str = "t") -> pd.DataFrame:
    """A person-level frame: consenting persons only (fails closed without dim_persons), hashed ids only."""
    if not (has(snap, table) and has(snap, "marts.dim_persons")):
        return pd.DataFrame()
    w = _Where().consented(f"{alias}.person_id").person_dims(f, f"{alias}.person_id")
    if where:
        w.add(where)
    sql = f"SELECT {select} FROM {table} AS {alias} {w.sql()} {order}" + (f" LIMIT {int(limit)}" if limit else "")
    frame = query(snap, sql, w.params)
    return frame.drop(columns=[c for c in frame.columns if _HIDDEN_ID.search(c)])


# ------------------------------------------------------------------------------------------ snapshot meta
def meta(snap: Snapshot) -> dict[str, Any]:
    """as_of, run_id, reason, written_at of the snapshot (as_of from the KPIs when meta.snapshot is missing)."""
    out: dict[str, Any] = {"as_of": None, "run_id": None, "reason": None, "written_at": None}
    df = _q(snap, "meta.snapshot", "SELECT as_of, run_id, reason, written_at FROM meta.snapshot LIMIT 1")
    if len(df):
        out.update({k: (None if pd.isna(v) else v) for k, v in df.iloc[0].items()})
    if out["as_of"] is not None:
        out["as_of"] = pd.Timestamp(out["as_of"]).date()
    else:
        df = _q(snap, "marts.mart_kpi_daily", "SELECT max(kpi_date) AS d FROM marts.mart_kpi_daily")
        if len(df) and not pd.isna(df["d"][0]):
            out["as_of"] = pd.Timestamp(df["d"][0]).date()
    return out


def date_bounds(snap: Snapshot) -> tuple[date | None, date | None]:
    """First and last day the daily marts cover."""
    for table, column in (("marts.mart_kpi_daily", "kpi_date"), ("marts.mart_lifecycle_daily", "stage_date")):
        df = _q(snap, table, f"SELECT min({column}) AS lo, max({column}) AS hi FROM {table}")
        if len(df) and not pd.isna(df["lo"][0]):
            return pd.Timestamp(df["lo"][0]).date(), pd.Timestamp(df["hi"][0]).date()
    return None, None


def dimension_values(snap: Snapshot) -> tuple[list[str], list[str]]:
    """Acquisition channels and platforms to filter by."""
    for table in ("marts.dim_persons", "marts.dim_accounts"):
        if has(snap, table):
            ch = query(snap, f"SELECT DISTINCT acquisition_channel AS v FROM {table} WHERE acquisition_channel "
                             "IS NOT NULL ORDER BY 1")
            pl = query(snap, f"SELECT DISTINCT platform AS v FROM {table} WHERE platform IS NOT NULL ORDER BY 1")
            return list(ch["v"]), list(pl["v"])
    return [], []


# --------------------------------------------------------------------------------------------- lifecycle
def stage_order(snap: Snapshot) -> list[str]:
    df = _q(snap, "marts.mart_lifecycle_daily", "SELECT stage, min(stage_order) AS o FROM "
                                                "marts.mart_lifecycle_daily GROUP BY stage ORDER BY o, stage")
    return list(df["stage"]) if len(df) else []


def lifecycle_daily(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "stage_date")
    return _q(snap, "marts.mart_lifecycle_daily", "SELECT stage_date, stage, stage_order, persons FROM "
              f"marts.mart_lifecycle_daily {w.sql()} ORDER BY stage_date, stage_order", w.params)


def stage_counts(snap: Snapshot, day: date | None) -> pd.DataFrame:
    """Persons per stage on ``day`` (or the last day on or before it that the mart has)."""
    cond, params = ("WHERE stage_date <= ?", [day]) if day else ("", [])
    return _q(snap, "marts.mart_lifecycle_daily", "SELECT stage_date, stage, stage_order, persons FROM "
              "marts.mart_lifecycle_daily WHERE stage_date = (SELECT max(stage_date) FROM "
              f"marts.mart_lifecycle_daily {cond}) ORDER BY stage_order", params)


def transition_matrix(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "transition_date")
    return _q(snap, "marts.fct_lifecycle_transitions",
              "SELECT coalesce(from_stage, '(entry)') AS from_stage, to_stage, sum(persons)::BIGINT AS persons, "
              "coalesce(sum(persons) FILTER (WHERE is_reactivation), 0)::BIGINT AS reactivations "
              f"FROM marts.fct_lifecycle_transitions {w.sql()} GROUP BY ALL", w.params)


def stage_flows(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Per stage over the range: persons moving in (reactivations among them), moving out, net."""
    w = _Where().dates(f, "transition_date")
    return _q(snap, "marts.fct_lifecycle_transitions", f"""
        WITH t AS (SELECT * FROM marts.fct_lifecycle_transitions {w.sql()}),
        flows AS (
            SELECT to_stage AS stage, persons AS inflow, 0 AS outflow,
                   CASE WHEN is_reactivation THEN persons ELSE 0 END AS reactivations FROM t
            UNION ALL
            SELECT from_stage, 0, persons, 0 FROM t WHERE from_stage IS NOT NULL)
        SELECT stage, sum(inflow)::BIGINT AS inflow, sum(outflow)::BIGINT AS outflow,
               (sum(inflow) - sum(outflow))::BIGINT AS net, sum(reactivations)::BIGINT AS reactivations
        FROM flows GROUP BY stage""", w.params)


def flows_weekly(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Per week and stage: inflow (positive) and outflow (negative), and reactivations."""
    w = _Where().dates(f, "transition_date")
    return _q(snap, "marts.fct_lifecycle_transitions", f"""
        WITH t AS (SELECT date_trunc('week', transition_date)::DATE AS week, * FROM
                   marts.fct_lifecycle_transitions {w.sql()})
        SELECT week, to_stage AS stage, 'inflow' AS flow, sum(persons)::BIGINT AS persons FROM t GROUP BY ALL
        UNION ALL
        SELECT week, from_stage, 'outflow', -sum(persons)::BIGINT FROM t WHERE from_stage IS NOT NULL GROUP BY ALL
        UNION ALL
        SELECT week, to_stage, 'reactivation', sum(persons)::BIGINT FROM t WHERE is_reactivation GROUP BY ALL
        ORDER BY week""", w.params)


def engagement_lifecycle(snap: Snapshot, f: Filters, grain: str = "week") -> pd.DataFrame:
    w = _Where().add("grain = ?", grain).dates(f, "period_start", grain)
    return _q(snap, "marts.mart_engagement_lifecycle", "SELECT period_start, status, persons FROM "
              f"marts.mart_engagement_lifecycle {w.sql()} ORDER BY period_start, status", w.params)


def stage_mix_by_channel(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Current lifecycle stage (as of the snapshot) per acquisition channel, counting everyone."""
    w = _Where().dims(f)
    return _q(snap, "marts.dim_persons", "SELECT acquisition_channel, coalesce(lifecycle_stage, 'unknown') AS stage, "
              f"count(*)::BIGINT AS persons FROM marts.dim_persons {w.sql()} GROUP BY ALL ORDER BY 1, 2", w.params)


# --------------------------------------------------------------------------------- acquisition and retention
_RATE_OF = {"activated": "activation_rate"}


def _maturity_flag(step: str) -> str:
    """Name of the per-step maturity flag newer builds add (is_mature_activation, is_mature_d7, ...)."""
    return {"activated": "is_mature_activation"}.get(step, "is_mature_" + step.replace("retained_", ""))


def _funnel_rates(snap: Snapshot) -> dict[str, str]:
    """Step column -> the SQL condition of a mature cell for it, in mart_aarrr_funnel (activated, retained_dN...,
    monetized, referred): the step's maturity flag where the mart has one, else its rate being set (the mart leaves
    a rate null until every day of the cohort is fully observed)."""
    cols = columns(snap, "marts.mart_aarrr_funnel") if has(snap, "marts.mart_aarrr_funnel") else ()
    out = {}
    for c in cols:
        rate = _RATE_OF.get(c, f"{c}_rate")
        if rate in cols:
            flag = _maturity_flag(c)
            out[c] = f"({flag} IS TRUE AND {rate} IS NOT NULL)" if flag in cols else f"{rate} IS NOT NULL"
    return out


def funnel_steps(snap: Snapshot) -> list[str]:
    return list(_funnel_rates(snap))


def retention_days(snap: Snapshot) -> list[int]:
    return sorted(int(m.group(1)) for c in funnel_steps(snap) if (m := re.fullmatch(r"retained_d(\d+)", c)))


def funnel_cells(snap: Snapshot, f: Filters, grain: str = "month") -> pd.DataFrame:
    """The mart's cells (cohort x channel x platform) in the range; a null rate is an immature cell."""
    rates = _funnel_rates(snap)
    if not rates:
        return pd.DataFrame()
    w = _Where().add("cohort_grain = ?", grain).dates(f, "cohort_date", grain).dims(f)
    counts = ", ".join(rates)
    shown = ", ".join(f"CASE WHEN {cond} THEN {_RATE_OF.get(s, s + '_rate')} END AS {_RATE_OF.get(s, s + '_rate')}"
                      for s, cond in rates.items())
    return query(snap, f"SELECT cohort_date, acquisition_channel, platform, acquired, {counts}, {shown} "
                       f"FROM marts.mart_aarrr_funnel {w.sql()} ORDER BY cohort_date DESC, acquisition_channel, "
                       "platform", w.params)


def _step_sums(rates: dict[str, str]) -> str:  # step -> condition of a mature cell
    """Per step: persons and acquired over mature cells only (the step's rate not null), and the rate."""
    parts = []
    for s, mature in rates.items():
        parts.append(f"sum({s}) FILTER (WHERE {mature})::BIGINT AS {s}, "
                     f"sum(acquired) FILTER (WHERE {mature})::BIGINT AS {s}_base, "
                     f"(sum({s}) FILTER (WHERE {mature}) / "
                     f"nullif(sum(acquired) FILTER (WHERE {mature}), 0))::DOUBLE AS {s}_rate")
    return ", ".join(parts)


def funnel_totals(snap: Snapshot, f: Filters, grain: str = "month") -> pd.DataFrame:
    """One row: acquired, and per step persons / base / rate (``<step>_rate``) over mature cohorts in the range."""
    steps = _funnel_rates(snap)
    if not steps:
        return pd.DataFrame()
    w = _Where().add("cohort_grain = ?", grain).dates(f, "cohort_date", grain).dims(f)
    return query(snap, f"SELECT sum(acquired)::BIGINT AS acquired, {_step_sums(steps)} "
                       f"FROM marts.mart_aarrr_funnel {w.sql()}", w.params)


def funnel_by_channel_platform(snap: Snapshot, f: Filters, grain: str = "month") -> pd.DataFrame:
    """Per channel x platform: acquired and each step's rate over mature cohorts (null: no mature cohort yet)."""
    steps = _funnel_rates(snap)
    if not steps:
        return pd.DataFrame()
    w = _Where().add("cohort_grain = ?", grain).dates(f, "cohort_date", grain).dims(f)
    return query(snap, f"SELECT acquisition_channel, platform, sum(acquired)::BIGINT AS acquired, {_step_sums(steps)} "
                       f"FROM marts.mart_aarrr_funnel {w.sql()} GROUP BY ALL ORDER BY acquired DESC", w.params)


def retention_trend(snap: Snapshot, f: Filters, grain: str = "week") -> pd.DataFrame:
    """D1 / D7 / D30 retention per cohort period over mature cells: cohort_date, day, rate, acquired."""
    days = retention_days(snap)
    if not days:
        return pd.DataFrame()
    mature = _funnel_rates(snap)
    w = _Where().add("cohort_grain = ?", grain).dates(f, "cohort_date", grain).dims(f)
    unions = " UNION ALL ".join(
        f"SELECT cohort_date, {n} AS day, (sum(retained_d{n}) / nullif(sum(acquired), 0))::DOUBLE AS rate, "
        f"sum(acquired)::BIGINT AS acquired FROM t WHERE {mature[f'retained_d{n}']} GROUP BY cohort_date"
        for n in days)
    return query(snap, f"WITH t AS (SELECT * FROM marts.mart_aarrr_funnel {w.sql()}) {unions} "
                       "ORDER BY cohort_date, day", w.params)


def cohort_retention(snap: Snapshot, f: Filters, grain: str = "week") -> pd.DataFrame:
    w = _Where().add("cohort_grain = ?", grain).dates(f, "cohort_start", grain)
    return _q(snap, "marts.mart_cohort_retention", "SELECT cohort_start, period_number, cohort_size, active_persons, "
              "purchasing_persons, active_rate, purchase_rate FROM marts.mart_cohort_retention "
              f"{w.sql()} ORDER BY cohort_start, period_number", w.params)


# -------------------------------------------------------------------------------------------------- KPIs
def kpi_daily(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "kpi_date")
    return _q(snap, "marts.mart_kpi_daily", f"SELECT * FROM marts.mart_kpi_daily {w.sql()} ORDER BY kpi_date",
              w.params)


def kpi_monthly(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "month_start", "month")
    return _q(snap, "marts.mart_kpi_monthly", f"SELECT * FROM marts.mart_kpi_monthly {w.sql()} "
              "ORDER BY month_start DESC", w.params)


def scorecard(snap: Snapshot, day: date | None = None) -> pd.DataFrame:
    """The scorecard of the last as-of day on or before ``day``."""
    cond, params = ("WHERE as_of_date <= ?", [day]) if day else ("", [])
    return _q(snap, "marts.mart_scorecard", "SELECT * FROM marts.mart_scorecard WHERE as_of_date = "
              f"(SELECT max(as_of_date) FROM marts.mart_scorecard {cond}) ORDER BY kpi_group, kpi", params)


# ------------------------------------------------------------------------------------------------- value
def rfm_grid(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().person_dims(f)
    return _q(snap, "marts.mart_rfm", "SELECT r_score, f_score, mode(rfm_segment) AS rfm_segment, "
              "string_agg(DISTINCT rfm_segment, ', ' ORDER BY rfm_segment) AS segments, count(*)::BIGINT AS persons, "
              f"avg(monetary)::DOUBLE AS avg_monetary FROM marts.mart_rfm {w.sql()} GROUP BY r_score, f_score",
              w.params)


def rfm_segments(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().person_dims(f)
    return _q(snap, "marts.mart_rfm", "SELECT rfm_segment, count(*)::BIGINT AS persons, "
              "avg(recency_days)::DOUBLE AS avg_recency_days, avg(frequency)::DOUBLE AS avg_frequency, "
              "avg(monetary)::DOUBLE AS avg_monetary, sum(monetary)::DOUBLE AS monetary "
              f"FROM marts.mart_rfm {w.sql()} GROUP BY ALL ORDER BY persons DESC", w.params)


TIER_COLUMNS = ("value_tier", "ltv_tier", "social_tier", "spreader_tier")


def value_tiers(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Persons and mean realized / predicted LTV per tier of each tier column of dim_persons."""
    if not has(snap, "marts.dim_persons"):
        return pd.DataFrame()
    cols = columns(snap, "marts.dim_persons")
    realized = "avg(realized_ltv)::DOUBLE" if "realized_ltv" in cols else "NULL::DOUBLE"
    predicted = "avg(predicted_ltv_365)::DOUBLE" if "predicted_ltv_365" in cols else "NULL::DOUBLE"
    w = _Where().dims(f)
    parts = [f"SELECT '{c}' AS tier_type, coalesce({c}, 'none') AS tier, count(*)::BIGINT AS persons, "
             f"{realized} AS avg_realized_ltv, {predicted} AS avg_predicted_ltv_365 FROM marts.dim_persons "
             f"{w.sql()} GROUP BY ALL" for c in TIER_COLUMNS if c in cols]
    if not parts:
        return pd.DataFrame()
    return query(snap, " UNION ALL ".join(parts) + " ORDER BY tier_type, persons DESC", w.params * len(parts))


def clv_frequency(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Repeat-purchase frequency distribution of mart_clv_summary (the BG/NBD inputs)."""
    w = _Where().person_dims(f)
    return _q(snap, "marts.mart_clv_summary", "SELECT CASE WHEN frequency >= 5 THEN '5+' ELSE frequency::VARCHAR END "
              "AS repeat_purchases, count(*)::BIGINT AS persons, avg(monetary_value)::DOUBLE AS avg_order_value, "
              f"avg(recency_days)::DOUBLE AS avg_recency_days FROM marts.mart_clv_summary {w.sql()} "
              "GROUP BY ALL ORDER BY 1", w.params)


SPREADER_COLUMNS = ("person_id", "spreader_rank", "spreader_tier", "direct_reach", "reach", "ugc_posts",
                    "share_attributed_purchases", "is_koc")


def top_spreaders(snap: Snapshot, f: Filters, limit: int = 25) -> pd.DataFrame:
    """Person-level: the best-ranked spreaders (consenting persons only)."""
    cols = columns(snap, "marts.mart_referral_persons") if has(snap, "marts.mart_referral_persons") else ()
    select = ", ".join(f"t.{c}" for c in SPREADER_COLUMNS if c in cols)
    if "person_id" not in cols or "spreader_rank" not in cols:
        return pd.DataFrame()
    return _person_level(snap, "marts.mart_referral_persons", select, f, order="ORDER BY t.spreader_rank",
                         limit=limit)


def kocs(snap: Snapshot, f: Filters, limit: int = 100) -> pd.DataFrame:
    """Person-level: key opinion consumers, from mart_kocs when the snapshot has it, else mart_referral_persons."""
    if has(snap, "marts.mart_kocs") and "person_id" in columns(snap, "marts.mart_kocs"):
        cols = columns(snap, "marts.mart_kocs")
        order = ("ORDER BY t.spreader_rank" if "spreader_rank" in cols else
                 "ORDER BY t.reach DESC, t.person_id" if "reach" in cols else "ORDER BY t.person_id")
        return _person_level(snap, "marts.mart_kocs", "t.*", f, order=order, limit=limit)
    cols = columns(snap, "marts.mart_referral_persons") if has(snap, "marts.mart_referral_persons") else ()
    if "is_koc" not in cols:
        return pd.DataFrame()
    select = ", ".join(f"t.{c}" for c in SPREADER_COLUMNS if c in cols and c != "is_koc")
    return _person_level(snap, "marts.mart_referral_persons", select, f, where="t.is_koc",
                         order="ORDER BY t.spreader_rank", limit=limit)


# ---------------------------------------------------------------------------------------------- channels
def channel_economics(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "cohort_month", "month").dims(f)
    return _q(snap, "marts.mart_channel_economics", "SELECT * FROM marts.mart_channel_economics "
              f"{w.sql()} ORDER BY cohort_month DESC, acquisition_channel, platform", w.params)


def channel_summary(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Per channel over the cohort months in range: spend, CAC, LTV per person, LTV/CAC, payback, paused cells."""
    w = _Where().dates(f, "cohort_month", "month").dims(f)
    return _q(snap, "marts.mart_channel_economics", f"""
        SELECT acquisition_channel, sum(spend)::DOUBLE AS spend, sum(new_persons)::BIGINT AS new_persons,
               sum(paying_persons)::BIGINT AS paying_persons,
               (sum(spend) / nullif(sum(new_persons), 0))::DOUBLE AS cac,
               (sum(predicted_ltv_per_person * new_persons) / nullif(sum(new_persons), 0))::DOUBLE AS ltv_per_person,
               (sum(predicted_ltv_per_person * new_persons) / nullif(sum(spend), 0))::DOUBLE AS ltv_cac_ratio,
               median(payback_days)::DOUBLE AS median_payback_days,
               count(*) FILTER (WHERE pause_recommended)::BIGINT AS cells_pause, count(*)::BIGINT AS cells
        FROM marts.mart_channel_economics {w.sql()} GROUP BY ALL ORDER BY spend DESC""", w.params)


def channel_spend_monthly(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "cohort_month", "month").dims(f)
    return _q(snap, "marts.mart_channel_economics", "SELECT cohort_month, acquisition_channel, "
              "sum(spend)::DOUBLE AS spend, sum(new_persons)::BIGINT AS new_persons FROM "
              f"marts.mart_channel_economics {w.sql()} GROUP BY ALL ORDER BY 1, 2", w.params)


# ------------------------------------------------------------------------------------ community, referral
def referral_monthly(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "month", "month")
    return _q(snap, "marts.mart_referral", f"SELECT * FROM marts.mart_referral {w.sql()} ORDER BY month", w.params)


def referral_tiers(snap: Snapshot) -> pd.DataFrame:
    return _q(snap, "marts.mart_referral_tier_counts", "SELECT segment_type, segment, persons FROM "
              "marts.mart_referral_tier_counts WHERE as_of_date = (SELECT max(as_of_date) FROM "
              "marts.mart_referral_tier_counts) ORDER BY segment_type, persons DESC")


def community_daily(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "activity_date")
    return _q(snap, "marts.mart_community_daily", f"SELECT * FROM marts.mart_community_daily {w.sql()} "
              "ORDER BY activity_date", w.params)


def community_monthly(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "month", "month")
    return _q(snap, "marts.mart_community_monthly", f"SELECT * FROM marts.mart_community_monthly {w.sql()} "
              "ORDER BY month DESC", w.params)


def community_stages(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Community members per member-lifecycle stage (everyone counted)."""
    w = _Where().person_dims(f)
    return _q(snap, "marts.mart_community_members", "SELECT member_stage, count(*)::BIGINT AS members, "
              "avg(days_since_last_open)::DOUBLE AS avg_days_since_last_open FROM marts.mart_community_members "
              f"{w.sql()} GROUP BY ALL ORDER BY members DESC", w.params)


# ----------------------------------------------------------------------------------------- interventions
def audiences(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Audience size per audience day and rule: treated, holdout, total (everyone counted)."""
    w = _Where().dates(f, "audience_date").person_dims(f)
    return _q(snap, "marts.mart_interventions", "SELECT audience_date, rule_id, string_agg(DISTINCT action, ', ') "
              "AS action, count(*) FILTER (WHERE NOT is_holdout)::BIGINT AS treated, "
              "count(*) FILTER (WHERE is_holdout)::BIGINT AS holdout, count(*)::BIGINT AS audience "
              f"FROM marts.mart_interventions {w.sql()} GROUP BY audience_date, rule_id "
              "ORDER BY audience_date DESC, rule_id", w.params)


def intervention_outcomes(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "audience_date")
    return _q(snap, "marts.mart_intervention_outcomes", "SELECT * FROM marts.mart_intervention_outcomes "
              f"{w.sql()} ORDER BY audience_date DESC, rule_id", w.params)


def uplift_summary(snap: Snapshot, f: Filters) -> pd.DataFrame:
    """Per rule, pooled over audiences in the range whose outcome window has passed: counts, active shares, uplift."""
    if not has(snap, "marts.mart_intervention_outcomes"):
        return pd.DataFrame()
    w = _Where().dates(f, "audience_date")
    if "is_window_complete" in columns(snap, "marts.mart_intervention_outcomes"):
        w.add("is_window_complete")
    return query(snap, f"""
        SELECT rule_id, count(*)::BIGINT AS audiences, sum(treated_persons)::BIGINT AS treated_persons,
               sum(holdout_persons)::BIGINT AS holdout_persons,
               sum(treated_active_persons)::BIGINT AS treated_active_persons,
               sum(holdout_active_persons)::BIGINT AS holdout_active_persons,
               (sum(treated_active_persons) / nullif(sum(treated_persons), 0))::DOUBLE AS treated_active_share,
               (sum(holdout_active_persons) / nullif(sum(holdout_persons), 0))::DOUBLE AS holdout_active_share,
               (sum(treated_active_persons) / nullif(sum(treated_persons), 0)
                - sum(holdout_active_persons) / nullif(sum(holdout_persons), 0))::DOUBLE AS uplift
        FROM marts.mart_intervention_outcomes {w.sql()} GROUP BY rule_id ORDER BY rule_id""", w.params)


def alert_counts(snap: Snapshot, f: Filters) -> pd.DataFrame:
    w = _Where().dates(f, "alert_date")
    return _q(snap, "marts.mart_alerts", "SELECT rule_id, count(*)::BIGINT AS alerts, max(alert_date) AS last_alert "
              f"FROM marts.mart_alerts {w.sql()} GROUP BY ALL ORDER BY alerts DESC", w.params)


def alerts(snap: Snapshot, f: Filters, limit: int = 200) -> pd.DataFrame:
    """Alerts in the range: about channels and KPIs (no person), and about consenting persons only."""
    if not has(snap, "marts.mart_alerts"):
        return pd.DataFrame()
    cols = columns(snap, "marts.mart_alerts")
    w = _Where().dates(f, "alert_date")
    if "person_id" in cols:
        w.add("(person_id IS NULL OR person_id IN (SELECT person_id FROM marts.dim_persons "
              "WHERE consent_analytics IS TRUE))")
    frame = query(snap, f"SELECT * FROM marts.mart_alerts {w.sql()} ORDER BY alert_date DESC, rule_id, subject "
                        f"LIMIT {int(limit)}", w.params)
    return frame.drop(columns=[c for c in frame.columns if _HIDDEN_ID.search(c)])


# ---------------------------------------------------------------------------------------- models, quality
def ml_tables(snap: Snapshot) -> list[str]:
    return sorted(t.split(".", 1)[1] for t in tables(snap) if t.startswith("ml."))


def champions(snap: Snapshot) -> pd.DataFrame:
    """Model versions that scored, per score day (latest first), with how many persons they scored."""
    if not has(snap, "ml.scores"):
        return pd.DataFrame()
    cols = columns(snap, "ml.scores")
    versions = [c for c in ("churn_model_version", "ltv_model_version") if c in cols]
    means = [f"avg({c})::DOUBLE AS mean_{c}" for c in ("churn_probability", "predicted_ltv_365") if c in cols]
    select = ", ".join(["score_date", *versions, "count(*)::BIGINT AS persons_scored", *means])
    return query(snap, f"SELECT {select} FROM ml.scores GROUP BY ALL ORDER BY score_date DESC LIMIT 20")


def ml_table(snap: Snapshot, name: str, limit: int = 500) -> pd.DataFrame:
    """Any other ml.* output (model_metrics, models, ...) as it is, without identifiers."""
    table = f"ml.{name}"
    if not has(snap, table):
        return pd.DataFrame()
    frame = query(snap, f'SELECT * FROM ml."{name}" LIMIT {int(limit)}')
    hidden = [c for c in frame.columns if _HIDDEN_ID.search(c) or c == "person_id"]
    return frame.drop(columns=hidden)


def _latest(table: str, partition: str) -> str:
    return (f"SELECT * FROM {table} QUALIFY created_at = max(created_at) OVER (PARTITION BY {partition})")


def fairness_ratios(snap: Snapshot) -> pd.DataFrame:
    """Latest fairness report per task: min/max ratio of the error score (and of the positive rate) per attribute."""
    if not has(snap, "ml.fairness_report"):
        return pd.DataFrame()
    cols = columns(snap, "ml.fairness_report")
    if not {"task", "attribute", "error_score", "gated", "created_at"} <= set(cols):
        return pd.DataFrame()
    pr = ("(min(predicted_positive_rate) FILTER (WHERE gated) / nullif(max(predicted_positive_rate) "
          "FILTER (WHERE gated), 0))::DOUBLE AS positive_rate_ratio, ") if "predicted_positive_rate" in cols else ""
    version = "any_value(model_version) AS model_version, " if "model_version" in cols else ""
    date_col = "max(report_date) AS report_date, " if "report_date" in cols else ""
    return query(snap, f"SELECT task, attribute, {version}{date_col}"
                       "(min(error_score) FILTER (WHERE gated) / nullif(max(error_score) FILTER (WHERE gated), 0))"
                       f"::DOUBLE AS error_ratio, {pr}count(*)::BIGINT AS groups, "
                       "count(*) FILTER (WHERE gated)::BIGINT AS gated_groups "
                       f"FROM ({_latest('ml.fairness_report', 'task')}) GROUP BY task, attribute ORDER BY 1, 2")


def fairness_groups(snap: Snapshot) -> pd.DataFrame:
    if not has(snap, "ml.fairness_report") or "created_at" not in columns(snap, "ml.fairness_report"):
        return pd.DataFrame()
    return query(snap, f"SELECT * EXCLUDE (created_at) FROM ({_latest('ml.fairness_report', 'task')}) "
                       "ORDER BY task, attribute")


def drift(snap: Snapshot) -> pd.DataFrame:
    """Latest drift report per task and context: PSI per feature (and of the score) with the alert threshold."""
    if not has(snap, "ml.drift_report"):
        return pd.DataFrame()
    cols = columns(snap, "ml.drift_report")
    if not {"feature", "psi", "created_at"} <= set(cols):
        return pd.DataFrame()
    part = ", ".join(c for c in ("task", "context") if c in cols) or "feature"
    keep = [c for c in ("report_date", "task", "context", "feature", "psi", "threshold", "alert", "n_expected",
                        "n_actual") if c in cols]
    return query(snap, f"SELECT {', '.join(keep)} FROM ({_latest('ml.drift_report', part)}) ORDER BY psi DESC")


def ml_alerts(snap: Snapshot, limit: int = 50) -> pd.DataFrame:
    if not has(snap, "ml.alerts"):
        return pd.DataFrame()
    order = "ORDER BY alert_date DESC" if "alert_date" in columns(snap, "ml.alerts") else ""
    frame = query(snap, f"SELECT * FROM ml.alerts {order} LIMIT {int(limit)}")
    return frame.drop(columns=[c for c in frame.columns if _HIDDEN_ID.search(c) or c == "person_id"])


_LAST_GATE_RUNS = ("SELECT gate, run_id FROM audit.gate_results GROUP BY gate, run_id "
                   "QUALIFY row_number() OVER (PARTITION BY gate ORDER BY max(checked_at) DESC) = 1")


def gate_summary(snap: Snapshot) -> pd.DataFrame:
    """The last run of each gate: checks, failures (critical ones among them), as-of day, when."""
    return _q(snap, "audit.gate_results", f"""
        SELECT g.gate, g.suite, g.run_id, max(g.as_of) AS as_of, count(*)::BIGINT AS checks,
               count(*) FILTER (WHERE NOT g.success)::BIGINT AS failed,
               count(*) FILTER (WHERE NOT g.success AND g.severity = 'critical')::BIGINT AS critical_failed,
               max(g.checked_at) AS checked_at
        FROM audit.gate_results g JOIN ({_LAST_GATE_RUNS}) r USING (gate, run_id)
        GROUP BY ALL ORDER BY min(g.checked_at), g.suite""")


def gate_failures(snap: Snapshot) -> pd.DataFrame:
    """Failed checks of the last run of each gate. Sample values of unexpected rows are cut off (they may be ids)."""
    return _q(snap, "audit.gate_results", f"""
        SELECT g.gate, g.suite, g.frame, g.expectation, g."column", g.severity,
               split_part(g.observed_value, ' e.g. ', 1) AS observed, g.checked_at
        FROM audit.gate_results g JOIN ({_LAST_GATE_RUNS}) r USING (gate, run_id)
        WHERE NOT g.success ORDER BY g.severity, g.gate, g.suite""")


def publish_log(snap: Snapshot, limit: int = 20) -> pd.DataFrame:
    return _q(snap, "audit.publish_log", "SELECT run_id, as_of, tables, total_rows, published_at FROM "
              f"audit.publish_log ORDER BY published_at DESC LIMIT {int(limit)}")
