"""Trustworthy runs, with real processes: ``kill -9`` anywhere leaves old or new marts and no process behind.

One generated data set, ingested and published as of day D-1 (state P0). A clean ``ulm build --as-of D`` on a copy
gives the reference state P1. Then, on other copies of P0:

* ``ulm build --as-of D`` is killed with SIGKILL during dbt, during the gates and during publish; after each kill
  no ULM process of that data directory is left, the published marts are P0 or P1 (never a mix), and
  ``audit.publish_log`` names the day they hold; a final rerun converges to P1;
* ``ulm run --as-of D --train`` (Airflow in-process) is killed during ingest, while dbt builds and while the models
  train, with the same checks (publish is the code ``ulm build`` was killed in); its rerun converges to
  P1 as well, and its ML half trains on the dbt-built marts, promotes both champions and scores every person of the
  scoring population;
* an as-of day past the data fails the freshness gate and publishes nothing;
* a faulty score (negative LTV) enters the audit build of ``ulm run`` and is caught there: marts and exports stay
  P0, the failure names the check, and the ``--report`` file is written all the same.
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
import psutil
import pytest

from ulm.transform.publish import table_checksums

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

END = date(2025, 6, 30)
BEFORE = END - timedelta(days=1)
HISTORY = {"mart_interventions": "audience_date", "mart_alerts": "alert_date",
           "mart_intervention_outcomes": "audience_date"}


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULM_")}
    env.update(ULM_DATA_DIR=str(data), ULM_WAREHOUSE=str(data / "warehouse.duckdb"),
               ULM_LANDING_DIR=str(data / "landing"), ULM_PII_KEY="kill-test-key-0123456789",
               # 1,000 persons: the churn model beats its baseline, but by less than the production margin
               ULM_PARAMS='{"promotion_min_auc_gain": 0.0}')
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _ulm(data: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log or data / "ulm.log", "w", encoding="utf-8")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "ulm.cli", *args], env=_env(data), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)


def _ok(data: Path, *args: str) -> None:
    proc = _ulm(data, *args)
    assert proc.wait(timeout=900) == 0, (data / "ulm.log").read_text()[-3000:]


def _ours(data: Path) -> list[psutil.Process]:
    """Every live process started for this data directory (by its environment)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get("ULM_DATA_DIR") == str(data):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def _kill_at(data: Path, marker: str, delay: float, *args: str) -> str:
    """Start ``ulm ARGS``, SIGKILL it ``delay`` s after ``marker`` appears in its output; return the output."""
    log = data / "killed.log"
    proc = _ulm(data, *args, log=log)
    deadline = time.monotonic() + 600
    while marker not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"finished before {marker!r}: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"never reached {marker!r}"
        time.sleep(0.2)
    time.sleep(delay)
    os.kill(proc.pid, 9)
    proc.wait()
    deadline = time.monotonic() + 30  # the children get SIGTERM from the kernel and stop theirs
    while _ours(data) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [(p.pid, " ".join(p.cmdline())[:120]) for p in _ours(data)]
    assert left == [], f"processes left behind after kill -9 at {marker!r}: {left}"
    holder = _writer_still_holding(data / "warehouse.duckdb", time.monotonic() + 30)
    assert holder is None, f"the warehouse is still locked after kill -9 at {marker!r}: {holder}"
    return log.read_text(errors="replace")


def _writer_still_holding(wh: Path, deadline: float) -> str | None:
    """None once no process holds ``wh``'s lock, else what holds it at ``deadline``.

    A killed process leaves ``_ours`` before it lets go of its files: the kernel tears down its memory (and with it
    the environment that ``_ours`` reads) before it closes its file descriptors, and a loaded machine
    can take a moment between the two. Its lock is what a rerun waits for, so wait for the lock as well."""
    while True:
        try:
            duckdb.connect(str(wh), read_only=True).close()
            return None
        except duckdb.IOException as exc:
            if time.monotonic() > deadline:
                pid = next((int(w) for w in str(exc).replace(")", " ").split() if w.isdigit()), None)
                if pid is None:
                    return str(exc)
                try:
                    proc = psutil.Process(pid)
                    return f"{exc} | pid {pid}: {proc.status()} {' '.join(proc.cmdline())[:120]}"
                except psutil.Error:
                    return str(exc)
            time.sleep(0.5)


