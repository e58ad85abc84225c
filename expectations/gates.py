"""The three quality gates (SPEC §12) as functions the DAG tasks call.

Each opens the warehouse, evaluates its suites with GX (see :mod:`expectations.core`), stores every result in
``audit.gate_results``, rebuilds the Data Docs under ``data/docs/gx/`` and raises
:class:`~expectations.core.GateFailed` when a critical expectation fails. Returns the report summary.
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from expectations.core import GateReport, existing_tables, run_gate
from expectations.landing import landing_suites
from expectations.marts import marts_suites
from expectations.staging import staging_suites
from ulm.config import data_dir

AUDIT_PREFIX = "audit_"


def _open(warehouse: Path):
    from ulm.ingest.warehouse import open_warehouse

    return open_warehouse(warehouse)


def gate_landing(warehouse: Path, as_of: date, run_id: str, since: datetime,
                 data_root: Path | None = None) -> dict:
    """Gate 1: the loads that started at or after ``since`` reconcile, are under the ratio, none failed."""
    con = _open(warehouse)
    try:
        return _summary(run_gate(con, "landing", landing_suites(since), as_of, run_id, data_root or data_dir()))
    finally:
        con.close()


def gate_staging(warehouse: Path, as_of: date, run_id: str, prefix: str = AUDIT_PREFIX,
                 data_root: Path | None = None) -> dict:
    """Gate 2 on ``<prefix>staging``: freshness, volume, nulls, accepted values, uniqueness."""
    schema = f"{prefix}staging"
    con = _open(warehouse)
    try:
        suites = staging_suites(existing_tables(con, schema), schema, as_of)
        return _summary(run_gate(con, "staging", suites, as_of, run_id, data_root or data_dir()))
    finally:
        con.close()


def gate_marts(warehouse: Path, as_of: date, run_id: str, prefix: str = AUDIT_PREFIX,
               data_root: Path | None = None) -> dict:
    """Gate 3 on ``<prefix>marts`` (GMV reconciled against ``<prefix>staging``): the SPEC §12 invariants."""
    marts, staging, intermediate = f"{prefix}marts", f"{prefix}staging", f"{prefix}intermediate"
    con = _open(warehouse)
    try:
        suites = marts_suites(existing_tables(con, marts), marts, staging, as_of,
                              existing_tables(con, intermediate), intermediate)
        return _summary(run_gate(con, "marts", suites, as_of, run_id, data_root or data_dir()))
    finally:
        con.close()


def _summary(report: GateReport) -> dict:
    return report.summary()
