"""Gate 3, marts (docs/METRICS.md#quality-gates-and-publishing): invariants of the audited marts, each aggregated in the warehouse first (portable SQL:
DuckDB and PostgreSQL).

* ``stage_history`` - one stage per person per day: the stage intervals ``[valid_from, valid_to)`` of a
  person neither overlap nor leave gaps, exactly one is open, and the first starts on the registration day.
* ``stage_counts`` - on every day of ``mart_lifecycle_daily`` the stage counts sum to the persons registered
  by that day (``dim_persons``).
* ``rates`` - every proportion column (name ends in ``rate`` / ``share`` / ``stickiness`` / ``conversion`` [+ ``_<N>d``]) lies
  in [0, 1] in every mart; ``out_of_range`` names the offending table.column. Exempt: ratios docs/METRICS.md#kpis defines as
  per-unit counts that may exceed 1 (:data:`NOT_PROPORTIONS`).
* ``gmv`` - daily GMV in ``mart_kpi_daily`` equals GMV recomputed from the staged orders (docs/METRICS.md#landing-contract: gross
  amount of orders with status paid or refunded), day by day, to the cent.
* ``predicted_ltv`` - every ``predicted_ltv*`` column of every mart is >= 0.
* ``persons`` - every person of the identity graph (``int_persons``) is in ``dim_persons`` exactly once,
  and every ``person_id`` in a mart exists in ``dim_persons`` (a NULL ``dim_persons.person_id`` is refused by the
  model's dbt contract while it is built, so it is not counted here).

These invariants are checked here only: no dbt data test repeats them (docs/ARCHITECTURE.md#data-tests-contracts-and-gates).
"""
from __future__ import annotations

import re
from datetime import date

from ulm.quality.core import (
    DIALECTS,
    Dialect,
    Expect,
    Frame,
    Suite,
    expect_max,
    expect_min,
    models_present_frame,
)

MARTS_SUITE = "marts_invariants"
REQUIRED = ("dim_persons", "fct_lifecycle_stage_history", "mart_lifecycle_daily", "mart_kpi_daily")
_PROPORTION = re.compile(r"^(?!n_)(.*_)?(rate|share|stickiness|conversion)(_\d+d)?$")  # n_share: a count
# Not proportions despite the name: docs/METRICS.md#kpis content interaction rate is interactions per content view (may
# exceed 1); new_persons_via_share is a count of persons.
NOT_PROPORTIONS = ("content_interaction_rate", "new_persons_via_share")
_PERSON_LEVEL_EXEMPT = ("dim_persons",)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def is_proportion(column: str) -> bool:
    return bool(_PROPORTION.search(column)) and not column.startswith(NOT_PROPORTIONS)


def stage_history_frame(marts: str) -> Frame:
    sql = f"""
        WITH h AS (
            SELECT person_id, valid_from, valid_to,
                   lead(valid_from) OVER (PARTITION BY person_id ORDER BY valid_from) AS next_from,
                   row_number() OVER (PARTITION BY person_id ORDER BY valid_from) AS n
            FROM {marts}.fct_lifecycle_stage_history
        ),
        per_person AS (
            SELECT person_id, count(*) FILTER (WHERE valid_to IS NULL) AS open_intervals,
                   min(valid_from) AS first_from
            FROM h GROUP BY person_id
        )
        SELECT
            (SELECT count(*) FROM h WHERE next_from IS NOT NULL AND (valid_to IS NULL OR next_from < valid_to))
                AS overlapping_intervals,
            (SELECT count(*) FROM h WHERE next_from IS NOT NULL AND next_from > valid_to) AS gaps,
            (SELECT count(*) FROM h WHERE valid_to IS NOT NULL AND valid_to <= valid_from) AS empty_intervals,
            (SELECT count(*) FROM per_person WHERE open_intervals <> 1) AS persons_without_one_current_stage,
            (SELECT count(*) FROM {marts}.dim_persons AS d LEFT JOIN per_person AS p USING (person_id)
             WHERE p.first_from IS DISTINCT FROM d.registered_date) AS persons_without_stage_from_registration
    """
    return Frame("stage_history", sql, tuple(expect_max(c, 0) for c in (
        "overlapping_intervals", "gaps", "empty_intervals", "persons_without_one_current_stage",
        "persons_without_stage_from_registration")))


