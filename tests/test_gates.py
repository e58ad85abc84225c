"""Quality gates, write-audit-publish and the run lock, on small hand-built warehouses (no Airflow, real GX).

A consistent little warehouse (3 persons, 10 days) passes every gate; each test then breaks exactly one
docs/METRICS.md#quality-gates-and-publishing rule and checks that the right gate fails, naming the expectation and its observed value, and that
the result rows land in ``audit.gate_results``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.quality.core import GateFailed
from ulm.quality.gates import gate_landing, gate_marts, gate_staging

AS_OF = date(2025, 3, 10)
DAYS = "(SELECT CAST(unnest(generate_series(DATE '2025-03-01', DATE '2025-03-10', INTERVAL 1 DAY)) AS DATE) AS day)"

STAGING_SQL = f"""
CREATE SCHEMA audit_staging;
CREATE TABLE audit_staging.stg_users AS
  SELECT * FROM (VALUES ('u1', 'live', TIMESTAMP '2025-03-01 02:00:00', 'organic', 2, '25-30', 'CN'),
                        ('u2', 'content', TIMESTAMP '2025-03-03 02:00:00', 'referral', 5, '18-24', 'EU'),
                        ('u3', 'group_buy', TIMESTAMP '2025-03-05 02:00:00', 'paid_ads', 1, '>50', 'US'))
  AS t(user_id, platform, registered_at, acquisition_channel, city_tier, age_band, region);
CREATE TABLE audit_staging.stg_events AS
  SELECT 'e' || strftime(day, '%Y%m%d') || '_' || i AS event_id, 'u' || (1 + i % 3) AS user_id,
         CASE WHEN i % 2 = 0 THEN 'app_open' ELSE 'share' END AS event_type,
         CAST(day AS TIMESTAMP) + INTERVAL 3 HOUR AS event_ts, day AS event_date, 'live' AS platform
  FROM {DAYS}, range(100) AS r(i);
CREATE TABLE audit_staging.stg_orders AS
  SELECT 'o' || strftime(day, '%Y%m%d') || '_' || i AS order_id, 'u' || (1 + i % 3) AS user_id,
         CAST(day AS TIMESTAMP) AS order_ts, day AS order_date,
         CASE i WHEN 0 THEN 'paid' WHEN 1 THEN 'refunded' ELSE 'cancelled' END AS status,
         CAST(10 + i AS DECIMAL(18, 2)) AS gross_amount, CAST(0 AS DECIMAL(18, 2)) AS discount_amount,
         CAST(10 + i AS DECIMAL(18, 2)) AS paid_amount, CAST(0 AS DECIMAL(18, 2)) AS refund_amount,
         'live' AS scenario
  FROM {DAYS}, range(3) AS r(i);
CREATE TABLE audit_staging.stg_marketing_spend AS
  SELECT day AS spend_date, 'organic' AS acquisition_channel, 'live' AS platform,
         CAST(5 AS DECIMAL(18, 2)) AS spend FROM {DAYS};
CREATE TABLE audit_staging.stg_invites AS
  SELECT 'i1' AS invite_id, 'u1' AS inviter_user_id, TIMESTAMP '2025-03-02 00:00:00' AS sent_at;
CREATE TABLE audit_staging.stg_nps_responses AS
  SELECT 'n1' AS response_id, 'u1' AS user_id, TIMESTAMP '2025-03-02 00:00:00' AS responded_at, 9 AS score;
CREATE TABLE audit_staging.stg_erasure_requests AS
  SELECT 'r1' AS request_id, 'u9' AS user_id, TIMESTAMP '2025-03-02 00:00:00' AS requested_at;
"""

MARTS_SQL = f"""
CREATE SCHEMA audit_intermediate;
CREATE TABLE audit_intermediate.int_persons AS SELECT * FROM (VALUES ('p1'), ('p2'), ('p3')) AS t(person_id);
CREATE SCHEMA audit_marts;
CREATE TABLE audit_marts.dim_persons AS
  SELECT * FROM (VALUES ('p1', DATE '2025-03-01', 120.5), ('p2', DATE '2025-03-03', NULL),
                        ('p3', DATE '2025-03-05', 0.0)) AS t(person_id, registered_date, predicted_ltv_365);
CREATE TABLE audit_marts.fct_lifecycle_stage_history AS
  SELECT * FROM (VALUES ('p1', 'prospect', DATE '2025-03-01', DATE '2025-03-04'),
                        ('p1', 'new', DATE '2025-03-04', NULL),
                        ('p2', 'prospect', DATE '2025-03-03', NULL),
                        ('p3', 'prospect', DATE '2025-03-05', NULL)) AS t(person_id, stage, valid_from, valid_to);
