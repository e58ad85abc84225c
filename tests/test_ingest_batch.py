"""Set-based batch loading (docs/LOADING.md#one-load--one-file-one-pass-per-table): a run that loads many files of a table in
one pass must leave exactly what loading the same files one run each leaves — per-file audit, registry,
reconciliation, raw rows, quarantine — while opening one transaction per table, not one per file.

Small landing folders (a few hundred rows) written with the fixture builders of ``test_ingest``.
"""
from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from test_ingest import TS, order, q, user, write_csv, write_parquet

from ulm.core import contract, settings
from ulm.core.errors import ContractError
from ulm.ingest import ingest_dir
from ulm.ingest import loader as loader_mod
from ulm.ingest.loader import discover, ingest_files
from ulm.privacy.hashing import hmac_sha256


def event(i: int | str, user_id: str = "u1", **kw) -> dict:
    row = {"event_id": f"e{i}", "user_id": user_id, "event_type": "app_open", "event_ts": TS,
           "session_id": f"s{i}", "properties": '{"n": 1}'}
    row.update(kw)
    return row


def _landing(base: Path) -> Path:
    """Many files per table, in load order, with every cross-file interaction a batch has to get right."""
    land = base / "landing"
    # users: u5 gets a consent version in the second file (newer consent_updated_at, marketing consent changed),
    # u6 an identical copy (duplicate), u7 a changed platform (conflict); the third file holds a stale u5 row
    write_parquet(land, "users", "users_20250301.parquet", [user(i) for i in range(1, 151)])
    write_parquet(land, "users", "users_20250302.parquet", [user(i) for i in range(151, 261)] + [
        user(5, consent_marketing="true", consent_updated_at="2025-02-01T08:00:00Z"),
        user(6), user(7, platform="content")])
    write_csv(land, "users", "users_20250303.csv", [user(i) for i in range(261, 371)] + [
        user(5, consent_analytics="false", consent_updated_at="2025-01-15T08:00:00Z")])
    # orders: cross-file duplicate (o3) and conflict (o4), an orphan, a bad-ratio file whose keys a later file
    # repeats (they must load there, as if the bad file did not exist), a schema-drift file
    write_csv(land, "orders", "orders_20250301.csv", [order(i, user_id=f"u{1 + i % 50}") for i in range(150)]
              + [order("ghost1", user_id="ghost")])
    write_parquet(land, "orders", "orders_20250302.parquet", [order(1000 + i) for i in range(120)] + [
        order(3, user_id="u4"), order(4, user_id="u5", status="cancelled"), order(1000)])
    bad = [order(2000 + i) for i in range(95)] + [order(f"bad{i}", gross_amount="n/a") for i in range(5)]
    write_csv(land, "orders", "orders_20250303.csv", bad)
    drift = [c for c in contract.TABLES["orders"].column_names if c != "status"]
    write_csv(land, "orders", "orders_20250304.csv", [order(3000 + i) for i in range(10)], columns=drift)
    write_parquet(land, "orders", "orders_20250305.parquet", [order(2000 + i) for i in range(95)]
                  + [order(3100 + i) for i in range(60)]
                  + [order(1001), order(1002, gross_amount="300.00", paid_amount="290.00"), order("ghost1", user_id="ghost")])
    # events: two Parquet files and a CSV between them, duplicates and a conflict across all of them
    write_parquet(land, "events", "events_20250301.parquet", [event(i, user_id=f"u{1 + i % 40}") for i in range(200)])
    write_csv(land, "events", "events_20250302.csv", [event(200 + i) for i in range(200)] + [event(5, user_id="u6")])
    write_parquet(land, "events", "events_20250303.parquet", [event(400 + i) for i in range(200)] + [
        event(5, user_id="u6"), event(201), event(202, event_type="like")])
    return land


