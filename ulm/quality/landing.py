"""Gate 1, landing (docs/METRICS.md#quality-gates-and-publishing): the loads of this run reconcile, stay under the invalid ratio, none failed.

The frame is ``raw.load_audit`` restricted to this run's loads (started at or after the run's ingest began),
with the quarantined rows that count as invalid (all reasons except the late-arriving ``unknown_account`` and the
erased person's ``erased_subject``, exactly as the loader counts them) joined per load. A handful of rows per run: projected, not aggregated.
"""
from __future__ import annotations

from datetime import datetime

from ulm.core.settings import param
from ulm.quality.core import Expect, Frame, Suite, expect_between, expect_max

LANDING_SUITE = "landing_contract"


def _not_invalid_reasons() -> str:
    """Quarantine reasons that are not invalid data, exactly as the loader counts them: the late-arriving account
    (``unknown_account``) and the erased person's row (``erased_subject``)."""
    from ulm.ingest.validate import ERASED_SUBJECT, ORPHAN_REASON

    return ", ".join(f"'{r}'" for r in (ORPHAN_REASON, ERASED_SUBJECT))


def landing_suites(since: datetime, raw_schema: str = "raw") -> list[Suite]:
    """Suites for the loads started at or after ``since`` (naive UTC, like ``load_audit.started_at``)."""
    since_sql = f"TIMESTAMP '{since.replace(tzinfo=None, microsecond=0).isoformat(' ')}'"
    loads_sql = f"""
        WITH invalid AS (
            SELECT load_id, count(*) AS rows_invalid
            FROM {raw_schema}.quarantine
            WHERE reason_code NOT IN ({_not_invalid_reasons()})
            GROUP BY load_id
        )
        SELECT a.load_id, a.table_name, a.source_file, a.status,
               CASE WHEN a.status = 'ok' THEN NULL
                    ELSE a.table_name || ': ' || coalesce(a.message, 'load failed') END AS failure,
               a.rows_read,
               a.rows_read - a.rows_accepted - a.rows_quarantined - a.rows_duplicate AS unreconciled_rows,
               CASE WHEN a.rows_read > 0 THEN coalesce(i.rows_invalid, 0) / a.rows_read ELSE 0 END
                   AS invalid_ratio
        FROM {raw_schema}.load_audit AS a
        LEFT JOIN invalid AS i USING (load_id)
        WHERE a.started_at >= {since_sql}
        ORDER BY a.started_at, a.load_id"""
    loads = Frame("loads_this_run", loads_sql, (
        Expect("ExpectColumnValuesToBeNull", "failure"),
        expect_between("unreconciled_rows", 0, 0),
        expect_between("invalid_ratio", 0, float(param("max_invalid_ratio"))),
    ))
    totals = Frame("reconciliation_totals", f"""
        SELECT coalesce(sum(rows_read - rows_accepted - rows_quarantined - rows_duplicate), 0)
                   AS unreconciled_rows_total,
               count(*) FILTER (WHERE status <> 'ok') AS failed_loads
        FROM {raw_schema}.load_audit WHERE started_at >= {since_sql}""", (
        expect_max("unreconciled_rows_total", 0),
        expect_max("failed_loads", 0),
    ))
    return [Suite(LANDING_SUITE, (loads, totals))]
