"""``ulm ui``: every UI of the project at once, with their URLs and the Airflow admin login.

* Airflow (``airflow standalone``, small parallelism, DAGs paused at creation);
* MLflow (``mlflow ui`` on the project's tracking store);
* the analysts' dashboard (``streamlit run ulm/dashboard/app.py`` on the serving snapshot), when the app exists;
* the docs (``<data dir>/docs``, written by ``ulm docs`` and the quality gates) through Python's static
  ``http.server``.

The dashboard and the docs bind to 127.0.0.1 only (the dashboard has person-level pages); neither gets the PII key.
Ctrl-C (or SIGTERM) stops every child; so does the death of any one of them, naming it and its log.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ulm.core import settings as _settings
from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.orchestration.airflow_env import airflow_env, ensure_airflow_db, venv_bin
from ulm.orchestration.processes import sigterm_as_interrupt, spawn, stop
from ulm.transform.serving import serving_path

SECRET_ENV = (_settings.PII_KEY_ENV, _settings.DBT_PII_KEY_ENV, _settings.SUPPRESSION_KEY_ENV)


def dashboard_app() -> Path:
    return _settings.PACKAGE_DIR / "dashboard" / "app.py"


def dashboard_command(port: int, snapshot: Path, *, mlflow_url: str, airflow_url: str) -> list[str]:
    """The Streamlit command line of the dashboard (as ``ulm dashboard`` runs it), bound to 127.0.0.1."""
    return [sys.executable, "-m", "streamlit", "run", str(dashboard_app()),
            "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false",
            "--", "--snapshot", str(snapshot), "--mlflow-url", mlflow_url, "--airflow-url", airflow_url]


def docs_command(port: int, docs_dir: Path) -> list[str]:
    """A static file server for the docs folder, bound to 127.0.0.1."""
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(docs_dir)]


def _check_ports(ports: dict[str, int]) -> None:
    """UlmError naming the first UI whose port is taken (instead of a child dying with an address error)."""
    if len(set(ports.values())) < len(ports):
        raise UlmError(f"two UIs on one port: {', '.join(f'{n} {p}' for n, p in ports.items())}")
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise UlmError(f"port {port} ({name}) is in use: stop what holds it or pass "
                               f"--{name.lower()}-port") from None


def ui(*, airflow_port: int = 8080, mlflow_port: int = 5000, dashboard_port: int = 8501,
       docs_port: int = 8081) -> None:
    """Start Airflow, MLflow, the dashboard and the docs server; print their URLs; stop all on Ctrl-C."""
    s = _settings.settings()
    with_dashboard = dashboard_app().exists()
    ports = {"Airflow": airflow_port, "MLflow": mlflow_port, **({"Dashboard": dashboard_port} if with_dashboard else {}),
             "Docs": docs_port}
    _check_ports(ports)
    env = airflow_env(RunContext.create(), AIRFLOW__CORE__PARALLELISM="4",
                      AIRFLOW__API__PORT=str(airflow_port),
                      AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True")
    ensure_airflow_db(env)
    keyless = {k: v for k, v in env.items() if k not in SECRET_ENV}  # readers of files only: no PII key
    mlflow_dir = s.mlflow_dir
    (mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    logs = s.airflow_home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    docs_dir = s.data_dir / "docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    urls = {name: f"http://localhost:{port}" for name, port in ports.items()}
    procs: dict[str, subprocess.Popen] = {}
    log_files: dict[str, Path] = {}

    def start(name: str, cmd: list[str], child_env: dict[str, str], log_name: str) -> None:
        log_files[name] = logs / log_name
        procs[name] = spawn(cmd, child_env, log_files[name])

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if the caller ignored SIGINT
    try:
        start("Airflow", [venv_bin("airflow"), "standalone"], env, "standalone.log")
        start("MLflow", [venv_bin("mlflow"), "ui",
                         "--backend-store-uri", s.mlflow_tracking_uri or f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                         "--default-artifact-root", str(mlflow_dir / "artifacts"),
                         "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
              env, "mlflow-ui.log")
        if with_dashboard:
            start("Dashboard", dashboard_command(dashboard_port, serving_path(s.data_dir), mlflow_url=urls["MLflow"],
                                                 airflow_url=f"{urls['Airflow']}/dags/ulm_daily"),
                  keyless, "dashboard.log")
        start("Docs", docs_command(docs_port, docs_dir), keyless, "docs-server.log")
        _print_table(urls, docs_dir, with_dashboard, logs, log_files)
        with sigterm_as_interrupt():
            user, password = _wait_for_credentials(procs["Airflow"], s.airflow_home)
            print(f"Airflow login: user {user}, password {password}", flush=True)
            while all(p.poll() is None for p in procs.values()):
                time.sleep(1)
        dead = next(name for name, p in procs.items() if p.poll() is not None)
        raise UlmError(f"{dead} exited with {procs[dead].returncode}; see {log_files[dead]}")
    except KeyboardInterrupt:
        print(f"stopping {', '.join(procs)} ...", flush=True)
    finally:
        for p in procs.values():
            stop(p)


def _print_table(urls: dict[str, str], docs_dir: Path, with_dashboard: bool, logs: Path,
                 log_files: dict[str, Path]) -> None:
    notes = {
        "Airflow": "DAGs ulm_daily, ulm_ml; the login follows once Airflow is up",
        "MLflow": "experiments, runs, registered models (champion / challenger)",
        "Dashboard": "lifecycle dashboard on the serving snapshot",
        "Docs": "/dbt/index.html data model, /gx/index.html data quality by business day",
    }
    rows = [(name, url, notes[name]) for name, url in urls.items()]
    if not with_dashboard:
        rows.insert(2, ("Dashboard", "-", f"skipped: {dashboard_app()} does not exist yet"))
    if not (docs_dir / "index.html").exists():
        rows = [(n, u, f"{t} (no docs built yet: run `ulm docs`)" if n == "Docs" else t) for n, u, t in rows]
    width = max(len(r[1]) for r in rows)
    print("ULM UIs (Ctrl-C stops all):")
    for name, url, note in rows:
        print(f"  {name:<10} {url:<{width}}  {note}")
    print(f"  logs       {logs}: {', '.join(p.name for p in log_files.values())}", flush=True)


def _wait_for_credentials(standalone: subprocess.Popen, airflow_home: Path,
                          timeout: float = 180.0) -> tuple[str, str]:
    """Admin user/password that ``airflow standalone`` writes under AIRFLOW_HOME (simple auth manager)."""
    path = airflow_home / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and standalone.poll() is None:
        if path.exists() and path.read_text().strip():
            creds = json.loads(path.read_text())
            user, password = next(iter(creds.items()))
            return user, password
        time.sleep(1)
    return "admin", f"(see {path})"
