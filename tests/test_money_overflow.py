"""Money totals never overflow: every per-row amount is DECIMAL(18,2), every total DECIMAL(38,2) (real dbt + DuckDB).

A small raw layer whose orders and spend rows are each valid DECIMAL(18,2) (up to 9,999,999,999,999,999.99) but
whose per-person-day, per-day, per-month, per-cohort and lifetime sums exceed 1e16. The dbt build of every mart
(models + data tests) must succeed, the totals must equal exact Python Decimal sums to the cent, and the columns
that hold totals must be DECIMAL(38,2) while the per-order columns stay DECIMAL(18,2).
"""
from __future__ import annotations

import os
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from ulm.core.context import RunContext
from ulm.core.contract import TABLES, raw_ddl
from ulm.transform.dbt import run_dbt

pytestmark = pytest.mark.slow

os.environ.setdefault("DBT_INDIRECT_SELECTION", "cautious")

AS_OF = date(2025, 3, 31)
MAX_ROW = Decimal("9999999999999999.99")  # the largest DECIMAL(18,2)
BIG = Decimal("9000000000000000.00")
ODD = Decimal("1234567890123456.78")
LOADED_AT = datetime(2025, 4, 1)

# user_id, platform, acquisition_channel, registration day
USERS = [
    ("u0", "content", "paid_ads", date(2025, 1, 2)),
    ("u1", "content", "paid_ads", date(2025, 1, 5)),
    ("u2", "live", "organic", date(2025, 2, 3)),
    ("u3", "live", "organic", date(2025, 2, 10)),
]

# order_id, user_id, business day, status, gross, discount, refund (paid = gross - discount)
ORDERS = [
    ("o01", "u0", date(2025, 3, 10), "paid", BIG, Decimal(0), Decimal(0)),
    ("o02", "u0", date(2025, 3, 10), "paid", MAX_ROW, Decimal(0), Decimal(0)),
    ("o03", "u0", date(2025, 3, 10), "paid", ODD, Decimal("0.01"), Decimal(0)),
    ("o04", "u0", date(2025, 3, 20), "paid", BIG, Decimal(0), Decimal(0)),
    ("o05", "u0", date(2025, 3, 20), "paid", MAX_ROW, Decimal(0), Decimal(0)),
    ("o06", "u0", date(2025, 3, 20), "refunded", MAX_ROW, Decimal(0), Decimal("0.07")),  # partial refund
    ("o07", "u1", date(2025, 3, 10), "paid", BIG, Decimal(0), Decimal(0)),
    ("o08", "u1", date(2025, 3, 10), "paid", MAX_ROW, Decimal("0.99"), Decimal(0)),
    ("o09", "u1", date(2025, 2, 15), "cancelled", MAX_ROW, Decimal(0), Decimal(0)),
    ("o10", "u1", date(2025, 2, 16), "paid", BIG, Decimal(0), Decimal(0)),
    ("o11", "u1", date(2025, 2, 16), "paid", BIG, Decimal(0), Decimal(0)),
    ("o12", "u2", date(2025, 2, 20), "paid", MAX_ROW, Decimal(0), Decimal(0)),
    ("o13", "u2", date(2025, 3, 30), "paid", BIG, Decimal(0), Decimal(0)),
    ("o14", "u2", date(2025, 3, 30), "paid", BIG, Decimal(0), Decimal(0)),
    ("o15", "u3", date(2025, 3, 30), "paid", Decimal("10.05"), Decimal(0), Decimal(0)),
]

SPEND_DAYS = [date(2025, 1, 1) + timedelta(days=i) for i in range((AS_OF - date(2025, 1, 1)).days + 1)]


def _spend(day: date) -> Decimal:
    return BIG + Decimal(day.day) / 100  # 9e15 and some cents, every day: monthly sums ~2.8e17


def _ts(day: date, hour: int = 4) -> datetime:
    """A UTC timestamp inside business day `day` (Asia/Shanghai = UTC+8)."""
    return datetime(day.year, day.month, day.day, hour)


def _net(o) -> Decimal:
    _, _, _, status, gross, disc, refund = o
    return Decimal(0) if status == "cancelled" else gross - disc - refund


def _gmv(o) -> Decimal:
    return o[4] if o[3] in ("paid", "refunded") else Decimal(0)


