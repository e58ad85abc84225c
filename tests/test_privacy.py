"""Privacy tools (docs/METRICS.md#privacy): erasure removes a person's accounts everywhere; access exports one account."""
from __future__ import annotations

import json
from datetime import date, datetime

import duckdb
import pandas as pd
import pytest
from dbt_unit_tests import UNIT_TESTS

from ulm.core.context import RunContext
from ulm.generate import generate
from ulm.ingest import ingest_dir
from ulm.privacy.erasure import access_export, erase
from ulm.transform.dbt import build

AS_OF = date(2025, 12, 31)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("privacy")
    generate(base / "landing", persons=1200, days=60, seed=17, truth_dir=base / "truth", progress=False)
    wh = base / "wh.duckdb"
    ingest_dir(base / "landing", wh, progress=False)
    # the full build with every dbt unit test (daily builds skip them; CI must not)
    summary = build(RunContext.create(as_of=AS_OF, warehouse=wh), progress=False, unit_tests=True)
    unit = [r for r in summary["nodes"] if r["resource_type"].endswith("unit_test")]
    assert sorted(r["name"] for r in unit) == sorted(UNIT_TESTS)
    assert all(r["status"] == "pass" for r in unit), [r["name"] for r in unit if r["status"] != "pass"]
    return base, wh


def _multi_account_person(base, wh):
    """A true person with 2+ accounts that all landed in raw."""
    acc = pd.read_parquet(base / "truth" / "accounts.parquet")
    con = duckdb.connect(str(wh), read_only=True)
    landed = {r[0] for r in con.execute("select user_id from raw.users").fetchall()}
    con.close()
    acc = acc[acc.user_id.isin(landed)]
    sizes = acc.groupby("true_person_id").user_id.nunique()
    pid = sizes[sizes >= 2].index[0]
    return sorted(acc[acc.true_person_id == pid].user_id)


def _mentions(con, ids: list[str]) -> dict[str, int]:
    """Rows in any table with an id column holding one of ids."""
    hits = {}
    cols = con.execute("""select table_schema, table_name, column_name from information_schema.columns
                          where data_type = 'VARCHAR' and (column_name like '%user_id' or column_name like '%person_id')
                          and table_schema not like 'pg_%' and table_name not like '%erasure_requests'""").fetchall()
    for s, t, c in cols:
        n = con.execute(f'select count(*) from "{s}"."{t}" where "{c}" in (select unnest(?::varchar[]))',
                        [ids]).fetchone()[0]
        if n:
            hits[f"{s}.{t}.{c}"] = n
    return hits


def test_access_then_erase_a_multi_account_person(built, tmp_path):
    base, wh = built
    accounts = _multi_account_person(base, wh)
    con = duckdb.connect(str(wh), read_only=True)
    persons = [r[0] for r in con.execute(
        "select distinct person_id from marts.dim_accounts where user_id in (select unnest(?::varchar[]))",
        [accounts]).fetchall()]
    con.close()
    assert len(persons) == 1, "identity resolution should merge the true person's accounts"

    # right of access: everything about the first account's person
    counts = access_export(wh, accounts[0], tmp_path / "access.json")
    doc = json.loads((tmp_path / "access.json").read_text())
    assert counts["raw.users"] == len(accounts) and doc["person_ids"] == persons  # the whole person
    assert any(k.startswith("marts.") for k in counts)

    # erasure of ONE account removes the whole person (all linked accounts) everywhere
    con = duckdb.connect(str(wh))
    before = _mentions(con, accounts + persons)
    assert before, "the person should be present before erasure"
    con.execute("insert into raw.erasure_requests values ('req-test-1', ?, ?, 'test', now()::timestamp, 'test')",
                [accounts[-1], datetime(2025, 12, 31, 1)])
    con.close()
    summary = erase(wh)
    assert summary["requests"] >= 1
    con = duckdb.connect(str(wh), read_only=True)
    assert _mentions(con, accounts + persons) == {}
    log = con.execute("select * from audit.erasure_log where request_id = 'req-test-1'").df()
    removed = dict(zip(log.table_name, log.rows_removed))
    views = {f"{s}.{t}" for s, t in con.execute(
        "select table_schema, table_name from information_schema.tables where table_type = 'VIEW'").fetchall()}
    for key, n in before.items():  # every table holding the person's own rows reports them as removed
        table, column = key.rsplit(".", 1)
        if table in views:  # a view (int_events) shows nothing now (checked above); it has no rows to remove
            continue
        if column in ("user_id", "person_id", "inviter_user_id", "inviter_person_id", "sharer_person_id"):
            assert removed.get(table, 0) >= n, key
    # the audit holds no identifier of the person
    flat = log.astype(str).to_string()
    assert not any(a in flat for a in accounts + persons)
    con.close()

    # processed once: a second call does nothing; a rebuild does not bring the person back
    assert erase(wh)["requests"] == 0
    build(RunContext.create(as_of=AS_OF, warehouse=wh), progress=False)
    con = duckdb.connect(str(wh), read_only=True)
    assert _mentions(con, accounts + persons) == {}
    con.close()


def test_access_unknown_account_is_a_clear_error(built, tmp_path):
    from ulm.core.errors import UlmError

    _, wh = built
    with pytest.raises(UlmError, match="no data held"):
        access_export(wh, "no-such-account", tmp_path / "x.json")
