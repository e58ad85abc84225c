"""Loader hardening (docs/LOADING.md): bad input is one clear ContractError / UlmError naming file, column and
rule, the failed load is audited, and nothing is lost.

Each case writes a real landing file (CSV / Parquet) and loads it into a real DuckDB warehouse:
non-UTF-8 bytes, a semicolon delimiter, a duplicated column name, an amount above ``max_order_amount``,
a warehouse file named like a schema, a full disk (a small tmpfs; skipped when it cannot be mounted), an
empty landing folder.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_ingest import ingest, order, q, quarantine, user, users_file, write_csv, write_parquet

from ulm.core import contract
from ulm.core.errors import ContractError, UlmError
from ulm.warehouse import connect, connect_read_only, transaction


def _failed_audit(wh: Path, table: str) -> list[tuple]:
    return q(wh, "SELECT status, message FROM raw.load_audit WHERE table_name = ? AND status = 'failed'", [table])


def _raises_audited(landing: Path, wh: Path, table: str, expected: str) -> None:
    """The ingest fails with exactly ``expected`` (one line), audited as failed, nothing of the table loaded."""
    with pytest.raises(ContractError) as err:
        ingest(landing, wh)
    assert str(err.value) == expected
    assert _failed_audit(wh, table) == [("failed", expected)]
    assert q(wh, f"SELECT count(*) FROM raw.{table}") == [(0,)]
    assert q(wh, "SELECT count(*) FROM raw._ingested_files WHERE table_name = ?", [table]) == [(0,)]


# --------------------------------------------------------------------------- 1. encoding

def _insert_byte(path: Path, before: bytes, byte: bytes = b"\xe9") -> int:
    """Insert a latin-1 byte before the first occurrence of ``before``; returns its file offset."""
    data = path.read_bytes()
    at = data.index(before)
    path.write_bytes(data[:at] + byte + data[at:])
    return at


@pytest.mark.parametrize("where, rows, before", [
    ("header", 3, b"latform"),       # in a column name: found by the header parse
    ("near_header", 60, b"d30,"),    # a data row inside the first block: found by DuckDB's read
    ("late", 20_000, b"d19990,"),    # ~2 MB in: beyond the scanner's 1 MiB chunk
])
def test_non_utf8_byte_names_file_and_offset(where: str, rows: int, before: bytes, landing: Path, wh: Path) -> None:
    path = write_csv(landing, "users", "users_20250301.csv", [user(i) for i in range(rows)])
    offset = _insert_byte(path, before)
    _raises_audited(landing, wh, "users",
                    f"users_20250301.csv: column (none): encoding: not UTF-8 (byte 0xe9 at offset {offset})")


def test_utf8_bom_and_non_ascii_values_load(landing: Path, wh: Path) -> None:
    path = write_csv(landing, "users", "users_20250301.csv", [user(i, kol_id="博主é") for i in range(3)])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    ingest(landing, wh)
    assert q(wh, "SELECT DISTINCT kol_id FROM raw.users") == [("博主é",)]


# --------------------------------------------------------------------------- 2. delimiter

def test_semicolon_delimited_csv(landing: Path, wh: Path) -> None:
    path = write_csv(landing, "users", "users_20250301.csv", [user(i) for i in range(3)])
    path.write_text(path.read_text(encoding="utf-8").replace(",", ";"), encoding="utf-8")
    _raises_audited(landing, wh, "users", "users_20250301.csv: column (header): delimiter: expected ',' (found ';')")


def test_comma_header_over_semicolon_rows(landing: Path, wh: Path) -> None:
    """Only the data rows use ';': DuckDB's 'CSV Error on Line: 2' is explained the same way."""
    path = write_csv(landing, "users", "users_20250301.csv", [user(i) for i in range(3)])
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([header] + [ln.replace(",", ";") for ln in lines]) + "\n", encoding="utf-8")
    _raises_audited(landing, wh, "users", "users_20250301.csv: column (header): delimiter: expected ',' (found ';')")


# --------------------------------------------------------------------------- 3. duplicate column

@pytest.mark.parametrize("dup, expected", [
    ("region", "column region: duplicate column name in header"),
    ("Region", "column Region: duplicate column name in header (same as region; names are case-insensitive)"),
])
def test_duplicate_csv_column(dup: str, expected: str, landing: Path, wh: Path) -> None:
    cols = contract.TABLES["users"].column_names + [dup]
    write_csv(landing, "users", "users_20250301.csv", [user(i) | {dup: "CN"} for i in range(3)], columns=cols)
    _raises_audited(landing, wh, "users", f"users_20250301.csv: {expected}")


