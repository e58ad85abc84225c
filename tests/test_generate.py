"""Tests of the synthetic data generator (ulm.generate).

Calibration targets are recomputed independently from the written landing files and the truth
account -> person map (tests/generate_stats.py), on the default scale (20k persons x 365 days, seed 42).
Small runs cover determinism, defects (CSV: every reason re-derived by a contract-driven checker),
CSV formatting and argument errors.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_stats import calibration, connect  # noqa: E402

from ulm.core.contract import EVENT_TYPES, ROW_RULES, TABLES
from ulm.core.errors import UlmError
from ulm.core.settings import param  # noqa: E402
from ulm.generate import DEFAULT_END_DATE, generate
from ulm.generate.defects import DUPLICATE, REASONS
from ulm.generate.tables import schema

PERSONS, DAYS, SEED = 20000, 365, 42
SMALL = dict(persons=1500, days=90, progress=False)
TINY = dict(persons=800, days=40, progress=False)


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("gen_default")
    summary = generate(base / "landing", persons=PERSONS, days=DAYS, seed=SEED, progress=False)
    return {"landing": base / "landing", "truth": base / "truth", "summary": summary}


@pytest.fixture(scope="module")
def stats(run) -> dict:
    return calibration(run["landing"], run["truth"], DEFAULT_END_DATE)


@pytest.fixture(scope="module")
def con(run):
    c = connect(run["landing"], run["truth"])
    yield c
    c.close()


def q(con, sql: str, params=None):
    return con.execute(sql, params or []).fetchall()


# ---------------------------------------------------------------- calibration (docs/METRICS.md definitions)
def test_d7_retention(stats):
    assert 0.25 <= stats["d7_retention"] <= 0.30, stats["d7_retention"]


def test_activation_7d(stats):
    assert 0.25 <= stats["activation_7d"] <= 0.35, stats["activation_7d"]


def test_repurchase_90d(stats):
    assert 0.28 <= stats["repurchase_90d"] <= 0.40, stats["repurchase_90d"]


def test_share_rate_90d(stats):
    assert 0.08 <= stats["share_rate_90d"] <= 0.16, stats["share_rate_90d"]


def test_aov(stats):
    assert 150 <= stats["aov"] <= 220, stats["aov"]
    assert stats["zero_amount_purchases"] > 0  # free gifts / full-discount coupons exist


def test_high_value_persons(stats):
    assert 0.10 <= stats["high_value_share_of_payers_30d"] <= 0.20, stats
    assert stats["high_value_share_of_gmv_30d"] > 0.45, stats


def test_channel_ltv_cac_on_both_sides_of_threshold(stats):
    threshold = param("ltv_cac_pause_threshold")
    ratios = {c: v["ltv_cac"] for c, v in stats["channels"].items() if v["ltv_cac"] is not None}
    assert any(r < threshold for r in ratios.values()), ratios
    assert any(r > threshold for r in ratios.values()), ratios
    assert stats["channels"]["organic"]["cac"] == 0  # no spend on organic


# ---------------------------------------------------------------- layout and contract
def test_files_match_contract_schema(run):
    for table in TABLES:
        files = sorted((run["landing"] / table).glob(f"{table}_*.parquet"))
        assert files, table
        for f in files[:: max(1, len(files) // 20)]:
            assert pq.read_schema(f).remove_metadata() == schema(table), f
            assert re.fullmatch(rf"{table}_\d{{8}}\.parquet", f.name)


def test_rows_sit_in_their_business_day_file(con, run):
    for table, ts in (("events", "event_ts"), ("orders", "order_ts"), ("invites", "sent_at")):
        misplaced = q(con, f"""
            SELECT count(*) FROM read_parquet('{run['landing']}/{table}/*.parquet', filename = true)
            WHERE strftime(bday({ts}), '%Y%m%d') <> regexp_extract(filename, '_(\\d{{8}})\\.parquet', 1)""")
        assert misplaced[0][0] == 0, table
    first, last = q(con, "SELECT min(bday(event_ts)), max(bday(event_ts)) FROM ev")[0]
    assert last == DEFAULT_END_DATE and first == DEFAULT_END_DATE - timedelta(days=DAYS - 1)


def test_clean_rows_pass_every_rule(con):
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    lo = param("min_valid_timestamp")
    for view, key in (("users", "user_id"), ("ev", "event_id"), ("od", "order_id"), ("inv", "invite_id")):
        n, distinct = q(con, f"SELECT count(*), count(DISTINCT {key}) FROM {view}")[0]
        assert n == distinct, view
    assert q(con, "SELECT count(*) FROM (SELECT DISTINCT spend_date, acquisition_channel, platform FROM spend)")[0][0] \
        == q(con, "SELECT count(*) FROM spend")[0][0]
    for table, rule, sql in ROW_RULES:
        view = {"orders": "od", "invites": "inv"}[table]
        assert q(con, f"SELECT count(*) FROM {view} WHERE NOT ({sql})")[0][0] == 0, rule
    for view, cols in (("ev", ["event_ts"]), ("od", ["order_ts"]), ("users", ["registered_at", "consent_updated_at"]),
                       ("inv", ["sent_at", "accepted_at"])):
        for c in cols:
            mn, mx = q(con, f"SELECT min({c}), max({c}) FROM {view}")[0]
            assert mn >= datetime.fromisoformat(lo) and mx <= now, (view, c)
    assert q(con, "SELECT count(*) FROM od WHERE gross_amount < 0 OR discount_amount < 0 OR refund_amount < 0")[0][0] == 0
    assert q(con, "SELECT count(*) FROM spend WHERE spend < 0")[0][0] == 0
    for view, col in (("ev", "user_id"), ("od", "user_id"), ("inv", "inviter_user_id"), ("inv", "invitee_user_id")):
        orphans = q(con, f"SELECT count(*) FROM {view} WHERE {col} IS NOT NULL AND {col} NOT IN (SELECT user_id FROM users)")
        assert orphans[0][0] == 0, (view, col)
    for view, col, table in (("ev", "event_type", "events"), ("ev", "platform", "events"), ("od", "status", "orders"),
                             ("od", "scenario", "orders"), ("users", "acquisition_channel", "users"),
                             ("users", "age_band", "users"), ("users", "region", "users")):
        values = {r[0] for r in q(con, f"SELECT DISTINCT {col} FROM {view} WHERE {col} IS NOT NULL")}
        assert values <= set(TABLES[table].col(col).enum), (view, col, values)


def test_all_event_types_and_statuses_appear(con):
    assert {r[0] for r in q(con, "SELECT DISTINCT event_type FROM ev")} == set(EVENT_TYPES)
    statuses = dict(q(con, """SELECT CASE WHEN status = 'refunded' AND refund_amount < paid_amount THEN 'partial'
                                          ELSE status END, count(*) FROM od GROUP BY 1"""))
    assert set(statuses) == {"paid", "refunded", "partial", "cancelled"}, statuses
    assert q(con, "SELECT count(*) FROM od WHERE coupon_id IS NOT NULL AND discount_amount > 0")[0][0] > 0


# ---------------------------------------------------------------- field behaviour
def test_promotion_peaks_and_weekly_cycle(con):
    daily = dict(q(con, "SELECT bday(order_ts), count(*) FROM od GROUP BY 1"))
    later = sorted(v for d, v in daily.items() if d.month in (9, 10))
    median = later[len(later) // 2]
    assert daily[date(2025, 11, 11)] > 2.5 * median
    assert daily[date(2025, 6, 18)] > 1.5 * sorted(v for d, v in daily.items() if d.month in (4, 5))[30]
    dow = dict(q(con, "SELECT isodow(bday(event_ts)) >= 6, count(*) / count(DISTINCT bday(event_ts)) FROM ev GROUP BY 1"))
    assert dow[True] > dow[False]


def test_social_mechanics(con):
    # share-link newcomers: first event carries a share id of a share event by their referrer
    bad, total = q(con, """
        WITH firsts AS (SELECT user_id, arg_min(share_id, event_ts) AS share_id FROM ev GROUP BY 1),
             shares AS (SELECT share_id, user_id AS sharer FROM ev WHERE event_type = 'share')
        SELECT count(*) FILTER (WHERE s.sharer IS DISTINCT FROM u.referrer_user_id), count(*)
        FROM users u JOIN firsts f USING (user_id) LEFT JOIN shares s USING (share_id)
        WHERE u.acquisition_channel = 'community' AND u.referrer_user_id IS NOT NULL""")[0]
    assert total > 100 and bad == 0
    # accepted invites create the invitee: referral channel, referrer = inviter, accepted_at = registration
    bad, total = q(con, """
        SELECT count(*) FILTER (WHERE u.acquisition_channel <> 'referral' OR u.referrer_user_id <> i.inviter_user_id
                                OR i.accepted_at < i.sent_at OR u.registered_at <> i.accepted_at), count(*)
        FROM inv i JOIN users u ON u.user_id = i.invitee_user_id""")[0]
    assert total > 100 and bad == 0
    assert q(con, "SELECT count(*) FROM users WHERE acquisition_channel = 'referral' AND referrer_user_id IS NULL")[0][0] == 0
    accepted = q(con, "SELECT avg((invitee_user_id IS NOT NULL)::INT) FROM inv")[0][0]
    assert 0.02 < accepted < 0.5
    # assists: at most 3 per person per day, always through someone's share
    assert q(con, """SELECT max(n) FROM (SELECT a.true_person_id, bday(event_ts), count(*) AS n FROM ev
                     JOIN acc a USING (user_id) WHERE event_type = 'assist' GROUP BY 1, 2)""")[0][0] <= 3
    assert q(con, "SELECT count(*) FROM ev WHERE event_type = 'assist' AND share_id IS NULL")[0][0] == 0
    # orders link back: share ids point at other persons' earlier shares; KOL / community attribution
    bad, total = q(con, """
        WITH s AS (SELECT share_id, user_id, event_ts FROM ev WHERE event_type = 'share')
        SELECT count(*) FILTER (WHERE s.user_id IS NULL OR s.user_id = o.user_id OR s.event_ts > o.order_ts), count(*)
        FROM od o LEFT JOIN s USING (share_id) WHERE o.share_id IS NOT NULL""")[0]
    assert total > 50 and bad == 0
    for sql in ("SELECT count(*) FROM od WHERE scenario IN ('content', 'live') AND kol_id IS NOT NULL",
                "SELECT count(*) FROM od WHERE scenario = 'community' AND community_id IS NOT NULL",
                "SELECT count(*) FROM ev WHERE event_type = 'content_view' AND kol_id IS NOT NULL",
                "SELECT count(*) FROM ev WHERE event_type = 'live_enter' AND kol_id IS NOT NULL",
                "SELECT count(*) FROM ev WHERE event_type = 'ugc_post' AND community_id IS NOT NULL",
                "SELECT count(*) FROM users WHERE kol_id IS NOT NULL"):
        assert q(con, sql)[0][0] > 0, sql
    assert q(con, """SELECT count(*) FROM ev WHERE event_type IN ('community_join', 'community_open', 'check_in',
                     'ugc_post') AND community_id IS NULL""")[0][0] == 0


def test_late_arriving_users(run, con):
    con.execute(f"""
        CREATE OR REPLACE TABLE late AS
        SELECT u.user_id, bday(u.registered_at) AS reg,
               strptime(regexp_extract(filename, '_(\\d{{8}})\\.parquet', 1), '%Y%m%d')::DATE AS landed
        FROM read_parquet('{run['landing']}/users/*.parquet', filename = true) u WHERE landed <> reg""")
    n_late, min_lag, max_lag = q(con, "SELECT count(*), min(landed - reg), max(landed - reg) FROM late")[0]
    n_users = q(con, "SELECT count(*) FROM users")[0][0]
    assert 0.002 * n_users <= n_late <= 0.01 * n_users, n_late
    assert 1 <= min_lag and max_lag <= 3
    # a day-by-day load sees their events (registration-day file) before the users row lands
    early = q(con, """SELECT count(*) FROM late l WHERE (SELECT min(bday(event_ts)) FROM ev e
                      WHERE e.user_id = l.user_id) < l.landed""")[0][0]
    assert early == n_late


def test_identity_links_in_truth(con):
    n_persons = q(con, "SELECT count(DISTINCT true_person_id) FROM acc")[0][0]
    multi = q(con, """SELECT count(*) FROM (SELECT true_person_id FROM acc GROUP BY 1
                      HAVING count(DISTINCT platform) >= 2)""")[0][0]
    assert 0.06 <= multi / n_persons <= 0.14, multi / n_persons
    # phones and union ids never join two different true persons (OneID would over-merge)
    for col in ("phone", "union_id"):
        assert q(con, f"""SELECT count(*) FROM (SELECT {col} FROM users JOIN acc USING (user_id)
                          WHERE {col} IS NOT NULL GROUP BY 1 HAVING count(DISTINCT true_person_id) > 1)""")[0][0] == 0
    # ... but devices do (shared devices link nothing: docs/METRICS.md#identity)
    assert q(con, """SELECT count(*) FROM (SELECT device_id FROM users JOIN acc USING (user_id)
                     GROUP BY 1 HAVING count(DISTINCT true_person_id) > 1)""")[0][0] > 10
    # multi-hop chains: A-B share a phone, B-C share a union id, A and C share neither
    chains = q(con, """
        WITH u AS (SELECT user_id, true_person_id AS pid, phone, union_id FROM users JOIN acc USING (user_id))
        SELECT count(*) FROM u a JOIN u b ON a.pid = b.pid AND a.user_id <> b.user_id AND a.phone = b.phone
        JOIN u c ON c.pid = b.pid AND c.user_id NOT IN (a.user_id, b.user_id) AND c.union_id = b.union_id
        WHERE a.phone <> c.phone AND a.union_id IS DISTINCT FROM c.union_id""")[0][0]
    assert chains > 10
    # every account of a true person is reachable through phone / union_id links
    unlinked = q(con, """
        WITH u AS (SELECT user_id, true_person_id AS pid, phone, union_id FROM users JOIN acc USING (user_id)),
             multi AS (SELECT pid FROM u GROUP BY 1 HAVING count(*) > 1)
        SELECT count(*) FROM u x WHERE x.pid IN (SELECT pid FROM multi) AND NOT EXISTS (
            SELECT 1 FROM u y WHERE y.pid = x.pid AND y.user_id <> x.user_id
              AND (y.phone = x.phone OR y.union_id = x.union_id))""")[0][0]
    assert unlinked == 0


def test_pii_formats_and_consent(con):
    rows = q(con, "SELECT region, phone, device_id, union_id FROM users")
    phone_re = {"CN": r"\+861[3-9]\d{9}", "EU": r"\+(33[67]\d{8}|491[5-7]\d{8})", "US": r"\+1[2-9]\d{2}[2-9]\d{6}",
                "OTHER": r"\+65[89]\d{7}"}
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
    for region, phone, device, union in rows:
        assert re.fullmatch(phone_re[region], phone), (region, phone)
        assert uuid.fullmatch(device), device
        assert union is None or re.fullmatch(r"o[A-Za-z0-9_-]{27}", union), union
    regions = Counter(r[0] for r in rows)
    assert 0.02 <= regions["EU"] / len(rows) <= 0.04 and 0.012 <= regions["US"] / len(rows) <= 0.03
    ca, cm = q(con, "SELECT avg(consent_analytics::INT), avg(consent_marketing::INT) FROM users")[0]
    assert 0.87 <= ca <= 0.93 and 0.66 <= cm <= 0.74


def test_truth_matches_landing(con, run):
    persons = pq.read_table(run["truth"] / "persons.parquet")
    assert persons.num_rows == PERSONS
    for col in ("true_person_id", "purchase_rate_per_day", "dropout_prob_per_active_day", "is_churned",
                "last_alive_date", "spend_scale_cny"):
        assert col in persons.column_names
    con.register("tp", persons)
    # churned persons are never active after their last alive day; everybody registered is in truth
    assert q(con, """SELECT count(*) FROM active a JOIN tp ON tp.true_person_id = a.pid
                     WHERE tp.is_churned AND a.d > tp.last_alive_date""")[0][0] == 0
    churned = q(con, "SELECT avg(is_churned::INT) FROM tp")[0][0]
    assert 0.5 < churned < 0.98
    assert q(con, "SELECT count(*) FROM users WHERE user_id NOT IN (SELECT user_id FROM acc)")[0][0] == 0


def test_summary(run):
    s = run["summary"]
    assert s["rows"]["events"] > 1_000_000 and s["persons"] == PERSONS and s["files"] >= 6 * DAYS
    assert all(s["rows"][t] > 0 for t in TABLES)


# ---------------------------------------------------------------- determinism
def _digest(landing: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(landing.rglob("*.parquet")):
        h.update(str(f.relative_to(landing)).encode())
        sink = pa.BufferOutputStream()
        tbl = pq.read_table(f)
        with pa.ipc.new_stream(sink, tbl.schema) as w:
            w.write_table(tbl)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def test_same_seed_same_data(tmp_path):
    a = generate(tmp_path / "a" / "landing", seed=11, defects=0.01, **TINY)
    b = generate(tmp_path / "b" / "landing", seed=11, defects=0.01, **TINY)
    c = generate(tmp_path / "c" / "landing", seed=12, defects=0.01, **TINY)
    da, db, dc = (_digest(Path(x["out_dir"])) for x in (a, b, c))
    assert da == db and da != dc
    ma, mb = ((Path(x["truth_dir"]) / "defects_manifest.json").read_text() for x in (a, b))
    assert ma == mb


# ---------------------------------------------------------------- defects
@pytest.fixture(scope="module")
def defect_run(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("gen_defects")
    generate(base / "landing", seed=3, defects=0.08, fmt="csv", **SMALL)
    manifest = json.loads((base / "truth" / "defects_manifest.json").read_text())
    return {"landing": base / "landing", "manifest": manifest}


def _reason_sql(table: str, src: str, users_ok: str) -> str:
    """The first failing check of each row, in the loader's order, derived from the contract."""
    t = TABLES[table]
    typed = {"timestamp": "TIMESTAMP", "date": "DATE", "int": "INTEGER", "bool": "BOOLEAN", "decimal": "DECIMAL(18,2)"}
    cast = {c.name: (f'TRY_CAST("{c.name}" AS {typed[c.type]})' if c.type in typed else f'"{c.name}"') for c in t.columns}
    hours = param("future_tolerance_hours")
    checks = [("missing_required", " OR ".join(f'"{c.name}" IS NULL' for c in t.columns if c.required)),
              ("bad_type", " OR ".join(f'("{c.name}" IS NOT NULL AND {cast[c.name]} IS NULL)'
                                       for c in t.columns if c.type in typed) or "FALSE"),
              ("unknown_enum", " OR ".join(f'"{c.name}" NOT IN ({", ".join(repr(e) for e in c.enum)})'
                                           for c in t.columns if c.enum) or "FALSE"),
              ("timestamp_too_old", " OR ".join(f"{cast[c.name]} < TIMESTAMP '{param('min_valid_timestamp')}'"
                                                for c in t.columns if c.type == "timestamp") or "FALSE"),
              ("timestamp_in_future", " OR ".join(
                  f"{cast[c.name]} > now()::TIMESTAMP + INTERVAL {hours} HOUR" for c in t.columns
                  if c.type == "timestamp") or "FALSE"),
              ("out_of_range", " OR ".join(
                  f"{cast[c.name]} < {c.min_value}" + (f" OR {cast[c.name]} > {c.max_value}" if c.max_value is not None
                                                       else "") for c in t.columns if c.min_value is not None) or "FALSE"),
              ("constraint", " OR ".join(f"NOT coalesce(({_typed_rule(sql, cast)}), TRUE)"
                                         for tb, _, sql in ROW_RULES if tb == table) or "FALSE"),
              ("unknown_account", " OR ".join(f"({fk} IS NOT NULL AND {fk} NOT IN (SELECT user_id FROM {users_ok}))"
                                              for fk in t.foreign_keys) or "FALSE")]
    case = " ".join(f"WHEN coalesce({cond}, FALSE) THEN '{code}'" for code, cond in checks)
    key = " || '|' || ".join(f'"{k}"' for k in t.key)
    return f"SELECT {key} AS key, CASE {case} END AS reason FROM {src}"


