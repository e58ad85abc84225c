"""The PostgreSQL target end to end (issue #15): gates, atomic publish, ML write-back, incremental parity.

One private PostgreSQL cluster (tests/test_engines.py's ``pg`` fixture) and one small generated data set stamped up
to day d+1. Two warehouses live the same two days: ``duck`` on the duckdb target, ``pg`` on the postgres target
(ingest in DuckDB, raw copied to Postgres, dbt + Gates 2-3 + publish on Postgres). Day d is a first build, day d+1
an incremental one. Then:

- the published marts of both targets are equal table by table after day d and after day d+1 (exact for counts
  and money, 1e-9 relative for rates), and the DuckDB copy of the Postgres marts (serving, exports) equals Postgres;
- Gates 2 and 3 give the same expectations and observed values on both targets, and the same one-line failure
  messages on the same defects;
- a bad raw row on Postgres fails Gate 2, and the published marts (Postgres and its DuckDB copy) and the publish
  log stay exactly as they were;
- scores written on the postgres target land in Postgres ``ml.scores``, where the dbt models read them;
- ``ulm run --target postgres`` (the DAGs under ``airflow dags test``) for day d on a database of its own succeeds and
  publishes on Postgres the marts of the direct DuckDB build of day d; ``ulm_ml`` runs on the target;
- erasure holds on Postgres: after `erase` no Postgres table holds the person's ids or PII hashes, an unreachable
  Postgres fails the erasure with one line and leaves it pending, and the incremental day d+2 keeps them out;
- ``ulm build --target postgres`` (no --dev) publishes; after a bad raw row it exits 1 with the gate's one line and
  Postgres ``marts`` (same schema oid: never swapped), its DuckDB copy and the publish log are unchanged.
"""
from __future__ import annotations

import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from test_engines import pg  # noqa: F401  (the module's private cluster)

from ulm.core.context import RunContext
from ulm.quality.core import GateFailed
from ulm.warehouse import engines, postgres

pytestmark = pytest.mark.slow

PERSONS, DAYS, DAY = 200, 40, date(2025, 3, 30)
NEXT = DAY + timedelta(days=1)
AFTER = NEXT + timedelta(days=1)  # generated too: the incremental day after an erasure (the last test)


def _gate_rows(wh: Path, run_id: str) -> list[tuple]:
    with duckdb.connect(str(wh), read_only=True) as con:
        return con.execute("select gate, suite, frame, expectation, \"column\", observed_value, success "
                           "from audit.gate_results where run_id = ? order by all", [run_id]).fetchall()


def _compare_published(duck_wh: Path, cfg: postgres.PgConfig, schema: str = "marts") -> dict[str, int]:
    with duckdb.connect(str(duck_wh), read_only=True) as con, postgres.cursor(cfg) as cur:
        counts, diffs = engines.compare_schema(con, cur, schema)
    assert not diffs, "\n".join(diffs)
    return counts


@pytest.fixture(scope="module")
def runs(pg, tmp_path_factory) -> dict:  # noqa: F811
    """Day d (first build) and day d+1 (incremental) on both targets; what each build_and_publish returned."""
    from ulm.generate import generate
    from ulm.ingest import ingest_dir
    from ulm.transform.wap import build_and_publish

    root = tmp_path_factory.mktemp("pgrun")
    generate(out_dir=root / "landing", persons=PERSONS, days=DAYS, end_date=AFTER, seed=11, progress=False)
    cfg = postgres.create_database(pg, "ulm_run")
    out: dict = {"cfg": cfg, "root": root}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(postgres.ENV["dbname"], cfg.dbname)
        for day in (DAY, NEXT):
            for target in ("duckdb", "postgres"):
                wh = root / f"{target}.duckdb"
                ingest_dir(root / "landing", wh, until=day, progress=False)
                if target == "postgres":
                    postgres.sync_raw(wh, cfg)
                ctx = RunContext.create(as_of=day, warehouse=wh, target=target)
                ctx = ctx.with_(data_dir=root / target)
                out[(target, day)] = build_and_publish(ctx, progress=False)
            if day == DAY:  # the marts published after day d on both targets
                out["day_d_marts"] = _compare_published(root / "duckdb.duckdb", cfg)
                shutil.copy(root / "duckdb.duckdb", root / "duckdb_day_d.duckdb")  # the DAG run's reference
    return out


