"""Cross-engine equality (issue #15): the same dbt project on DuckDB and on a real PostgreSQL gives the same tables.

A private PostgreSQL cluster (Debian's binaries, initdb in a tmp dir, 127.0.0.1 on a free port) is started for this
module. A small generated data set (`ulm generate`, few persons and days) is ingested into DuckDB as always, the raw
layer copied to Postgres (ulm.warehouse.postgres.sync_raw), and every model built on both targets; then:

- the PII hash: the hash_pii() macro on Postgres (pgcrypto hmac) equals the DuckDB UDF / Python for the same inputs,
  NULL, blank, unicode and unicode whitespace included;
- raw, staging, intermediate and marts equal table by table (sorted on every column; exact for integers, strings,
  dates, booleans and decimals/money, 1e-9 relative for float rates), and every column has the same type;
- the golden cases: the project's dbt unit tests (hand-checked boundary cases in the models' _models.yml) pass on
  Postgres.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from ulm.core.context import RunContext
from ulm.privacy.hashing import hash_values, register_udf
from ulm.transform.dbt import compile_inline, run_dbt
from ulm.warehouse import engines, postgres

pytestmark = pytest.mark.slow

PERSONS, DAYS, END = 250, 45, date(2025, 3, 31)
HASH_INPUTS = [None, "", "   ", "13800000001", " 13800000001 ", "张三@例子.中国", "\u3000union-42\u3000", "a\tb",
               "\t\n dev-7 \r\n", "O'Brien", "emoji 😀", "ß", "\u00a0nbsp\u00a0", "x" * 300]
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def pg():
    """A private PostgreSQL cluster for this module; ULM_PG_* point at it while the module runs."""
    if not postgres.binaries_available():
        message = ("PostgreSQL server binaries not found: `apt-get install postgresql` (Debian package; "
                   "/usr/lib/postgresql/<version>/bin)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    # not under pytest's base temp dir: a concurrent pytest session resets its mode to 0700, and the cluster's
    # processes (user postgres when root) must reach their data dir until the end
    root = Path(tempfile.mkdtemp(prefix="ulm-test-pg-"))
    cluster = postgres.LocalCluster(root)
    cfg = cluster.start()
    try:
        with pytest.MonkeyPatch.context() as mp:  # the module's dbt runs reach this cluster; restored after
            for k, v in cfg.env().items():
                mp.setenv(k, v)
            postgres.prepare(cfg)
            yield cfg
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def built(pg, tmp_path_factory) -> Path:
    """The generated data set ingested into DuckDB, copied to Postgres, all models built on both targets."""
    from ulm.generate import generate
    from ulm.ingest import ingest_dir

    root = tmp_path_factory.mktemp("engines")
    generate(out_dir=root / "landing", persons=PERSONS, days=DAYS, end_date=END, seed=5, progress=False)
    wh = root / "wh.duckdb"
    ingest_dir(root / "landing", wh, progress=False)
    t0 = time.perf_counter()
    postgres.sync_raw(wh, pg)
    TIMINGS["raw copy to postgres"] = time.perf_counter() - t0
    for target in ("duckdb", "postgres"):
        t0 = time.perf_counter()
        run_dbt(RunContext.create(as_of=END, warehouse=wh, target=target), "run", progress=False)
        TIMINGS[f"dbt run {target}"] = time.perf_counter() - t0
    print("\nengine timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))
    return wh


@pytest.fixture(scope="module")
def core_built(pg, tmp_path_factory) -> tuple[Path, postgres.PgConfig]:
    """The hand-built raw layer of tests/test_dbt_core.py (identity merges over phones and union ids, late-loaded
    events, an erasure request, refunds) built for the core marts on both targets."""
    from datetime import datetime

    from test_dbt_core import AS_OF, CORE_MARTS, _append, _late_events, make_raw

    wh = tmp_path_factory.mktemp("engines_core") / "wh.duckdb"
    frames = make_raw(wh, loaded_at=datetime(2025, 4, 1))
    _append(wh, "events", _late_events(frames), datetime(2025, 4, 25))
    cfg = postgres.create_database(pg, "ulm_core")  # its own database: the generated set's tables stay apart
    postgres.sync_raw(wh, cfg)
    os.environ[postgres.ENV["dbname"]] = cfg.dbname
    try:
        for target in ("duckdb", "postgres"):
            t0 = time.perf_counter()
            run_dbt(RunContext.create(as_of=AS_OF, warehouse=wh, target=target), "run", select=CORE_MARTS,
                    progress=False)
            TIMINGS[f"core marts {target}"] = time.perf_counter() - t0
    finally:
        os.environ[postgres.ENV["dbname"]] = pg.dbname
    print("\nengine timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))
    return wh, cfg


def test_hash_pii_is_the_same_on_both_engines(pg, tmp_path):
    """hash_pii() compiled for Postgres (pgcrypto hmac, key from the session setting) equals the DuckDB UDF."""
    key = os.environ["ULM_PII_KEY"]
    expected = hash_values(HASH_INPUTS, key.encode("utf-8"))
    assert expected[0] is None and expected[1] is None and expected[2] is None and expected[3] is not None
    sql = "select {{ hash_pii('v') }} as h from hash_inputs order by i"
    # the DuckDB UDF through the duckdb macro
    wh = tmp_path / "h.duckdb"
    duck_sql = compile_inline(RunContext.create(as_of=END, warehouse=wh), sql)
    con = duckdb.connect()
    register_udf(con)
    con.register("hash_inputs", pa.table({"i": list(range(len(HASH_INPUTS))), "v": pa.array(HASH_INPUTS, pa.string())}))
    assert [r[0] for r in con.execute(duck_sql).fetchall()] == expected
    # Postgres through the postgres macro
    pg_sql = compile_inline(RunContext.create(as_of=END, warehouse=wh, target="postgres"), sql)
    assert "hmac(" in pg_sql and key not in pg_sql
    with postgres.cursor(pg) as cur:
        cur.execute("select set_config(%s, %s, false)", (postgres.PII_SETTING, key))
        cur.execute("create temp table hash_inputs (i integer, v text)")
        cur.executemany("insert into hash_inputs values (%s, %s)", list(enumerate(HASH_INPUTS)))
        cur.execute(pg_sql)
        got = [r[0] for r in cur.fetchall()]
    assert got == expected
    # and the key reaches dbt's sessions through PGOPTIONS, escaped
    env = postgres.pii_session_env("k with space\\x")
    assert env["PGOPTIONS"].endswith(f"-c {postgres.PII_SETTING}=k\\ with\\ space\\\\x")


def test_raw_layer_on_postgres_equals_duckdb(built, pg):
    with duckdb.connect(str(built), read_only=True) as con, postgres.cursor(pg) as cur:
        counts, diffs = engines.compare_schema(con, cur, "raw")
        cur.execute("select count(*) from raw.users where phone = ''")  # '' and NULL stay apart through COPY
        pg_blank = cur.fetchone()[0]
        duck_blank = con.execute("select count(*) from raw.users where phone = ''").fetchone()[0]
    assert not diffs, "\n".join(diffs)
    assert counts["events"] > 1000 and counts["users"] >= PERSONS and "_ingested_files" in counts
    assert pg_blank == duck_blank


@pytest.mark.parametrize("schema", ["staging", "intermediate", "marts"])
def test_models_equal_table_by_table(built, pg, schema):
    with duckdb.connect(str(built), read_only=True) as con, postgres.cursor(pg) as cur:
        # int_identity_changes is relative to the previous build (empty on a first build on both)
        counts, diffs = engines.compare_schema(con, cur, schema)
        duck_types = {(t, c): ty for t, c, ty in con.execute(
            "select table_name, column_name, data_type from duckdb_columns() where database_name = "
            "current_database() and schema_name = ?", [schema]).fetchall()}
        cur.execute("select table_name, column_name, data_type, numeric_precision, numeric_scale "
                    "from information_schema.columns where table_schema = %s", (schema,))
        pg_types = {(t, c): (ty, p, s) for t, c, ty, p, s in cur.fetchall()}
    assert not diffs, "\n".join(diffs)
    minimum = {"staging": 8, "intermediate": 20, "marts": 30}[schema]
    assert len(counts) >= minimum and sum(counts.values()) > 0
    if schema == "marts":
        assert all(counts[t] > 0 for t in ("mart_kpi_daily", "mart_rfm", "dim_persons", "mart_cohort_retention"))
    same = {"VARCHAR": ("text", "character varying"), "INTEGER": ("integer",), "BIGINT": ("bigint",),
            "DOUBLE": ("double precision",), "DATE": ("date",), "BOOLEAN": ("boolean",),
            "TIMESTAMP": ("timestamp without time zone",)}
    wrong = []
    for k, ty in duck_types.items():
        pty = pg_types.get(k)
        if ty.startswith("DECIMAL"):
            ok = pty is not None and pty[0] == "numeric" and f"DECIMAL({pty[1]},{pty[2]})" == ty
        else:
            ok = pty is not None and pty[0] in same.get(ty, (ty.lower(),))
        if not ok:
            wrong.append(f"{k}: {ty} vs {pty}")
    assert not wrong, "\n".join(wrong[:10])


@pytest.mark.parametrize("schema", ["staging", "intermediate", "marts"])
def test_core_cases_equal_table_by_table(core_built, schema):
    wh, cfg = core_built
    with duckdb.connect(str(wh), read_only=True) as con, postgres.cursor(cfg) as cur:
        counts, diffs = engines.compare_schema(con, cur, schema)
    assert not diffs, "\n".join(diffs)
    assert counts and all(n > 0 for t, n in counts.items() if t.startswith(("stg_", "mart_kpi", "dim_")))


def test_golden_unit_tests_pass_on_postgres(built, pg):
    """The hand-checked boundary cases (dbt unit tests) give the expected rows on Postgres too."""
    res = run_dbt(RunContext.create(as_of=END, warehouse=built, target="postgres"), "test", select="test_type:unit",
                  progress=False)
    passed = [r for r in res["nodes"] if r["status"] == "pass"]
    assert len(passed) == len(res["nodes"]) >= 25, [(r["name"], r["status"]) for r in res["nodes"]]


def test_cli_ingest_build_and_publish_on_postgres(built, pg, tmp_path):
    """`ulm ingest --target postgres` leaves Postgres raw equal to DuckDB raw; `ulm build --target postgres --dev`
    builds there; the Postgres publish swaps a schema in one transaction (the full build with gates and publish:
    tests/test_postgres_run.py)."""
    from click.testing import CliRunner

    from ulm.cli import main

    cfg = postgres.create_database(pg, "ulm_cli")
    env = {postgres.ENV["dbname"]: cfg.dbname}
    wh = tmp_path / "cli.duckdb"
    runner = CliRunner()
    res = runner.invoke(main, ["--warehouse", str(wh), "ingest", str(built.parent / "landing"), "--target",
                               "postgres"], env=env)
    assert res.exit_code == 0, res.output
    assert "copied raw to PostgreSQL" in res.output
    with duckdb.connect(str(wh), read_only=True) as con, postgres.cursor(cfg) as cur:
        counts, diffs = engines.compare_schema(con, cur, "raw")
    assert not diffs and counts["users"] >= PERSONS
    res = runner.invoke(main, ["--warehouse", str(wh), "build", "--as-of", END.isoformat(), "--target", "postgres",
                               "--dev", "--select", "staging"], env=env)
    assert res.exit_code == 0, res.output
    with duckdb.connect(str(built), read_only=True) as con:
        users = con.execute("select count(*) from staging.stg_users").fetchone()[0]
    for _ in range(2):  # the first publish creates the target, the second swaps it
        published = postgres.publish_schema(cfg, "dev_staging", "staging_published")
        assert published["stg_users"] == users
    with postgres.cursor(cfg) as cur:
        cur.execute("select count(*) from staging_published.stg_users")
        assert cur.fetchone()[0] == users
        cur.execute("select schema_name from information_schema.schemata where schema_name like 'staging_published_%'")
        assert cur.fetchall() == []
    with pytest.raises(Exception, match="holds no relations"):
        postgres.publish_schema(cfg, "no_such_schema", "x")
