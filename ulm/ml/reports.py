"""Fairness / drift report rows and PSI alerts written to the warehouse (``ml.fairness_report``, ``ml.drift_report``,
``ml.alerts``) after training and scoring. Kept apart from ``ulm.ml.train`` so that scoring does not import the
training stack (matplotlib, scipy.stats).
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from ulm.warehouse import connect, ensure_ml_schema, transaction


def write_reports(warehouse: Path, run_date: date, results: dict[str, dict], context: str = "train") -> None:
    """Append fairness / drift rows and PSI alerts (one writer connection, opened after all reads)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    fair = [r["fairness"].report.assign(task=t, run_id=r["run_id"], model_version=r["decision"].version)
            for t, r in results.items() if "fairness" in r]
    drifts = [r["drift"].assign(task=t, run_id=r.get("run_id"), context=context) for t, r in results.items()]
    with connect(warehouse) as con:
        ensure_ml_schema(con)
        with transaction(con):
            _append_all(con, fair, drifts, run_date, now, context)


def _append_all(con: duckdb.DuckDBPyConnection, fair: list[pd.DataFrame], drifts: list[pd.DataFrame],
                run_date: date, now: datetime, context: str) -> None:
    if fair:
        _append(con, "ml.fairness_report", pd.concat(fair, ignore_index=True).assign(report_date=run_date,
                                                                                     created_at=now))
    drift_df = pd.concat(drifts, ignore_index=True).assign(report_date=run_date, created_at=now)
    _append(con, "ml.drift_report", drift_df)
    alerts = drift_df[drift_df["alert"]]
    if len(alerts):
        _append(con, "ml.alerts", pd.DataFrame({
            "alert_date": run_date, "source": f"drift_{context}", "task": alerts["task"],
            "subject": alerts["feature"], "metric": "psi", "value": alerts["psi"],
            "threshold": alerts["threshold"],
            "message": [f"PSI {v:.3f} > {th} for {f} ({t}, {context})"
                        for v, th, f, t in zip(alerts["psi"], alerts["threshold"], alerts["feature"],
                                               alerts["task"])],
            "created_at": now}))


def _append(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    con.register("frame", frame)
    con.execute(f"create table if not exists {table} as select * from frame limit 0")
    con.execute(f"insert into {table} by name select * from frame")
    con.unregister("frame")