CREATE TABLE audit_marts.mart_lifecycle_daily AS
  SELECT d.day AS stage_date, s.stage, count(h.person_id) AS persons
  FROM {DAYS} AS d CROSS JOIN (VALUES ('prospect'), ('new')) AS s(stage)
  LEFT JOIN audit_marts.fct_lifecycle_stage_history AS h
    ON h.stage = s.stage AND h.valid_from <= d.day AND (h.valid_to IS NULL OR h.valid_to > d.day)
  GROUP BY ALL;
CREATE TABLE audit_marts.mart_kpi_daily AS
  SELECT d.day AS kpi_date, coalesce(sum(o.gross_amount) FILTER (WHERE o.status IN ('paid', 'refunded')), 0)
             AS gmv, 0.5 AS stickiness, 2.5 AS content_interaction_rate_30d, 7 AS share_events_30d
  FROM {DAYS} AS d LEFT JOIN audit_staging.stg_orders AS o ON o.order_date = d.day GROUP BY ALL;
CREATE TABLE audit_marts.mart_rfm AS SELECT 'p1' AS person_id, 5 AS r_score;
CREATE TABLE audit_marts.mart_interventions AS
  SELECT * FROM (VALUES (DATE '2025-03-10', 'live_lapsed_7d', 'p1', 'live preview push', false),
                        (DATE '2025-03-10', 'live_lapsed_7d', 'p2', 'live preview push', true),
                        (DATE '2025-03-10', 'new_user_silent_3d', 'p3', 'new-user gift pack', false),
                        (DATE '2025-03-09', 'new_user_silent_3d', 'p2', 'new-user gift pack', false))
  AS t(audience_date, rule_id, person_id, action, is_holdout);
"""


@pytest.fixture()
def wh(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(STAGING_SQL)
        con.execute(MARTS_SQL)
    return path


def _ctx(path: Path, run_id: str, data_dir: Path | None = None, prefix: str = "audit_") -> RunContext:
    """The run context a DAG task would pass: this warehouse, the audit prefix, GX docs under ``data_dir``."""
    ctx = RunContext.create(as_of=AS_OF, warehouse=path, schema_prefix=prefix, run_id=run_id)
    return ctx.with_(data_dir=data_dir) if data_dir else ctx


def _sql(path: Path, sql: str) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(sql)


def _rows(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_consistent_warehouse_passes_gates_2_and_3(wh: Path, tmp_path: Path) -> None:
    staged = gate_staging(_ctx(wh, "run-ok", tmp_path))
    marts = gate_marts(_ctx(wh, "run-ok", tmp_path))
    assert staged["failed"] == [] and marts["failed"] == []
    # keys, enums and ranges per staging table (NULLs are the dbt contracts', tests/test_contracts.py)
    assert staged["expectations"] >= 30 and marts["expectations"] > 15
    stored = _rows(wh, "SELECT gate, count(*), bool_and(success) FROM audit.gate_results "
                       "WHERE run_id = 'run-ok' GROUP BY gate ORDER BY gate")
    assert stored == [("marts", marts["expectations"], True), ("staging", staged["expectations"], True)]
    assert (tmp_path / "docs" / "gx" / "index.html").exists()


def test_data_docs_render_only_the_new_run_and_keep_the_earlier_ones(wh: Path, tmp_path: Path) -> None:
    """Each gate renders its own pages and the index, never every result stored before (D82): the first run's
    pages are not rewritten by the second run's gate, the index lists both, and every page is offline."""
    from urllib.parse import quote

    from ulm.quality.docs_offline import MARKER

    docs = tmp_path / "docs" / "gx"
    gate_marts(_ctx(wh, "run-day-1", tmp_path))
    first = {p: p.stat().st_mtime_ns for p in (docs / "validations").rglob("*.html")}
    assert first, "the first gate rendered no validation page"
    old = time.time() - 3600  # as if rendered an hour ago: any rewrite by the next gate would show
    for p in first:
        os.utime(p, (old, old))
    gate_marts(_ctx(wh, "run-2", tmp_path))  # the day again: a new run time, new result pages
    pages = set((docs / "validations").rglob("*.html"))
    assert set(first) < pages, "the second gate rendered no page of its own"
    assert all(abs(p.stat().st_mtime - old) < 1 for p in first), "earlier pages were re-rendered"
    assert all(MARKER in p.read_text(encoding="utf-8") for p in pages | {docs / "index.html"})
    index = (docs / "index.html").read_text(encoding="utf-8")
    assert all(quote(p.relative_to(docs).as_posix()) in index for p in pages), "the index does not list every run"