def test_day_d_and_incremental_day_d1_give_the_same_marts(runs):
    """Published marts equal table by table after the first build (day d) and after the incremental day d+1."""
    cfg, root = runs["cfg"], runs["root"]
    assert len(runs["day_d_marts"]) >= 30 and runs["day_d_marts"]["dim_persons"] > 0
    counts = _compare_published(root / "duckdb.duckdb", cfg)
    assert counts["dim_persons"] >= runs["day_d_marts"]["dim_persons"]
    with postgres.cursor(cfg) as cur:
        cur.execute("select max(kpi_date) from marts.mart_kpi_daily")
        assert cur.fetchone()[0] == NEXT
    assert runs[("postgres", NEXT)]["publish"]["target"] == "postgres"


def test_duckdb_copy_of_the_postgres_marts_is_exact(runs):
    """What the serving snapshot and the exports read on the postgres target is what Postgres published."""
    cfg, root = runs["cfg"], runs["root"]
    counts = _compare_published(root / "postgres.duckdb", cfg)
    assert counts == {k: v for k, v in _compare_published(root / "duckdb.duckdb", cfg).items()}
    pub = runs[("postgres", NEXT)]
    assert Path(pub["publish"]["serving"]["path"]).exists() and pub["export"]["persons"] == \
        runs[("duckdb", NEXT)]["export"]["persons"]
    with duckdb.connect(str(root / "postgres.duckdb"), read_only=True) as con:
        log = con.execute("select source_schema, tables from audit.publish_log order by published_at").fetchall()
    assert [r[0] for r in log] == ["postgres:audit_marts"] * 2 and log[-1][1] == pub["publish"]["tables"]


def test_gates_give_the_same_results_on_both_targets(runs):
    root = runs["root"]
    for day in (DAY, NEXT):
        duck = _gate_rows(root / "duckdb.duckdb", runs[("duckdb", day)]["run_id"])
        pgr = _gate_rows(root / "postgres.duckdb", runs[("postgres", day)]["run_id"])
        assert len(duck) >= 45 and {r[0] for r in duck} == {"staging", "marts"}
        assert pgr == duck


@pytest.mark.parametrize("defects", [
    ("UPDATE bad_staging.stg_nps_responses SET score = 11",
     "UPDATE bad_staging.stg_orders SET status = 'lost' WHERE order_id IN "
     "(SELECT min(order_id) FROM bad_staging.stg_orders)"),
    ("UPDATE bad_marts.mart_kpi_daily SET stickiness = 1.25 WHERE kpi_date = (SELECT max(kpi_date) FROM "
     "bad_marts.mart_kpi_daily)",
     "UPDATE bad_marts.mart_kpi_daily SET gmv = gmv + 0.01 WHERE kpi_date = (SELECT min(kpi_date) FROM "
     "bad_marts.mart_kpi_daily)",
     "INSERT INTO bad_marts.dim_persons SELECT * FROM bad_marts.dim_persons ORDER BY person_id LIMIT 1"),
], ids=["staging", "marts"])
def test_the_same_defects_fail_with_the_same_message(runs, defects, tmp_path):
    """Copies of the audited schemas (bad_*) get the same defects on both engines; the gates fail identically."""
    from ulm.quality.gates import gate_marts, gate_staging

    cfg, root = runs["cfg"], runs["root"]
    layers = ("staging", "intermediate", "marts")
    messages = {}
    for target in ("duckdb", "postgres"):
        wh = root / f"{target}.duckdb"
        if target == "duckdb":
            with duckdb.connect(str(wh)) as con:
                for layer in layers:
                    con.execute(f"drop schema if exists bad_{layer} cascade; create schema bad_{layer}")
                    for (t,) in con.execute("select table_name from duckdb_tables() where schema_name = ?",
                                            [f"audit_{layer}"]).fetchall():
                        con.execute(f'create table bad_{layer}."{t}" as select * from audit_{layer}."{t}"')
                for sql in defects:
                    con.execute(sql)
        else:
            with postgres.cursor(cfg) as cur:
                for layer in layers:
                    cur.execute(f"drop schema if exists bad_{layer} cascade; create schema bad_{layer}")
                    cur.execute("select table_name from information_schema.tables where table_schema = %s",
                                (f"audit_{layer}",))
                    for (t,) in cur.fetchall():
                        cur.execute(f'create table bad_{layer}."{t}" as select * from audit_{layer}."{t}"')
                for sql in defects:
                    cur.execute(sql)
        ctx = RunContext.create(as_of=NEXT, warehouse=wh, target=target).with_(
            schema_prefix="bad_", data_dir=tmp_path / target, run_id=f"defects-{target}")
        gate = gate_staging if "bad_staging" in defects[0] else gate_marts
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(postgres.ENV["dbname"], cfg.dbname)
            with pytest.raises(GateFailed) as err:
                gate(ctx)
        messages[target] = str(err.value)
    assert messages["postgres"] == messages["duckdb"]
    wanted = (("nps_responses_integrity.max_score", "orders_values.status") if "bad_staging" in defects[0] else
              ("rates.out_of_range", "gmv.days_with_gmv_mismatch", "gmv.max_abs_gmv_difference",
               "persons.duplicate_person_ids"))
    assert all(w in messages["duckdb"] for w in wanted), messages["duckdb"]


