"""Quality-gate machinery: suites as code, validated by Great Expectations on pandas frames (docs/METRICS.md#quality-gates-and-publishing).

GX's SQL datasource does not work on DuckDB, and at 100M+ events nothing event-level may be pulled into
pandas. So every check is a :class:`Frame`: a SQL query that projects only the columns a suite needs or,
for large tables, aggregates in the warehouse first (counts, duplicate keys, distinct values, daily totals). GX
then validates that small frame with ordinary expectations, so results, observed values and Data Docs are GX's.
The frames' SQL is portable: the same query runs on DuckDB and on PostgreSQL (issue #15), so both targets give
the same frames, the same GX results and the same failure messages.

A :class:`Suite` is a list of frames; a gate runs one or more suites, stores one row per expectation in
``audit.gate_results`` (run_id, as_of, gate, suite, expectation, column, observed_value, success, ...),
rebuilds the GX Data Docs under ``data/docs/gx/`` (runs named by business day and gate, made to render offline
by :mod:`ulm.quality.docs_offline`) and raises :class:`GateFailed` listing every failed
critical expectation with its observed value. Warning-severity expectations are stored but never fail a gate.

Suite definitions import nothing heavy: GX is only imported when a gate runs.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ulm.core.errors import UlmError
from ulm.quality.docs_offline import make_offline
from ulm.warehouse import ensure_audit_schema, transaction

log = logging.getLogger("ulm.gates")

CRITICAL, WARNING = "critical", "warning"

class GateFailed(UlmError):
    """A quality gate found at least one failed critical expectation (message lists each with its value)."""


@dataclass(frozen=True)
class Expect:
    """One GX expectation, by class name (``great_expectations.expectations.<cls>``) and its arguments."""

    cls: str
    column: str | None = None
    severity: str = CRITICAL
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self):
        import great_expectations.expectations as gxe

        args = dict(self.kwargs)
        if self.column is not None:
            args["column"] = self.column
        return getattr(gxe, self.cls)(severity=self.severity, **args)

    @property
    def type(self) -> str:
        """GX snake-case expectation type, e.g. ``expect_column_max_to_be_between``."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.cls).lower()


def expect_max(column: str, max_value: float, severity: str = CRITICAL) -> Expect:
    """The largest value of an (aggregate) column is at most ``max_value``; GX reports it as observed."""
    return Expect("ExpectColumnMaxToBeBetween", column, severity, {"max_value": max_value})


def expect_min(column: str, min_value: float, severity: str = CRITICAL) -> Expect:
    return Expect("ExpectColumnMinToBeBetween", column, severity, {"min_value": min_value})


def expect_between(column: str, min_value: float | None, max_value: float | None) -> Expect:
    return Expect("ExpectColumnValuesToBeBetween", column, CRITICAL,
                  {"min_value": min_value, "max_value": max_value})


def expect_in_set(column: str, values: Sequence[str]) -> Expect:
    return Expect("ExpectColumnValuesToBeInSet", column, CRITICAL, {"value_set": list(values)})


def expect_not_null(column: str) -> Expect:
    return Expect("ExpectColumnValuesToNotBeNull", column)


def expect_unique(column: str) -> Expect:
    return Expect("ExpectColumnValuesToBeUnique", column)


@dataclass(frozen=True)
class Frame:
    """A SQL query (aggregated in the warehouse when the source is large; portable DuckDB / PostgreSQL SQL) and the
    expectations GX checks on it."""

    name: str
    sql: str
    expectations: tuple[Expect, ...]


@dataclass(frozen=True)
class Suite:
    name: str
    frames: tuple[Frame, ...]


@dataclass
class ExpectationResult:
    suite: str
    frame: str
    expectation: str
    column: str | None
    observed_value: str | None
    success: bool
    severity: str
    details: dict[str, Any]

    def describe(self) -> str:
        where = f"{self.frame}.{self.column}" if self.column else self.frame
        return f"{self.suite}/{where} {self.expectation} observed={self.observed_value}"


@dataclass
class GateReport:
    gate: str
    run_id: str
    as_of: date
    results: list[ExpectationResult]
    docs_index: Path | None = None

    @property
    def failed(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.severity == CRITICAL]

    @property
    def warnings(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.severity != CRITICAL]

    @property
    def success(self) -> bool:
        return not self.failed

    def summary(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "expectations": len(self.results),
            "failed": [r.describe() for r in self.failed],
            "warnings": [r.describe() for r in self.warnings],
            "docs": str(self.docs_index) if self.docs_index else None,
        }

    def raise_for_failure(self) -> None:
        if self.failed:
            listing = "; ".join(r.describe() for r in self.failed)
            raise GateFailed(f"gate {self.gate} failed {len(self.failed)} expectation(s): {listing}")