def stage_counts_frame(marts: str, as_of: date) -> Frame:
    sql = f"""
        WITH stage_sums AS (
            SELECT stage_date, sum(persons) AS stage_persons FROM {marts}.mart_lifecycle_daily GROUP BY 1
        ),
        registered AS (
            SELECT registered_date, count(*) AS n FROM {marts}.dim_persons GROUP BY 1
        ),
        expected AS (
            SELECT s.stage_date, s.stage_persons,
                   (SELECT coalesce(sum(n), 0) FROM registered WHERE registered_date <= s.stage_date) AS persons
            FROM stage_sums AS s
        )
        SELECT count(*) AS days,
               count(*) FILTER (WHERE stage_persons <> persons) AS days_where_stage_counts_differ,
               coalesce(max(abs(stage_persons - persons)), 0) AS max_abs_difference,
               (SELECT count(*) FROM expected WHERE stage_date = DATE '{as_of.isoformat()}') AS as_of_day_present
        FROM expected"""
    return Frame("stage_counts", sql, (
        expect_max("days_where_stage_counts_differ", 0),
        expect_max("max_abs_difference", 0),
        expect_min("as_of_day_present", 1),
    ))


def _num_text(col: str, dialect: Dialect) -> str:
    """A double as text alike on every engine (a whole number without '.0', which only DuckDB prints)."""
    return (f"CASE WHEN {col} = floor({col}) AND abs({col}) < 1e15 THEN CAST(CAST({col} AS BIGINT) AS {dialect.text}) "
            f"ELSE CAST({col} AS {dialect.text}) END")


def _column_stats_frame(name: str, marts: str, columns: list[tuple[str, str]], lo: float | None,
                        hi: float | None, dialect: Dialect) -> Frame | None:
    """One row per (table, column): min, max and ``out_of_range`` naming it when outside [lo, hi]."""
    if not columns:
        return None
    conds = []
    if lo is not None:
        conds.append(f"min_value < {lo}")
    if hi is not None:
        conds.append(f"max_value > {hi}")
    parts = [f"SELECT '{t}' AS table_name, '{c}' AS column_name, CAST(min({_q(c)}) AS {dialect.double}) AS "
             f"min_value, CAST(max({_q(c)}) AS {dialect.double}) AS max_value FROM {marts}.{_q(t)}"
             for t, c in columns]
    sql = f"""
        SELECT table_name, column_name, coalesce(min_value, {lo if lo is not None else 0}) AS min_value,
               coalesce(max_value, {hi if hi is not None else 0}) AS max_value,
               CASE WHEN {' OR '.join(conds)}
                    THEN table_name || '.' || column_name || ' in [' || {_num_text("min_value", dialect)} || ', '
                         || {_num_text("max_value", dialect)} || ']'
               END AS out_of_range
        FROM ({' UNION ALL '.join(parts)}) AS stats ORDER BY table_name, column_name"""
    checks: list[Expect] = [Expect("ExpectColumnValuesToBeNull", "out_of_range")]
    if lo is not None:
        checks.append(expect_min("min_value", lo))
    if hi is not None:
        checks.append(expect_max("max_value", hi))
    return Frame(name, sql, tuple(checks))