def _rows() -> dict[str, list[tuple]]:
    users = [(u, plat, _ts(reg, 2), ch, None, None, 1, "25-30", "CN", f"1380000{i:04d}", f"dev-{u}", None,
              True, True, _ts(reg, 2)) for i, (u, plat, ch, reg) in enumerate(USERS)]
    events = []
    for i, (oid, uid, day, *_rest) in enumerate(ORDERS):
        plat = next(p for u, p, _, _ in USERS if u == uid)
        events.append((f"e{i}", uid, "product_view", _ts(day, 3), plat, None, None, None, None, None, None, None, None))
    for i, (uid, plat, _, reg) in enumerate(USERS):
        events.append((f"eo{i}", uid, "app_open", _ts(reg, 3), plat, *([None] * 8)))
    orders = [(oid, uid, _ts(day), status, str(gross), str(disc), str(gross - disc), str(refund), "content",
               None, None, None, None, None) for oid, uid, day, status, gross, disc, refund in ORDERS]
    spend = [(d, "paid_ads", "content", str(_spend(d))) for d in SPEND_DAYS]
    spend += [(d, "organic", "live", "100.00") for d in SPEND_DAYS]
    invites = [("i1", "u0", _ts(date(2025, 1, 6)), "u1", _ts(date(2025, 1, 6), 5))]
    nps = [("r1", "u0", _ts(date(2025, 3, 11)), 10), ("r2", "u2", _ts(date(2025, 3, 12)), 3)]
    return {"users": users, "events": events, "orders": orders, "marketing_spend": spend, "invites": invites,
            "nps_responses": nps, "erasure_requests": []}


def _write_raw(path: Path) -> None:
    """Raw tables with the landing contract's DDL; amounts go in as text and are cast to DECIMAL(18,2) exactly."""
    with duckdb.connect(str(path)) as con:
        con.execute("create schema if not exists raw")
        for name, rows in _rows().items():
            con.execute(raw_ddl(name))
            cols = TABLES[name].column_names
            holes = ", ".join("?" for _ in range(len(cols) + 3))
            names = ", ".join(f'"{c}"' for c in cols)
            if rows:
                con.executemany(f"insert into raw.{name} ({names}, _load_id, _loaded_at, _source_file) values ({holes})",
                                [[*r, "load1", LOADED_AT, "test.parquet"] for r in rows])


