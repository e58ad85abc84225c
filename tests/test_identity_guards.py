"""Identity guards (docs/METRICS.md#identity) on a generated world plus junk accounts, through write-audit-publish.

500 extra accounts share one normal-looking phone (no blocked pattern: the fan-out guard must stop it) and four
share the all-zeros phone (the pattern guard). One junk account and one zeros account also share a real union id,
so they are one person through a key that links. The generator's own multi-account persons must still merge
exactly as its truth says; the refused keys are listed in ``marts.mart_identity_refusals``; lowering
``giant_component_accounts`` (env ``ULM_PARAMS``) raises the alert in ``marts.mart_alerts`` and a Gate 2 warning.
"""
from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ulm.core.context import RunContext
from ulm.generate import generate
from ulm.ingest import ingest_dir
from ulm.transform.wap import build_and_publish

pytestmark = pytest.mark.slow

AS_OF = date(2025, 12, 31)  # the generator's default end date
JUNK_PHONE = "+8613800138000"  # looks like any mobile number: only the fan-out guard can refuse it
ZERO_PHONE = "00000000000"  # one repeated digit: identity_blocked_patterns
JUNK = [f"junk_{i:04d}" for i in range(500)]
ZERO = [f"zero_{i}" for i in range(4)]
LINK_UNION = "oJunkAndZeroShareThisUnion01"  # a union id that links junk_0000 and zero_0 (28 chars, not blocked)


def _junk_users(schema: pa.Schema) -> pa.Table:
    start = datetime(2025, 12, 10, 3, 0, 0)
    rows = []
    for i, uid in enumerate(JUNK + ZERO):
        registered = start + timedelta(seconds=37 * i)
        rows.append({
            "user_id": uid, "platform": "group_buy", "registered_at": registered, "acquisition_channel": "organic",
            "kol_id": None, "referrer_user_id": None, "city_tier": 3, "age_band": "25-30", "region": "CN",
            "phone": JUNK_PHONE if uid in JUNK else ZERO_PHONE, "device_id": f"dev-{uid}",
            "union_id": LINK_UNION if uid in ("junk_0000", "zero_0") else None,
            "consent_analytics": True, "consent_marketing": False, "consent_updated_at": registered,
        })
    return pa.Table.from_pylist(rows, schema=schema)