class _Champion:
    """Stands in for an MLflow @champion (the registry is tests/test_ml_*'s subject): a score from the features."""

    train_cutoffs: list = []
    horizon_days = 365
    top_features: list = []

    def unwrap_python_model(self):
        return self

    def predict_frame(self, frame):
        return (frame["active_days_30d"].to_numpy(dtype=float) + 1) / 32


def test_scores_read_postgres_features_and_land_in_postgres(runs, monkeypatch):
    """On the postgres target the features come from the Postgres marts (equal to those from DuckDB's) and the
    scores replace Postgres ml.scores, which dbt reads as source('ml', 'scores')."""
    from ulm.ml import features, score
    from ulm.warehouse import connect_read_only

    cfg, root = runs["cfg"], runs["root"]
    wh = root / "postgres.duckdb"
    monkeypatch.setenv(postgres.ENV["dbname"], cfg.dbname)
    monkeypatch.setenv("ULM_DATA_DIR", str(root / "postgres"))
    monkeypatch.setattr(score, "load_champion", lambda task: (_Champion(), "7"))
    with connect_read_only(root / "duckdb.duckdb") as con:
        expected = features.snapshot(con, NEXT)
    with connect_read_only(wh) as con, features.published_marts(con, "postgres") as marts:
        assert marts is not con
        from_pg = features.snapshot(marts, NEXT)
    assert len(from_pg) > 10 and from_pg.equals(expected)
    res = score.score(NEXT, wh, target="postgres")
    assert res["persons"] == len(from_pg)
    with duckdb.connect(str(wh), read_only=True) as con, postgres.cursor(cfg) as cur:
        counts, diffs = engines.compare_schema(con, cur, "ml", skip=tuple(
            t for t in engines.duckdb_tables(con, "ml") if t != "scores"))
        cur.execute("select count(*), min(score_date), max(churn_model_version) from ml.scores")
        assert cur.fetchone() == (len(from_pg), NEXT, "7")
    assert not diffs and counts == {"scores": len(from_pg)}


def test_a_bad_row_on_postgres_fails_the_gate_and_publishes_nothing(runs):
    from ulm.transform.wap import build_and_publish

    cfg, root = runs["cfg"], runs["root"]
    wh = root / "postgres.duckdb"
    with duckdb.connect(str(wh), read_only=True) as con:
        published = con.execute("select count(*) from audit.publish_log").fetchone()[0]
    with postgres.cursor(cfg) as cur:
        cur.execute("select response_id, score from raw.nps_responses order by 1 limit 1")
        rid, score = cur.fetchone()
        cur.execute("update raw.nps_responses set score = 11 where response_id = %s", (rid,))
    try:
        ctx = RunContext.create(as_of=NEXT, warehouse=wh, target="postgres").with_(data_dir=root / "postgres")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(postgres.ENV["dbname"], cfg.dbname)
            with pytest.raises(GateFailed, match=r"^gate staging failed 1 expectation\(s\): staging_integrity/"
                                                 r"nps_responses_integrity\.max_score .* observed=11$"):
                build_and_publish(ctx, progress=False)
    finally:
        with postgres.cursor(cfg) as cur:
            cur.execute("update raw.nps_responses set score = %s where response_id = %s", (score, rid))
    with postgres.cursor(cfg) as cur:  # the bad row reached the audited build, not the published marts
        cur.execute("select max(score) from audit_staging.stg_nps_responses")
        assert cur.fetchone()[0] == 11
    _compare_published(root / "duckdb.duckdb", cfg)  # Postgres marts: still those of the good d+1 build
    _compare_published(wh, cfg)  # and its DuckDB copy
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("select count(*) from audit.publish_log").fetchone()[0] == published


