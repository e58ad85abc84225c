"""The serving snapshot (docs/ANALYSTS.md): readers never block the pipeline and never see a mix.

A reader process opens ``data/serving/serving.duckdb`` read-only and keeps it open, querying it in a loop, through
a publish of the next day, a run whose gate fails, and an erasure. Every writer succeeds; the reader only ever sees
whole snapshots (the run id in ``meta.snapshot`` always matches the row counts published with it); a new reader
sees the newest snapshot; comments (dbt persist_docs) are there for SQL clients.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.generate import generate
from ulm.ingest import ingest_dir
from ulm.privacy.erasure import erase
from ulm.transform.serving import serving_path
from ulm.transform.wap import build_and_publish

pytestmark = pytest.mark.slow

D1, D2 = date(2025, 12, 30), date(2025, 12, 31)

READER = r"""
import duckdb, json, sys, time
path, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect(path, read_only=True)
import os
with open(out, "w") as fh:
    while not os.path.exists(stop):
        with_rows = con.execute("select (select run_id from meta.snapshot), (select count(*) from marts.dim_persons), "
                                "(select sum(total_rows) from audit.publish_log)").fetchall()[0]
        fh.write(json.dumps(with_rows) + "\n"); fh.flush()
        time.sleep(0.1)
"""


def _snapshot_state(path: Path) -> tuple:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("select (select run_id from meta.snapshot), (select count(*) from marts.dim_persons), "
                           "(select sum(total_rows) from audit.publish_log)").fetchall()[0]


def test_a_reader_holding_the_snapshot_blocks_nothing_and_sees_no_mix(tmp_path, monkeypatch):
    base = tmp_path
    generate(base / "landing", persons=400, days=45, end_date=D2, seed=31, progress=False)
    wh = base / "wh.duckdb"
    ingest_dir(base / "landing", wh, progress=False, until=D1)

    def ctx(day: date) -> RunContext:
        return RunContext.create(as_of=day, warehouse=wh).with_(data_dir=base / "data")

    build_and_publish(ctx(D1), progress=False)
    snap = serving_path(base / "data")
    first = _snapshot_state(snap)
    assert first[0] and first[1] > 0
    with duckdb.connect(str(snap), read_only=True) as con:  # descriptions reach every SQL client
        comment = con.execute("select comment from duckdb_tables() where schema_name = 'marts' "
                              "and table_name = 'dim_persons'").fetchall()[0][0]
        col = con.execute("select count(*) from duckdb_columns() where schema_name = 'marts' "
                          "and table_name = 'dim_persons' and comment is not null").fetchall()[0][0]
    assert comment and col > 5
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("select comment from duckdb_tables() where schema_name = 'marts' "
                           "and table_name = 'dim_persons'").fetchall()[0][0] == comment

    log, stop = base / "reader.jsonl", base / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(snap), str(log), str(stop)])
    try:
        deadline = time.time() + 30
        while not (log.exists() and log.read_text().strip()) and time.time() < deadline:
            time.sleep(0.1)
        # 1. the next day is ingested, built and published while the reader holds the snapshot
        ingest_dir(base / "landing", wh, progress=False)
        build_and_publish(ctx(D2), progress=False)
        second = _snapshot_state(snap)
        assert second[0] != first[0]
        # 2. a run whose gate fails changes nothing the reader or a new reader sees
        with monkeypatch.context() as m:
            m.setenv("ULM_PARAMS", json.dumps({"freshness_max_lag_days": -5}))  # the data is never that fresh
            with pytest.raises(UlmError, match="gate"):
                build_and_publish(ctx(D2), progress=False)
        assert _snapshot_state(snap) == second
        # 3. an erasure rewrites the snapshot without the person, also while the reader holds the old one
        with duckdb.connect(str(wh), read_only=True) as con:
            uid = con.execute("select user_id from marts.dim_accounts order by user_id limit 1").fetchall()[0][0]
        rq = base / "landing" / "erasure_requests"
        rq.mkdir(exist_ok=True)
        pq.write_table(pa.table({"request_id": ["req-serving-1"], "user_id": [uid],
                                 "requested_at": [datetime(2025, 12, 31, 2)]}), rq / "erasure_requests_x_20251231.parquet")
        ingest_dir(base / "landing", wh, progress=False)
        assert erase(wh, base / "data")["requests"] >= 1
        third = _snapshot_state(snap)
        assert third[1] < second[1]
        with duckdb.connect(str(snap), read_only=True) as con:
            assert con.execute("select count(*) from marts.dim_accounts where user_id = ?", [uid]).fetchall()[0][0] == 0
            assert con.execute("select reason from meta.snapshot").fetchall()[0][0] == "erasure"
    finally:
        stop.touch()
        reader.wait(timeout=30)
    seen = {tuple(json.loads(line)) for line in log.read_text().splitlines()}
    assert reader.returncode == 0
    # the reader only ever saw whole snapshots: the one it opened (it keeps its open file across renames)
    assert seen == {first}
    assert not list(snap.parent.glob(".*.tmp"))
