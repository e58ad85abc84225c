"""Audience export: one Parquet and one CSV file per rule (docs/METRICS.md#interventions).

``export_audiences`` writes ``data/exports/<as_of>/<rule>.parquet|csv`` from the published
``marts.mart_interventions`` for the as-of day, holdout excluded. Files are written to a temporary folder that
then replaces the day's folder, so a re-run of the same day leaves exactly one consistent set.
"""
from __future__ import annotations

import logging
import shutil
import time
from datetime import date
from pathlib import Path

from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.warehouse import PUBLISHED, connect_read_only, quote

log = logging.getLogger("ulm.exports")

INTERVENTIONS = "mart_interventions"


def exports_dir(data_dir: Path, as_of: date) -> Path:
    return data_dir / "exports" / as_of.isoformat()


def export_audiences(ctx: RunContext, out_root: Path | None = None) -> dict:
    """Parquet + CSV per rule for the as-of day from the published ``marts.mart_interventions``, holdout excluded."""
    t0 = time.perf_counter()
    as_of, warehouse, schema = ctx.require_as_of(), ctx.warehouse, PUBLISHED
    target = (out_root / as_of.isoformat()) if out_root else exports_dir(ctx.data_dir, as_of)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = connect_read_only(warehouse)
    try:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position", [schema, INTERVENTIONS]).fetchall()]
        if not columns:
            raise UlmError(f"warehouse {warehouse}: {schema}.{INTERVENTIONS} does not exist; publish first")
        date_col = _pick(columns, ("date", "audience_date", "as_of"), "the audience date")
        holdout_col = _pick(columns, ("is_holdout", "holdout", "in_holdout"), "the holdout flag")
        base = (f"FROM {quote(schema)}.{INTERVENTIONS} WHERE {quote(date_col)} = DATE '{as_of.isoformat()}' "
                f"AND NOT coalesce({quote(holdout_col)}, false)")
        keep = ", ".join(quote(c) for c in columns if c != holdout_col)
        rules = {}
        for (rule,) in con.execute(f"SELECT DISTINCT rule_id {base} ORDER BY 1").fetchall():
            where = f"{base} AND rule_id = '{str(rule).replace(chr(39), chr(39) * 2)}'"
            rel = f"(SELECT {keep} {where} ORDER BY person_id)"
            stem = str(tmp / _safe(rule)).replace("'", "''")
            con.execute(f"COPY {rel} TO '{stem}.parquet' (FORMAT parquet)")
            con.execute(f"COPY {rel} TO '{stem}.csv' (FORMAT csv, HEADER true)")
            rules[rule] = con.execute(f"SELECT count(*) {where}").fetchone()[0]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("exported %d audiences (%d persons) to %s in %.1fs", len(rules), sum(rules.values()), target, seconds)
    return {"dir": str(target), "rules": rules, "persons": sum(rules.values()), "seconds": seconds}


def _pick(columns: list[str], candidates: tuple[str, ...], what: str) -> str:
    for c in candidates:
        if c in columns:
            return c
    raise UlmError(f"{INTERVENTIONS}: column {candidates[0]}: no column for {what} (one of {', '.join(candidates)})")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