def test_duplicate_parquet_column(landing: Path, wh: Path) -> None:
    path = write_parquet(landing, "users", "users_20250301.parquet", [user(i) for i in range(3)])
    t = pq.read_table(path)
    pq.write_table(pa.Table.from_arrays(t.columns + [t.column("region")], names=t.column_names + ["region"]), path)
    _raises_audited(landing, wh, "users", "users_20250301.parquet: column region: duplicate column name in header")


# --------------------------------------------------------------------------- 4. amount bound

AMOUNT_CASES = [
    # (column, defect): each is the first failing rule of its row (amount_out_of_range precedes constraint)
    ("gross_amount", dict(gross_amount="9999999999999999.99", discount_amount="0.00", paid_amount="9999999999999999.99")),
    ("discount_amount", dict(discount_amount="10000000.01")),
    ("paid_amount", dict(paid_amount="20000000.00")),
    ("refund_amount", dict(status="refunded", refund_amount="99999999.00")),
]


@pytest.mark.parametrize("column, defect", AMOUNT_CASES, ids=[c[0] for c in AMOUNT_CASES])
def test_amount_above_max_order_amount_is_quarantined(column: str, defect: dict, landing: Path, wh: Path) -> None:
    users_file(landing)
    at_bound = order("edge", gross_amount="10000000.00", discount_amount="0.00", paid_amount="10000000.00")
    rows = [order(i) for i in range(150)] + [at_bound, order("big", **defect)]
    write_csv(landing, "orders", "orders_20250302.csv", rows)
    s = ingest(landing, wh)["tables"]["orders"]
    assert (s["rows_read"], s["rows_accepted"], s["rows_quarantined"], s["rows_duplicate"]) == (152, 151, 1, 0)
    [(table, code, detail, original)] = quarantine(wh)
    assert (table, code) == ("orders", "amount_out_of_range")
    assert detail == f"column {column}: amount_out_of_range: above max_order_amount 10000000"
    assert json.loads(original) == order("big", **defect) | {c: None for c in ("category", "kol_id", "community_id",
                                                                            "share_id", "coupon_id")}
    # the bound itself is valid, and the sums of what loaded stay far from DECIMAL(18,2)'s limit
    assert q(wh, "SELECT sum(gross_amount) FROM raw.orders") == [(Decimal("10015000.00"),)]


def test_max_order_amount_is_a_parameter(landing: Path, wh: Path, monkeypatch) -> None:
    monkeypatch.setenv("ULM_PARAMS", json.dumps({"max_order_amount": 1000}))
    users_file(landing)
    write_csv(landing, "orders", "orders_20250302.csv", [order(i) for i in range(150)] + [
        order("x", gross_amount="1000.01", discount_amount="0.01", paid_amount="1000.00")])
    ingest(landing, wh)
    assert [r[2] for r in quarantine(wh)] == ["column gross_amount: amount_out_of_range: above max_order_amount 1000"]


def test_amount_out_of_range_counts_toward_invalid_ratio(landing: Path, wh: Path) -> None:
    users_file(landing)
    huge = dict(gross_amount="50000000.00", discount_amount="0.00", paid_amount="50000000.00")
    write_csv(landing, "orders", "orders_20250302.csv",
              [order(i) for i in range(97)] + [order(f"h{i}", **huge) for i in range(3)])
    with pytest.raises(ContractError, match=r"^orders_20250302\.csv: column gross_amount: amount_out_of_range: "
                                            r"invalid ratio 3\.00% \(3 of 100 rows; "):
        ingest(landing, wh)


# --------------------------------------------------------------------------- 5. warehouse file names

@pytest.mark.parametrize("name", ["raw.duckdb", "marts.db", "staging.duckdb", "audit.duckdb", "ml.duckdb",
                                  "AUDIT_marts.duckdb", "intermediate", "raw.v2.duckdb"])
def test_warehouse_named_like_a_schema_is_refused(name: str, tmp_path: Path, landing: Path) -> None:
    wh = tmp_path / "data" / name
    catalog = name.split(".")[0]
    expected = (f"warehouse {wh}: the file name {catalog!r} is also a schema name; "
                f"name the file e.g. warehouse.duckdb")
    users_file(landing)
    with pytest.raises(UlmError) as err:
        ingest(landing, wh)
    assert type(err.value) is UlmError and str(err.value) == expected
    assert not wh.exists()
    with pytest.raises(UlmError, match="is also a schema name"):
        connect_read_only(wh)


