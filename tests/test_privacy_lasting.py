"""Privacy that holds (docs/PRIVACY.md): consent changes are versions, erasure survives re-sent data.

One generated warehouse, built and published through write-audit-publish, then:
1. a consent withdrawal lands for a person in today's audiences -> absent from the next day's audiences, the
   history kept, the older day still as it was; a stale consent row is quarantined as ``stale_update``;
2. two persons are erased; their rows are re-sent (same accounts, a new account linked by phone, one linked by
   union id) -> quarantined as ``erased_subject`` without payload, and after a rebuild nothing about them is in
   any table or any file (exports, GX results and docs).
"""
from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ulm.core.context import RunContext
from ulm.generate import generate
from ulm.ingest import ingest_dir
from ulm.privacy.erasure import access_export, erase
from ulm.transform.wap import build_and_publish

pytestmark = pytest.mark.slow

D1 = date(2025, 12, 30)  # first published day
D2 = date(2025, 12, 31)  # the next day (the generated data ends here)


def _ctx(base: Path, as_of: date) -> RunContext:
    return RunContext.create(as_of=as_of, warehouse=base / "wh.duckdb").with_(data_dir=base / "data")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("lasting")
    generate(base / "landing", persons=900, days=60, end_date=D2, seed=23, truth_dir=base / "truth", progress=False)
    ingest_dir(base / "landing", base / "wh.duckdb", progress=False)
    build_and_publish(_ctx(base, D1), progress=False)
    return base


def q(base: Path, sql: str, params=None):
    with duckdb.connect(str(base / "wh.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _users_rows(base: Path, user_ids: list[str]) -> list[dict]:
    """The users rows as they were landed (raw values, original file schema)."""
    rows = []
    for f in sorted((base / "landing" / "users").glob("users_2*.parquet")):
        rows += [r for r in pq.read_table(f).to_pylist() if r["user_id"] in user_ids]
    return rows


def _write(base: Path, table: str, name: str, rows: list[dict]) -> None:
    schema = pq.read_schema(sorted((base / "landing" / table).glob(f"{table}_2*.parquet"))[0])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), base / "landing" / table / name)


def test_consent_withdrawal_is_a_version_and_leaves_the_next_days_audiences(world):
    base = world
    # a single-account person in a D1 audience (not holdout), with marketing consent
    uid, pid = q(base, f"""
        select a.user_id, a.person_id from marts.mart_interventions i
        join marts.dim_accounts a using (person_id)
        join marts.dim_persons p using (person_id)
        where i.audience_date = '{D1}' and not i.is_holdout and p.n_accounts = 1
        order by a.user_id limit 1""")[0]
    stale_uid = q(base, "select user_id from raw.users where user_id <> ? and consent_updated_at is not null "
                  "order by user_id limit 1", [uid])[0][0]
    base_rows = _users_rows(base, [r[0] for r in q(base, "select user_id from raw.users order by user_id limit 200")])
    (mine,) = _users_rows(base, [uid])
    (stale,) = _users_rows(base, [stale_uid])
    withdrawal = dict(mine, consent_marketing=False, consent_updated_at=datetime(2025, 12, 30, 18, 30))  # D2 02:30
    stale_row = dict(stale, consent_analytics=not stale["consent_analytics"],
                     consent_updated_at=datetime(2015, 6, 1))
    _write(base, "users", "users_consent_20251231.parquet", [*base_rows, withdrawal, stale_row])
    summary = ingest_dir(base / "landing", base / "wh.duckdb", progress=False)["tables"]["users"]
    assert summary["rows_new_version"] == 1 and summary["rows_duplicate"] == len(base_rows)
    assert q(base, "select reason_code, reason_detail from raw.quarantine where table_name = 'users' "
             "and reason_code = 'stale_update'") == [
        ("stale_update", "column consent_updated_at: stale_update: not newer than the stored version of this user_id")]

    build_and_publish(_ctx(base, D2), progress=False)
    assert q(base, "select count(*) from marts.mart_interventions where audience_date = ? and person_id = ?",
             [D2, pid]) == [(0,)]
    assert q(base, "select consent_marketing from marts.dim_persons where person_id = ?", [pid]) == [(False,)]
    # the history is kept: version 1 was in force until the withdrawal (business day D2), so D1 still reads it
    history = q(base, "select version_number, consent_marketing, valid_to from audit_staging.stg_user_versions "
                "where user_id = ? order by 1", [uid])
    assert history == [(1, True, datetime(2025, 12, 30, 18, 30)), (2, False, None)]
    assert q(base, "select consent_marketing, version_number from audit_staging.stg_users where user_id = ?",
             [uid]) == [(False, 2)]
    exports = base / "data" / "exports" / D2.isoformat()
    assert pid not in "".join(p.read_text() for p in exports.glob("*.csv"))


def _ids_everywhere(base: Path, ids: list[str], db: Path | None = None) -> dict[str, int]:
    """Rows of any table (but the legal record of the requests) holding one of ids in a text column."""
    hits = {}
    with duckdb.connect(str(db or base / "wh.duckdb"), read_only=True) as con:
        cols = con.execute("""select table_schema, table_name, column_name from information_schema.columns
                              where data_type in ('VARCHAR', 'JSON') and table_catalog = current_database()
                              and table_name <> 'erasure_requests'""").fetchall()
        for s, t, c in cols:
            n = con.execute(f'select count(*) from "{s}"."{t}" where '
                            f'regexp_matches("{c}"::varchar, ?)', ["|".join(ids)]).fetchone()[0]
            if n:
                hits[f"{s}.{t}.{c}"] = n
    return hits


