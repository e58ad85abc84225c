"""`ulm dashboard`: the analysts' lifecycle dashboard (docs/DASHBOARD.md), a Streamlit app on the serving snapshot.

It runs ``streamlit run ulm/dashboard/app.py`` as a child process and passes the snapshot path and the UI links
after ``--``. The app reads only the serving snapshot (``<data dir>/serving/serving.duckdb``), never the
warehouse, so it may stay open through every run. It binds to 127.0.0.1 by default: person-level pages (top
spreaders, KOCs, person alerts) must not be reachable by anyone on the network without an authenticating proxy.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import click

from ulm.cli import friendly_errors, main
from ulm.core.errors import UlmError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def streamlit_command(snapshot: Path, *, host: str = "127.0.0.1", port: int = 8501, mlflow_url: str | None = None,
                      airflow_url: str | None = None) -> list[str]:
    """The command line that serves the dashboard (also used by the browser test)."""
    from ulm.dashboard import APP, DEFAULT_AIRFLOW_URL, DEFAULT_MLFLOW_URL

    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--client.toolbarMode", "viewer",
            "--", "--snapshot", str(snapshot), "--mlflow-url", mlflow_url or DEFAULT_MLFLOW_URL,
            "--airflow-url", airflow_url or DEFAULT_AIRFLOW_URL]


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but localhost exposes person-level pages: put an auth proxy in front.")
@click.option("--snapshot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Serving snapshot to read (default <data dir>/serving/serving.duckdb).")
@click.option("--mlflow-url", default="http://localhost:5000", show_default=True, help="Link to the MLflow UI.")
@click.option("--airflow-url", default="http://localhost:8080/dags/ulm_daily", show_default=True,
              help="Link to the Airflow UI.")
@friendly_errors
def dashboard(port, host, snapshot, mlflow_url, airflow_url):
    """Serve the lifecycle dashboard on the serving snapshot (Ctrl-C stops it).

    Pages: lifecycle, acquisition and retention, KPIs, value, channels, community and referral, interventions,
    models and quality. It reads only the serving snapshot, so it never blocks `ulm run`; a new publish shows up
    on the next interaction.
    """
    from ulm.core import settings
    from ulm.dashboard import NO_SNAPSHOT
    from ulm.transform.serving import serving_path

    path = (snapshot or serving_path(settings.data_dir())).expanduser().resolve()
    if host not in LOCAL_HOSTS:
        click.secho(f"warning: binding to {host}: the person-level pages (top spreaders, KOCs, person alerts) are then "
                    "reachable from the network; put an authenticating proxy in front (docs/DASHBOARD.md#privacy)",
                    fg="yellow", err=True)
    if not path.exists():
        click.secho(f"note: {NO_SNAPSHOT} (looked for {path}); the dashboard shows it once it exists", fg="yellow",
                    err=True)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"dashboard on http://{shown}:{port} reading {path} (Ctrl-C stops it)")
    cmd = streamlit_command(path, host=host, port=port, mlflow_url=mlflow_url, airflow_url=airflow_url)
    proc = subprocess.Popen(cmd)
    previous = signal.signal(signal.SIGTERM, _terminated)  # `kill <pid>` stops the server too, not only Ctrl-C
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(proc)
    if code != 0:
        raise UlmError(f"streamlit exited with code {code} (port {port} in use? try --port)")


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
