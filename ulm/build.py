"""Build the warehouse: `dbt build` (models + data tests; dbt unit tests on request) as of a business date.

Runs dbt in-process through ``dbtRunner`` with env ``ULM_AS_OF`` and ``--vars {schema_prefix}``. The dbt target and logs go next to
the warehouse file (``<warehouse stem>_dbt/``), so the repository stays clean. The PII key is read from
``ULM_PII_KEY`` and handed to dbt as ``DBT_ENV_SECRET_ULM_PII_KEY``: dbt scrubs ``DBT_ENV_SECRET_*`` values from
its logs, and the ``ulm.privacy`` plugin reads it to register the HMAC UDF.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any


from ulm.config import dbt_project_dir
from ulm.errors import UlmError

SECRET_ENV = "DBT_ENV_SECRET_ULM_PII_KEY"
FAILED_STATUSES = {"error", "fail", "runtime error"}


def _pii_key() -> str:
    key = os.environ.get("ULM_PII_KEY")
    if not key:
        raise UlmError("ULM_PII_KEY is not set: export a secret key (e.g. `export ULM_PII_KEY=$(openssl rand -hex 32)`)")
    return key


def ensure_raw_layer(warehouse: Path) -> None:
    """Create the `raw` schema and any missing raw table (empty) so every dbt source resolves."""
    from ulm.ingest.warehouse import ensure_raw_schema, open_warehouse

    con = open_warehouse(warehouse)
    try:
        ensure_raw_schema(con)
    finally:
        con.close()


def dbt_dirs(warehouse: Path) -> tuple[Path, Path]:
    """(target path, log path) for builds of this warehouse."""
    base = warehouse.parent / f"{warehouse.stem}_dbt"
    return base / "target", base / "logs"


@contextmanager
def _dbt_env(warehouse: Path, key: str, as_of: date) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("ULM_WAREHOUSE", SECRET_ENV, "ULM_AS_OF")}
    os.environ["ULM_WAREHOUSE"] = str(warehouse)
    os.environ[SECRET_ENV] = key
    os.environ["ULM_AS_OF"] = as_of.isoformat()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dbt_args(command: str, warehouse: Path, full_refresh: bool = False, select: str | None = None,
             schema_prefix: str = "", progress: bool = True, unit_tests: bool = False) -> list[str]:
    """Command-line arguments for one dbt invocation on this project and warehouse.

    A production `build` skips dbt unit tests (they test SQL logic on fixed fixtures, not the data, and belong in CI:
    `dbt test` and the pytest suite run them); ``unit_tests=True`` includes them.
    """
    target, logs = dbt_dirs(warehouse)
    project = dbt_project_dir()
    args = [
        command,
        "--project-dir", str(project),
        "--profiles-dir", str(project),
        "--target-path", str(target),
        "--log-path", str(logs),
        # as_of travels as env ULM_AS_OF (see _dbt_env): a --vars change would force a full re-parse every day
        "--vars", json.dumps({"schema_prefix": schema_prefix}),
        "--no-use-colors",
    ]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        # only data tests whose every parent is selected (a partial build must not test unbuilt models)
        args += ["--select", select, "--indirect-selection", "cautious"]
    if command == "build" and not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    if not progress:
        args.append("--quiet")
    return args


def _release_warehouse() -> None:
    """Close dbt-duckdb's cached in-process DuckDB instance so the warehouse file is free after the run
    (otherwise later connections in this process, e.g. readers or the next pipeline step, conflict with it)."""
    import gc

    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if env is not None:
        env.close()
    gc.collect()


def _node_rows(result: Any) -> list[dict[str, Any]]:
    rows = []
    for r in getattr(result, "results", None) or []:
        node = r.node
        rows.append({
            "unique_id": node.unique_id,
            "name": node.name,
            "resource_type": str(node.resource_type),
            "status": str(r.status),
            "execution_time": float(r.execution_time or 0.0),
            "rows_affected": (r.adapter_response or {}).get("rows_affected"),
            "message": r.message,
        })
    return rows


def _failure_summary(rows: list[dict[str, Any]], command: str = "build") -> str:
    failed = [r for r in rows if r["status"] in FAILED_STATUSES]
    parts = [f"{r['name']} ({r['status']}: {' '.join(str(r['message'] or '').split())[:200]})" for r in failed[:5]]
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"dbt {command} failed: {len(failed)} node(s): " + "; ".join(parts) + more


def build(as_of: date, warehouse: Path, full_refresh: bool = False, select: str | None = None,
          schema_prefix: str = "", progress: bool = True, unit_tests: bool = False) -> dict[str, Any]:
    """Run `dbt build` as of `as_of` on `warehouse`; return timings per node. UlmError on any failure."""
    return run_dbt("build", as_of, warehouse, full_refresh, select, schema_prefix, progress, unit_tests)


def summary_lines(summary: dict[str, Any], slowest: int = 5) -> list[str]:
    """A few human lines about a finished dbt invocation: node counts by type and the slowest models."""
    counts: dict[str, int] = {}
    for r in summary.get("nodes", []):
        kind = r["resource_type"].split(".")[-1].lower()
        counts[kind] = counts.get(kind, 0) + 1
    lines = [f"{summary.get('elapsed_s', 0):.1f} s, " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]
    top = sorted(summary.get("model_timings", {}).items(), key=lambda kv: -kv[1])[:slowest]
    if top:
        lines.append("slowest models: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in top))
    return lines


def run_dbt(command: str, as_of: date, warehouse: Path, full_refresh: bool = False, select: str | None = None,
            schema_prefix: str = "", progress: bool = True, unit_tests: bool = False) -> dict[str, Any]:
    """Run one dbt command (`build`, `run`, `test`) on this project and warehouse; see :func:`build`."""
    from dbt.cli.main import dbtRunner

    key = _pii_key()
    warehouse = Path(warehouse).resolve()
    ensure_raw_layer(warehouse)
    args = dbt_args(command, warehouse, full_refresh, select, schema_prefix, progress, unit_tests)
    started = time.perf_counter()
    with _dbt_env(warehouse, key, as_of):
        try:
            res = dbtRunner().invoke(args)
        finally:
            _release_warehouse()
    elapsed = time.perf_counter() - started
    rows = _node_rows(res.result)
    if res.exception is not None:
        first = str(res.exception).strip().splitlines()
        raise UlmError(f"dbt {command} could not run: {first[0] if first else type(res.exception).__name__}")
    if not res.success:
        raise UlmError(_failure_summary(rows, command) if rows else f"dbt {command} failed (see dbt logs)")
    models = {r["name"]: r["execution_time"] for r in rows if r["resource_type"].endswith("model")}
    return {
        "as_of": as_of.isoformat(),
        "warehouse": str(warehouse),
        "success": True,
        "elapsed_s": round(elapsed, 3),
        "model_timings": models,
        "nodes": rows,
    }