def _state(wh: Path) -> dict[str, str]:
    return table_checksums(wh, slices={t: f"{c} = (SELECT max({c}) FROM marts.{t})" for t, c in HISTORY.items()})


def _published_day(wh: Path) -> date | None:
    with duckdb.connect(str(wh), read_only=True) as con:
        return con.execute("SELECT max_by(as_of, published_at) FROM audit.publish_log").fetchone()[0]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("airflow", "cosmos_cache", "mlflow", "*.lock"))
    return dst


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("converge")
    p0 = root / "p0"
    p0.mkdir()
    _ok(p0, "generate", "--out", str(p0 / "landing"), "--persons", "1000", "--days", "150", "--end-date",
        END.isoformat(), "--seed", "5")
    _ok(p0, "ingest", str(p0 / "landing"))
    _ok(p0, "build", "--as-of", BEFORE.isoformat())
    p1 = _copy(p0, root / "p1")
    _ok(p1, "build", "--as-of", END.isoformat())
    return {"root": root, "p0": p0, "P0": _state(p0 / "warehouse.duckdb"),
            "P1": _state(p1 / "warehouse.duckdb")}


def _assert_old_or_new(states: dict, data: Path, where: str) -> None:
    wh = data / "warehouse.duckdb"
    now, day = _state(wh), _published_day(wh)
    assert now in (states["P0"], states["P1"]), f"kill -9 at {where} left a mix of old and new marts"
    assert day == (BEFORE if now == states["P0"] else END), f"publish_log says {day} after kill at {where}"


def test_kill_9_of_ulm_build_leaves_old_or_new_marts(states) -> None:
    data = _copy(states["p0"], states["root"] / "build_kills")
    for marker, delay in (("1/4 dbt build", 4.0), ("2/4 gates", 1.0), ("3/4 publish", 0.3)):
        _kill_at(data, marker, delay, "build", "--as-of", END.isoformat())
        _assert_old_or_new(states, data, marker)
    _ok(data, "build", "--as-of", END.isoformat(), "--wait", "30")
    assert _state(data / "warehouse.duckdb") == states["P1"]


def test_kill_9_of_ulm_run_leaves_no_writer_and_converges(states) -> None:
    data = _copy(states["p0"], states["root"] / "run_kills")
    run = ("run", "--as-of", END.isoformat(), "--train")
    # (a kill during publish is the same code as `ulm build`'s, killed there: test_kill_9_of_ulm_build_...)
    for marker, delay in (("task ingest", 0.5), ("task dbt_audit.dbt_build", 6.0), ("task train", 3.0)):
        out = _kill_at(data, marker, delay, *run)
        assert marker in out
        _assert_old_or_new(states, data, marker)
    _ok(data, *run, "--wait", "30")
    wh = data / "warehouse.duckdb"
    assert _state(wh) == states["P1"]
    # the ML half: trained on the published, dbt-built marts, both models promoted, every person scored
    out = (data / "ulm.log").read_text()
    assert "ulm_ml" in out and "success" in out, out[-2000:]
    with duckdb.connect(str(wh), read_only=True) as con:
        scored = con.execute("SELECT count(*), count(DISTINCT churn_model_version), count(DISTINCT ltv_model_version) "
                             "FROM ml.scores WHERE score_date = ?", [END]).fetchone()
        population = con.execute(
            "SELECT count(DISTINCT a.person_id) FROM marts.fct_person_activity_daily a JOIN marts.dim_persons p "
            "USING (person_id) WHERE a.is_active_day AND a.activity_date > ? AND p.consent_analytics",
            [END - timedelta(days=90)]).fetchone()[0]
    assert scored == (population, 1, 1) and population > 300


