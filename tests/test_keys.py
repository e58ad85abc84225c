"""Key safety (docs/PRIVACY.md#key-safety, #key-rotation): the keys of the keyed hashes are checked, never invented.

Fast checks (no dbt): the fingerprint, ``verify_key`` on an in-memory warehouse, where the PII key comes from
(environment, the demo's key file, nothing: an error), an empty key file.

On one small generated warehouse, built and published through write-audit-publish (in this order):
1. the first build recorded the key's fingerprint;
2. a changed ``ULM_PII_KEY`` fails ``ulm build`` in one line, and the published marts stay as they were;
3. ``ulm rotate-key`` refuses when nothing changed, and when the suppression list is not empty and
   ``ULM_SUPPRESSION_KEY`` is not set; a failed rebuild is undone;
4. ``ulm rotate-key`` re-hashes: person ids identical, every phone hash different, later builds pass with the
   new key and fail with the old one, also under ``ulm run`` (the Airflow DAGs).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
from datetime import date
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from ulm.cli import main
from ulm.core.context import RunContext
from ulm.core.errors import UlmError
from ulm.privacy import keys

D = date(2025, 12, 31)
OLD_KEY = os.environ["ULM_PII_KEY"]  # the test-wide key of tests/conftest.py
NEW_KEY = "rotated-test-only-pii-key-0123456789"
MISMATCH = "ULM_PII_KEY does not match the key this warehouse was built with"


def _no_key(monkeypatch, data_dir: Path) -> None:
    monkeypatch.delenv("ULM_PII_KEY", raising=False)
    monkeypatch.delenv("DBT_ENV_SECRET_ULM_PII_KEY", raising=False)
    monkeypatch.delenv("ULM_SUPPRESSION_KEY", raising=False)
    monkeypatch.setenv("ULM_DATA_DIR", str(data_dir))


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()  # progress logs go to stdout; the error is one line on stderr
    assert line.startswith("error: ") and len(line.splitlines()) == 1, result.output
    for needle in needles:
        assert needle in line, line
    assert OLD_KEY not in line and NEW_KEY not in line  # a key is never printed
    return line


# ------------------------------------------------------------------------------------------------- fast checks

def test_the_fingerprint_is_short_stable_and_reveals_nothing() -> None:
    fp = keys.fingerprint(OLD_KEY)
    assert fp == hmac.new(OLD_KEY.encode(), b"ulm-key-fingerprint-v1", hashlib.sha256).hexdigest()[:16]
    assert len(fp) == 16 and int(fp, 16) >= 0 and OLD_KEY not in fp
    assert keys.fingerprint(NEW_KEY) != fp and keys.fingerprint(OLD_KEY) == fp


def test_verify_key_records_on_first_use_then_refuses_another_key(monkeypatch) -> None:
    con = duckdb.connect()
    keys.verify_key(con, "pii", record=False)  # nothing recorded, nothing written
    assert keys.recorded_fingerprint(con, "pii") is None
    keys.verify_key(con, "pii")
    keys.verify_key(con, "pii")  # the same key again: fine, recorded once
    assert con.execute("select role, fingerprint, note from audit.key_fingerprints").fetchall() == [
        ("pii", keys.fingerprint(OLD_KEY), "first use")]
    monkeypatch.setenv("ULM_PII_KEY", NEW_KEY)
    with pytest.raises(UlmError, match=MISMATCH) as exc:
        keys.verify_key(con, "pii")
    message = str(exc.value)
    assert "\n" not in message and NEW_KEY not in message and OLD_KEY not in message
    assert keys.fingerprint(OLD_KEY) in message and "ulm rotate-key --as-of DATE" in message

    # the suppression role: ULM_SUPPRESSION_KEY, else the PII key
    keys.verify_key(con, "suppression")  # recorded with the current PII key (NEW_KEY)
    monkeypatch.setenv("ULM_SUPPRESSION_KEY", OLD_KEY)
    with pytest.raises(UlmError) as exc:
        keys.verify_key(con, "suppression")
    assert str(exc.value).startswith("ULM_SUPPRESSION_KEY does not match the key the suppression list")
    assert "set ULM_SUPPRESSION_KEY to the key the suppression list was made with" in str(exc.value)
    monkeypatch.delenv("ULM_SUPPRESSION_KEY")
    keys.verify_key(con, "suppression")
    monkeypatch.delenv("ULM_PII_KEY")
    with pytest.raises(UlmError, match="ULM_PII_KEY is not set: export"):
        keys.verify_key(con, "pii")


def test_verify_key_leaves_the_callers_connection_usable() -> None:
    """The loader registers the hash UDF right after the check: no half-read result may be left behind."""
    from ulm.privacy.hashing import UDF_NAME, register_udf

    con = duckdb.connect()
    for record in (False, True, True):  # no table yet; first use; recorded
        keys.verify_key(con, "suppression", record=record)
        register_udf(con, b"k")
        assert con.execute(f"select {UDF_NAME}('x')").fetchall()[0][0] == hmac.new(b"k", b"x", hashlib.sha256).hexdigest()


def test_outside_the_demo_a_missing_key_fails_and_no_key_file_is_made(monkeypatch, tmp_path) -> None:
    _no_key(monkeypatch, tmp_path)
    with pytest.raises(UlmError, match="ULM_PII_KEY is not set") as exc:
        keys.ensure_local_pii_key()
    assert "\n" not in str(exc.value) and "ulm demo" in str(exc.value)
    assert not keys.local_key_file().exists()
    for args in (["build", "--as-of", "2025-12-31"], ["run", "--as-of", "2025-12-31"],
                 ["backfill", "2025-12-30", "2025-12-31"], ["ingest", str(tmp_path)],
                 ["rotate-key", "--as-of", "2025-12-31"]):
        result = CliRunner().invoke(main, ["--warehouse", str(tmp_path / "wh.duckdb"), *args])
        _one_line_error(result, "ULM_PII_KEY is not set")
    assert not keys.local_key_file().exists() and not (tmp_path / "wh.duckdb").exists()
    from ulm.orchestration.airflow_env import airflow_env

    with pytest.raises(UlmError, match="ULM_PII_KEY is not set"):
        airflow_env(RunContext.create(warehouse=tmp_path / "wh.duckdb"))


def test_the_demo_makes_a_key_file_that_later_commands_use(monkeypatch, tmp_path, caplog) -> None:
    _no_key(monkeypatch, tmp_path)
    assert keys.ensure_local_pii_key(demo=True) == f"new demo key file {tmp_path / '.pii_key'}"
    path = keys.local_key_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    made = os.environ["ULM_PII_KEY"]
    assert made == path.read_text() and len(made) == 64
    _no_key(monkeypatch, tmp_path)  # a later command in a new process: no key in the environment
    with caplog.at_level("INFO", logger="ulm.privacy"):
        assert keys.ensure_local_pii_key() == f"demo key file {path}"
    assert os.environ["ULM_PII_KEY"] == made and made not in caplog.text
    assert f"ULM_PII_KEY is not set, using the demo key file {path}" in caplog.text
    assert keys.ensure_local_pii_key(demo=True) == "environment variable ULM_PII_KEY"


@pytest.mark.parametrize("demo", [False, True])
def test_an_empty_key_file_fails_naming_the_file(monkeypatch, tmp_path, demo) -> None:
    _no_key(monkeypatch, tmp_path)
    (tmp_path / ".pii_key").write_text(" \n")
    with pytest.raises(UlmError) as exc:
        keys.ensure_local_pii_key(demo=demo)
    message = str(exc.value)
    assert message.startswith(f"key file {tmp_path / '.pii_key'} is empty") and "not set" not in message
    assert (tmp_path / ".pii_key").read_text() == " \n"  # never replaced by a new key
    result = CliRunner().invoke(main, ["--warehouse", str(tmp_path / "wh.duckdb"), "build", "--as-of", "2025-12-31"])
    _one_line_error(result, f"key file {tmp_path / '.pii_key'} is empty")


# ------------------------------------------------------------------------------------------------- one warehouse

def _ctx(base: Path) -> RunContext:
    return RunContext.create(as_of=D, warehouse=base / "wh.duckdb").with_(data_dir=base / "data")


def q(base: Path, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(base / "wh.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _cli(base: Path, *args: str):
    return CliRunner().invoke(main, ["--warehouse", str(base / "wh.duckdb"), *args])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ulm.generate import generate
    from ulm.ingest import ingest_dir
    from ulm.transform.wap import build_and_publish

    base = tmp_path_factory.mktemp("keys")
    mp = pytest.MonkeyPatch()
    mp.setenv("ULM_DATA_DIR", str(base / "data"))  # exports, Airflow home, (no) demo key file: all here
    mp.delenv("ULM_SUPPRESSION_KEY", raising=False)
    generate(base / "landing", persons=300, days=40, end_date=D, seed=7, progress=False)
    ingest_dir(base / "landing", base / "wh.duckdb", progress=False)
    build_and_publish(_ctx(base), progress=False)
    yield base
    mp.undo()


@pytest.mark.slow
def test_the_first_build_recorded_the_key_fingerprint(world) -> None:
    rows = q(world, "select role, fingerprint, note from audit.key_fingerprints")
    assert rows == [("pii", keys.fingerprint(OLD_KEY), "first use")]


@pytest.mark.slow
def test_a_changed_key_fails_the_build_in_one_line(world, monkeypatch) -> None:
    from ulm.transform.wap import build_and_publish

    published = q(world, "select count(*) from audit.publish_log")
    monkeypatch.setenv("ULM_PII_KEY", NEW_KEY)
    with pytest.raises(UlmError, match=MISMATCH):
        build_and_publish(_ctx(world), progress=False)
    line = _one_line_error(_cli(world, "build", "--as-of", D.isoformat()), MISMATCH, keys.fingerprint(OLD_KEY),
                           keys.fingerprint(NEW_KEY), "ulm rotate-key --as-of DATE", "docs/PRIVACY.md#key-rotation")
    print(line)
    _one_line_error(_cli(world, "build", "--as-of", D.isoformat(), "--dev"), MISMATCH)
    assert q(world, "select count(*) from audit.publish_log") == published
    assert len(q(world, "select * from audit.key_fingerprints")) == 1


@pytest.mark.slow
def test_rotate_key_refuses_when_there_is_nothing_to_rotate(world) -> None:
    line = _one_line_error(_cli(world, "rotate-key", "--as-of", D.isoformat()),
                           "nothing to rotate: the PII key from environment variable ULM_PII_KEY is the key",
                           keys.fingerprint(OLD_KEY), "set ULM_PII_KEY to the new key first")
    print(line)


@pytest.mark.slow
def test_rotate_key_refuses_to_lose_the_suppression_list(world, monkeypatch) -> None:
    monkeypatch.setenv("ULM_PII_KEY", NEW_KEY)
    with duckdb.connect(str(world / "wh.duckdb")) as con:
        con.execute("insert into raw.erased_subjects values (?, 'user_id', 'r-test', now(), 'test')",
                    [hmac.new(OLD_KEY.encode(), b"u-erased", hashlib.sha256).hexdigest()])
    line = _one_line_error(_cli(world, "rotate-key", "--as-of", D.isoformat()),
                           "suppression list raw.erased_subjects (1 hash(es)) is keyed by the old key",
                           "cannot be re-hashed", "set ULM_SUPPRESSION_KEY to the old key first")
    print(line)
    monkeypatch.setenv("ULM_SUPPRESSION_KEY", NEW_KEY)  # set, but to the new key: the same refusal
    _one_line_error(_cli(world, "rotate-key", "--as-of", D.isoformat()), "cannot be re-hashed")
    assert len(q(world, "select * from audit.key_fingerprints")) == 1


@pytest.mark.slow
def test_a_failed_rotation_is_undone(world, monkeypatch) -> None:
    import ulm.transform.wap

    def failing_build(*args, **kwargs):
        assert kwargs["full_refresh"] is True
        raise UlmError("dbt build failed: 1 node(s): stg_users (error: boom)")

    monkeypatch.setattr(ulm.transform.wap, "build_and_publish", failing_build)
    monkeypatch.setenv("ULM_PII_KEY", NEW_KEY)
    monkeypatch.setenv("ULM_SUPPRESSION_KEY", OLD_KEY)
    _one_line_error(_cli(world, "rotate-key", "--as-of", D.isoformat()), "key rotation undone",
                    f"the old key (fingerprint {keys.fingerprint(OLD_KEY)}) is still in force", "boom")
    assert q(world, "select role, fingerprint from audit.key_fingerprints") == [("pii", keys.fingerprint(OLD_KEY))]


@pytest.mark.slow
def test_rotate_key_rehashes_everything_and_keeps_person_ids(world, monkeypatch) -> None:
    from ulm.privacy.hashing import hmac_sha256
    from ulm.transform.wap import build_and_publish

    persons = q(world, "select person_id from marts.dim_persons order by 1")
    accounts = q(world, "select user_id, person_id from marts.dim_accounts order by 1")
    hashes = dict(q(world, "select user_id, phone_hash from audit_staging.stg_users where phone_hash is not null"))
    assert persons and len(hashes) > 100
    monkeypatch.setenv("ULM_PII_KEY", NEW_KEY)
    monkeypatch.setenv("ULM_SUPPRESSION_KEY", OLD_KEY)  # the suppression list stays keyed by the old key
    result = _cli(world, "rotate-key", "--as-of", D.isoformat())
    assert result.exit_code == 0, result.output
    print(result.output)
    assert f"fingerprint {keys.fingerprint(OLD_KEY)} -> {keys.fingerprint(NEW_KEY)}" in result.output
    assert OLD_KEY not in result.output and NEW_KEY not in result.output
    assert q(world, "select role, fingerprint, note from audit.key_fingerprints order by recorded_at, role") == [
        ("pii", keys.fingerprint(OLD_KEY), "first use"),
        ("pii", keys.fingerprint(NEW_KEY), "rotate-key"),
        ("suppression", keys.fingerprint(OLD_KEY), "rotate-key")]

    assert q(world, "select person_id from marts.dim_persons order by 1") == persons
    assert q(world, "select user_id, person_id from marts.dim_accounts order by 1") == accounts
    after = dict(q(world, "select user_id, phone_hash from audit_staging.stg_users where phone_hash is not null"))
    assert after.keys() == hashes.keys() and all(after[u] != h for u, h in hashes.items())
    user, phone = q(world, "select user_id, phone from raw.users where phone is not null limit 1")[0]
    assert after[user] == hmac_sha256(phone, NEW_KEY.encode())

    build_and_publish(_ctx(world), progress=False)  # the next daily build, with the new key
    monkeypatch.setenv("ULM_PII_KEY", OLD_KEY)
    _one_line_error(_cli(world, "build", "--as-of", D.isoformat()), MISMATCH, keys.fingerprint(NEW_KEY))
    assert q(world, "select person_id from marts.dim_persons order by 1") == persons


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ulm_run_fails_in_one_line_when_the_key_changed(world) -> None:
    """After the rotation the test-wide key is the wrong one: the DAG's first warehouse task refuses it."""
    result = _cli(world, "run", "--as-of", D.isoformat(), "--no-ml", "--landing", str(world / "landing"))
    print(result.output)
    line = _one_line_error(result, MISMATCH, keys.fingerprint(NEW_KEY))
    assert "ulm_daily" in line