# --------------------------------------------------------------------------------------------- GX plumbing

def _gx_context(data_root: Path):
    """File-backed GX context under ``<data>/gx`` with a Data Docs site at ``<data>/docs/gx``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", project_root_dir=str(data_root / "gx"))
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    sites = ctx.get_config().data_docs_sites or {}
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,  # no "how to" footer pointing to GX's web tutorials
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(docs_dir_for(data_root))},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    current = sites.get("ulm") or {}
    if current.get("store_backend", {}).get("base_directory") != site["store_backend"]["base_directory"] \
            or current.get("show_how_to_buttons", True) is not False:
        if "ulm" in sites:
            ctx.delete_data_docs_site("ulm")
        ctx.add_data_docs_site(site_name="ulm", site_config=site)
    return ctx


def docs_dir_for(data_root: Path) -> Path:
    return data_root / "docs" / "gx"


def gx_run_name(as_of: date, gate: str) -> str:
    """GX run name of a gate: its business day and gate (``2025-12-31 marts``), so the Data Docs list runs by
    day; the pipeline's run id goes into each stored result's meta (``ulm_run_id``, see :func:`_keep_run_id`)."""
    return f"{as_of.isoformat()} {gate}"


def _pandas_source(ctx):
    """The gates' pandas datasource, registered once per context: every ``add_or_update`` rewrites
    ``great_expectations.yml`` (~30 ms a call, once per frame before)."""
    try:
        return ctx.data_sources.get("ulm_gates")
    except (KeyError, ValueError, LookupError):
        return ctx.data_sources.add_or_update_pandas("ulm_gates")


def _validation_definition(ctx, suite: Suite, frame: Frame):
    """Register (or refresh) the GX suite + dataframe asset + validation definition for one frame."""
    import great_expectations as gx

    source = _pandas_source(ctx)
    asset_name = f"{suite.name}.{frame.name}"
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        batch = asset.get_batch_definition("whole_frame")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("whole_frame")
    gx_suite = ctx.suites.add_or_update(gx.ExpectationSuite(
        name=asset_name, expectations=[e.build() for e in frame.expectations]))
    return ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=asset_name, data=batch, suite=gx_suite))


def _observed(result: dict[str, Any]) -> str | None:
    """Observed value of a GX result: the metric, or for row-wise expectations the unexpected rows."""
    if "observed_value" in result:
        return _fmt(result["observed_value"])
    if "unexpected_count" in result:
        sample = result.get("partial_unexpected_list") or []
        text = f"{result['unexpected_count']} unexpected"
        if sample:
            text += " e.g. " + ", ".join(_fmt(v) for v in sample[:5])
        return text
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _to_results(suite: Suite, frame: Frame, gx_result) -> list[ExpectationResult]:
    rows = []
    for expect, res in zip(frame.expectations, gx_result.results, strict=True):
        if res.exception_info and res.exception_info.get("raised_exception"):
            detail = {"exception": str(res.exception_info.get("exception_message"))[:500]}
            observed = "error: " + detail["exception"].splitlines()[0][:200] if detail["exception"] else "error"
        else:
            detail = {k: v for k, v in (res.result or {}).items() if k != "partial_unexpected_index_list"}
            observed = _observed(res.result or {})
        rows.append(ExpectationResult(
            suite=suite.name, frame=frame.name, expectation=expect.type, column=expect.column,
            observed_value=observed, success=bool(res.success), severity=expect.severity,
            details={**detail, **{k: v for k, v in expect.kwargs.items() if k != "value_set"}},
        ))
    return rows


def _keep_run_id(ctx, vd, res, gx_run, run_id: str):
    """Store the validation result again with the pipeline's run id in its meta (``ulm_run_id``): GX 1.x keeps
    neither extra batch parameters nor suite parameters, and its run name is the business day."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    res.meta["ulm_run_id"] = run_id
    key = ValidationResultIdentifier(expectation_suite_identifier=ExpectationSuiteIdentifier(name=vd.suite.name),
                                     run_id=gx_run, batch_identifier=res.batch_id)
    ctx.validation_results_store.set(key, res)
    return key


# --------------------------------------------------------------------------------------------- running

