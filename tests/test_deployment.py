"""The real deployment (`ulm deploy`, docs/ORCHESTRATION.md#deployment): PostgreSQL, Redis, Airflow's api-server,
scheduler, dag-processor, triggerer, a Celery worker and an MLflow server, all started here, driven through the REST
API exactly as an operator would.

One deployment for the module, on a small generated landing (1,000 persons, 150 days to 2025-06-30, as tests/test_runs_converge.py: enough labelled month-end cutoffs and rows for both models to be promoted):

* security: the API refuses calls without a token and a wrong password; the secrets file is private; every port the
  deployment's processes listen on is bound to loopback;
* three consecutive days are triggered through the REST API (token auth); the third is triggered while the second runs
  and waits (max_active_runs=1: never two writers); the Celery worker is killed with SIGKILL while the second day's
  dbt task runs, `ulm deploy up` brings it back, the task is retried and the run converges;
* the published marts equal a direct `ulm build` of the same landing as of the last day (marts that read ML scores
  aside: the direct build has none);
* every task's log of a daily and an ML run is readable through the API; the ML DAG, triggered by the publish asset
  event, trained (no champion existed) and scored.

PostgreSQL and Redis come from Debian packages (`.ci/run` installs them); outside CI the test skips with the command.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import psutil
import pytest

from ulm.core.errors import UlmError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

DAYS = [date(2025, 6, 28), date(2025, 6, 29), date(2025, 6, 30)]
HISTORY = {"mart_interventions": "audience_date", "mart_alerts": "alert_date",
           "mart_intervention_outcomes": "audience_date"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing_service() -> str | None:
    from ulm.orchestration import deploy

    try:
        deploy._pg_bin("initdb")
        deploy._redis_bin()
    except UlmError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def deployment():
    missing = _missing_service()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: .ci/run should have installed it")
        pytest.skip(f"{missing} (or run `bash .ci/run`, which installs PostgreSQL and Redis)")
    base = Path(tempfile.mkdtemp(prefix="ulm-deploy-"))
    os.chmod(base, 0o755)  # PostgreSQL runs as user postgres and must reach its data dir
    data = base / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ULM_", "AIRFLOW", "MLFLOW"))}
    env.update(ULM_DATA_DIR=str(data), ULM_WAREHOUSE=str(data / "warehouse.duckdb"),
               ULM_LANDING_DIR=str(data / "landing"), ULM_PII_KEY="deploy-test-key-0123456789",
               ULM_DAG_SCHEDULE="manual", ULM_DAG_START_DATE="2025-11-01", ULM_TASK_RETRY_DELAY_SECONDS="5",
               AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="30",
               ULM_PARAMS='{"promotion_min_auc_gain": 0.0}', ULM_DEPLOY_WORKER_CONCURRENCY="2",
               ULM_DEPLOY_PG_PORT=str(_free_port()), ULM_DEPLOY_REDIS_PORT=str(_free_port()),
               ULM_DEPLOY_AIRFLOW_PORT=str(_free_port()), ULM_DEPLOY_MLFLOW_PORT=str(_free_port()))

    def ulm(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ulm.cli", *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    gen = ulm("generate", "--out", str(data / "landing"), "--persons", "1000", "--days", "150", "--seed", "5",
              "--end-date", DAYS[-1].isoformat())
    assert gen.returncode == 0, gen.stderr[-2000:]
    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith(("ULM_", "AIRFLOW", "MLFLOW"))]:
            mp.delenv(k)
        for k, v in env.items():
            mp.setenv(k, v)
        up = ulm("deploy", "up")
        try:
            assert up.returncode == 0, (up.stdout + up.stderr)[-3000:]
            from ulm.orchestration import deploy

            yield {"env": env, "data": data, "ulm": ulm, "api": deploy.client(), "layout": deploy.layout()}
        finally:
            down = ulm("deploy", "down", timeout=300)
            print(down.stdout, down.stderr)
            shutil.rmtree(base, ignore_errors=True)


def test_the_api_needs_a_login_and_secrets_stay_private(deployment) -> None:
    from ulm.orchestration import deploy
    from ulm.orchestration.api import AirflowApi, ApiError

    lay = deployment["layout"]
    with pytest.raises(ApiError) as no_token:
        AirflowApi(lay.airflow_url).get("/api/v2/dags")
    assert no_token.value.status == 401
    with pytest.raises(ApiError) as wrong:
        AirflowApi(lay.airflow_url, deploy.ADMIN, "not-the-password")
    assert wrong.value.status == 401
    assert deployment["api"].get("/api/v2/dags")["total_entries"] == 2
    assert lay.secrets_file.stat().st_mode & 0o077 == 0
    text = lay.secrets_file.read_text()
    assert "airflow" not in {ln.split("=", 1)[1] for ln in text.splitlines() if "=" in ln}  # no default password


def test_everything_listens_on_loopback_only_with_no_secret_in_sight(deployment) -> None:
    lay = deployment["layout"]
    pids = {int(p.read_text()) for p in lay.run.glob("*.pid")}
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        procs += [proc, *proc.children(recursive=True)]
    procs += [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    listening = []
    for proc in procs:
        try:
            listening += [c.laddr for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    ports = {a.port for a in listening}
    assert {lay.pg_port, lay.redis_port, lay.airflow_port, lay.mlflow_port} <= ports
    assert all(a.ip in ("127.0.0.1", "::1") for a in listening), listening
    # and no secret on a command line (`ps` shows those to every user of the machine)
    secrets = [ln.split("=", 1)[1] for ln in lay.secrets_file.read_text().splitlines() if "=" in ln]
    for proc in procs:
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        assert not [s for s in secrets if s in cmd], cmd[:200]


def _worker_pgid(lay) -> int:
    return int((lay.run / "worker.pid").read_text())


def test_three_days_through_the_api_converge_to_a_direct_build(deployment) -> None:
    api, lay, ulm = deployment["api"], deployment["layout"], deployment["ulm"]
    api.set_paused("ulm_daily", False)
    api.set_paused("ulm_ml", False)

    first = api.trigger("ulm_daily", DAYS[0], run_id=f"test__{DAYS[0]}")
    assert api.wait("ulm_daily", first["dag_run_id"], timeout=1200)["state"] == "success", \
        _explain(api, "ulm_daily", first)

    second = api.trigger("ulm_daily", DAYS[1], run_id=f"test__{DAYS[1]}")
    third = api.trigger("ulm_daily", DAYS[2], run_id=f"test__{DAYS[2]}")
    killed, overlap = False, []
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline:
        states = {r["dag_run_id"]: r["state"] for r in api.runs("ulm_daily")}
        if states[second["dag_run_id"]] == "running" and states[third["dag_run_id"]] == "running":
            overlap.append(dict(states))
        if not killed:
            tis = {t["task_id"]: t for t in api.task_instances("ulm_daily", second["dag_run_id"])}
            if tis.get("dbt_audit.dbt_build", {}).get("state") == "running":
                time.sleep(3)  # dbt is building the audit schemas
                pgid = _worker_pgid(lay)
                os.killpg(pgid, signal.SIGKILL)
                killed = True
                _wait_gone(pgid)
                back = ulm("deploy", "up")
                assert back.returncode == 0, back.stdout + back.stderr
                assert _worker_pgid(lay) != pgid, back.stdout  # a new worker took over
        if states[third["dag_run_id"]] in ("success", "failed"):
            break
        time.sleep(2)
    assert killed, "the dbt task of the second day was never seen running"
    assert not overlap, f"two daily runs ran at once: {overlap[:2]}"
    for run in (second, third):
        assert api.run("ulm_daily", run["dag_run_id"])["state"] == "success", _explain(api, "ulm_daily", run)
    dbt = {t["task_id"]: t for t in api.task_instances("ulm_daily", second["dag_run_id"])}["dbt_audit.dbt_build"]
    assert dbt["try_number"] >= 2, dbt  # the killed try was retried

    _wait_for_ml(api)
    _assert_marts_equal_a_direct_build(deployment)
    _assert_logs_readable(api, "ulm_daily", first["dag_run_id"])
    # the publish events triggered ulm_ml: with no champion yet it trained, and once one was promoted it scored (in
    # the same run, or - when the worker kill above hit that run after training - in a later one)
    all_runs = api.runs("ulm_ml")
    ml_runs = [r for r in all_runs if r["state"] == "success"]
    assert ml_runs and all(r["run_type"] == "asset_triggered" for r in all_runs), all_runs
    states = {r["dag_run_id"]: {t["task_id"]: t["state"] for t in api.task_instances("ulm_ml", r["dag_run_id"])}
              for r in all_runs}
    trained = [run_id for run_id, tasks in states.items() if tasks.get("train") == "success"]
    scored = [r["dag_run_id"] for r in ml_runs if states[r["dag_run_id"]].get("score") == "success"]
    assert trained and scored, states
    _assert_logs_readable(api, "ulm_ml", trained[0])
    with duckdb.connect(str(deployment["data"] / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from ml.scores").fetchone()[0] > 0


def _explain(api, dag_id: str, run: dict) -> str:
    """Each task of the run that did not succeed, with the end of each of its tries' logs."""
    lines = [f"{dag_id} {run['dag_run_id']}:"]
    for ti in api.task_instances(dag_id, run["dag_run_id"]):
        if ti["state"] in ("success", "skipped"):
            continue
        lines.append(f"  {ti['task_id']}: {ti['state']} (try {ti['try_number']})")
        for n in range(1, (ti["try_number"] or 0) + 1):
            try:
                tail = api.task_log(dag_id, run["dag_run_id"], ti["task_id"], n)[-1500:]
            except UlmError as exc:
                tail = str(exc)
            lines.append(f"    try {n}: ...{tail}")
    return "\n".join(lines)


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.2)
    raise AssertionError(f"worker {pid} still alive {timeout} s after SIGKILL")