def _state(wh: Path) -> dict[str, list[tuple]]:
    """Everything a load leaves behind, without the load times (source files by name: runs may use two folders)."""
    name = "regexp_replace({}, '^.*/', '')"
    out = {
        "audit": q(wh, f"SELECT load_id, table_name, {name.format('source_file')}, file_sha256, rows_read, "
                       "rows_accepted, rows_quarantined, rows_duplicate, rows_released, status, message "
                       "FROM raw.load_audit ORDER BY load_id, status"),
        "registry": q(wh, f"SELECT table_name, file_sha256, {name.format('source_file')}, load_id "
                          "FROM raw._ingested_files ORDER BY 1, 4"),
        "quarantine": q(wh, "SELECT quarantine_id, table_name, original_row, reason_code, reason_detail, load_id, "
                            f"{name.format('source_file')}, released_load_id FROM raw.quarantine ORDER BY quarantine_id"),
        "erased": q(wh, "SELECT subject_hash, kind, added_by FROM raw.erased_subjects ORDER BY 1, 2"),
    }
    for t in contract.TABLES:
        cols = ", ".join(f'"{c}"' for c in contract.TABLES[t].column_names)
        out[t] = q(wh, f"SELECT {cols}, _load_id, {name.format('_source_file')} FROM raw.{t} ORDER BY ALL")
    return out


def _one_run_each(landing: Path, wh: Path) -> list[str]:
    """The reference: every file of ``discover()`` in its own run, in order; the messages of the failed ones."""
    errors = []
    files, _ = discover(landing)
    for lf in files:
        try:
            ingest_files([lf], wh, progress=False)
        except ContractError as exc:
            errors.append(str(exc))
    return errors