def test_an_as_of_day_past_the_data_never_publishes(states) -> None:
    data = _copy(states["p0"], states["root"] / "future")
    proc = _ulm(data, "build", "--as-of", (END + timedelta(days=30)).isoformat())
    assert proc.wait(timeout=900) == 1
    out = (data / "ulm.log").read_text()
    assert "error:" in out and "fresh" in out, out[-2000:]
    assert _state(data / "warehouse.duckdb") == states["P0"] and _published_day(data / "warehouse.duckdb") == BEFORE


def test_a_bad_value_found_in_the_audit_build_keeps_marts_and_exports(states) -> None:
    """A faulty model output (a negative LTV in ``ml.scores``) enters the audit build through dbt; the quality
    checks stop the run there (dbt's data test on ``int_scores_latest`` fires first; Gate 3 holds the same invariant
    for every mart): nothing is published or exported, the failure names the check, ``--report`` is written."""
    data = _copy(states["p0"], states["root"] / "bad_value")
    wh = data / "warehouse.duckdb"
    exports = sorted(p.name for p in (data / "exports").rglob("*"))
    with duckdb.connect(str(wh)) as con:
        # a person with analytics consent: scores of the others never reach the marts (int_scores_latest)
        person = con.execute("SELECT min(person_id) FROM marts.dim_persons WHERE consent_analytics").fetchone()[0]
        con.execute("INSERT INTO ml.scores VALUES (?, ?, 0.5, -10.00, 'v-bad', 'v-bad')", [person, BEFORE])
    report = data / "report.json"
    proc = _ulm(data, "run", "--as-of", END.isoformat(), "--no-ml", "--report", str(report))
    assert proc.wait(timeout=900) == 1
    out = (data / "ulm.log").read_text()
    assert "error: ulm_daily" in out and "predicted_ltv" in out, out[-2000:]
    result = json.loads(report.read_text())  # the report is written on failure too
    tasks = result["dags"]["ulm_daily"]["tasks"]
    assert "predicted_ltv" in result["error"] and tasks["ingest"] == "success"
    assert tasks["publish"] != "success" and tasks["export_audiences"] != "success"
    with duckdb.connect(str(wh), read_only=True) as con:  # the audit build of END did run
        assert con.execute("SELECT count(*) FROM audit_intermediate.int_scores_latest "
                           "WHERE predicted_ltv_365 < 0").fetchone()[0] == 1
    assert _state(wh) == states["P0"] and _published_day(wh) == BEFORE
    assert sorted(p.name for p in (data / "exports").rglob("*")) == exports


def test_a_failed_model_is_named_with_the_database_message(tmp_path) -> None:
    """What the Cosmos producer's output holds when a model fails (one real dbt event, as logged by ``ulm run``)."""
    from ulm.orchestration.runner import dbt_errors_from_log

    event = {"data": {"msg": "Runtime Error in model int_lifecycle_stage_points (models/intermediate/lifecycle/"
                             "int_lifecycle_stage_points.sql)\n  Binder Error: Referenced column \"abc\" not found in "
                             "FROM clause!\n  Candidate bindings: \"person_id\"",
                      "node_info": {"node_name": "int_lifecycle_stage_points", "resource_type": "model"}},
             "info": {"code": "Z024", "level": "error", "name": "RunResultError"}}
    log = tmp_path / "run.log"
    log.write_text("2026-12-01T21:22:20Z [info ] 127 of 397 ERROR creating sql table model\n"
                   + json.dumps(event) + " [cosmos.operators.base] loc=local.py:304\n")
    assert dbt_errors_from_log(log) == [
        'model int_lifecycle_stage_points: Binder Error: Referenced column "abc" not found in FROM clause!']