def _wait_for_ml(api, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.runs("ulm_ml")
        if runs and all(r["state"] in ("success", "failed") for r in runs):
            return
        time.sleep(3)
    raise AssertionError(f"ML runs not finished: {[(r['dag_run_id'], r['state']) for r in api.runs('ulm_ml')]}")


def _score_readers(manifest: Path) -> set[str]:
    """Marts that read ML scores (directly or through other models): a direct build without ML differs there."""
    nodes = json.loads(manifest.read_text())
    child_map = nodes["child_map"]
    todo = [u for u, n in nodes["nodes"].items() if n["resource_type"] == "model" and n["name"] == "int_scores_latest"]
    seen: set[str] = set()
    while todo:
        for child in child_map.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return {nodes["nodes"][u]["name"] for u in seen if u in nodes["nodes"]}


def _assert_marts_equal_a_direct_build(deployment) -> None:
    from ulm.transform.publish import table_checksums

    data, env = deployment["data"], deployment["env"]
    direct = data.parent / "direct"
    direct.mkdir()
    denv = {**env, "ULM_DATA_DIR": str(direct), "ULM_WAREHOUSE": str(direct / "warehouse.duckdb")}
    for args in (["ingest", str(data / "landing"), "--until", DAYS[-1].isoformat()],
                 ["build", "--as-of", DAYS[-1].isoformat()]):
        proc = subprocess.run([sys.executable, "-m", "ulm.cli", *args], env=denv, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    skip = _score_readers(data / "dbt" / "target" / "manifest.json")
    slices = {t: f"{c} = (select max({c}) from marts.{t})" for t, c in HISTORY.items()}
    deployed = table_checksums(data / "warehouse.duckdb", slices=slices)
    built = table_checksums(direct / "warehouse.duckdb", slices=slices)
    compared = sorted(set(built) - skip)
    assert len(compared) >= 15, compared
    assert {t: deployed.get(t) for t in compared} == {t: built[t] for t in compared}


def _assert_logs_readable(api, dag_id: str, run_id: str) -> None:
    for ti in api.task_instances(dag_id, run_id):
        if ti["state"] == "skipped" and not ti.get("try_number"):
            continue
        text = api.task_log(dag_id, run_id, ti["task_id"], max(ti["try_number"], 1), ti.get("map_index", -1))
        assert text.strip() and "Log file not found" not in text, (ti["task_id"], text[:300])


CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


SCREENSHOTS = os.environ.get("ULM_SCREENSHOTS") == "1"  # read at import: the deployment fixture clears ULM_*


def _shots_dir(tmp_path: Path) -> Path:
    if SCREENSHOTS:  # refresh the pictures in docs/
        out = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path


@pytest.mark.skipif(CHROMIUM is None, reason="install Chromium: apt-get install chromium")
def test_the_ui_shows_real_durations_logs_and_the_graph(deployment, tmp_path) -> None:
    """After the three days: the grid (wall-clock durations), the dbt task's log and the DAG graph, in Chromium,
    logged in with the API token (the UI's `_token` cookie); screenshots go to docs/ with ULM_SCREENSHOTS=1."""
    sync_api = pytest.importorskip("playwright.sync_api")
    api, lay = deployment["api"], deployment["layout"]
    runs = [r for r in api.runs("ulm_daily") if r["state"] == "success"]
    assert len(runs) >= 3, "run after test_three_days_through_the_api_converge_to_a_direct_build"
    for r in runs:  # real wall-clock durations: minutes, never days
        assert 0 < r["duration"] < 3600, r
    run_id = runs[-1]["dag_run_id"]
    shots = _shots_dir(tmp_path)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 950})
            context.add_cookies([{"name": "_token", "value": api.token, "url": lay.airflow_url}])
            page = context.new_page()
            pages = {"airflow_grid": f"/dags/ulm_daily/runs/{run_id}",
                     "airflow_task_log": f"/dags/ulm_daily/runs/{run_id}/tasks/dbt_audit.dbt_build",
                     "airflow_graph": f"/dags/ulm_daily/runs/{run_id}?mode=graph"}
            for name, path in pages.items():
                page.goto(lay.airflow_url + path)
                page.wait_for_load_state("networkidle", timeout=60_000)
                if name == "airflow_graph":
                    graph = page.get_by_role("button", name="Graph")
                    if graph.count():
                        graph.first.click()
                page.wait_for_timeout(2500)
                assert page.get_by_text("ulm_daily").count() > 0, name
                assert "login" not in page.url, page.url
                if name == "airflow_task_log":
                    assert page.get_by_text("dbt_build").count() > 0
                out = shots / f"{name}.png"
                page.screenshot(path=str(out))
                assert out.stat().st_size > 20_000, name
        finally:
            browser.close()