def gmv_frame(marts: str, staging: str, dialect: Dialect) -> Frame:
    sql = f"""
        WITH mart AS (SELECT kpi_date AS day, gmv FROM {marts}.mart_kpi_daily),
        orders AS (
            SELECT order_date AS day, sum(gross_amount) AS gmv
            FROM {staging}.stg_orders
            WHERE status IN ('paid', 'refunded')
              AND order_date BETWEEN (SELECT min(day) FROM mart) AND (SELECT max(day) FROM mart)
            GROUP BY 1
        ),
        joined AS (
            SELECT coalesce(m.day, o.day) AS day, coalesce(m.gmv, 0) AS mart_gmv, coalesce(o.gmv, 0) AS orders_gmv
            FROM mart AS m FULL OUTER JOIN orders AS o USING (day)
        )
        SELECT count(*) AS days,
               count(*) FILTER (WHERE mart_gmv <> orders_gmv) AS days_with_gmv_mismatch,
               CAST(coalesce(max(abs(mart_gmv - orders_gmv)), 0) AS {dialect.double}) AS max_abs_gmv_difference,
               CAST(coalesce(sum(mart_gmv), 0) AS {dialect.double}) AS mart_gmv_total,
               CAST(coalesce(sum(orders_gmv), 0) AS {dialect.double}) AS orders_gmv_total
        FROM joined"""
    return Frame("gmv", sql, (expect_max("days_with_gmv_mismatch", 0), expect_max("max_abs_gmv_difference", 0)))


def persons_frame(marts: str, intermediate: str, person_tables: list[str], has_identity: bool) -> Frame:
    orphans = " + ".join(
        f"(SELECT count(*) FROM {marts}.{_q(t)} AS x WHERE x.person_id IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {marts}.dim_persons AS d WHERE d.person_id = x.person_id))" for t in person_tables
    ) or "0"
    identity = (f"""(SELECT count(*) FROM {intermediate}.int_persons AS p
                      WHERE NOT EXISTS (SELECT 1 FROM {marts}.dim_persons AS d WHERE d.person_id = p.person_id))"""
                if has_identity else "0")
    sql = f"""
        SELECT count(*) AS persons,
               count(*) - count(DISTINCT person_id) AS duplicate_person_ids,
               {identity} AS identity_persons_missing,
               {orphans} AS mart_rows_with_unknown_person
        FROM {marts}.dim_persons"""
    return Frame("persons", sql, tuple(expect_max(c, 0) for c in (
        "duplicate_person_ids", "identity_persons_missing", "mart_rows_with_unknown_person")))


def marts_suites(schema_columns: dict[str, set[str]], marts: str, staging: str, as_of: date,
                 intermediate_columns: dict[str, set[str]] | None = None,
                 intermediate: str | None = None, target: str = "duckdb") -> list[Suite]:
    """Suites for the marts present in ``marts`` ({table: columns}); missing required marts fail the gate."""
    intermediate = intermediate or marts.replace("marts", "intermediate")
    frames: list[Frame] = [models_present_frame(marts, REQUIRED, schema_columns)]
    dialect = DIALECTS[target]
    present = set(schema_columns)
    if {"fct_lifecycle_stage_history", "dim_persons"} <= present:
        frames.append(stage_history_frame(marts))
    if {"mart_lifecycle_daily", "dim_persons"} <= present:
        frames.append(stage_counts_frame(marts, as_of))
    if "mart_kpi_daily" in present:
        frames.append(gmv_frame(marts, staging, dialect))
    rate_cols = sorted((t, c) for t, cols in schema_columns.items() for c in cols if is_proportion(c))
    ltv_cols = sorted((t, c) for t, cols in schema_columns.items() for c in cols if c.startswith("predicted_ltv"))
    frames.extend(f for f in (_column_stats_frame("rates", marts, rate_cols, 0, 1, dialect),
                              _column_stats_frame("predicted_ltv", marts, ltv_cols, 0, None, dialect)) if f is not None)
    if "dim_persons" in present:
        person_tables = sorted(t for t, cols in schema_columns.items()
                               if "person_id" in cols and t not in _PERSON_LEVEL_EXEMPT)
        has_identity = "int_persons" in (intermediate_columns or {})
        frames.append(persons_frame(marts, intermediate, person_tables, has_identity))
    return [Suite(MARTS_SUITE, tuple(frames))]
