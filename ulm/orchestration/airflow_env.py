"""The project-local Airflow environment: configuration, metadata database, dbt manifest.

Airflow state lives under ``<data dir>/airflow`` (SQLite metadata, migrated on first use), DAGs come from
``<home>/dags``, no example DAGs, Cosmos telemetry off, the Cosmos cache under ``<data dir>/cosmos_cache``.
Airflow reads its configuration once per process, at import, so everything Airflow runs here runs in a child
process started with :func:`airflow_env`.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys
from pathlib import Path

from ulm.core import settings as _settings
from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.orchestration.processes import die_with_parent
from ulm.privacy.keys import ensure_local_pii_key
from ulm.warehouse import AUDIT_PREFIX

log = logging.getLogger("ulm.orchestration")

POOL = "ulm_duckdb"  # one slot: one DuckDB writer at a time inside a deployment


def venv_bin(name: str) -> str:
    """An executable of this interpreter's environment (dbt, airflow, mlflow), also when it is not activated."""
    return str(Path(sys.executable).with_name(name))


def airflow_env(ctx: RunContext, **extra: str) -> dict[str, str]:
    """Environment of an Airflow process working on the context's warehouse (project-local state, no telemetry)."""
    ensure_local_pii_key()  # ULM_PII_KEY, else the demo's key file; never a new key (docs/PRIVACY.md#key-safety)
    s = _settings.settings()
    home = s.airflow_home
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(s.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(s.data_dir / "cosmos_cache"),
        "AIRFLOW__COSMOS__PROPAGATE_LOGS": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "1",
        "ULM_HOME": str(s.home),
        "ULM_DATA_DIR": str(ctx.data_dir),
        "ULM_WAREHOUSE": str(ctx.warehouse),
        "ULM_LANDING_DIR": str(ctx.landing_dir),
        _settings.DBT_PII_KEY_ENV: _settings.pii_key() or "",
        "PATH": os.pathsep.join(p for p in (str(Path(sys.executable).parent), os.environ.get("PATH")) if p),
    })
    env.update(extra)
    return env


def ensure_airflow_db(env: dict[str, str]) -> None:
    """``airflow db migrate`` on first use (and after an Airflow upgrade), then the single-writer pool; the in-process
    SQLite store and a deployment's PostgreSQL alike."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".ulm-migrated"
    version = importlib.metadata.version("apache-airflow-core")
    sqlite = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "").startswith("sqlite")
    if marker.exists() and marker.read_text().strip() == version and (not sqlite or (home / "airflow.db").exists()):
        return
    log.info("initialising Airflow metadata in %s (first use, ~20 s)", home)
    for cmd in ([venv_bin("airflow"), "db", "migrate"],
                [venv_bin("airflow"), "pools", "set", POOL, "1", "ULM: one DuckDB writer at a time"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=die_with_parent)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UlmError(f"{' '.join(cmd[1:])} failed in {home}: {tail[0]}")
    marker.write_text(version)


def dbt_manifest_path(data_dir: Path | None = None) -> Path:
    """The manifest the DAG renders its dbt tasks from (``dbt parse`` output, see :func:`ensure_manifest`)."""
    return (data_dir or _settings.data_dir()) / "dbt" / "target" / "manifest.json"


def ensure_manifest(env: dict[str, str]) -> Path:
    """``dbt parse`` (for the audit schemas) into ``<data dir>/dbt/target`` so DAG parsing never runs ``dbt ls``."""
    manifest = dbt_manifest_path(Path(env["ULM_DATA_DIR"]))
    target = manifest.parent
    project = Path(env["ULM_HOME"]) / "dbt_project"
    if _newer_than_sources(manifest, project):
        return manifest
    cmd = [venv_bin("dbt"), "parse", "--project-dir", str(project), "--profiles-dir", str(project),
           "--target-path", str(target), "--log-path", str(target.parent / "logs"), "--no-use-colors", "--quiet"]
    parse_env = {**env, "ULM_SCHEMA_PREFIX": AUDIT_PREFIX}
    proc = subprocess.run(cmd, env=parse_env, capture_output=True, text=True, cwd=str(project),
                          preexec_fn=die_with_parent)
    if proc.returncode != 0 or not manifest.exists():
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise UlmError(f"dbt parse of {project} failed: {lines[-1] if lines else 'no output'}")
    return manifest


def _newer_than_sources(manifest: Path, project: Path) -> bool:
    """The manifest is newer than every file of the dbt project (so parsing again would change nothing)."""
    if not manifest.exists():
        return False
    built = manifest.stat().st_mtime
    return all(p.stat().st_mtime < built for p in project.rglob("*")
               if p.is_file() and not {"target", "logs", "dbt_packages"} & set(p.relative_to(project).parts))
