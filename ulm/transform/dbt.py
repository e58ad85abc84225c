"""Run dbt on this project for one run context: ``dbt build`` (models + data tests; unit tests on request).

dbt runs in-process through ``dbtRunner``. The run context reaches it by one channel, the environment built by
:func:`dbt_process_env` (``RunContext.dbt_env`` plus the PII key as ``DBT_ENV_SECRET_ULM_PII_KEY``, which dbt
scrubs from its logs and the ``ulm.privacy.hashing`` plugin reads). The dbt target and logs go next to the
warehouse file (``<warehouse stem>_dbt/``), so the repository stays clean.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ulm.core import settings as _settings
from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.privacy.keys import require_pii_key, verify_key
from ulm.warehouse import connect, ensure_ml_schema, ensure_raw_schema

FAILED_STATUSES = {"error", "fail", "runtime error"}


def dbt_process_env(ctx: RunContext) -> dict[str, str]:
    """Everything a dbt process needs to know about the run (the only channel from ULM to dbt)."""
    key = require_pii_key()
    env = {**ctx.dbt_env(), _settings.DBT_PII_KEY_ENV: key,
           "ULM_DBT_THREADS": str(_settings.settings().dbt_threads)}
    if ctx.target == "postgres":  # connection from ULM_PG_*; the key as session setting ulm.pii_key (PGOPTIONS)
        from ulm.warehouse import postgres

        env.update(postgres.PgConfig.from_env().dbt_env())
        env.update(postgres.pii_session_env(key))
    elif ctx.target == "spark":  # the session's directory; the key reaches the JVM as KEY_ENV (ulm.warehouse.spark)
        from ulm.warehouse import spark

        env.update(spark.dbt_env(ctx.warehouse))
    return env


def ensure_sources(warehouse: Path, target: str = "duckdb") -> None:
    """Create the ``raw`` and ``ml`` tables dbt reads (empty when nothing was loaded or scored yet), and check that
    the PII key is the one the warehouse was built with (recorded on first use; docs/PRIVACY.md#key-safety).

    Every dbt invocation passes here, and so does the daily DAG's ``ingest`` task before its dbt task group: a
    changed key fails in one line before dbt re-hashes anything."""
    con = connect(warehouse)
    try:
        ensure_raw_schema(con)
        ensure_ml_schema(con)
        verify_key(con, "pii")
        if target == "postgres":  # the same source tables on Postgres (copied when missing there)
            from ulm.warehouse import postgres

            postgres.ensure_sources(con, postgres.PgConfig.from_env())
    finally:
        con.close()
    if target == "spark":  # start this process's Spark session and (re)register the source tables on it
        from ulm.warehouse import spark

        spark.sync_raw(warehouse, require_pii_key())


def dbt_dirs(warehouse: Path) -> tuple[Path, Path]:
    """(target path, log path) for builds of this warehouse."""
    base = warehouse.parent / f"{warehouse.stem}_dbt"
    return base / "target", base / "logs"


@contextmanager
def _process_env(env: dict[str, str]) -> Iterator[None]:
    """Launch dbt in-process with ``env`` set, restoring the caller's environment afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dbt_args(command: str, ctx: RunContext, full_refresh: bool = False, select: str | None = None,
             progress: bool = True, unit_tests: bool = False, exclude: str | None = None) -> list[str]:
    """Command-line arguments for one dbt invocation on this project and the context's warehouse.

    A production `build` skips dbt unit tests (they test SQL logic on fixed fixtures, not the data, and belong in CI:
    `dbt test` and the pytest suite run them); ``unit_tests=True`` includes them.
    """
    target, logs = dbt_dirs(ctx.warehouse)
    project = _settings.dbt_project_dir()
    args = [
        command,
        "--project-dir", str(project),
        "--profiles-dir", str(project),
        "--target", ctx.target,
        "--target-path", str(target),
        "--log-path", str(logs),
        "--no-use-colors",
    ]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        # only data tests whose every parent is selected (a partial build must not test unbuilt models)
        args += ["--select", select, "--indirect-selection", "cautious"]
    if exclude:
        args += ["--exclude", exclude]
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


def build(ctx: RunContext, full_refresh: bool = False, select: str | None = None, progress: bool = True,
          unit_tests: bool = False) -> dict[str, Any]:
    """Run `dbt build` for the context (as-of day, warehouse, schema prefix); timings per node. UlmError on failure."""
    return run_dbt(ctx, "build", full_refresh, select, progress, unit_tests)


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


def run_dbt(ctx: RunContext, command: str, full_refresh: bool = False, select: str | None = None,
            progress: bool = True, unit_tests: bool = False, exclude: str | None = None) -> dict[str, Any]:
    """Run one dbt command (`build`, `run`, `test`, `docs`) for the context; see :func:`build`."""
    from dbt.cli.main import dbtRunner

    as_of = ctx.require_as_of()
    env = dbt_process_env(ctx)
    ensure_sources(ctx.warehouse, ctx.target)
    args = dbt_args(command, ctx, full_refresh, select, progress, unit_tests, exclude)
    started = time.perf_counter()
    with _process_env(env):
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
        "warehouse": str(ctx.warehouse),
        "success": True,
        "elapsed_s": round(elapsed, 3),
        "model_timings": models,
        "nodes": rows,
    }


def compile_inline(ctx: RunContext, sql: str) -> str:
    """The SQL dbt compiles ``sql`` (Jinja with this project's macros) to, under the context."""
    from dbt.cli.main import dbtRunner

    env = dbt_process_env(ctx)
    ensure_sources(ctx.warehouse, ctx.target)
    with _process_env(env):
        try:
            res = dbtRunner().invoke(dbt_args("compile", ctx, progress=False) + ["--inline", sql])
        finally:
            _release_warehouse()
    if not res.success or not res.result:
        raise UlmError(f"dbt compile failed: {str(res.exception or 'see dbt logs').splitlines()[0]}")
    return res.result.results[0].node.compiled_code