def test_proportion_columns_are_recognised_by_name() -> None:
    from ulm.quality.marts import is_proportion

    assert all(map(is_proportion, ["stickiness", "repurchase_rate_90d", "paid_conversion_30d", "ugc_share",
                                   "retained_d7_rate", "high_value_gmv_share"]))
    # counts and the interactions-per-view ratio (may exceed 1, docs/METRICS.md#kpis) are not proportions
    assert not any(map(is_proportion, ["n_share", "share_events_30d", "content_interaction_rate_30d",
                                       "new_persons_via_share", "share_id", "k_factor"]))


STAGING_DEFECTS = {
    "duplicate_event": ("INSERT INTO audit_staging.stg_events SELECT * FROM audit_staging.stg_events LIMIT 1",
                        "events_integrity.duplicate_keys", "observed=1"),
    "bad_enum": ("UPDATE audit_staging.stg_orders SET status = 'lost' WHERE order_id LIKE '%_2'",
                 "orders_values.status", "lost"),
    # a NULL in a required column is refused by the staging model's dbt contract at build (tests/test_contracts.py)
    "stale": ("DELETE FROM audit_staging.stg_events WHERE event_date >= DATE '2025-03-09'",
              "events_freshness_volume.freshness_lag_days", "observed=2"),
    "volume_drop": ("DELETE FROM audit_staging.stg_events WHERE event_date = DATE '2025-03-10' "
                    "AND CAST(split_part(event_id, '_', 2) AS INTEGER) >= 10",
                    "events_freshness_volume.volume_deviation", "observed=0.9"),
    "out_of_range": ("UPDATE audit_staging.stg_nps_responses SET score = 11", "nps_responses_integrity.max_score",
                     "observed=11"),
    "missing_model": ("DROP TABLE audit_staging.stg_invites", "models_present.missing", "audit_staging.stg_invites"),
}


@pytest.mark.parametrize("defect", sorted(STAGING_DEFECTS))
def test_gate_2_fails_on_each_staging_defect(wh: Path, tmp_path: Path, defect: str) -> None:
    sql, where, observed = STAGING_DEFECTS[defect]
    _sql(wh, sql)
    with pytest.raises(GateFailed) as err:
        gate_staging(_ctx(wh, f"run-{defect}", tmp_path))
    message = str(err.value)
    assert message.startswith("gate staging failed") and where in message and observed in message
    failed = _rows(wh, f"SELECT frame || '.' || \"column\" FROM audit.gate_results "
                       f"WHERE run_id = 'run-{defect}' AND NOT success AND severity = 'critical'")
    assert where in {f[0] for f in failed}


def test_volume_warning_is_stored_but_does_not_fail(wh: Path, tmp_path: Path) -> None:
    # 60 of 100 events left on the as-of day: deviation 0.4 ... keep 40 -> 0.6: above warn (0.5), below fail (0.8)
    _sql(wh, "DELETE FROM audit_staging.stg_events WHERE event_date = DATE '2025-03-10' "
             "AND CAST(split_part(event_id, '_', 2) AS INTEGER) >= 40")
    report = gate_staging(_ctx(wh, "run-warn", tmp_path))
    assert report["failed"] == []
    assert any("volume_deviation" in w and "observed=0.6" in w for w in report["warnings"])
    assert _rows(wh, "SELECT count(*) FROM audit.gate_results WHERE run_id = 'run-warn' AND NOT success "
                     "AND severity = 'warning'") == [(1,)]


MART_DEFECTS = {
    "stage_overlap": ("INSERT INTO audit_marts.fct_lifecycle_stage_history VALUES "
                      "('p2', 'new', DATE '2025-03-06', NULL)", "stage_history.overlapping_intervals"),
    "stage_counts": ("UPDATE audit_marts.mart_lifecycle_daily SET persons = persons + 1 "
                     "WHERE stage_date = DATE '2025-03-10' AND stage = 'new'",
                     "stage_counts.days_where_stage_counts_differ"),
    "rate_above_one": ("UPDATE audit_marts.mart_kpi_daily SET stickiness = 1.2 WHERE kpi_date = DATE '2025-03-05'",
                       "rates.out_of_range"),
    "gmv": ("UPDATE audit_marts.mart_kpi_daily SET gmv = gmv + 0.01 WHERE kpi_date = DATE '2025-03-10'",
            "gmv.days_with_gmv_mismatch"),
    "negative_ltv": ("UPDATE audit_marts.dim_persons SET predicted_ltv_365 = -5 WHERE person_id = 'p3'",
                     "predicted_ltv.min_value"),
    "duplicate_person": ("INSERT INTO audit_marts.dim_persons VALUES ('p3', DATE '2025-03-05', 1.0)",
                         "persons.duplicate_person_ids"),
    "person_missing": ("DELETE FROM audit_marts.dim_persons WHERE person_id = 'p2'",
                       "persons.identity_persons_missing"),
    "unknown_person": ("INSERT INTO audit_marts.mart_rfm VALUES ('p404', 1)",
                       "persons.mart_rows_with_unknown_person"),
}


