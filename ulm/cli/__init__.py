"""The ``ulm`` command line.

Every command has ``--help``; long steps show progress; an expected failure prints ``error: <one line>`` and
exits 1 (set ``ULM_DEBUG=1`` for the traceback). Heavy libraries are imported inside the commands so that
``ulm --help`` stays fast.
"""
from __future__ import annotations

import logging
import sys
from datetime import date, datetime
from functools import wraps
from pathlib import Path

import click

from ulm import __version__
from ulm.core import settings as _settings
from ulm.core.context import TARGETS, RunContext
from ulm.core.errors import UlmError

log = logging.getLogger("ulm")


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="%H:%M:%S",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False, markup=False)],
        force=True,
    )
    for noisy in ("great_expectations", "matplotlib", "alembic", "urllib3", "httpx", "mlflow", "arviz", "pymc",
                  "pytensor"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def friendly_errors(fn):
    """Turn expected failures into one line + exit 1, never a bare traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UlmError as exc:
            if _settings.settings().debug:
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            sys.exit(130)
        except Exception as exc:  # an unexpected failure: still one line first, traceback only on request
            if _settings.settings().debug:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.secho(f"error: unexpected {type(exc).__name__}: {first} (set ULM_DEBUG=1 for the traceback)",
                        fg="red", err=True)
            sys.exit(1)

    return wrapper


def _writer(ctx: click.Context, what: str, wait_seconds: float = 0.0):
    """Hold the warehouse's write lock while a command writes it (a concurrent `ulm run` gets a clear message)."""
    from ulm.warehouse import write_lock

    return write_lock(ctx.obj["warehouse"], what, wait_seconds)


_wait_option = click.option(
    "--wait", "wait_seconds", type=click.FloatRange(min=0), default=0.0, show_default=True,
    help="Seconds to wait for another command holding the warehouse's write lock before giving up.")


_target_option = click.option(
    "--target", type=click.Choice(TARGETS), default="duckdb", show_default=True,
    help="dbt target (dbt_project/profiles.yml): duckdb, postgres (connection from ULM_PG_*) or spark (a local "
         "pyspark session; issue #15).")


def _context(ctx: click.Context, **fields) -> RunContext:
    """The run context of this command: the global options plus the command's own (as-of day, landing dir)."""
    return RunContext.create(warehouse=ctx.obj["warehouse"], **fields)


def _parse_date(ctx, param, value):
    if value is None or isinstance(value, date):
        return value
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="ulm")
@click.option(
    "--warehouse",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ULM_WAREHOUSE",
    default=None,
    help="DuckDB warehouse file (env ULM_WAREHOUSE; default data/warehouse.duckdb).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, warehouse: Path | None, verbose: bool) -> None:
    """ULM: user lifecycle management for social e-commerce.

    Generate or ingest landing data, build the lifecycle marts with dbt, gate them with Great Expectations,
    train and score models with MLflow. Start with `make demo`, or `ulm COMMAND --help`.
    """
    _setup_logging(verbose)
    try:  # a malformed ULM_* setting is one line, before any command (they all read the settings)
        _settings.settings()
    except UlmError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    ctx.obj = {"warehouse": (warehouse or _settings.warehouse_path()).resolve()}


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Landing folder to write (default data/landing).")
@click.option("--persons", type=click.IntRange(min=10), default=20000, show_default=True,
              help="Number of persons to simulate.")
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True, help="Days of history.")
@click.option("--end-date", callback=_parse_date, default=None,
              help="Last business day generated, YYYY-MM-DD (default 2025-12-31).")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed (same seed, same data).")
@click.option("--defects", type=click.FloatRange(0, 0.5), default=0.0, show_default=True,
              help="Share of rows per table given an injected defect (manifest in the truth folder).")
@click.option("--truth", "truth_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Ground-truth folder (default: next to the landing folder, 'truth').")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@friendly_errors
def generate(out_dir, persons, days, end_date, seed, defects, truth_dir, fmt):
    """Generate a realistic synthetic social-commerce landing data set."""
    from ulm.generate import generate as run_generate

    out_dir = out_dir or _settings.settings().landing_dir
    summary = run_generate(out_dir=out_dir, persons=persons, days=days, end_date=end_date, seed=seed,
                           defects=defects, truth_dir=truth_dir, fmt=fmt, progress=True)
    _print_summary("generated", summary)