def _ids_in_files(base: Path, ids: list[str]) -> list[str]:
    found = []
    for p in (base / "data").rglob("*"):
        if not p.is_file():
            continue
        if p.suffix == ".duckdb":  # the serving snapshot readers open
            if _ids_everywhere(base, ids, db=p):
                found.append(str(p.relative_to(base)))
            continue
        if p.suffix == ".parquet":
            text = pq.read_table(p).to_pandas().to_csv()
        else:
            try:
                text = p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
        if any(i in text for i in ids):
            found.append(str(p.relative_to(base)))
    return found


def test_erasure_lasts_through_resent_and_linked_accounts(world, tmp_path):
    base = world
    truth = pq.read_table(base / "truth" / "accounts.parquet").to_pandas()
    landed = {r[0] for r in q(base, "select user_id from raw.users")}
    truth = truth[truth.user_id.isin(landed)]
    # P1: a person with 2+ accounts; P2: an account with a union id, in another person
    sizes = truth.groupby("true_person_id").user_id.nunique()
    p1_accounts = sorted(truth[truth.true_person_id == sizes[sizes >= 2].index[0]].user_id)
    p2_uid = q(base, "select user_id from raw.users where union_id is not null and user_id not in "
               "(select unnest(?::varchar[])) order by user_id limit 1", [p1_accounts])[0][0]
    requested = [p1_accounts[-1], p2_uid]
    persons = [r[0] for r in q(base, "select distinct person_id from marts.dim_accounts where user_id in "
                               "(select unnest(?::varchar[]))", [p1_accounts + [p2_uid]])]
    p2_accounts = [r[0] for r in q(base, "select user_id from marts.dim_accounts where person_id = "
                                   "(select person_id from marts.dim_accounts where user_id = ?)", [p2_uid])]
    accounts = sorted(set(p1_accounts + p2_accounts))
    assert len(persons) == 2 and _ids_everywhere(base, accounts + persons)
    assert _ids_everywhere(base, accounts + persons, db=base / "data" / "serving" / "serving.duckdb")

    # right of access first: the whole person, quarantine included, JSON + summary
    out = tmp_path / "access.json"
    counts = access_export(base / "wh.duckdb", p1_accounts[0], out)
    doc = json.loads(out.read_text())
    assert sorted(doc["accounts"]) == p1_accounts and counts["raw.users"] >= len(p1_accounts)
    assert out.with_suffix(".md").read_text().startswith(f"# Data held about account {p1_accounts[0]}")

    # the requests land like any other file
    _write(base, "erasure_requests", "erasure_requests_test_20251231.parquet", [
        {"request_id": f"req-lasting-{i}", "user_id": u, "requested_at": datetime(2025, 12, 31, 1)}
        for i, u in enumerate(requested)])
    ingest_dir(base / "landing", base / "wh.duckdb", progress=False)
    summary = erase(base / "wh.duckdb", base / "data")
    assert summary["requests"] >= 2 and summary["suppressed"] >= len(accounts)
    assert _ids_everywhere(base, accounts + persons) == {}
    assert (base / "data" / "serving" / "serving.duckdb").exists()
    assert _ids_in_files(base, accounts + persons) == []
    log = q(base, "select table_name, sum(rows_removed) from audit.erasure_log "
            "where request_id like 'req-lasting-%' group by 1")
    assert dict(log).get("raw.users", 0) >= len(accounts)
    assert not any(i in str(log) for i in accounts + persons)
    suppressed = q(base, "select subject_hash, kind from raw.erased_subjects")
    assert not any(i in str(suppressed) for i in accounts + persons)
    assert erase(base / "wh.duckdb", base / "data")["requests"] == 0

    # re-sent: the same accounts' users rows and events, a new account sharing P1's phone, one sharing P2's union id
    old = _users_rows(base, accounts)
    p1_phone = next(r["phone"] for r in old if r["user_id"] in p1_accounts and r["phone"])
    p2_union = next(r["union_id"] for r in old if r["user_id"] == p2_uid)
    template = old[0]
    by_phone = dict(template, user_id="zz_linked_phone", phone=p1_phone, union_id=None, device_id="dev-zz-1")
    by_union = dict(template, user_id="zz_linked_union", phone="13900000123", union_id=p2_union, device_id="dev-zz-2")
    _write(base, "users", "users_resent_20251231.parquet", [*old, by_phone, by_union])
    events = []
    for f in sorted((base / "landing" / "events").glob("events_2*.parquet")):
        events += [r for r in pq.read_table(f).to_pylist() if r["user_id"] in accounts][:3]
    new_events = [dict(events[0], event_id=f"zz-ev-{u}", user_id=u) for u in ("zz_linked_phone", "zz_linked_union")]
    _write(base, "events", "events_resent_20251231.parquet", events + new_events)
    tables = ingest_dir(base / "landing", base / "wh.duckdb", progress=False)["tables"]
    assert tables["users"]["rows_erased"] == len(old) + 2
    assert tables["events"]["rows_erased"] == len(events) + 2
    everyone = accounts + persons + ["zz_linked_phone", "zz_linked_union"]
    quarantined = q(base, "select table_name, count(*), count(original_row) from raw.quarantine "
                    "where reason_code = 'erased_subject' group by 1 order by 1")
    assert quarantined == [("events", len(events) + 2, 0), ("users", len(old) + 2, 0)]
    audit = q(base, "select sum(rows_read), sum(rows_accepted + rows_quarantined + rows_duplicate) "
              "from raw.load_audit where status = 'ok'")
    assert audit[0][0] == audit[0][1]  # counts reconcile

    build_and_publish(_ctx(base, D2), progress=False)
    assert _ids_everywhere(base, everyone) == {}
    assert _ids_in_files(base, everyone) == []