def _typed_rule(sql: str, cast: dict[str, str]) -> str:
    for name in sorted(cast, key=len, reverse=True):
        sql = re.sub(rf"\b{name}\b", cast[name], sql)
    return sql


def test_defect_manifest_counts_and_reasons(defect_run):
    m = defect_run["manifest"]
    assert m["rate"] == 0.08 and m["seed"] == 3
    listed = Counter((r["table"], r["reason"]) for r in m["rows"])
    assert listed == Counter({(t, k): n for t, c in m["counts"].items() for k, n in c.items()})
    assert {r["reason"] for r in m["rows"]} <= set(REASONS) | {DUPLICATE}
    assert {k for _, k in listed} >= set(REASONS) | {DUPLICATE}
    con = duckdb.connect()
    land = defect_run["landing"]
    tables = [t for t in TABLES if list((land / t).glob("*.csv"))]
    assert len(tables) >= len(TABLES) - 1  # erasure requests may be absent in a tiny run
    for table in tables:
        con.execute(f"""CREATE VIEW raw_{table} AS SELECT * FROM read_csv('{land}/{table}/*.csv', all_varchar = true,
                        header = true, filename = true)""")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE TABLE users_ok AS SELECT key AS user_id FROM ({_reason_sql('users', 'raw_users', 'raw_users')}) "
                "WHERE reason IS NULL")
    for table in tables:
        found = Counter(r for (r,) in con.execute(
            f"SELECT reason FROM ({_reason_sql(table, f'raw_{table}', 'users_ok')}) WHERE reason IS NOT NULL").fetchall())
        expected = Counter({k: n for k, n in m["counts"].get(table, {}).items() if k != DUPLICATE})
        assert found == expected, table
        dups = con.execute(f"SELECT count(*) - count(DISTINCT ({_key_expr(table)})) FROM raw_{table}").fetchone()[0]
        assert dups == m["counts"].get(table, {}).get(DUPLICATE, 0), table
        assert con.execute(f"SELECT count(*) FROM (SELECT DISTINCT * EXCLUDE (filename) FROM raw_{table})").fetchone()[0] \
            == con.execute(f"SELECT count(*) FROM raw_{table}").fetchone()[0] - dups  # duplicates are exact


