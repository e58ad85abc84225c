"""Loader tests (docs/METRICS.md#landing-contract, #validity-quarantine-and-reconciliation): reason codes, reconciliation, idempotence, orphans, drift, ratio, CSV/Parquet.

Fixtures are tiny landing folders built with pyarrow / csv in ``tmp_path``; every test loads them into
a real DuckDB warehouse through ``ingest_dir`` and inspects ``raw.*``.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ulm.core import contract
from ulm.core.errors import ContractError, UlmError
from ulm.ingest import ingest_dir

PA_TYPES = {
    "string": pa.string(), "json": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(), "int": pa.int32(), "bool": pa.bool_(), "decimal": pa.decimal128(18, 2),
}
TS = "2025-03-01T12:00:00Z"


# --------------------------------------------------------------------------- fixture builders

def user(i: int | str, **kw) -> dict:
    row = {"user_id": f"u{i}", "platform": "live", "registered_at": "2025-01-01T08:00:00Z",
           "acquisition_channel": "organic", "city_tier": "2", "age_band": "25-30", "region": "CN",
           "phone": f"1380000{i}", "device_id": f"d{i}", "consent_analytics": "true",
           "consent_marketing": "false", "consent_updated_at": "2025-01-01T08:00:00Z"}
    row.update(kw)
    return row


def order(i: int | str, user_id: str = "u1", **kw) -> dict:
    row = {"order_id": f"o{i}", "user_id": user_id, "order_ts": TS, "status": "paid",
           "gross_amount": "100.00", "discount_amount": "10.00", "paid_amount": "90.00",
           "refund_amount": "0.00", "scenario": "live"}
    row.update(kw)
    return row


def write_csv(landing: Path, table: str, name: str, rows: list[dict], columns: list[str] | None = None) -> Path:
    cols = columns or contract.TABLES[table].column_names
    path = landing / table / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r[c] for c in cols])
    return path


def _py(value: str | None, typ: str):
    """CSV-style text -> the Python value pyarrow needs for the contract type."""
    if value is None or value == "":
        return None
    if typ == "timestamp":
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return {"date": date.fromisoformat, "int": int, "decimal": Decimal,
            "bool": lambda v: v == "true"}.get(typ, str)(value)


def write_parquet(landing: Path, table: str, name: str, rows: list[dict],
                  override: dict[str, pa.Array] | None = None) -> Path:
    """Typed Parquet with the contract schema; ``override`` replaces whole columns (drift fixtures)."""
    t = contract.TABLES[table]
    arrays = {c.name: pa.array([_py(r.get(c.name), c.type) for r in rows], PA_TYPES[c.type]) for c in t.columns}
    arrays.update(override or {})
    path = landing / table / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path)
    return path


def users_file(landing: Path, n: int = 3, name: str = "users_20250301.parquet", start: int = 1) -> None:
    write_parquet(landing, "users", name, [user(i) for i in range(start, start + n)])


def q(wh: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def quarantine(wh: Path) -> list[tuple]:
    return q(wh, "SELECT table_name, reason_code, reason_detail, original_row FROM raw.quarantine ORDER BY quarantine_id")


def ingest(landing: Path, wh: Path, **kw) -> dict:
    return ingest_dir(landing, wh, progress=False, **kw)


# --------------------------------------------------------------------------- reason codes

def _future(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


REASON_CASES = [
    # (id, table, defect row builder, expected code, expected column, original value shown in JSON)
    ("missing_required", "orders", lambda: order("x", status=None), "missing_required", "status", None),
    ("bad_type_decimal", "orders", lambda: order("x", gross_amount="12,5"), "bad_type", "gross_amount", "12,5"),
    ("bad_type_timestamp", "orders", lambda: order("x", order_ts="2025-02-30T00:00:00Z"), "bad_type", "order_ts",
     "2025-02-30T00:00:00Z"),
    ("unknown_enum", "orders", lambda: order("x", status="shipped"), "unknown_enum", "status", "shipped"),
    ("timestamp_too_old", "orders", lambda: order("x", order_ts="2014-12-31T23:59:59Z"), "timestamp_too_old",
     "order_ts", "2014-12-31T23:59:59Z"),
    ("timestamp_in_future", "orders", lambda: order("x", order_ts=_future(3)), "timestamp_in_future", "order_ts", None),
    ("out_of_range_amount", "orders", lambda: order("x", refund_amount="-1.00"), "out_of_range", "refund_amount",
     "-1.00"),
    ("constraint_paid", "orders", lambda: order("x", paid_amount="80.00"), "constraint", "paid_amount", "80.00"),
    ("constraint_refund", "orders", lambda: order("x", status="refunded", refund_amount="95.00"), "constraint",
     "refund_amount", "95.00"),
    ("unknown_account", "orders", lambda: order("x", user_id="ghost"), "unknown_account", "user_id", "ghost"),
    ("out_of_range_city_tier", "users", lambda: user("x", city_tier="7"), "out_of_range", "city_tier", "7"),
    ("bad_type_bool", "users", lambda: user("x", consent_analytics="maybe"), "bad_type", "consent_analytics", "maybe"),
    ("unknown_enum_age", "users", lambda: user("x", age_band="18-25"), "unknown_enum", "age_band", "18-25"),
    ("first_rule_wins", "orders", lambda: order("x", status=None, gross_amount="abc"), "missing_required", "status",
     "abc"),
]


def _valid_rows(table: str, n: int) -> list[dict]:
    return [user(1000 + i) for i in range(n)] if table == "users" else [order(i) for i in range(n)]


@pytest.mark.parametrize("case", REASON_CASES, ids=[c[0] for c in REASON_CASES])
def test_reason_code(case, landing: Path, wh: Path) -> None:
    _, table, defect, code, column, shown = case
    if table != "users":
        users_file(landing)
    rows = _valid_rows(table, 120)
    rows.insert(57, defect())
    write_csv(landing, table, f"{table}_20250302.csv", rows)
    s = ingest(landing, wh)["tables"][table]
    assert (s["rows_read"], s["rows_quarantined"]) == (121, 1)
    [(tname, got_code, detail, original)] = quarantine(wh)
    assert (tname, got_code) == (table, code)
    assert detail.startswith(f"column {column}: {code}")
    orig = json.loads(original)
    assert set(orig) == set(contract.TABLES[table].column_names)  # the full original row, as read
    if shown is not None:
        assert shown in orig.values()


def test_nps_score_bounds_and_integrality(landing: Path, wh: Path) -> None:
    users_file(landing)
    rows = [{"response_id": f"r{i}", "user_id": "u1", "responded_at": TS, "score": str(i % 11)} for i in range(300)]
    rows += [{"response_id": "r_hi", "user_id": "u1", "responded_at": TS, "score": "11"},
             {"response_id": "r_frac", "user_id": "u1", "responded_at": TS, "score": "7.5"}]
    write_csv(landing, "nps_responses", "nps_responses_20250302.csv", rows)
    ingest(landing, wh)
    assert sorted((r[1], r[2].split(":")[0]) for r in quarantine(wh)) == [
        ("bad_type", "column score"), ("out_of_range", "column score")]


def test_future_tolerance_uses_param(landing: Path, wh: Path) -> None:
    """30 minutes ahead is inside future_tolerance_hours (1h); 3 hours ahead is not."""
    users_file(landing)
    rows = [order(i) for i in range(200)] + [order("soon", order_ts=_future(0.5)), order("late", order_ts=_future(3))]
    write_csv(landing, "orders", "orders_20250302.csv", rows)
    ingest(landing, wh)
    assert q(wh, "SELECT reason_code, original_row->>'order_id' FROM raw.quarantine") == [
        ("timestamp_in_future", "olate")]
    assert q(wh, "SELECT count(*) FROM raw.orders WHERE order_id = 'osoon'") == [(1,)]


def test_invites_constraint_and_fk_on_invitee(landing: Path, wh: Path) -> None:
    users_file(landing)
    ok = [{"invite_id": f"i{i}", "inviter_user_id": "u1", "sent_at": TS} for i in range(200)]
    bad = [
        {"invite_id": "i_before", "inviter_user_id": "u1", "sent_at": TS, "invitee_user_id": "u2",
         "accepted_at": "2025-02-01T00:00:00Z"},
        {"invite_id": "i_noinvitee", "inviter_user_id": "u1", "sent_at": TS, "accepted_at": TS},
        {"invite_id": "i_ghost", "inviter_user_id": "u1", "sent_at": TS, "invitee_user_id": "ghost",
         "accepted_at": TS},
    ]
    write_csv(landing, "invites", "invites_20250302.csv", ok + bad)
    ingest(landing, wh)
    got = q(wh, "SELECT original_row->>'invite_id', reason_code, split_part(reason_detail, ':', 1) "
                "FROM raw.quarantine ORDER BY 1")
    assert got == [("i_before", "constraint", "column accepted_at"),
                   ("i_ghost", "unknown_account", "column invitee_user_id"),
                   ("i_noinvitee", "constraint", "column accepted_at")]


# --------------------------------------------------------------------------- reconciliation, duplicates

def test_reconciliation_invariant_and_duplicates(landing: Path, wh: Path) -> None:
    users_file(landing)
    rows = [order(i) for i in range(300)]
    rows += [order(5), order(6), order(6)]                      # 3 exact duplicates inside the file
    rows += [order(7, gross_amount="200.00", paid_amount="190.00")]  # same key, different content
    rows += [order("bad", status="lost"), order("orph", user_id="ghost")]
    write_csv(landing, "orders", "orders_20250302.csv", rows)
    # a later file repeating two loaded orders (one identical, one changed) and a new one
    write_csv(landing, "orders", "orders_20250303.csv",
              [order(1), order(2, status="cancelled"), order(1000)] + [order(2000 + i) for i in range(100)])
    s = ingest(landing, wh)["tables"]["orders"]
    audit = q(wh, "SELECT source_file, rows_read, rows_accepted, rows_quarantined, rows_duplicate, status "
                  "FROM raw.load_audit WHERE table_name = 'orders' ORDER BY source_file")
    assert [a[1:] for a in audit] == [(306, 300, 3, 3, "ok"), (103, 101, 1, 1, "ok")]
    for _, read, acc, qua, dup, _ in audit:
        assert read == acc + qua + dup
    assert s["rows_read"] == s["rows_accepted"] + s["rows_quarantined"] + s["rows_duplicate"] == 409
    # raw holds each key once; the earliest version wins
    assert q(wh, "SELECT count(*), count(DISTINCT order_id) FROM raw.orders") == [(401, 401)]
    assert q(wh, "SELECT gross_amount, status, _source_file LIKE '%0302.csv' FROM raw.orders "
                 "WHERE order_id IN ('o7', 'o2') ORDER BY order_id") == [
        (Decimal("100.00"), "paid", True), (Decimal("100.00"), "paid", True)]
    codes = q(wh, "SELECT reason_code, original_row->>'order_id' FROM raw.quarantine ORDER BY 1, 2")
    assert codes == [("duplicate_key_conflict", "o2"), ("duplicate_key_conflict", "o7"),
                     ("unknown_account", "oorph"), ("unknown_enum", "obad")]
    # every row read is accounted for by raw + quarantine + duplicates
    total = q(wh, "SELECT (SELECT count(*) FROM raw.orders) + (SELECT count(*) FROM raw.quarantine) + "
                  "(SELECT sum(rows_duplicate) FROM raw.load_audit WHERE table_name = 'orders')")[0][0]
    assert total == 409


def test_idempotent_reingest(landing: Path, wh: Path) -> None:
    users_file(landing)
    write_parquet(landing, "orders", "orders_20250302.parquet",
                  [order(i) for i in range(150)] + [order("g", user_id="ghost")])
    first = ingest(landing, wh)
    snapshot = q(wh, "SELECT (SELECT count(*) FROM raw.orders), (SELECT count(*) FROM raw.quarantine), "
                     "(SELECT count(*) FROM raw.load_audit), (SELECT count(*) FROM raw._ingested_files)")
    second = ingest(landing, wh)
    assert first["tables"]["orders"]["files"] == 1
    assert second["tables"]["orders"] | {"seconds": 0} == {
        **first["tables"]["orders"], "files": 0, "files_skipped": 1, "rows_read": 0, "rows_accepted": 0,
        "rows_quarantined": 0, "load_ids": [], "seconds": 0}
    assert q(wh, "SELECT (SELECT count(*) FROM raw.orders), (SELECT count(*) FROM raw.quarantine), "
                 "(SELECT count(*) FROM raw.load_audit), (SELECT count(*) FROM raw._ingested_files)") == snapshot
    assert snapshot == [(150, 1, 2, 2)]


# --------------------------------------------------------------------------- orphans

def test_orphans_released_when_account_arrives(tmp_path: Path, wh: Path) -> None:
    day1, day2, day3 = (tmp_path / d for d in ("d1", "d2", "d3"))
    users_file(day1, n=2)  # u1, u2
    # half the file names unknown accounts: late arrivals do not count toward max_invalid_ratio
    rows = [order(i, user_id="u1") for i in range(10)] + [order(100 + i, user_id=f"u{3 + i % 2}") for i in range(10)]
    write_csv(day1, "orders", "orders_20250301.csv", rows)
    write_csv(day1, "events", "events_20250301.csv", [
        {"event_id": "e1", "user_id": "u3", "event_type": "app_open", "event_ts": TS}])
    s1 = ingest(day1, wh)["tables"]
    assert (s1["orders"]["rows_accepted"], s1["orders"]["rows_quarantined"]) == (10, 10)

    users_file(day2, n=1, start=3, name="users_20250302.parquet")  # u3 arrives, u4 still missing
    s2 = ingest(day2, wh)["tables"]
    assert (s2["orders"]["rows_released"], s2["events"]["rows_released"]) == (5, 1)
    release_audit = q(wh, "SELECT table_name, rows_read, rows_released FROM raw.load_audit "
                          "WHERE load_id LIKE '%:release:%' ORDER BY 1")
    assert release_audit == [("events", 0, 1), ("orders", 0, 5)]
    assert q(wh, "SELECT count(*) FROM raw.orders WHERE user_id = 'u3'") == [(5,)]
    assert q(wh, "SELECT count(*) FROM raw.quarantine WHERE released_at IS NULL") == [(5,)]

    # u4 arrives together with a new orders file: that load releases (and audits) the rest
    users_file(day3, n=1, start=4, name="users_20250303.parquet")
    write_csv(day3, "orders", "orders_20250303.csv", [order(200 + i) for i in range(3)])
    s3 = ingest(day3, wh)["tables"]["orders"]
    assert (s3["rows_read"], s3["rows_accepted"], s3["rows_released"]) == (3, 3, 5)
    assert q(wh, "SELECT rows_released FROM raw.load_audit WHERE source_file LIKE '%orders_20250303.csv'") == [(5,)]
    assert q(wh, "SELECT count(*), count(DISTINCT order_id) FROM raw.orders") == [(23, 23)]
    released = q(wh, "SELECT count(*), count(DISTINCT released_load_id) FROM raw.quarantine "
                     "WHERE released_at IS NOT NULL AND table_name = 'orders'")
    assert released == [(10, 2)]
    # released rows keep the lineage of the file they came from
    assert q(wh, "SELECT DISTINCT _source_file LIKE '%orders_20250301.csv' FROM raw.orders "
                 "WHERE user_id IN ('u3', 'u4')") == [(True,)]


# --------------------------------------------------------------------------- failures roll back

def _raw_state(wh: Path) -> list[tuple]:
    return q(wh, "SELECT (SELECT count(*) FROM raw.orders), (SELECT count(*) FROM raw.quarantine), "
                 "(SELECT count(*) FROM raw._ingested_files)")


def test_schema_drift_missing_required_column(landing: Path, wh: Path) -> None:
    users_file(landing)
    cols = [c for c in contract.TABLES["orders"].column_names if c != "status"]
    write_csv(landing, "orders", "orders_20250302.csv", [order(i) for i in range(5)], columns=cols)
    with pytest.raises(ContractError) as err:
        ingest(landing, wh)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("orders_20250302.csv: column status: schema drift")
    assert "required column missing" in msg
    assert _raw_state(wh) == [(0, 0, 1)]  # only the users file is registered
    assert q(wh, "SELECT status, message FROM raw.load_audit WHERE table_name = 'orders'") == [("failed", msg)]


def test_schema_drift_timestamp_as_int64(landing: Path, wh: Path) -> None:
    users_file(landing)
    write_parquet(landing, "orders", "orders_20250302.parquet", [order(i) for i in range(5)],
                  override={"order_ts": pa.array([1_700_000_000] * 5, pa.int64())})
    with pytest.raises(ContractError, match=r"^orders_20250302\.parquet: column order_ts: schema drift: "
                                            r"file type BIGINT cannot represent contract type timestamp$"):
        ingest(landing, wh)
    assert _raw_state(wh) == [(0, 0, 1)]


def test_invalid_ratio_above_threshold_leaves_raw_unchanged(landing: Path, wh: Path) -> None:
    users_file(landing)
    write_csv(landing, "orders", "orders_20250301.csv", [order(i) for i in range(150)] + [order("b0", status="x")])
    ingest(landing, wh)
    before = _raw_state(wh)
    rows = [order(100 + i) for i in range(95)] + [order(f"bad{i}", gross_amount="n/a") for i in range(4)]
    rows += [order("bad_enum", status="lost")]
    write_csv(landing, "orders", "orders_20250302.csv", rows)
    with pytest.raises(ContractError) as err:
        ingest(landing, wh)
    msg = str(err.value)
    assert msg.startswith("orders_20250302.csv: column gross_amount: bad_type: invalid ratio 5.00%")
    assert "max_invalid_ratio 1.00%" in msg
    assert _raw_state(wh) == before
    assert q(wh, "SELECT status, rows_read FROM raw.load_audit WHERE source_file LIKE '%0302.csv'") == [("failed", 0)]


# --------------------------------------------------------------------------- formats, discovery, locking

def test_csv_and_parquet_load_identically(tmp_path: Path) -> None:
    rows = [user(i, city_tier=str(1 + i % 5), union_id=None if i % 2 else f"un{i}") for i in range(40)]
    loaded = []
    for fmt, writer in (("csv", write_csv), ("parquet", write_parquet)):
        landing, wh = tmp_path / fmt, tmp_path / f"{fmt}.duckdb"
        writer(landing, "users", f"users_20250301.{fmt}", rows)
        ingest(landing, wh)
        cols = ", ".join(contract.TABLES["users"].column_names)
        loaded.append(q(wh, f"SELECT {cols} FROM raw.users ORDER BY user_id"))
    assert len(loaded[0]) == 40
    assert loaded[0] == loaded[1]


def test_parquet_float_ints_and_extra_columns(landing: Path, wh: Path, caplog) -> None:
    """pandas-style float64 int columns load; unknown extra columns are ignored with a warning."""
    rows = [user(i) for i in range(200)]
    tiers = [float(1 + i % 5) for i in range(199)] + [2.5]
    write_parquet(landing, "users", "users_20250301.parquet", rows,
                  override={"city_tier": pa.array(tiers, pa.float64()), "favourite_color": pa.array(["red"] * 200)})
    (landing / "misc").mkdir()
    s = ingest(landing, wh)
    assert any("favourite_color" in w for w in [r.getMessage() for r in caplog.records])
    assert any("misc" in w for w in s["warnings"])
    assert q(wh, "SELECT reason_code, reason_detail FROM raw.quarantine") == [
        ("bad_type", "column city_tier: bad_type: value does not parse as int")]
    assert q(wh, "SELECT sum(city_tier) FROM raw.users")[0][0] == sum(int(t) for t in tiers[:199])


def test_until_filters_stamped_files(landing: Path, wh: Path) -> None:
    users_file(landing, name="users_20250301.parquet")
    users_file(landing, n=2, start=10, name="users_20250305.parquet")
    users_file(landing, n=1, start=20, name="users_extra.parquet")  # no stamp: always loaded
    s = ingest(landing, wh, until=date(2025, 3, 2))["tables"]["users"]
    assert (s["files"], s["rows_accepted"]) == (2, 4)
    assert ingest(landing, wh)["tables"]["users"]["rows_accepted"] == 2


def test_locked_warehouse_is_one_line_error(wh: Path, landing: Path) -> None:
    users_file(landing)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(wh)!r}); print('ready', flush=True); sys.stdin.read()""")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(UlmError) as err:
            ingest(landing, wh)
        msg = str(err.value)
        assert msg == f"warehouse {wh} is in use by another process (pid {holder.pid}); wait for it to finish"
    finally:
        holder.communicate("")