def test_the_run_context_carries_the_target():
    """`ulm run --target` puts the target in the DAG conf; an asset-triggered ML run takes its publish's target."""
    from types import SimpleNamespace

    from ulm.orchestration.tasks import run_context

    assert run_context({"params": {"as_of": "2025-03-31", "target": "postgres"}, "run_id": "r"}).target == "postgres"
    assert run_context({"params": {"as_of": "2025-03-31", "target": None}, "run_id": "r"}).target == "duckdb"
    published = {"marts": [SimpleNamespace(extra={"as_of": "2025-03-31", "target": "postgres"})]}
    ctx = run_context({"params": {}, "run_id": "r", "triggering_asset_events": published})
    assert (ctx.target, ctx.as_of) == ("postgres", date(2025, 3, 31))
    with pytest.raises(Exception, match="unknown"):
        run_context({"params": {"as_of": "2025-03-31", "target": "oracle"}, "run_id": "r"})


def test_cli_build_on_postgres_publishes_and_refuses_after_a_failed_gate(runs, tmp_path):
    """`ulm ingest --target postgres` + `ulm build --target postgres` (no --dev) on a database of its own: dbt, gates
    and the schema swap on Postgres; then a bad raw row makes the next `ulm build` exit 1 with the gate's one line,
    and Postgres `marts`, its DuckDB copy and the publish log stay as the good build left them."""
    from click.testing import CliRunner

    from ulm.cli import main

    cfg = postgres.create_database(runs["cfg"], "ulm_cli_build")
    env = {postgres.ENV["dbname"]: cfg.dbname, "ULM_DATA_DIR": str(tmp_path / "data")}
    wh = tmp_path / "cli.duckdb"
    runner = CliRunner()
    res = runner.invoke(main, ["--warehouse", str(wh), "ingest", str(runs["root"] / "landing"), "--until",
                               NEXT.isoformat(), "--target", "postgres"], env=env)
    assert res.exit_code == 0, res.output
    build = ["--warehouse", str(wh), "build", "--as-of", NEXT.isoformat(), "--target", "postgres"]
    res = runner.invoke(main, build, env=env)
    assert res.exit_code == 0, res.output
    assert f"published marts as of {NEXT}" in res.output and "gates passed" in res.output
    # the DuckDB copy is what Postgres published (not compared with the two-day runs: a first build as of d+1 has
    # one day of alert and intervention history, they have two)
    good = _compare_published(wh, cfg)
    assert len(good) >= 30 and good["dim_persons"] > 0
    with duckdb.connect(str(wh), read_only=True) as con:
        log = con.execute("select source_schema from audit.publish_log").fetchall()
    assert log == [("postgres:audit_marts",)]
    swapped = "select oid from pg_namespace where nspname = 'marts'"  # a schema swap gives marts a new oid
    with postgres.cursor(cfg) as cur:
        cur.execute(swapped)
        marts_oid = cur.fetchone()[0]
        cur.execute("update raw.nps_responses set score = 11 "
                    "where response_id = (select min(response_id) from raw.nps_responses)")
    res = runner.invoke(main, build, env=env)
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "gate staging failed 1 expectation(s)" in lines[0] \
        and "nps_responses_integrity.max_score" in lines[0] and lines[0].endswith("observed=11"), res.output
    assert _compare_published(wh, cfg) == good
    with postgres.cursor(cfg) as cur:  # the bad row reached the audited build only; marts were never swapped
        cur.execute("select max(score) from audit_staging.stg_nps_responses")
        assert cur.fetchone()[0] == 11
        cur.execute(swapped)
        assert cur.fetchone()[0] == marts_oid
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("select count(*) from audit.publish_log").fetchone()[0] == 1