@pytest.mark.parametrize("defect", sorted(MART_DEFECTS))
def test_gate_3_fails_on_each_marts_invariant(wh: Path, tmp_path: Path, defect: str) -> None:
    sql, where = MART_DEFECTS[defect]
    _sql(wh, sql)
    with pytest.raises(GateFailed) as err:
        gate_marts(_ctx(wh, f"run-{defect}", tmp_path))
    message = str(err.value)
    assert message.startswith("gate marts failed") and where in message and "observed=" in message


def test_rate_failure_names_the_column(wh: Path, tmp_path: Path) -> None:
    _sql(wh, MART_DEFECTS["rate_above_one"][0])
    with pytest.raises(GateFailed, match=r"mart_kpi_daily\.stickiness in \[0\.5, 1\.2\]"):
        gate_marts(_ctx(wh, "run-rate", tmp_path))


# ------------------------------------------------------------------------------------------- Gate 1

def _landing_wh(tmp_path: Path) -> Path:
    from ulm.warehouse import ensure_raw_schema

    path = tmp_path / "landing.duckdb"
    with duckdb.connect(str(path)) as con:
        ensure_raw_schema(con)
        con.execute("""INSERT INTO raw.load_audit VALUES
            ('events:a:1', 'events', 'a.parquet', 'x', 1000, 990, 10, 0, 0, 'ok', NULL,
             TIMESTAMP '2025-03-10 01:00:00', TIMESTAMP '2025-03-10 01:00:05'),
            ('orders:b:1', 'orders', 'b.parquet', 'y', 100, 98, 1, 1, 0, 'ok', NULL,
             TIMESTAMP '2025-03-10 01:00:06', TIMESTAMP '2025-03-10 01:00:07'),
            ('events:old:1', 'events', 'old.parquet', 'z', 10, 0, 0, 0, 0, 'failed', 'an old failure',
             TIMESTAMP '2025-03-01 01:00:00', TIMESTAMP '2025-03-01 01:00:01')""")
        # 10 quarantined events: 6 late-arriving accounts (not invalid), 4 invalid -> ratio 0.4%
        con.execute("""INSERT INTO raw.quarantine
            SELECT 'events:a:1:' || i, 'events', NULL, CASE WHEN i < 6 THEN 'unknown_account' ELSE 'bad_enum' END,
                   NULL, 'events:a:1', 'a.parquet', TIMESTAMP '2025-03-10 01:00:05', NULL, NULL FROM range(10) t(i)""")
    return path


SINCE = datetime(2025, 3, 10, 0, 0, 0)


def test_gate_1_passes_on_reconciled_loads_of_this_run(tmp_path: Path) -> None:
    path = _landing_wh(tmp_path)
    report = gate_landing(_ctx(path, "run-1", tmp_path, prefix=""), SINCE)
    assert report["failed"] == []  # the old failed load is not part of this run


@pytest.mark.parametrize("defect,sql,where", [
    ("failed_load", "INSERT INTO raw.load_audit VALUES ('users:c:1', 'users', 'c.csv', 'w', 0, 0, 0, 0, 0, "
     "'failed', 'users/c.csv: column platform: bad_enum: invalid ratio 5.00%', TIMESTAMP '2025-03-10 02:00:00', "
     "TIMESTAMP '2025-03-10 02:00:01')", "loads_this_run.failure"),
    ("unreconciled", "UPDATE raw.load_audit SET rows_accepted = rows_accepted - 3 WHERE load_id = 'orders:b:1'",
     "loads_this_run.unreconciled_rows"),
    ("invalid_ratio", "UPDATE raw.quarantine SET reason_code = 'bad_enum'; UPDATE raw.load_audit "
     "SET rows_read = 500, rows_accepted = 490 WHERE load_id = 'events:a:1'", "loads_this_run.invalid_ratio"),
])
def test_gate_1_fails(tmp_path: Path, defect: str, sql: str, where: str) -> None:
    path = _landing_wh(tmp_path)
    _sql(path, sql)
    with pytest.raises(GateFailed) as err:
        gate_landing(_ctx(path, f"run-{defect}", tmp_path, prefix=""), SINCE)
    assert where in str(err.value)
    if defect == "failed_load":
        assert "column platform: bad_enum" in str(err.value)