def test_warehouse_names_that_merely_contain_a_schema_name_work(tmp_path: Path, landing: Path) -> None:
    users_file(landing)
    for name in ("raw_data.duckdb", "marts2.duckdb", "warehouse.duckdb"):
        assert ingest(landing, tmp_path / name)["tables"]["users"]["rows_accepted"] == 3
    connect_read_only(tmp_path / "raw_data.duckdb").close()


# --------------------------------------------------------------------------- 6. disk full

def test_failed_rollback_does_not_mask_the_error(tmp_path: Path) -> None:
    """The transaction is already gone when the block fails: the block's error propagates, not DuckDB's."""
    con = connect(tmp_path / "wh.duckdb")
    try:
        with pytest.raises(ValueError, match="^the real error$"):
            with transaction(con):
                con.execute("ROLLBACK")  # DuckDB aborted the transaction itself (as after some I/O errors)
                raise ValueError("the real error")
        with transaction(con):  # the connection is usable afterwards
            con.execute("CREATE TABLE t AS SELECT 1 AS x")
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
    finally:
        con.close()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MB tmpfs (root only; skipped with the reason when the sandbox refuses the mount)."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs: {(r.stderr.strip().splitlines() or ['refused'])[0]}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _events_csv(landing: Path, n: int) -> Path:
    """A real events CSV of ``n`` valid rows (written by DuckDB: fast)."""
    path = landing / "events" / "events_20250301.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.execute(f"""
        COPY (SELECT 'e' || i AS event_id, 'u1' AS user_id, 'app_open' AS event_type,
                     '2025-03-01T12:00:00Z' AS event_ts, NULL AS platform,
                     'session-' || lpad(i::VARCHAR, 20, '0') AS session_id, NULL AS product_id, NULL AS category,
                     NULL AS content_id, NULL AS kol_id, NULL AS community_id, NULL AS share_id,
                     '{{"n": ' || i || '}}' AS properties
              FROM range({n}) t(i)) TO '{path}' (HEADER)""")
    return path


@pytest.mark.parametrize("rows", [100_000, 300_000], ids=["fails_at_commit", "fails_mid_insert"])
def test_disk_full_is_one_line_error_and_nothing_is_lost(rows: int, small_disk: Path, landing: Path,
                                                         caplog) -> None:
    users_file(landing)
    _events_csv(landing, rows)
    wh = small_disk / "wh.duckdb"
    with caplog.at_level(logging.WARNING, logger="ulm.ingest"), pytest.raises(UlmError) as err:
        ingest(landing, wh)
    msg = str(err.value)
    assert type(err.value) is UlmError and "\n" not in msg
    assert msg.startswith("events_20250301.csv: load failed, warehouse I/O error: ")
    assert "No space left on device" in msg and msg.endswith("(free disk space, then re-run)")
    # the events load was not committed; its failure is audited, or (the disk refusing that write too) logged
    assert q(wh, "SELECT count(*) FROM raw.events") == [(0,)]
    assert q(wh, "SELECT table_name FROM raw._ingested_files") == [("users",)]
    audited = _failed_audit(wh, "events")
    logged = [r.getMessage() for r in caplog.records if "could not be recorded in raw.load_audit" in r.getMessage()]
    assert audited == [("failed", msg)] or (not audited and len(logged) == 1 and logged[0].endswith(msg))
    # with room again, a re-run resumes at the failed file and loads all of it
    subprocess.run(["mount", "-o", "remount,size=64M", str(small_disk)], check=True)
    s = ingest(landing, wh)["tables"]
    assert (s["users"]["files_skipped"], s["events"]["files"], s["events"]["rows_accepted"]) == (1, 1, rows)
    assert q(wh, "SELECT count(*), count(DISTINCT event_id) FROM raw.events") == [(rows, rows)]


# --------------------------------------------------------------------------- 7. empty landing folder

def test_empty_landing_folder_warns(landing: Path, wh: Path, caplog) -> None:
    for table in ("users", "orders"):
        (landing / table).mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="ulm.ingest"):
        s = ingest(landing, wh)
    expected = f"landing directory {landing} holds no landing files"
    assert s["warnings"] == [expected]
    assert expected in [r.getMessage() for r in caplog.records]
    assert all(t["files"] == 0 for t in s["tables"].values())


def test_files_filtered_by_until_are_not_an_empty_folder(landing: Path, wh: Path) -> None:
    from datetime import date

    users_file(landing, name="users_20250305.parquet")
    s = ingest(landing, wh, until=date(2025, 3, 1))
    assert s["warnings"] == [] and s["tables"]["users"]["files"] == 0
