"""CDNOW mapping tests: both real files load completely through the normal validation path."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from ulm.core.errors import UlmError
from ulm.core.settings import cdnow_dir
from ulm.ingest import ingest_cdnow

CDNOW = cdnow_dir()


def _q(wh: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _file_stats(path: Path) -> tuple[int, int, Decimal, int]:
    """Independent count straight from the text file: lines, customers, revenue, zero-dollar lines."""
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    data = [p for p in lines if p[0].isdigit()]
    return (len(data), len({p[0] for p in data}), sum(Decimal(p[-1]) for p in data),
            sum(Decimal(p[-1]) == 0 for p in data))


@pytest.mark.parametrize("name, orders, accounts", [("CDNOW_sample.txt", 6919, 2357),
                                                    ("CDNOW_master.txt", 69659, 23570)])
def test_cdnow_row_counts(name: str, orders: int, accounts: int, tmp_path: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    s = ingest_cdnow(CDNOW / name, wh, progress=False)["tables"]
    assert (s["orders"]["rows_read"], s["orders"]["rows_accepted"]) == (orders, orders)
    assert (s["users"]["rows_read"], s["users"]["rows_accepted"]) == (accounts, accounts)
    n_lines, n_customers, revenue, zero = _file_stats(CDNOW / name)
    assert (n_lines, n_customers) == (orders, accounts)
    got = _q(wh, "SELECT count(*), count(DISTINCT order_id), count(DISTINCT user_id), sum(paid_amount), "
                 "count(*) FILTER (paid_amount = 0) FROM raw.orders")
    assert got == [(orders, orders, accounts, revenue, zero)]
    assert _q(wh, "SELECT count(*) FROM raw.quarantine") == [(0,)]


def test_cdnow_mapping_semantics(tmp_path: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    ingest_cdnow(CDNOW / "CDNOW_sample.txt", wh, progress=False)
    # business day (Asia/Shanghai) of every order equals its CDNOW date; first line of the file
    assert _q(wh, "SELECT order_id, user_id, order_ts::VARCHAR, status, gross_amount, discount_amount, "
                  "paid_amount, refund_amount, scenario FROM raw.orders ORDER BY order_ts, order_id LIMIT 1") == [
        ("cdnow_00004_19970101_1", "cdnow_00004", "1997-01-01 04:00:00", "paid", Decimal("29.33"),
         Decimal("0.00"), Decimal("29.33"), Decimal("0.00"), "other")]
    assert _q(wh, "SELECT count(*) FROM raw.orders WHERE "
                  "CAST(timezone('Asia/Shanghai', timezone('UTC', order_ts)) AS DATE) <> CAST(order_ts AS DATE)") \
        == [(0,)]
    # each user registered on its first purchase, with the documented defaults
    assert _q(wh, "SELECT count(*) FROM raw.users u JOIN (SELECT user_id, min(order_ts) AS first "
                  "FROM raw.orders GROUP BY ALL) o USING (user_id) WHERE u.registered_at <> o.first") == [(0,)]
    assert _q(wh, "SELECT DISTINCT platform, acquisition_channel, region, consent_analytics, consent_marketing, "
                  "phone IS NULL FROM raw.users") == [("content", "organic", "US", True, False, True)]


def test_cdnow_reingest_is_noop_and_bad_file_errors(tmp_path: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    ingest_cdnow(CDNOW / "CDNOW_sample.txt", wh, progress=False)
    again = ingest_cdnow(CDNOW / "CDNOW_sample.txt", wh, progress=False)["tables"]
    assert (again["orders"]["files_skipped"], again["orders"]["rows_read"]) == (1, 0)
    assert _q(wh, "SELECT count(*) FROM raw.orders") == [(6919,)]
    bad = tmp_path / "bad.txt"
    bad.write_text(" 00001 19970101\n")
    with pytest.raises(UlmError, match="bad.txt: column"):
        ingest_cdnow(bad, wh, progress=False)