def _q(wh, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(wh), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("identity_guards")
    landing, truth, wh = base / "landing", base / "truth", base / "wh.duckdb"
    generate(landing, persons=400, days=40, seed=29, truth_dir=truth, progress=False)
    schema = pq.read_schema(sorted((landing / "users").glob("users_*.parquet"))[0])
    pq.write_table(_junk_users(schema), landing / "users" / "users_20251210_junk.parquet")
    ingest_dir(landing, wh, progress=False)
    out = build_and_publish(RunContext.create(as_of=AS_OF, warehouse=wh), progress=False)
    return base, wh, out


def test_refused_identifiers_merge_nobody(world) -> None:
    _, wh, _ = world
    person = dict(_q(wh, "select user_id, person_id from marts.dim_accounts where user_id like 'junk_%' "
                         "or user_id like 'zero_%'"))
    assert set(person) == set(JUNK + ZERO)
    # every account its own person, except junk_0000 + zero_0 (their union id links)
    assert person["junk_0000"] == person["zero_0"]
    assert len(set(person.values())) == len(JUNK) + len(ZERO) - 1
    sizes = dict(_q(wh, "select person_id, n_accounts from marts.dim_persons"))
    assert max(sizes[p] for p in person.values()) == 2
    # the keys: the junk phone fanned out, the zeros phone blocked, the shared union id links
    keys = _q(wh, """select k.key_type, k.refusal_reason, k.accounts_sharing, count(*) from audit_intermediate.int_identity_keys k
                     where k.user_id like 'junk_%' or k.user_id like 'zero_%' group by all order by all""")
    assert keys == [("phone", "blocked_pattern", 4, 4), ("phone", "fan_out", 500, 500), ("union_id", None, 2, 2)]


def test_identity_keys_has_the_columns_erasure_reads(world) -> None:
    _, wh, _ = world
    cols = {r[0] for r in _q(wh, "select column_name from information_schema.columns where table_schema = "
                                 "'audit_intermediate' and table_name = 'int_identity_keys'")}
    assert {"user_id", "key_type", "key_hash", "refusal_reason", "accounts_sharing"} <= cols


def test_refusals_are_published_with_reason_and_hashes_only(world) -> None:
    _, wh, _ = world
    rows = _q(wh, """select refusal_reason, key_type, accounts_sharing, persons_sharing, count(*), count(distinct key_hash),
                            min(length(key_hash)), count(distinct person_id)
                     from marts.mart_identity_refusals
                     where user_id like 'junk_%' or user_id like 'zero_%' group by all order by all""")
    assert rows == [("blocked_pattern", "phone", 4, 4, 4, 1, 64, 4), ("fan_out", "phone", 500, 500, 500, 1, 64, 500)]
    # why are junk_0001 and junk_0002 apart? one refused key in common, with its reason
    apart = _q(wh, """select a.key_type, a.refusal_reason from marts.mart_identity_refusals a
                      join marts.mart_identity_refusals b using (key_type, key_hash)
                      where a.user_id = 'junk_0001' and b.user_id = 'junk_0002'""")
    assert apart == [("phone", "fan_out")]
    # never a raw identifier in the published table
    cells = _q(wh, "select count(*) from marts.mart_identity_refusals where key_hash in (?, ?)",
               [JUNK_PHONE, ZERO_PHONE])
    assert cells == [(0,)]


def test_generated_multi_account_persons_still_merge_exactly(world) -> None:
    base, wh, _ = world
    truth = pd.read_parquet(base / "truth" / "accounts.parquet", columns=["user_id", "true_person_id"])
    built = pd.DataFrame(_q(wh, "select user_id, person_id from marts.dim_accounts "
                                "where user_id not like 'junk_%' and user_id not like 'zero_%'"),
                         columns=["user_id", "person_id"])
    both = truth.merge(built, on="user_id", how="inner")
    assert len(both) == len(built) > 300
    multi = both.groupby("true_person_id").user_id.nunique()
    assert (multi >= 2).sum() >= 10, "the generator should make multi-account persons"
    # the partition into persons equals the truth: same groups both ways
    assert both.groupby("true_person_id").person_id.nunique().max() == 1
    assert both.groupby("person_id").true_person_id.nunique().max() == 1


def test_gate_2_identity_check_passes_under_the_default_limit(world) -> None:
    _, wh, out = world
    assert out["gate_staging"]["failed"] == [] and out["publish"]
    largest = _q(wh, "select max(n_accounts) from marts.dim_persons")[0][0]
    assert 2 <= largest <= 20
    rows = _q(wh, "select success, severity, observed_value from audit.gate_results where run_id = ? "
                  "and gate = 'staging' and frame = 'identity_components'", [out["run_id"]])
    assert rows == [(True, "warning", str(largest))]
    assert _q(wh, "select count(*) from marts.mart_alerts where rule_id = 'giant_identity_component'") == [(0,)]


def test_giant_component_raises_alert_and_gate_2_warning(world, tmp_path, monkeypatch) -> None:
    _, wh_built, _ = world
    wh = tmp_path / "wh.duckdb"
    shutil.copy(wh_built, wh)
    monkeypatch.setenv("ULM_PARAMS", '{"giant_component_accounts": 1}')
    out = build_and_publish(RunContext.create(as_of=AS_OF, warehouse=wh), progress=False)
    assert out["gate_staging"]["failed"] == []
    assert any("identity_components.max_accounts_per_person" in w for w in out["gate_staging"]["warnings"])
    largest = _q(wh, "select max(n_accounts) from marts.dim_persons")[0][0]
    gate = _q(wh, "select success, severity, observed_value from audit.gate_results where run_id = ? "
                  "and gate = 'staging' and frame = 'identity_components'", [out["run_id"]])
    assert gate == [(False, "warning", str(largest))]
    # one alert per person with more than one account: value = its accounts, threshold = the lowered param
    alerts = _q(wh, """select a.alert_date, a.value, a.threshold, a.subject = 'person/' || a.person_id, p.n_accounts
                       from marts.mart_alerts a left join marts.dim_persons p using (person_id)
                       where a.rule_id = 'giant_identity_component'""")
    multi = _q(wh, "select count(*) from marts.dim_persons where n_accounts > 1")[0][0]
    assert len(alerts) == multi > 10
    assert all(a[0] == AS_OF and a[1] == a[4] > 1 and a[2] == 1.0 and a[3] for a in alerts)
    linked = _q(wh, "select person_id from marts.dim_accounts where user_id = 'zero_0'")[0][0]
    assert _q(wh, "select value from marts.mart_alerts where person_id = ?", [linked]) == [(2.0,)]
