"""End to end with real Airflow (``dag.test``), Cosmos + dbt, DuckDB, Great Expectations and MLflow.

One small generated data set (session fixture) feeds:

* a direct build (ingest + ``dbt build`` as of the last day D) - the reference;
* ``backfill(D-2, D)`` through the DAGs: every day succeeds, and the published marts equal the direct build
  (marts that accumulate daily history are compared on day D);
* ``run(D)`` again, in a second process, while this process tries to run too: the second attempt is refused
  with a clear message, the first succeeds, the marts are identical (idempotent) and readable;
* a landing file for D+1 with 5% invalid events: the run fails at gate_landing, the published marts keep
  their checksums, no audience export and no scoring run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.transform.publish import table_checksums

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]

END = date(2025, 6, 30)
# a full first day and an incremental second one (three consecutive days run in tests/test_deployment.py)
BACKFILL_DAYS = 2
# marts that keep one slice per as-of day (docs/METRICS.md#interventions daily audiences and alerts; incremental, full refresh off)
# and the outcomes derived from them: a direct build holds only the last day, so they are compared on it
HISTORY = {"mart_interventions": "audience_date", "mart_alerts": "alert_date",
           "mart_intervention_outcomes": "audience_date"}


def _slices(day: date) -> dict[str, str]:
    return {t: f"{c} = DATE '{day.isoformat()}'" for t, c in HISTORY.items()}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Project-local data dir (Airflow home, GX docs, exports, MLflow) and a generated landing folder.

    Module scope: the environment it sets (its own PII key, data dir) is undone when this module ends, so the
    modules xdist runs after it on the same worker see the test-wide key their session fixtures were built with."""
    from ulm.generate import generate

    root = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    mp.setenv("ULM_DATA_DIR", str(root / "data"))
    mp.setenv("ULM_PII_KEY", "e2e-test-key-0123456789abcdef")
    mp.delenv("ULM_WAREHOUSE", raising=False)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    landing = root / "landing"
    generate(out_dir=landing, persons=1200, days=45, end_date=END, seed=11, progress=False)
    yield {"root": root, "data": root / "data", "landing": landing}
    mp.undo()


@pytest.fixture(scope="module")
def direct(env) -> Path:
    """The reference: ingest + plain ``dbt build`` as of END into its own warehouse."""
    from ulm.ingest import ingest_dir
    from ulm.transform.dbt import build

    wh = env["root"] / "direct.duckdb"
    ingest_dir(env["landing"], wh, until=END, progress=False)
    build(RunContext.create(as_of=END, warehouse=wh), progress=False)
    return wh


@pytest.fixture(scope="module")
def backfilled(env) -> dict:
    from ulm.orchestration.runner import backfill

    wh = env["root"] / "dag.duckdb"
    t0 = time.perf_counter()
    # train=False: training is the ML suite's subject; here the ML DAG runs and skips scoring (no champion)
    ctx = RunContext.create(warehouse=wh, landing_dir=env["landing"])
    result = backfill(END - timedelta(days=BACKFILL_DAYS - 1), END, ctx, train=False)
    return {"warehouse": wh, "result": result, "seconds": time.perf_counter() - t0}


def test_backfill_runs_every_day_and_matches_a_direct_build(env, backfilled, direct) -> None:
    result, wh = backfilled["result"], backfilled["warehouse"]
    assert result["days"] == BACKFILL_DAYS
    for day, run in result["runs"].items():
        daily = run["dags"]["ulm_daily"]
        assert daily["state"] == "success", (day, daily)
        assert daily["tasks"]["publish"] == "success" and daily["tasks"]["export_audiences"] == "success"
        # the ML DAG ran after the publish; its tasks succeed or are skipped with a reason, never faked
        ml = run["dags"]["ulm_ml"]
        assert ml["state"] == "success"
        assert set(ml["tasks"].values()) <= {"success", "skipped"}
        assert all(s["reason"] for s in ml["skips"])
    published, reference = table_checksums(wh, slices=_slices(END)), table_checksums(direct, slices=_slices(END))
    assert published == reference
    with duckdb.connect(str(wh), read_only=True) as con:
        gates = con.execute("SELECT gate, count(DISTINCT run_id), bool_and(success OR severity <> 'critical') "
                            "FROM audit.gate_results GROUP BY gate ORDER BY gate").fetchall()
        assert gates == [("landing", BACKFILL_DAYS, True), ("marts", BACKFILL_DAYS, True), ("staging", BACKFILL_DAYS, True)]
        assert con.execute("SELECT count(*) FROM audit.publish_log").fetchone()[0] == BACKFILL_DAYS
        # the audience export for D: exactly the non-holdout rows of the published mart
        expected = con.execute(f"SELECT count(*) FROM marts.mart_interventions WHERE audience_date = "
                               f"DATE '{END}' AND NOT is_holdout").fetchone()[0]
    exports = env["data"] / "exports" / END.isoformat()
    files = sorted(p.name for p in exports.iterdir())
    assert files and len([f for f in files if f.endswith(".parquet")]) == len([f for f in files if f.endswith(".csv")])
    with duckdb.connect() as con:
        exported = con.execute(f"SELECT count(*) FROM read_parquet('{exports}/*.parquet')").fetchone()[0]
    assert exported == expected
    assert (env["data"] / "docs" / "gx" / "index.html").exists()


