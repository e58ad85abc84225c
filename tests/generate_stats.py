"""Independent recomputation of the generator's calibration targets from landing files (+ truth map).

Nothing here uses generator internals: it reads the written Parquet files and
``truth/accounts.parquet`` (user_id -> true_person_id) with DuckDB and applies the docs/METRICS.md definitions
(docs/METRICS.md: purchase, net revenue, GMV, active day, AARRR, KPIs, channel economics). Windows and thresholds come from
``ulm.core.settings.param``. Used by tests/test_generate.py and runnable by hand:

    .venv/bin/python tests/generate_stats.py <landing_dir> <truth_dir> [YYYY-MM-DD]
"""
from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import duckdb

from ulm.core.settings import param


def connect(landing: Path, truth: Path) -> duckdb.DuckDBPyConnection:
    """Views over the landing files: acc, users, ev, od, spend, plus person / activity / purchase tables."""
    con = duckdb.connect()
    tz = param("business_timezone")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE MACRO bday(ts) AS CAST(timezone('{tz}', ts AT TIME ZONE 'UTC') AS DATE)")
    src = lambda t: f"read_parquet('{landing}/{t}/*.parquet', union_by_name = true)"  # noqa: E731
    con.execute(f"CREATE VIEW acc AS SELECT * FROM read_parquet('{truth}/accounts.parquet')")
    for view, table in (("users", "users"), ("ev", "events"), ("od", "orders"), ("spend", "marketing_spend"),
                        ("inv", "invites")):
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM {src(table)}")
    con.execute("""
        CREATE TABLE person AS
        SELECT a.true_person_id AS pid, bday(min(u.registered_at)) AS reg_day,
               arg_min(u.acquisition_channel, u.registered_at) AS channel,
               arg_min(u.platform, u.registered_at) AS platform
        FROM users u JOIN acc a USING (user_id) GROUP BY 1""")
    con.execute("""
        CREATE TABLE purchase AS
        SELECT a.true_person_id AS pid, bday(o.order_ts) AS d, o.gross_amount AS gross,
               o.paid_amount - o.refund_amount AS net
        FROM od o JOIN acc a USING (user_id)
        WHERE o.status = 'paid' OR (o.status = 'refunded' AND o.refund_amount < o.paid_amount)""")
    con.execute("""
        CREATE TABLE gmv_orders AS
        SELECT a.true_person_id AS pid, bday(o.order_ts) AS d, o.gross_amount AS gross,
               o.paid_amount - o.refund_amount AS net
        FROM od o JOIN acc a USING (user_id) WHERE o.status IN ('paid', 'refunded')""")
    con.execute("""
        CREATE TABLE active AS
        SELECT DISTINCT a.true_person_id AS pid, bday(e.event_ts) AS d FROM ev e JOIN acc a USING (user_id)
        UNION SELECT pid, d FROM purchase""")
    con.execute("""
        CREATE TABLE shares AS
        SELECT a.true_person_id AS pid, bday(e.event_ts) AS d FROM ev e JOIN acc a USING (user_id)
        WHERE e.event_type = 'share'""")
    return con


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchone()