def _key_expr(table: str) -> str:
    return " || '|' || ".join(f'"{k}"' for k in TABLES[table].key)


def test_defect_rows_are_in_their_files(defect_run):
    con = duckdb.connect()
    land = defect_run["landing"]
    rows = defect_run["manifest"]["rows"]
    for table in TABLES:
        mine = [r for r in rows if r["table"] == table]
        if not mine:
            continue
        con.execute(f"""CREATE OR REPLACE TABLE f AS SELECT {_key_expr(table)} AS key,
                        replace(filename, '{land}/', '') AS file FROM read_csv('{land}/{table}/*.csv',
                        all_varchar = true, header = true, filename = true)""")
        present = Counter(con.execute("SELECT key, file FROM f").fetchall())
        for r in mine:
            n = present[(r["key"], r["file"])]
            assert n >= (2 if r["reason"] == DUPLICATE else 1), r


def test_parquet_bad_type_column_is_text(tmp_path):
    generate(tmp_path / "landing", seed=4, defects=0.05, **TINY)
    m = json.loads((tmp_path / "truth" / "defects_manifest.json").read_text())
    bad = [r for r in m["rows"] if r["table"] == "events" and r["reason"] == "bad_type"]
    assert bad
    f = tmp_path / "landing" / bad[0]["file"]
    tbl = pq.read_table(f)
    assert tbl.schema.field("event_ts").type == pa.string()
    ts = tbl.column("event_ts").to_pylist()
    ok = [v for v in ts if v and v.endswith("Z")]
    assert ok and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v) for v in ok)
    assert "not-a-timestamp" in ts


# ---------------------------------------------------------------- CSV and arguments
def test_csv_format(defect_run):
    land = defect_run["landing"]
    f = sorted((land / "events").glob("events_*.csv"))[10]
    header, first = f.read_text(encoding="utf-8").splitlines()[:2]
    assert header.replace('"', "").split(",") == TABLES["events"].column_names
    assert re.search(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', first)
    users = sorted((land / "users").glob("users_*.csv"))[5].read_text(encoding="utf-8")
    assert '"true"' in users or '"false"' in users
    assert ",," in users  # empty field for null (e.g. kol_id / referrer_user_id)


@pytest.mark.parametrize("kwargs", [dict(persons=5), dict(days=0), dict(defects=0.9), dict(fmt="json")])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(UlmError):
        generate(tmp_path / "landing", progress=False, **kwargs)