def run_gate(
    con,
    gate: str,
    suites: Sequence[Suite],
    as_of: date,
    run_id: str,
    data_root: Path,
    *,
    raise_on_failure: bool = True,
    read: Callable[[str], Any] | None = None,
) -> GateReport:
    """Evaluate every frame of every suite with GX, store the results, build Data Docs, raise on failure.

    ``read(sql) -> pandas.DataFrame`` evaluates a frame's query on the run's target (default: ``con``, the DuckDB
    warehouse; :class:`ulm.warehouse.postgres.Reader` on PostgreSQL). The results always go to ``con``'s
    ``audit.gate_results`` (the DuckDB warehouse file holds the run's records on every target)."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = _gx_context(data_root)
    # GX files and lists a validation under <run name>/<run time>: the business day and gate; the run id stays
    # with every stored result (meta "ulm_run_id", as in audit.gate_results)
    gx_run = gx.RunIdentifier(run_name=gx_run_name(as_of, gate), run_time=datetime.now(timezone.utc))
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    results: list[ExpectationResult] = []
    rendered: list = []  # this gate's suites and results: the only Data Docs pages to (re)render
    for suite in suites:
        for frame in suite.frames:
            df = read(frame.sql) if read is not None else con.execute(frame.sql).df()
            vd = _validation_definition(ctx, suite, frame)
            res = vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY", run_id=gx_run)
            rendered += [ExpectationSuiteIdentifier(name=vd.suite.name), _keep_run_id(ctx, vd, res, gx_run, run_id)]
            results.extend(_to_results(suite, frame, res))
    store_results(con, gate, as_of, run_id, results)
    # Only this gate's pages and the index: without resource_identifiers GX re-renders every result ever stored
    # (three gates a day, ~7 pages each: after a year ~7,000 pages per gate, minutes of every run). D82.
    started = time.time() - 1  # file systems with 1 s timestamps
    ctx.build_data_docs(site_names=["ulm"], resource_identifiers=rendered)
    # GX's pages load their CSS/JS from CDNs: make the pages this build wrote local
    offline = make_offline(docs_dir_for(data_root), since=started)
    log.debug("gate %s: data docs made offline: %s", gate, offline)
    report = GateReport(gate, run_id, as_of, results, docs_dir_for(data_root) / "index.html")
    for r in report.warnings:
        log.warning("gate %s warning: %s", gate, r.describe())
    log.info("gate %s: %d expectations, %d failed, %d warnings", gate, len(results),
             len(report.failed), len(report.warnings))
    if raise_on_failure:
        report.raise_for_failure()
    return report


def store_results(con, gate: str, as_of: date, run_id: str, results: list[ExpectationResult]) -> None:
    """Append one row per expectation to ``audit.gate_results`` (a re-run of the same run/gate replaces)."""
    ensure_audit_schema(con)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [(run_id, as_of, gate, r.suite, r.frame, r.expectation, r.column, r.observed_value, r.success,
             r.severity, json.dumps(r.details, default=str)[:4000], now) for r in results]
    with transaction(con):
        con.execute("DELETE FROM audit.gate_results WHERE run_id = ? AND gate = ?", [run_id, gate])
        if rows:
            con.executemany("INSERT INTO audit.gate_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def existing_tables(con, schema: str) -> dict[str, set[str]]:
    """{table: {columns}} of one schema (tables and views)."""
    rows = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ?", [schema]
    ).fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


SuiteBuilder = Callable[..., Sequence[Suite]]


@dataclass(frozen=True)
class Dialect:
    """The few SQL forms the gates' frame queries cannot write alike on DuckDB, PostgreSQL and Spark (everything
    else in them is portable; double-quoted identifiers on Spark come from its ANSI session, D83)."""

    double: str = "DOUBLE PRECISION"
    text: str = "VARCHAR"
    spark: bool = False

    def day_diff(self, later: str, earlier: str) -> str:
        """Whole days from ``earlier`` to ``later`` (dates)."""
        return f"datediff({later}, {earlier})" if self.spark else f"({later} - {earlier})"


DIALECTS = {"duckdb": Dialect(), "postgres": Dialect(), "spark": Dialect(double="DOUBLE", text="STRING", spark=True)}


def models_present_frame(schema: str, models: Sequence[str], present: Iterable[str]) -> Frame:
    """One row per expected model; ``missing`` names the ones absent from ``schema`` (``present``: the relations the
    target's catalog lists there; a VALUES list, so the query is the same on every engine)."""
    have = set(present)
    values = ", ".join(f"('{m}', {int(m in have)})" for m in models)
    sql = f"""
        SELECT e.model, CASE WHEN e.present = 0 THEN '{schema}.' || e.model END AS missing
        FROM (VALUES {values}) AS e(model, present)
        ORDER BY e.model"""
    return Frame("models_present", sql, (Expect("ExpectColumnValuesToBeNull", "missing"),))