def test_ulm_run_on_postgres_publishes_the_duckdb_marts(runs, tmp_path, monkeypatch):
    """The DAGs for day d with --target postgres (ingest + Gate 1 in DuckDB, erase + raw sync, dbt, Gates 2-3,
    publish on Postgres, then ulm_ml) on a fresh warehouse and database: success, and the published Postgres marts
    equal the direct DuckDB build of day d. Without an MLflow @champion the DAG skips scoring, saying why; scores
    written on Postgres are test_scores_read_postgres_features_and_land_in_postgres's subject."""
    from ulm.orchestration.runner import run as run_dags

    cfg = postgres.create_database(runs["cfg"], "ulm_dag_run")
    monkeypatch.setenv(postgres.ENV["dbname"], cfg.dbname)
    monkeypatch.setenv("ULM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ctx = RunContext.create(as_of=DAY, warehouse=tmp_path / "dag.duckdb", landing_dir=runs["root"] / "landing",
                            target="postgres").with_(data_dir=tmp_path / "data")
    t0 = time.perf_counter()
    res = run_dags(ctx, ml=True, train=False)
    print(f"ulm run --target postgres: {time.perf_counter() - t0:.0f} s")
    daily = res["dags"]["ulm_daily"]
    assert daily["state"] == "success", daily
    assert {daily["tasks"][t] for t in ("ingest", "gate_landing", "erase", "publish")} == {"success"}, daily
    assert res["dags"]["ulm_ml"]["state"] == "success", res["dags"]["ulm_ml"]
    assert _compare_published(runs["root"] / "duckdb_day_d.duckdb", cfg) == runs["day_d_marts"]
    assert _compare_published(tmp_path / "dag.duckdb", cfg) == runs["day_d_marts"]  # its DuckDB copy too
    with duckdb.connect(str(tmp_path / "dag.duckdb"), read_only=True) as con:
        assert con.execute("select source_schema, as_of from audit.publish_log").fetchall() == \
            [("postgres:audit_marts", DAY)]
    with postgres.cursor(cfg) as cur:  # the scores table dbt reads exists on Postgres
        cur.execute("select count(*) from information_schema.tables where table_schema = 'ml' "
                    "and table_name = 'scores'")
        assert cur.fetchone()[0] == 1

def _pg_mentions(cfg: postgres.PgConfig, values: list[str]) -> dict[str, int]:
    """{schema.table.column: rows} of every Postgres text column equal to one of ``values`` (or naming one as a
    JSON string), outside the legal record raw.erasure_requests and the suppression list raw.erased_subjects (keyed
    hashes by design: docs/PRIVACY.md#erasure)."""
    out = {}
    with postgres.cursor(cfg) as cur:
        cur.execute("""select c.table_schema, c.table_name, c.column_name from information_schema.columns c
            join information_schema.tables t using (table_schema, table_name) where t.table_type = 'BASE TABLE'
              and c.table_schema not in ('pg_catalog', 'information_schema') and c.data_type in ('text', 'jsonb',
              'character varying') and not (c.table_schema = 'raw' and c.table_name in ('erasure_requests', 'erased_subjects'))""")
        for schema, table, column in cur.fetchall():
            cur.execute(f'select count(*) from "{schema}"."{table}" t where exists (select 1 from unnest(%s::text[])'
                        f' v where t."{column}"::text = v or t."{column}"::text like \'%%"\' || v || \'"%%\')',
                        (values,))
            n = cur.fetchone()[0]
            if n:
                out[f"{schema}.{table}.{column}"] = n
    return out