# ------------------------------------------------------------------------------- write-audit-publish

def checksums(path: Path, schema: str = "marts") -> dict[str, str]:
    from ulm.transform.publish import table_checksums

    return table_checksums(path, schema)


def test_publish_swaps_atomically_and_rolls_back(wh: Path) -> None:
    from ulm.transform.publish import publish

    _sql(wh, "CREATE SCHEMA marts; CREATE TABLE marts.stale_table AS SELECT 1 AS x")
    result = publish(_ctx(wh, "run-pub"))
    assert result["tables"] == 6 and "stale_table" not in result["published"]
    assert checksums(wh, "marts") == checksums(wh, "audit_marts")
    before = checksums(wh, "marts")
    # a broken audited relation: the copy fails half-way -> the whole swap rolls back
    _sql(wh, "CREATE VIEW audit_marts.zz_broken AS SELECT * FROM audit_marts.mart_rfm; "
             "DROP TABLE audit_marts.mart_rfm;")
    with pytest.raises(duckdb.Error):
        publish(_ctx(wh, "run-broken"))
    assert checksums(wh, "marts") == before
    assert _rows(wh, "SELECT run_id FROM audit.publish_log") == [("run-pub",)]


def test_export_writes_one_parquet_and_csv_per_rule_without_holdout(wh: Path, tmp_path: Path) -> None:
    from ulm.transform.exports import export_audiences
    from ulm.transform.publish import publish

    publish(_ctx(wh, "run-exp"))
    out = export_audiences(_ctx(wh, "run-exp"), tmp_path / "exports")
    folder = tmp_path / "exports" / AS_OF.isoformat()
    assert out["rules"] == {"live_lapsed_7d": 1, "new_user_silent_3d": 1}
    assert sorted(p.name for p in folder.iterdir()) == [
        "live_lapsed_7d.csv", "live_lapsed_7d.parquet", "new_user_silent_3d.csv", "new_user_silent_3d.parquet"]
    rows = _rows(wh, f"SELECT person_id FROM read_parquet('{folder}/*.parquet') ORDER BY 1")
    assert rows == [("p1",), ("p3",)]  # p2 is in the live_lapsed_7d holdout; the 03-09 row is another day
    assert "is_holdout" not in (folder / "live_lapsed_7d.csv").read_text().splitlines()[0]
    export_audiences(_ctx(wh, "run-exp"), tmp_path / "exports")  # a re-run replaces the day's folder
    assert len(list(folder.iterdir())) == 4


# ------------------------------------------------------------------------------------------ run lock

def test_second_run_fails_clearly_while_the_lock_is_held(tmp_path: Path, monkeypatch) -> None:
    from ulm.warehouse.lock import lock_path, write_lock

    wh = tmp_path / "wh.duckdb"
    other_data_dir = tmp_path / "elsewhere"  # the lock belongs to the warehouse file, not to a data directory
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ulm.warehouse import write_lock\n"
                               f"with write_lock({str(wh)!r}, 'ulm run --as-of 2025-03-10'):\n"
                               "    print('locked', flush=True); time.sleep(3)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "ULM_DATA_DIR": str(other_data_dir)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UlmError, match=rf"pid {holder.pid}: ulm run --as-of 2025-03-10"):
            with write_lock(wh, "second"):
                pass
        t0 = time.monotonic()
        with write_lock(wh, "waiting", wait_seconds=30) as path:  # waits for the holder, then gets the lock
            assert path == lock_path(wh)
            assert time.monotonic() - t0 > 0.5
    finally:
        holder.wait(timeout=30)


def test_a_dead_holder_s_lock_is_taken_over_with_a_message(tmp_path: Path, caplog) -> None:
    from ulm.warehouse import write_lock
    from ulm.warehouse.lock import lock_path

    wh = tmp_path / "wh.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from ulm.warehouse import write_lock\n"
                               f"with write_lock({str(wh)!r}, 'ulm build --as-of 2025-03-10'):\n"
                               "    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # kill -9: no chance to release; the kernel drops the flock, the record stays
    holder.wait()
    assert str(holder.pid) in lock_path(wh).read_text()
    with caplog.at_level("WARNING", logger="ulm.lock"), write_lock(wh, "next"):
        pass
    assert f"from pid {holder.pid} (ulm build --as-of 2025-03-10" in caplog.text
    assert "no longer running" in caplog.text and lock_path(wh).read_text() == ""  # released cleanly