class _Counting:
    """A connection that counts the transactions the loader opens and the statements that stage rows."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con, self.begins, self.stages = con, 0, 0

    def execute(self, sql: str, *args):
        if sql.startswith("BEGIN"):
            self.begins += 1
        if "_stage AS" in sql or sql.startswith("INSERT INTO _stage "):
            self.stages += 1 if "WITH n AS" in sql else 0
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


@pytest.fixture
def counting(monkeypatch) -> list[_Counting]:
    made: list[_Counting] = []
    real = loader_mod.connect

    def connect(path):
        c = _Counting(real(path))
        made.append(c)
        return c

    monkeypatch.setattr(loader_mod, "connect", connect)
    return made


def test_batch_equals_one_run_per_file(tmp_path: Path, counting) -> None:
    landing = _landing(tmp_path)
    batch_wh, each_wh = tmp_path / "batch.duckdb", tmp_path / "each.duckdb"
    with pytest.raises(ContractError) as err:
        ingest_dir(landing, batch_wh, progress=False)
    each_errors = _one_run_each(landing, each_wh)

    # the run fails with the first failing file's message, after loading every other file
    assert each_errors == [
        "orders_20250303.csv: column gross_amount: bad_type: invalid ratio 5.00% (5 of 100 rows; 5 bad_type in "
        "gross_amount) exceeds max_invalid_ratio 1.00%",
        "orders_20250304.csv: column status: schema drift: required column missing from file"]
    assert str(err.value) == each_errors[0]
    assert err.value.failures == each_errors  # every failure and the run's summary travel with the error
    assert err.value.summary["tables"]["orders"]["files"] == 3
    batch, each = _state(batch_wh), _state(each_wh)
    for part in batch:
        assert batch[part] == each[part], part

    audit = {r[0].split(":")[1]: r for r in batch["audit"]}
    assert [(a[9], a[10]) for name, a in audit.items() if a[9] == "failed"] == [
        ("failed", each_errors[0]), ("failed", each_errors[1])]
    assert all(r[4] == r[5] + r[6] + r[7] for r in batch["audit"])  # reconciliation, per file
    # the cross-file outcomes themselves
    assert audit["users_20250302.parquet"][4:8] == (113, 111, 1, 1)  # u5 a version, u6 a duplicate, u7 a conflict
    assert "1 row(s) are new versions of known accounts" in audit["users_20250302.parquet"][10]
    assert audit["users_20250303.csv"][4:8] == (111, 110, 1, 0)  # the older u5 row: stale_update
    assert audit["orders_20250302.parquet"][4:8] == (123, 120, 1, 2)  # o3 + in-file o1000 duplicates, o4 conflict
    assert audit["orders_20250305.parquet"][4:8] == (158, 155, 1, 2)  # o2000.. load: the bad file never loaded
    assert audit["events_20250303.parquet"][4:8] == (203, 200, 1, 2)
    assert q(batch_wh, "SELECT count(*) FROM raw.users WHERE user_id = 'u5'") == [(2,)]
    assert sorted(r[3] for r in batch["quarantine"]) == [
        "duplicate_key_conflict", "duplicate_key_conflict", "duplicate_key_conflict", "duplicate_key_conflict",
        "stale_update", "unknown_account"]
    # one transaction per table (three tables with files), one staging statement per schema group
    run = counting[0]
    assert run.begins == 3
    assert run.stages == 2 + 2 + 2  # a Parquet and a CSV group per table (the drift file never reaches staging)


def test_daily_files_of_one_table_are_one_pass(tmp_path: Path, counting) -> None:
    land = tmp_path / "landing"
    write_parquet(land, "users", "users_20250301.parquet", [user(i) for i in range(1, 11)])
    for d in range(1, 31):  # a month of daily event files, same schema
        write_parquet(land, "events", f"events_202503{d:02d}.parquet",
                      [event(f"{d}_{i}", user_id=f"u{1 + i % 10}") for i in range(20)])
    s = ingest_dir(land, tmp_path / "wh.duckdb", progress=False)["tables"]["events"]
    assert (s["files"], s["rows_read"], s["rows_accepted"]) == (30, 600, 600)
    assert len(s["load_ids"]) == 30
    assert counting[0].begins == 2 and counting[0].stages == 2
    wh = tmp_path / "wh.duckdb"
    assert q(wh, "SELECT count(*), count(DISTINCT _load_id), count(DISTINCT _source_file) FROM raw.events") == [
        (600, 30, 30)]
    assert q(wh, "SELECT count(*) FROM raw.load_audit WHERE table_name = 'events' AND rows_read = 20") == [(30,)]


def test_same_content_twice_in_one_batch_is_skipped(tmp_path: Path) -> None:
    land = tmp_path / "landing"
    write_parquet(land, "users", "users_20250301.parquet", [user(i) for i in range(1, 6)])
    shutil.copy(land / "users" / "users_20250301.parquet", land / "users" / "users_20250301_resent.parquet")
    s = ingest_dir(land, tmp_path / "wh.duckdb", progress=False)["tables"]["users"]
    assert (s["files"], s["files_skipped"], s["rows_accepted"]) == (1, 1, 5)


def test_erased_person_linked_across_files_of_one_batch(tmp_path: Path) -> None:
    """A new account sharing an erased person's phone lands in one file; its later users row and its events are
    then caught by user id, exactly as when each file is loaded in its own run."""
    phone = "13900000777"
    runs = {}
    for mode in ("batch", "each"):
        base = tmp_path / mode
        land = base / "landing"
        write_parquet(land, "users", "users_20250301.parquet", [user(i) for i in range(1, 6)])
        wh = base / "wh.duckdb"
        ingest_dir(land, wh, progress=False)
        con = duckdb.connect(str(wh))
        con.execute("INSERT INTO raw.erased_subjects VALUES (?, 'phone', 'req-1', ?, 'test')",
                    [hmac_sha256(phone, settings.suppression_key().encode("utf-8")), datetime(2025, 3, 1)])
        con.close()
        write_parquet(land, "users", "users_20250302.parquet", [user(10), user("z1", phone=phone)])
        write_parquet(land, "users", "users_20250303.parquet", [  # a later version row of z1 with another phone
            user("z1", phone="13900000888", consent_updated_at="2025-02-01T08:00:00Z"), user(11)])
        write_parquet(land, "events", "events_20250303.parquet", [event(1, user_id="uz1"), event(2, user_id="u1")])
        if mode == "batch":
            ingest_dir(land, wh, progress=False)
        else:
            assert _one_run_each(land, wh) == []
        runs[mode] = _state(wh)
    assert runs["batch"] == runs["each"]
    got = runs["batch"]
    assert [r[3] for r in got["quarantine"]] == ["erased_subject"] * 3  # z1 twice and its event
    assert all(r[2] is None for r in got["quarantine"])  # no payload kept
    assert sorted(r[2] for r in got["erased"]) == ["landing: linked by phone", "test"]


def test_unreadable_file_in_a_batch_fails_alone(tmp_path: Path, caplog) -> None:
    land = tmp_path / "landing"
    write_parquet(land, "users", "users_20250301.parquet", [user(i) for i in range(1, 6)])
    for d in (2, 3, 4):
        write_parquet(land, "users", f"users_2025030{d}.parquet", [user(10 * d + i) for i in range(5)])
    (land / "users" / "users_20250303.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    wh = tmp_path / "wh.duckdb"
    with caplog.at_level(logging.ERROR, logger="ulm.ingest"), pytest.raises(ContractError) as err:
        ingest_dir(land, wh, progress=False)
    assert str(err.value).startswith("users_20250303.parquet: column (none): unreadable parquet file: ")
    assert q(wh, "SELECT count(*) FROM raw.users") == [(15,)]
    assert q(wh, "SELECT status, count(*) FROM raw.load_audit GROUP BY 1 ORDER BY 1") == [("failed", 1), ("ok", 3)]


def test_csv_files_read_together_keep_their_row_numbers(tmp_path: Path) -> None:
    """One read_csv over three files: every quarantined row is named by its own file's load id and row number."""
    runs = {}
    for mode in ("batch", "each"):
        land = tmp_path / mode / "landing"
        write_csv(land, "users", "users_20250301.csv", [user(i) for i in range(1, 4)])
        for d, bad_at in ((2, 7), (3, 150), (4, 0)):
            rows = [order(f"{d}_{i}") for i in range(200)]
            rows.insert(bad_at, order(f"bad{d}", status="lost"))
            write_csv(land, "orders", f"orders_2025030{d}.csv", rows)
        wh = tmp_path / mode / "wh.duckdb"
        if mode == "batch":
            ingest_dir(land, wh, progress=False)
        else:
            assert _one_run_each(land, wh) == []
        runs[mode] = _state(wh)
    assert runs["batch"] == runs["each"]
    got = [(r[0].split(":")[1], r[0].split(":")[-1], r[3]) for r in runs["batch"]["quarantine"]]
    assert got == [("orders_20250302.csv", "7", "unknown_enum"), ("orders_20250303.csv", "150", "unknown_enum"),
                   ("orders_20250304.csv", "0", "unknown_enum")]