def test_rerun_is_idempotent_and_a_concurrent_run_is_refused(env, backfilled) -> None:
    from ulm.orchestration.runner import run
    from ulm.warehouse.lock import lock_path

    wh = backfilled["warehouse"]
    before = table_checksums(wh)
    ctx = RunContext.create(as_of=END, warehouse=wh, landing_dir=env["landing"])
    script = ("import sys, json; from datetime import date; from ulm.core.context import RunContext; "
              "from ulm.orchestration.runner import run; "
              f"r = run(RunContext.create(as_of=date.fromisoformat('{END}'), warehouse=r'{wh}', "
              f"landing_dir=r'{env['landing']}'), ml=False); "
              "print(json.dumps(r['dags']['ulm_daily']['state']))")
    first = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the first run holds the lock
            text = lock_path(wh).read_text() if lock_path(wh).exists() else ""
            if f'"pid": {first.pid}' in text:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the first run never took the lock")
        with pytest.raises(UlmError, match=rf"another ULM run is writing the warehouse \(pid {first.pid}"):
            run(ctx, ml=False)
        out, err = first.communicate(timeout=1800)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1]) == "success"
    assert table_checksums(wh) == before  # same logical date twice -> identical marts, and readable


def test_gate_failure_keeps_published_marts_and_stops_export_and_scoring(env, backfilled) -> None:
    from ulm.orchestration.runner import run

    wh = env["root"] / "failing.duckdb"
    shutil.copy(backfilled["warehouse"], wh)
    landing = env["root"] / "landing_bad"
    shutil.copytree(env["landing"], landing)
    bad_day = END + timedelta(days=1)
    _bad_events_file(landing, END, bad_day, invalid_share=0.05)
    before = table_checksums(wh)
    scores_before = _count(wh, "SELECT count(*) FROM ml.scores")

    with pytest.raises(UlmError) as err:
        run(RunContext.create(as_of=bad_day, warehouse=wh, landing_dir=landing))
    message = str(err.value)
    assert "ulm_daily" in message and "gate_landing" in message and "invalid_ratio" in message

    assert table_checksums(wh) == before
    assert not (env["data"] / "exports" / bad_day.isoformat()).exists()
    assert _count(wh, "SELECT count(*) FROM ml.scores") == scores_before
    assert _count(wh, f"SELECT count(*) FROM audit.publish_log WHERE as_of = DATE '{bad_day}'") == 0
    assert _count(wh, f"SELECT count(*) FROM audit.gate_results WHERE as_of = DATE '{bad_day}' "
                      f"AND gate = 'landing' AND NOT success") >= 1
    assert _count(wh, f"SELECT count(*) FROM audit.gate_results WHERE as_of = DATE '{bad_day}' "
                      f"AND gate <> 'landing'") == 0  # nothing downstream of Gate 1 ran


def _bad_events_file(landing: Path, src_day: date, day: date, invalid_share: float) -> None:
    """Copy day ``src_day``'s events to a new file for ``day`` with ``invalid_share`` unknown event types."""
    src = landing / "events" / f"events_{src_day:%Y%m%d}.parquet"
    dst = landing / "events" / f"events_{day:%Y%m%d}.parquet"
    with duckdb.connect() as con:
        con.execute(f"""
            COPY (
                SELECT * REPLACE (
                    'x' || event_id AS event_id,
                    event_ts + INTERVAL 1 DAY AS event_ts,
                    CASE WHEN hash(event_id) % 1000 < {int(invalid_share * 1000)} THEN 'teleport'
                         ELSE event_type END AS event_type)
                FROM read_parquet('{src}')
            ) TO '{dst}' (FORMAT parquet)""")


def _count(wh: Path, sql: str) -> int:
    with duckdb.connect(str(wh), read_only=True) as con:
        try:
            return con.execute(sql).fetchone()[0]
        except duckdb.CatalogException:
            return 0
