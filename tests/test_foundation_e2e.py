"""Generator -> loader, end to end on real files and a real DuckDB warehouse (issue: foundation).

The generator's defect manifest says exactly what it injected; the loader must quarantine exactly that,
with the same reason codes, count the duplicates, reconcile every load, and release late-arriving accounts.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta

import duckdb
import pytest

from ulm.core.errors import ContractError
from ulm.generate import generate
from ulm.ingest import ingest_dir

SCALE = dict(persons=2500, days=75, seed=21, progress=False)
RATE = 0.01  # at the loader's max_invalid_ratio: floor(rate x rows) per file keeps every file at or under it


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    base = tmp_path_factory.mktemp("foundation")
    gen = generate(base / "landing", defects=RATE, truth_dir=base / "truth", **SCALE)
    wh = base / "wh.duckdb"
    summary = ingest_dir(base / "landing", wh, progress=False)
    manifest = json.loads((base / "truth" / "defects_manifest.json").read_text())
    return {"base": base, "gen": gen, "wh": wh, "summary": summary, "manifest": manifest}


def _con(wh):
    return duckdb.connect(str(wh), read_only=True)


def test_quarantine_reasons_match_the_defect_manifest(loaded):
    con = _con(loaded["wh"])
    got = Counter({(t, r): n for t, r, n in con.execute(
        "select table_name, reason_code, count(*) from raw.quarantine where released_at is null group by all"
    ).fetchall()})
    want = Counter({(t, r): n for t, c in loaded["manifest"]["counts"].items() for r, n in c.items()
                    if r != "duplicate"})
    assert sum(want.values()) > 50, "the fixture should inject a meaningful number of defects"
    assert got == want


def test_duplicates_counted_not_loaded(loaded):
    con = _con(loaded["wh"])
    dups = dict(con.execute("select table_name, sum(rows_duplicate) from raw.load_audit group by 1").fetchall())
    for table, counts in loaded["manifest"]["counts"].items():
        assert dups.get(table, 0) == counts.get("duplicate", 0), table
    for table, key in (("events", "event_id"), ("orders", "order_id"), ("users", "user_id")):
        n, d = con.execute(f"select count(*), count(distinct {key}) from raw.{table}").fetchone()
        assert n == d, f"raw.{table} holds duplicate keys"


def test_every_load_reconciles(loaded):
    con = _con(loaded["wh"])
    bad = con.execute("""select load_id from raw.load_audit
                         where rows_read <> rows_accepted + rows_quarantined + rows_duplicate""").fetchall()
    assert bad == []
    n_files = sum(1 for p in (loaded["base"] / "landing").rglob("*.parquet"))
    assert con.execute("select count(*) from raw.load_audit where status = 'ok'").fetchone()[0] == n_files
    # and against the files themselves: rows read = rows in the files
    for table in ("events", "orders", "users"):
        in_files = duckdb.execute(
            f"select count(*) from read_parquet('{loaded['base']}/landing/{table}/*.parquet', union_by_name=true)"
        ).fetchone()[0]
        read = con.execute(f"select sum(rows_read) from raw.load_audit where table_name = '{table}'").fetchone()[0]
        assert read == in_files, table


def test_reingest_is_a_noop(loaded):
    before = _snapshot(loaded["wh"])
    again = ingest_dir(loaded["base"] / "landing", loaded["wh"], progress=False)
    assert all(t["files"] == 0 or t["rows_read"] == 0 for t in again["tables"].values())
    assert _snapshot(loaded["wh"]) == before


def _snapshot(wh):
    con = _con(wh)
    try:
        return {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0]
                for t in ("users", "events", "orders", "invites", "nps_responses", "quarantine", "load_audit")}
    finally:
        con.close()


def test_late_arriving_accounts_are_released_day_by_day(tmp_path):
    gen = generate(tmp_path / "landing", persons=1500, days=40, seed=5, defects=0.0, progress=False)
    wh = tmp_path / "wh.duckdb"
    end = date.fromisoformat(str(gen.get("end_date", "2025-12-31"))[:10])
    start = end - timedelta(days=39)
    released = 0
    for i in range(40):
        s = ingest_dir(tmp_path / "landing", wh, until=start + timedelta(days=i), progress=False)
        released += sum(t.get("rows_released", 0) for t in s["tables"].values())
    con = _con(wh)
    pending = con.execute("select count(*) from raw.quarantine where released_at is null").fetchone()[0]
    total_q = con.execute("select count(*) from raw.quarantine").fetchone()[0]
    assert total_q > 0, "late-arriving accounts should orphan some rows on a day-by-day load"
    assert released == total_q and pending == 0
    # the same data in one load has no orphans at all
    wh2 = tmp_path / "wh2.duckdb"
    ingest_dir(tmp_path / "landing", wh2, progress=False)
    for t in ("events", "orders"):
        a = con.execute(f"select count(*) from raw.{t}").fetchone()[0]
        b = _con(wh2).execute(f"select count(*) from raw.{t}").fetchone()[0]
        assert a == b, t


def test_defects_above_threshold_fail_with_file_column_rule(tmp_path):
    generate(tmp_path / "landing", persons=1500, days=30, seed=9, defects=0.05, progress=False)
    with pytest.raises(ContractError) as exc:
        ingest_dir(tmp_path / "landing", tmp_path / "wh.duckdb", progress=False)
    msg = str(exc.value)
    assert ".parquet" in msg and "column " in msg and "invalid ratio" in msg
    assert "\n" not in msg