def calibration(landing: Path, truth: Path, as_of: date) -> dict:
    con = connect(landing, truth)
    d = as_of
    out: dict = {}
    # D7 retention: active exactly on day 7 / persons of matured cohorts (reg_day + 7 <= d)
    out["d7_retention"] = one(con, """
        SELECT avg(CASE WHEN x.pid IS NULL THEN 0 ELSE 1 END) FROM person p
        LEFT JOIN active x ON x.pid = p.pid AND x.d = p.reg_day + 7 WHERE p.reg_day + 7 <= ?""", [d])[0]
    w = param("activation_window_days")
    out["activation_7d"] = one(con, f"""
        WITH first AS (SELECT pid, min(d) AS d FROM purchase GROUP BY 1)
        SELECT avg(CASE WHEN f.d IS NOT NULL AND f.d - p.reg_day < {w} THEN 1 ELSE 0 END)
        FROM person p LEFT JOIN first f USING (pid) WHERE p.reg_day + {w} <= ?""", [d])[0]
    rw = param("repurchase_window_days")
    out["repurchase_90d"] = one(con, f"""
        WITH k AS (SELECT pid, count(DISTINCT d) AS n FROM purchase WHERE d > ?::DATE - {rw} AND d <= ? GROUP BY 1)
        SELECT avg(CASE WHEN n >= 2 THEN 1 ELSE 0 END) FROM k""", [d, d])[0]
    sw, smin = param("share_rate_window_days"), param("share_rate_min_shares")
    out["share_rate_90d"] = one(con, f"""
        WITH a AS (SELECT DISTINCT pid FROM active WHERE d > ?::DATE - {sw} AND d <= ?),
             s AS (SELECT pid, count(*) AS n FROM shares WHERE d > ?::DATE - {sw} AND d <= ? GROUP BY 1)
        SELECT avg(CASE WHEN s.n >= {smin} THEN 1 ELSE 0 END) FROM a LEFT JOIN s USING (pid)""", [d, d, d, d])[0]
    # AOV over the whole period: net revenue (paid - refund over non-cancelled orders) / purchases
    net, = one(con, "SELECT sum(net) FROM gmv_orders")
    n_purch, = one(con, "SELECT count(*) FROM purchase")
    out["aov"] = float(net) / n_purch
    out["zero_amount_purchases"] = one(con, "SELECT count(*) FROM purchase WHERE net = 0")[0]
    hv = param("high_value_net_revenue_30d")
    hv_share, hv_gmv = one(con, f"""
        WITH o AS (SELECT * FROM gmv_orders WHERE d > ?::DATE - 30 AND d <= ?),
             payer AS (SELECT DISTINCT pid FROM purchase WHERE d > ?::DATE - 30 AND d <= ?),
             rev AS (SELECT pid, sum(net) AS net FROM o GROUP BY 1),
             hvp AS (SELECT pid FROM payer JOIN rev USING (pid) WHERE net > {hv})
        SELECT (SELECT count(*) FROM hvp) / (SELECT count(*) FROM payer),
               (SELECT sum(gross) FROM o WHERE pid IN (SELECT pid FROM hvp)) / (SELECT sum(gross) FROM o)""",
        [d, d, d, d])
    out["high_value_share_of_payers_30d"], out["high_value_share_of_gmv_30d"] = float(hv_share), float(hv_gmv)
    # channel LTV/CAC: cohorts registered >= 90 days before d; LTV = realized net revenue to d per person
    rows = con.execute("""
        WITH coh AS (SELECT * FROM person WHERE reg_day <= ?::DATE - 90),
             n AS (SELECT channel, count(*) AS persons FROM coh GROUP BY 1),
             r AS (SELECT c.channel, sum(g.net) AS net FROM coh c JOIN gmv_orders g USING (pid) GROUP BY 1),
             s AS (SELECT acquisition_channel AS channel, sum(spend) AS spend FROM spend
                   WHERE spend_date <= ?::DATE - 90 GROUP BY 1)
        SELECT n.channel, n.persons, coalesce(r.net, 0) / n.persons AS ltv, s.spend / n.persons AS cac
        FROM n LEFT JOIN r USING (channel) LEFT JOIN s USING (channel) ORDER BY 1""", [d, d]).fetchall()
    out["channels"] = {c: {"persons": n, "ltv": float(ltv), "cac": float(cac),
                           "ltv_cac": (float(ltv) / float(cac)) if cac else None} for c, n, ltv, cac in rows}
    out["persons"] = one(con, "SELECT count(*) FROM person")[0]
    con.close()
    return out


if __name__ == "__main__":
    as_of = date.fromisoformat(sys.argv[3]) if len(sys.argv) > 3 else date(2025, 12, 31)
    print(json.dumps(calibration(Path(sys.argv[1]), Path(sys.argv[2]), as_of), indent=1, default=str))