def test_malformed_csv_line_fails_instead_of_skipping(landing: Path, wh: Path) -> None:
    path = write_csv(landing, "users", "users_20250301.csv", [user(i) for i in range(5)])
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("u9,live,2025-01-01T08:00:00Z,organic,too,many,fields,here,a,b,c,d,e,f,g,h,i\n")
    with pytest.raises(ContractError, match=r"^users_20250301\.csv: column \(none\): unreadable csv file: "):
        ingest(landing, wh)
    assert q(wh, "SELECT count(*) FROM raw.users") == [(0,)]


def test_pending_orphan_is_the_reference_for_its_key(tmp_path: Path, wh: Path) -> None:
    """A later row with the key of a pending orphan: identical -> duplicate, different -> conflict."""
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    users_file(d1)
    write_csv(d1, "orders", "orders_20250301.csv", [order(i) for i in range(150)] +
              [order("g1", user_id="ghost"), order("g2", user_id="ghost")])
    ingest(d1, wh)
    write_csv(d2, "orders", "orders_20250302.csv", [order(200 + i) for i in range(150)] +
              [order("g1", user_id="ghost"), order("g2", user_id="u1")])
    s = ingest(d2, wh)["tables"]["orders"]
    assert (s["rows_accepted"], s["rows_quarantined"], s["rows_duplicate"]) == (150, 1, 1)
    assert q(wh, "SELECT reason_code, original_row->>'user_id' FROM raw.quarantine WHERE load_id LIKE '%0302%'") == [
        ("duplicate_key_conflict", "u1")]
    assert q(wh, "SELECT count(*) FROM raw.orders WHERE order_id IN ('og1', 'og2')") == [(0,)]