@main.command()
@click.argument("landing_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--cdnow", "cdnow_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ingest a CDNOW transaction file (CDNOW_master.txt or CDNOW_sample.txt) instead.")
@click.option("--until", callback=_parse_date, default=None,
              help="Only files whose date stamp is on or before this day.")
@_wait_option
@_target_option
@click.pass_context
@friendly_errors
def ingest(ctx, landing_dir, cdnow_file, until, wait_seconds, target):
    """Validate landing files against the contract and load them into the `raw` schema.

    Invalid rows go to raw.quarantine with a reason; every load is reconciled in raw.load_audit.
    Re-ingesting a file already loaded (same checksum) does nothing.
    """
    if bool(landing_dir) == bool(cdnow_file):
        raise UlmError("give either a LANDING_DIR or --cdnow FILE (see ulm ingest --help)")
    from ulm.ingest import ingest_cdnow, ingest_dir
    from ulm.privacy.keys import ensure_local_pii_key

    ensure_local_pii_key()  # the suppression list is keyed (docs/PRIVACY.md#key-safety)
    wh = ctx.obj["warehouse"]
    from ulm.core.errors import ContractError

    with _writer(ctx, "ulm ingest", wait_seconds):
        try:
            if cdnow_file:
                summary = ingest_cdnow(cdnow_file, wh, progress=True)
            else:
                summary = ingest_dir(landing_dir, wh, until=until, progress=True)
        except ContractError as exc:  # the other files loaded: say what did, then each failed file, then fail
            if getattr(exc, "summary", None):
                _print_summary(f"ingested into {wh} (with failed files)", exc.summary)
            for line in (getattr(exc, "failures", None) or [])[1:]:
                click.secho(f"also failed: {line}", fg="red", err=True)
            raise
    _print_summary(f"ingested into {wh}", summary)
    if target == "postgres":  # validated and quarantined in DuckDB as always; then Postgres raw := DuckDB raw
        from ulm.warehouse import postgres

        cfg = postgres.PgConfig.from_env()
        copied = postgres.sync_raw(wh, cfg)
        click.echo(f"copied raw to PostgreSQL {cfg.host}:{cfg.port}/{cfg.dbname}: {len(copied)} tables, "
                   f"{sum(copied.values())} rows")
    elif target == "spark":  # the same for Spark: Parquet copies registered as Spark tables
        from ulm.privacy.keys import require_pii_key
        from ulm.warehouse import spark

        copied = spark.sync_raw(wh, require_pii_key())
        click.echo(f"copied raw to Spark {spark.spark_dir(wh)}: {len(copied)} tables, {sum(copied.values())} rows")


@main.command()
@click.option("--as-of", "as_of", callback=_parse_date, required=True, help="Business date, YYYY-MM-DD.")
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental models from scratch.")
@click.option("--dev", is_flag=True,
              help="Developer build without gates into dev_staging / dev_intermediate / dev_marts (never publishes).")
@click.option("--select", default=None, help="dbt selection (only with --dev: a partial build is never published).")
@click.option("--unit-tests", is_flag=True, help="Also run the dbt unit tests (CI runs them; daily builds skip them).")
@_wait_option
@_target_option
@click.pass_context
@friendly_errors
def build(ctx, as_of, full_refresh, dev, select, unit_tests, wait_seconds, target):
    """Build the marts as of a business date: write-audit-publish, exactly like the daily DAG.

    dbt build into the audit_* schemas -> Gate 2 (staging) -> Gate 3 (marts) -> atomic publish of `marts`
    -> audience export. A failure at any step leaves the published marts and exports unchanged. With
    --target postgres the gates read Postgres and the publish is a schema swap there; with --target spark the gates
    run on Spark and the publish switches Spark's audit.published_run to a new copy (either way the DuckDB warehouse
    keeps a copy of the published marts for the serving snapshot and the exports).
    """
    from ulm.privacy.keys import ensure_local_pii_key
    from ulm.transform.dbt import summary_lines
    from ulm.transform.wap import build_and_publish, dev_build

    if select and not dev:
        raise UlmError("--select builds part of the project, which is never published: add --dev")
    ensure_local_pii_key()
    run_ctx = _context(ctx, as_of=as_of, target=target)
    with _writer(ctx, f"ulm build --as-of {as_of}", wait_seconds):
        if dev:
            summary = dev_build(run_ctx, full_refresh=full_refresh, select=select, unit_tests=unit_tests)
            click.echo(f"developer build as of {as_of} in dev_* schemas of {summary['warehouse']} "
                       "(no gates, not published)")
        else:
            result = build_and_publish(run_ctx, full_refresh=full_refresh, unit_tests=unit_tests)
            summary = result["dbt"]
            click.echo(f"published marts as of {as_of} in {result['warehouse']} (run {result['run_id']}): "
                       f"{result['publish']['tables']} tables, gates passed, "
                       f"{result['export']['persons']} persons in {len(result['export']['rules'])} audiences")
    for line in summary_lines(summary):
        click.echo("  " + line)


