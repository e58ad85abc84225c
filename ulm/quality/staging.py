"""Gate 2, staging (docs/METRICS.md#quality-gates-and-publishing): freshness, volume, accepted values, ranges and uniqueness.

Everything is aggregated in the warehouse (DuckDB, PostgreSQL or Spark: the SQL is portable, but for the
:class:`~ulm.quality.core.Dialect` forms) before GX sees it, so the gate costs a few scans at any scale:

* ``events_freshness_volume`` - one row: latest event day, lag to the as-of day, events on the as-of day,
  the trailing median (``volume_trailing_days`` days before it, counting days with no events as 0, from the
  first day with data) and the relative deviation. Lag <= ``freshness_max_lag_days`` (critical); deviation
  <= ``volume_warn_deviation`` (warning) and <= ``volume_fail_deviation`` (critical).
* ``<table>_integrity`` - one row per staging table: duplicate keys and the min / max of range-constrained
  columns (both from ``ulm.core.contract``). NULLs in key / required columns are not counted here: each such
  column carries a ``not_null`` constraint in the staging model's enforced dbt contract, so the engine refuses the
  row while the model is built, before this gate runs (tests/test_dbt_project.py keeps the two lists equal).
* ``<table>_values`` - the distinct values of every enum column (GROUPING SETS, one scan), checked
  against the contract's enum sets.
* ``identity_components`` (suite ``staging_identity``, when the build's ``int_identity_components`` exists) - one
  row: persons, the accounts of the largest person and how many persons exceed ``giant_component_accounts``;
  a person above it is a warning (docs/METRICS.md#identity: a junk identifier chaining strangers together), also
  raised as a ``giant_identity_component`` row in ``mart_alerts``.

Columns that a staging model does not carry (PII replaced by hashes) are skipped.
"""
from __future__ import annotations

from datetime import date, timedelta

from ulm.core import contract
from ulm.core.settings import param
from ulm.quality.core import (
    DIALECTS,
    WARNING,
    Dialect,
    Expect,
    Frame,
    Suite,
    expect_in_set,
    expect_max,
    expect_min,
    models_present_frame,
)

STAGING_SUITE = "staging_integrity"
FRESHNESS_SUITE = "staging_freshness_volume"
IDENTITY_SUITE = "staging_identity"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def freshness_volume_frame(schema: str, as_of: date, dialect: Dialect = DIALECTS["duckdb"]) -> Frame:
    d = f"DATE '{as_of.isoformat()}'"
    n = int(param("volume_trailing_days"))
    # the trailing days as a VALUES list (generate_series is not on every engine)
    trailing = ", ".join(f"(DATE '{(as_of - timedelta(days=i)).isoformat()}')" for i in range(n, 0, -1))
    sql = f"""
        WITH bounds AS (
            SELECT min(event_date) AS first_day, max(event_date) AS latest_day
            FROM {schema}.stg_events WHERE event_date <= {d}
        ),
        daily AS (
            SELECT event_date AS day, count(*) AS events
            FROM {schema}.stg_events
            WHERE event_date BETWEEN {d} - {n} AND {d}
            GROUP BY event_date
        ),
        history AS (
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY coalesce(daily.events, 0)) AS median_events,
                   count(*) AS trailing_days
            FROM (VALUES {trailing}) AS s(day)
            CROSS JOIN bounds
            LEFT JOIN daily USING (day)
            WHERE s.day >= bounds.first_day
        ),
        today AS (SELECT coalesce(sum(events), 0) AS events FROM daily WHERE day = {d})
        SELECT bounds.latest_day AS latest_event_day,
               coalesce({dialect.day_diff(d, 'bounds.latest_day')}, 99999) AS freshness_lag_days,
               today.events AS events_on_day,
               history.median_events AS trailing_median_events,
               history.trailing_days,
               CASE WHEN coalesce(history.median_events, 0) > 0
                    THEN abs(today.events - history.median_events) / history.median_events
                    ELSE 0 END AS volume_deviation
        FROM bounds, history, today"""
    return Frame("events_freshness_volume", sql, (
        expect_max("freshness_lag_days", int(param("freshness_max_lag_days"))),
        expect_max("volume_deviation", float(param("volume_warn_deviation")), severity=WARNING),
        expect_max("volume_deviation", float(param("volume_fail_deviation"))),
    ))