@pytest.fixture(scope="module")
def big_wh(tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("money_overflow") / "wh.duckdb"
    _write_raw(wh)
    with duckdb.connect(str(wh)) as con:  # every row is valid DECIMAL(18,2) and really large
        assert con.execute("select max(paid_amount) from raw.orders").fetchone()[0] == MAX_ROW
    result = run_dbt(RunContext.create(as_of=AS_OF, warehouse=wh), "build", select="+marts", progress=False)
    assert result["success"]
    assert {"int_person_daily_activity", "mart_kpi_daily", "mart_channel_economics", "dim_persons"} \
        <= set(result["model_timings"])
    return wh


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    row = con.execute(sql, params or []).fetchone()
    assert row is not None, sql
    return row[0]


def _close(got: Decimal, expected: Decimal) -> bool:
    """Means are DOUBLE divisions of exact totals: equal up to double precision, whatever their size."""
    return abs(got - expected) <= abs(expected) * Decimal("1e-14")


def test_per_order_amounts_stay_decimal_18_2_and_totals_are_decimal_38_2(big_wh):
    with duckdb.connect(str(big_wh), read_only=True) as con:
        types = {(t, c): d for t, c, d in con.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema in ('marts', 'intermediate', 'staging')").fetchall()}
    for col in ("gross_amount", "discount_amount", "paid_amount", "refund_amount", "net_amount", "gmv_amount"):
        assert types[("fct_orders", col)] == "DECIMAL(18,2)", col
        assert types[("stg_orders", col)] == "DECIMAL(18,2)", col
    assert types[("stg_marketing_spend", "spend")] == "DECIMAL(18,2)"
    totals = [
        ("int_person_daily_activity", "net_revenue"), ("int_person_daily_activity", "gmv"),
        ("fct_person_activity_daily", "net_revenue"), ("fct_person_activity_daily", "gmv"),
        ("int_person_activity_summary", "realized_net_revenue"), ("int_person_activity_summary", "rfm_net_revenue"),
        ("int_person_activity_summary", "diamond_window_net_revenue"),
        ("int_person_ltv", "realized_ltv"), ("int_person_ltv", "predicted_total_ltv"),
        ("int_person_social_tiers", "net_revenue_30d"), ("int_person_rfm", "monetary"), ("mart_rfm", "monetary"),
        ("dim_persons", "realized_ltv"), ("fct_clv_snapshots", "monetary_value"),
        ("mart_clv_summary", "monetary_value"),
        ("mart_kpi_daily", "gmv"), ("mart_kpi_daily", "net_revenue"), ("mart_kpi_daily", "gmv_30d"),
        ("mart_kpi_daily", "net_revenue_30d"), ("mart_kpi_monthly", "gmv"), ("mart_kpi_monthly", "net_revenue"),
        ("mart_channel_economics", "spend"), ("mart_channel_economics", "cac"),
        ("mart_channel_economics", "cost_per_paying_person"), ("mart_channel_economics", "predicted_ltv_per_person"),
        ("mart_channel_economics", "realized_net_revenue_per_person_30d"),
    ]
    wrong = {tc: types.get(tc) for tc in totals if types.get(tc) != "DECIMAL(38,2)"}
    assert not wrong, wrong


def test_totals_above_1e16_are_exact(big_wh):
    per_person_day: dict[tuple[str, date], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    per_day: dict[date, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    per_month: dict[date, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    lifetime: dict[str, Decimal] = defaultdict(Decimal)
    for o in ORDERS:
        uid, day = o[1], o[2]
        for acc in (per_person_day[(uid, day)], per_day[day], per_month[day.replace(day=1)]):
            acc[0] += _net(o)
            acc[1] += _gmv(o)
        lifetime[uid] += _net(o)
    assert per_person_day[("u0", date(2025, 3, 10))][0] > Decimal("1e16")
    assert per_day[date(2025, 3, 10)][1] > Decimal("3e16") and per_month[date(2025, 3, 1)][0] > Decimal("8e16")

    with duckdb.connect(str(big_wh), read_only=True) as con:
        person = dict(con.execute("select user_id, person_id from marts.dim_accounts").fetchall())
        for (uid, day), (net, gmv) in per_person_day.items():
            got = con.execute("select net_revenue, gmv from marts.fct_person_activity_daily "
                              "where person_id = ? and activity_date = ?", [person[uid], day]).fetchone()
            assert got == (net, gmv), (uid, day)
        for day, (net, gmv) in per_day.items():
            got = con.execute("select net_revenue, gmv from marts.mart_kpi_daily where kpi_date = ?", [day]).fetchone()
            assert got == (net, gmv), day
        for month, (net, gmv) in per_month.items():
            got = con.execute("select net_revenue, gmv from marts.mart_kpi_monthly where month_start = ?",
                              [month]).fetchone()
            assert got == (net, gmv), month
        window = [d for d in per_day if AS_OF - timedelta(days=30) < d <= AS_OF]
        assert _one(con, "select net_revenue_30d from marts.mart_kpi_daily where kpi_date = ?", [AS_OF]) == \
            sum(per_day[d][0] for d in window)
        assert _one(con, "select gmv_30d from marts.mart_kpi_daily where kpi_date = ?", [AS_OF]) == \
            sum(per_day[d][1] for d in window)
        for uid, net in lifetime.items():
            assert _one(con, "select realized_ltv from marts.dim_persons where person_id = ?", [person[uid]]) == net
        # RFM monetary: net revenue of (d - 90, d] = every order here
        assert _one(con, "select monetary from marts.mart_rfm where person_id = ?", [person["u0"]]) == lifetime["u0"]
        # CLV: u0's only repeat purchase day is 2025-03-20; a mean (DOUBLE division), so close, not exact
        assert _close(_one(con, "select monetary_value from marts.mart_clv_summary where person_id = ?",
                           [person["u0"]]), per_person_day[("u0", date(2025, 3, 20))][0])
        # channel economics: monthly spend of one channel x platform, far above 1e16
        for month in (date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)):
            expected = sum(_spend(d) for d in SPEND_DAYS if d.replace(day=1) == month)
            got = _one(con, "select spend from marts.mart_channel_economics where acquisition_channel = 'paid_ads' "
                            "and platform = 'content' and cohort_month = ?", [month])
            assert got == expected and got > Decimal("2e17"), month
        jan = con.execute("select new_persons, cac from marts.mart_channel_economics where acquisition_channel = "
                          "'paid_ads' and platform = 'content' and cohort_month = '2025-01-01'").fetchone()
        jan_spend = sum(_spend(d) for d in SPEND_DAYS if d.month == 1)
        assert jan[0] == 2 and _close(jan[1], jan_spend / 2)