@main.command()
@click.option("--persons", type=click.IntRange(min=10), default=20000, show_default=True)
@click.option("--days", type=click.IntRange(min=30), default=365, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--defects", type=click.FloatRange(0, 0.01), default=0.002, show_default=True,
              help="Injected defect rate, below the 1% gate, so the quarantine has something to show.")
@click.option("--regenerate", is_flag=True, help="Regenerate the landing data even if it exists.")
@click.pass_context
@friendly_errors
def demo(ctx, persons, days, seed, defects, regenerate):
    """The main job end to end on the embedded default (what `make demo` runs)."""
    from ulm.cli.demo import run_demo

    run_demo(_context(ctx), persons=persons, days=days, seed=seed, defects=defects,
             regenerate=regenerate)


@main.command()
@click.option("--scale", type=click.Choice(["tiny", "small", "10m", "30m", "100m", "ml", "engines", "all"]), default="all",
              show_default=True,
              help="tiny = 300 persons (fixed cost of a dbt build), small = ~20k persons, 10m = ~10M events (each: generate -> ingest -> dbt -> Airflow DAG -> "
                   "train -> score); ml = train on 200k and score 1M synthetic persons, BG/NBD fit time vs persons; engines = ~2M events built on DuckDB, PostgreSQL "
                   "(a private cluster) and Spark; 30m / 100m = ~30M / ~100M events through generate, ingest, dbt, train, score, erase (none of the three in all).")