def integrity_frame(schema: str, table: contract.Table, columns: set[str]) -> Frame | None:
    """Duplicate keys and value ranges of one staging table as a one-row frame (NULLs: the dbt contract)."""
    rel = f"{schema}.stg_{table.name}"
    keys = [k for k in table.key if k in columns]
    aggs: list[str] = ["count(*) AS row_count"]
    checks: list[Expect] = []
    if keys and len(keys) == len(table.key):
        key_list = ", ".join(_q(k) for k in keys)
        aggs.append(f"count(*) - (SELECT count(*) FROM (SELECT DISTINCT {key_list} FROM {rel}) AS k) AS duplicate_keys")
        checks.append(expect_max("duplicate_keys", 0))
    for col in table.columns:
        if col.name not in columns:
            continue
        if col.min_value is not None:
            aggs.append(f"coalesce(min({_q(col.name)}), {col.min_value}) AS {_q('min_' + col.name)}")
            checks.append(expect_min(f"min_{col.name}", col.min_value))
        if col.max_value is not None:
            aggs.append(f"coalesce(max({_q(col.name)}), {col.max_value}) AS {_q('max_' + col.name)}")
            checks.append(expect_max(f"max_{col.name}", col.max_value))
    if not checks:
        return None
    return Frame(f"{table.name}_integrity", f"SELECT {', '.join(aggs)} FROM {rel}", tuple(checks))


def values_frame(schema: str, table: contract.Table, columns: set[str]) -> Frame | None:
    """Distinct values of every enum column in one scan; each checked against its contract set."""
    enums = [c for c in table.columns if c.enum and c.name in columns]
    if not enums:
        return None
    sets = ", ".join(f"({_q(c.name)})" for c in enums)
    cols = ", ".join(_q(c.name) for c in enums)
    sql = f"SELECT {cols}, count(*) AS row_count FROM {schema}.stg_{table.name} GROUP BY GROUPING SETS ({sets})"
    return Frame(f"{table.name}_values", sql, tuple(expect_in_set(c.name, c.enum) for c in enums))


def identity_frame(intermediate: str) -> Frame:
    """Size of the largest person (accounts per person in ``int_identity_components``): a warning above the param."""
    limit = int(param("giant_component_accounts"))
    sql = f"""
        WITH persons AS (
            SELECT person_id, count(*) AS accounts
            FROM {intermediate}.int_identity_components GROUP BY person_id
        )
        SELECT count(*) AS persons,
               coalesce(max(accounts), 0) AS max_accounts_per_person,
               count(*) FILTER (WHERE accounts > {limit}) AS giant_persons
        FROM persons"""
    return Frame("identity_components", sql, (expect_max("max_accounts_per_person", limit, severity=WARNING),))


def staging_suites(schema_columns: dict[str, set[str]], schema: str, as_of: date,
                   intermediate_columns: dict[str, set[str]] | None = None,
                   intermediate: str | None = None, target: str = "duckdb") -> list[Suite]:
    """Suites for the staging models present in ``schema`` ({model: columns} from the target's catalog), plus the
    identity check when ``intermediate`` (the build's intermediate schema) holds ``int_identity_components``; the
    SQL in ``target``'s dialect."""
    frames: list[Frame] = [models_present_frame(schema, [f"stg_{t}" for t in contract.TABLES], schema_columns)]
    for table in contract.TABLES.values():
        columns = schema_columns.get(f"stg_{table.name}")
        if columns is None:
            continue
        frames.extend(f for f in (integrity_frame(schema, table, columns),
                                  values_frame(schema, table, columns)) if f is not None)
    suites = [Suite(STAGING_SUITE, tuple(frames))]
    if "stg_events" in schema_columns:
        suites.insert(0, Suite(FRESHNESS_SUITE, (freshness_volume_frame(schema, as_of, DIALECTS[target]),)))
    if intermediate and "int_identity_components" in (intermediate_columns or {}):
        suites.append(Suite(IDENTITY_SUITE, (identity_frame(intermediate),)))
    return suites