def test_unchanged_files_are_not_hashed_again(tmp_path: Path, monkeypatch) -> None:
    """A daily run reads only new or changed files: the sha256 of an unchanged file (same path, size, mtime) comes
    from raw._file_hashes; a file rewritten with new content is hashed and loaded again."""
    import os

    from ulm.ingest import files as files_mod

    land = tmp_path / "landing"
    wh = tmp_path / "wh.duckdb"
    old = [write_parquet(land, "users", f"users_2025030{d}.parquet", [user(10 * d + i) for i in range(3)])
           for d in (1, 2)]
    for p in old:  # written well before the run (a file modified within 2 s of hashing is not cached)
        os.utime(p, ns=(p.stat().st_mtime_ns - 10**10, p.stat().st_mtime_ns - 10**10))
    ingest_dir(land, wh, progress=False)
    hashed: list[str] = []
    real = files_mod.sha256_file
    monkeypatch.setattr("ulm.ingest.loader.sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    write_parquet(land, "users", "users_20250303.parquet", [user(30 + i) for i in range(3)])
    s = ingest_dir(land, wh, progress=False)["tables"]["users"]
    assert hashed == ["users_20250303.parquet"] and (s["files"], s["files_skipped"]) == (1, 2)
    hashed.clear()
    write_parquet(land, "users", "users_20250301.parquet", [user(10 + i) for i in range(4)])  # new content
    s = ingest_dir(land, wh, progress=False)["tables"]["users"]
    assert "users_20250301.parquet" in hashed and (s["files"], s["rows_accepted"], s["rows_duplicate"]) == (1, 1, 3)
    assert q(wh, "SELECT count(*) FROM raw._file_hashes") == [(2,)]  # the two files older than 2 s


def test_bounded_passes_equal_one_pass(tmp_path: Path, monkeypatch) -> None:
    """A first load larger than MAX_PASS_BYTES runs as several consecutive passes: same result as one pass."""
    from ulm.ingest import batch

    landing = _landing(tmp_path)
    one, split = tmp_path / "one.duckdb", tmp_path / "split.duckdb"
    with pytest.raises(ContractError):
        ingest_dir(landing, one, progress=False)
    monkeypatch.setattr(batch, "MAX_PASS_BYTES", 13_000)  # one to three files per pass
    with pytest.raises(ContractError):
        ingest_dir(landing, split, progress=False)
    assert _state(one) == _state(split)