@click.option("--out", "out_md", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Markdown report (default docs/BENCHMARKS.md; JSON next to it).")
@click.option("--only", default=None, help="Only the stages whose name starts with this, or with one of several "
              "comma-separated prefixes (e.g. 'Airflow,reset,no Airflow': orchestration overhead); needs --workdir.")
@click.option("--workdir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Work directory kept from an earlier run (ULM_BENCH_KEEP=1) to re-measure --only stages in; "
                   "the results are merged into the existing report.")
@friendly_errors
def bench(scale, out_md, only, workdir):
    """Measure wall time and peak memory of each stage; write docs/BENCHMARKS.md (+ .json)."""
    from ulm.bench import run_bench

    run_bench(scale=scale, out_md=out_md, only=only, workdir=workdir)


@main.command()
@click.option("--as-of", "as_of", callback=_parse_date, required=True, help="Business date, YYYY-MM-DD.")
@click.option("--landing", "landing_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Landing folder to ingest from (default data/landing).")
@click.option("--train/--no-train", "train", default=None,
              help="Force (or skip) model training; default: the weekly training schedule decides.")
@click.option("--no-ml", is_flag=True, help="Run only ulm_daily, not ulm_ml.")
@_wait_option
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the run result (states and seconds per task) as JSON to this file.")
@_target_option
@click.pass_context
@friendly_errors
def run(ctx, as_of, landing_dir, train, no_ml, wait_seconds, report_file, target):
    """Run the Airflow DAGs ulm_daily (+ ulm_ml) for one business day, in-process (`airflow dags test`).

    ingest -> Gate 1 -> dbt (Cosmos) into audit schemas -> Gates 2, 3 -> publish -> exports -> scoring/training.
    """
    from ulm.orchestration.runner import RunFailed
    from ulm.orchestration.runner import run as run_dags
    from ulm.privacy.keys import ensure_local_pii_key

    ensure_local_pii_key()
    try:
        res = run_dags(_context(ctx, as_of=as_of, landing_dir=landing_dir, target=target), ml=not no_ml,
                       train=train, wait_seconds=wait_seconds)
    except RunFailed as exc:  # the report says what ran, also (above all) when the run failed
        _write_report(report_file, {**exc.result, "error": str(exc)})
        raise
    _write_report(report_file, res)
    _print_run(f"ulm run {as_of}", res)


def _print_run(title: str, res: dict) -> None:
    """Each DAG: state, wall-clock start/end and seconds, run id, every skipped task and why; where the logs are."""
    from ulm.orchestration.runner import skipped_tasks

    click.secho(title, bold=True)
    for dag_id, r in res["dags"].items():
        click.echo(f"  {dag_id}: {r['state']} in {r.get('seconds', 0):.0f} s "
                   f"({r.get('started_at', '?')} .. {r.get('ended_at', '?')}, run {r.get('run_id')})")
        for task, why in skipped_tasks(r).items():
            click.echo(f"    {task} skipped: {why}")
    first = next(iter(res["dags"].values()), {})
    if first.get("log"):
        click.echo(f"  log: {first['log']} (per task: the Airflow UI, `ulm ui`)")
    click.echo("  DAGs stay paused here: `ulm run` / `ulm backfill` are the scheduler of this in-process store; "
               "`ulm deploy up` runs them on their schedules")


@main.command()
@click.argument("start", callback=_parse_date)
@click.argument("end", callback=_parse_date)
@click.option("--landing", "landing_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--no-ml", is_flag=True, help="Run only ulm_daily.")
@_wait_option
@_target_option
@click.pass_context
@friendly_errors
def backfill(ctx, start, end, landing_dir, no_ml, wait_seconds, target):
    """Run the daily pipeline for every business day from START to END (inclusive), incrementally."""
    from ulm.orchestration.runner import backfill as run_backfill
    from ulm.privacy.keys import ensure_local_pii_key

    ensure_local_pii_key()
    res = run_backfill(start, end, _context(ctx, landing_dir=landing_dir, target=target), ml=not no_ml, wait_seconds=wait_seconds,
                       progress=lambda line: click.echo(line))
    _print_summary(f"backfill {start}..{end}", {"days": res["days"], "seconds": res["seconds"]})


@main.command()
@click.option("--airflow-port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--mlflow-port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--dashboard-port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--docs-port", type=click.IntRange(1, 65535), default=8081, show_default=True)
@friendly_errors
def ui(airflow_port, mlflow_port, dashboard_port, docs_port):
    """Serve every UI at once and print their URLs; Ctrl-C stops all.

    Airflow (standalone, small parallelism), MLflow, the lifecycle dashboard (Streamlit on the serving snapshot)
    and the docs folder <data dir>/docs (`ulm docs`: dbt docs and GX data docs) on a static file server. The
    dashboard and the docs listen on 127.0.0.1 only.
    """
    from ulm.orchestration.ui import ui as run_ui

    run_ui(airflow_port=airflow_port, mlflow_port=mlflow_port, dashboard_port=dashboard_port, docs_port=docs_port)


@main.command()
@click.option("--as-of", "as_of", callback=_parse_date, required=True, help="Business date, YYYY-MM-DD.")
@click.option("--task", "tasks", type=click.Choice(["churn", "ltv"]), multiple=True,
              help="Train only this model (repeatable; default both).")
@_wait_option
@click.pass_context
@friendly_errors
def train(ctx, as_of, tasks, wait_seconds):
    """Train churn and LTV models on point-in-time snapshots, log to MLflow, register, decide promotion."""
    from ulm.ml.train import train as run_train

    with _writer(ctx, f"ulm train --as-of {as_of}", wait_seconds):
        results = run_train(as_of=as_of, warehouse=ctx.obj["warehouse"], tasks=tuple(tasks) or ("churn", "ltv"))
    # the decision lines were logged once each by ulm.ml; the summary names the runs and versions
    _print_summary(f"trained as of {as_of}", {
        t: f"{r.get('run_name')} ({getattr(r.get('decision'), 'model_name', '?')} "
           f"v{getattr(r.get('decision'), 'version', '?')})" for t, r in results.items()})


@main.command()
@click.option("--as-of", "as_of", callback=_parse_date, required=True, help="Business date, YYYY-MM-DD.")
@click.option("--truth", "truth_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Generator ground truth to also evaluate churn against (synthetic data only).")
@_wait_option
@_target_option
@click.pass_context
@friendly_errors
def score(ctx, as_of, truth_dir, wait_seconds, target):
    """Score the day's population (analytics consent, active in the last 90 days) with the champion models
    (models:/ulm_churn@champion, models:/ulm_ltv@champion); the summary counts who was not scored and why."""
    from ulm.ml.score import score as run_score

    with _writer(ctx, f"ulm score --as-of {as_of}", wait_seconds):
        res = run_score(as_of=as_of, warehouse=ctx.obj["warehouse"], truth_dir=truth_dir, target=target)
    _print_summary(f"scored as of {as_of}", res)


@main.command()
@_wait_option
@click.option("--target", type=click.Choice(["duckdb", "postgres", "spark"]), default=None,
              help="postgres: erase on the Postgres warehouse (ULM_PG_*) too; without it, Postgres is erased when "
                   "audit.publish_log records a Postgres publish of this warehouse. Spark is erased whenever the "
                   "warehouse has a Spark side (<warehouse stem>_spark/).")
@click.pass_context
@friendly_errors
def erase(ctx, wait_seconds, target):
    """Process pending erasure requests (right to be forgotten, docs/PRIVACY.md#erasure).

    In one pass for all pending requests: the person's accounts (linked ones included, through identifiers that
    may link), a suppression list of keyed hashes so re-sent rows stay out, every row in every layer, audience
    export files, GX results and docs. audit.erasure_log records rows removed per request and table, never an
    identifier. With a Postgres side, the same rows go from every Postgres schema in one Postgres transaction.
    """
    from ulm.core import settings
    from ulm.privacy.erasure import erase as run_erase
    from ulm.privacy.keys import ensure_local_pii_key

    ensure_local_pii_key()  # the suppression list is keyed (docs/PRIVACY.md#key-safety)
    with _writer(ctx, "ulm erase", wait_seconds):
        res = run_erase(ctx.obj["warehouse"], settings.data_dir(), target=target)
    shown = {"tables": {t: {"rows removed": n} for t, n in sorted(res["rows_removed"].items())},
             **{k: v for k, v in res.items() if k != "rows_removed"}}
    _print_summary(f"erasure: {res['requests']} request(s) in {res['seconds']:.1f} s", shown)


@main.command()
@click.argument("user_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON file to write; a Markdown summary is written next to it (.md).")
@click.pass_context
@friendly_errors
def access(ctx, user_id, out):
    """Export everything held about one account's person (right of access, docs/PRIVACY.md#access).

    Every row in every layer, quarantined rows included, as JSON, plus a short summary. The files hold the
    subject's own raw contact data and are written with mode 0600.
    """
    from ulm.privacy.erasure import access_export

    counts = access_export(ctx.obj["warehouse"], user_id, out)
    _print_summary(f"access export written to {out} and {Path(out).with_suffix('.md')}", counts)


def _write_report(path: Path | None, result: dict) -> None:
    if path is None:
        return
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")


def _print_summary(title: str, summary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if isinstance(summary, dict) and summary.get("tables"):
        table = Table(title=title)
        rows = summary["tables"]
        cols = sorted({k for v in rows.values() if isinstance(v, dict) for k in v})
        table.add_column("table")
        for c in cols:
            table.add_column(c, justify="right")
        for name, vals in rows.items():
            table.add_row(name, *[_fmt(vals.get(c)) for c in cols])
        console.print(table)
        rest = {k: v for k, v in summary.items() if k != "tables"}
        for k, v in rest.items():
            console.print(f"{k}: {_fmt(v)}")
    else:
        console.print(f"[bold]{title}[/bold]")
        for k, v in (summary or {}).items():
            console.print(f"  {k}: {_fmt(v)}")


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v[:5])) + (" ..." if len(v) > 5 else "")
    return str(v)


from ulm.cli import dashboard as _dashboard  # noqa: E402,F401  (registers `ulm dashboard` on main)
from ulm.cli import deploy as _deploy  # noqa: E402,F401  (registers `ulm deploy` on main)
from ulm.cli import docs as _docs  # noqa: E402,F401  (registers `ulm docs` on main)
from ulm.cli import keys as _keys  # noqa: E402,F401  (registers `ulm rotate-key` on main)