def test_erasure_holds_on_postgres(runs, monkeypatch):
    """Last in the module (it erases from the shared postgres-target warehouse). `erase` on a warehouse whose
    publish ran on Postgres deletes the person from every Postgres schema and logs it; unreachable Postgres fails
    with one line and marks nothing done; the incremental day d+2 (ingest, raw sync, dbt, publish) keeps them out."""
    from datetime import datetime

    from ulm.core.errors import UlmError
    from ulm.ingest import ingest_dir
    from ulm.privacy.erasure import erase
    from ulm.transform.wap import build_and_publish

    cfg, root = runs["cfg"], runs["root"]
    wh = root / "postgres.duckdb"
    monkeypatch.setenv(postgres.ENV["dbname"], cfg.dbname)
    with postgres.cursor(cfg) as cur:  # the most active account, its person and every account of that person
        cur.execute("select user_id from raw.events group by 1 order by count(*) desc, 1 limit 1")
        user = cur.fetchone()[0]
        cur.execute("select distinct person_id from marts.dim_accounts where user_id = %s", (user,))
        persons = [r[0] for r in cur.fetchall()]
        cur.execute("select distinct user_id from marts.dim_accounts where person_id = any(%s)", (persons,))
        accounts = sorted({user, *(r[0] for r in cur.fetchall())})
        cur.execute("""select table_schema, table_name, column_name from information_schema.columns c
            where column_name like '%%\\_hash' and table_schema not in ('raw', 'pg_catalog', 'information_schema')
              and exists (select 1 from information_schema.columns u where u.table_schema = c.table_schema
                          and u.table_name = c.table_name and u.column_name = 'user_id')""")
        hashes = set()
        for s, t, c in cur.fetchall():
            cur.execute(f'select distinct "{c}"::text from "{s}"."{t}" where user_id = any(%s) and "{c}" is not null',
                        (accounts,))
            hashes |= {r[0] for r in cur.fetchall()}
    assert persons and hashes, "the person and their PII hashes should be on Postgres"
    ids = accounts + persons + sorted(hashes)
    before = _pg_mentions(cfg, ids)
    assert {"marts.dim_accounts.user_id", "ml.scores.person_id"} <= set(before), before

    with duckdb.connect(str(wh)) as con:
        con.execute("insert into raw.erasure_requests values ('req-pg-1', ?, ?, 'test', now()::timestamp, 'test')",
                    [user, datetime(2025, 3, 31, 12)])
    with monkeypatch.context() as mp:  # recorded Postgres side, unreachable: one line, nothing marked done
        mp.setenv(postgres.ENV["port"], str(postgres.free_port()))
        with pytest.raises(UlmError, match=r"^PostgreSQL at 127\.0\.0\.1:\d+/ulm_run: ") as err:
            erase(wh, root / "postgres")
        assert "\n" not in str(err.value)
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("select count(*) from audit.erasure_log where request_id = 'req-pg-1'").fetchone() == (0,)
        assert con.execute("select count(*) from raw.users where user_id = ?", [user]).fetchone()[0] > 0

    res = erase(wh, root / "postgres")  # no --target: the Postgres publish in audit.publish_log is the trigger
    assert res["requests"] == 1 and res["accounts"] >= len(accounts) and res["persons"] >= len(persons)
    assert _pg_mentions(cfg, ids) == {}
    with duckdb.connect(str(wh), read_only=True) as con:
        logged = dict(con.execute("select table_name, rows_removed from audit.erasure_log "
                                  "where request_id = 'req-pg-1'").fetchall())
    for key, n in before.items():  # every Postgres table holding the person's own rows reports them removed
        table, column = key.rsplit(".", 1)
        if column in ("user_id", "person_id"):
            assert logged.get(f"postgres:{table}", 0) >= n, (key, logged)
    with postgres.cursor(cfg) as cur:
        cur.execute("select count(*) from raw.erased_subjects where request_id = 'req-pg-1'")
        assert cur.fetchone()[0] >= len(accounts)

    # the next incremental day on Postgres: re-sent rows are quarantined at landing, nothing brings them back
    ingest_dir(root / "landing", wh, until=AFTER, progress=False)
    postgres.sync_raw(wh, cfg)
    ctx = RunContext.create(as_of=AFTER, warehouse=wh, target="postgres").with_(data_dir=root / "postgres")
    build_and_publish(ctx, progress=False)
    with postgres.cursor(cfg) as cur:
        cur.execute("select max(kpi_date) from marts.mart_kpi_daily")
        assert cur.fetchone()[0] == AFTER
    assert _pg_mentions(cfg, ids) == {}
