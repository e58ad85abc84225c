"""`ulm bench`: wall time and peak memory of each pipeline stage, written to docs/BENCHMARKS.md (+ .json).

Each stage runs as its own `ulm ...` subprocess (a fresh interpreter, like a real run) while a sampler
records the peak resident memory of the whole process tree. Speed goals live here, never in timed tests.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psutil

from ulm.core import settings as _settings
from ulm.core.errors import UlmError
from ulm.core.settings import project_root
from ulm.warehouse import connect_read_only

log = logging.getLogger("ulm.bench")

END_DATE = date(2025, 12, 31)

# scale name -> generator arguments. 10m: ~10M events over a year (see docs/GENERATOR.md for the event rate).
SCALES = {
    # the fixed cost of a build: the same ~400 dbt nodes (models, data tests) on almost no data
    "tiny": {"persons": 300, "days": 30, "dbt_only": True},
    "small": {"persons": 20_000, "days": 365},
    "10m": {"persons": 100_000, "days": 365},  # ~10.3M events (docs/GENERATOR.md)
    # ML at person scale: ulm.ml.synthetic writes the published interface tables directly (a 1M-person warehouse
    # through the whole pipeline would be ~100M events); train on 200k persons, score 1M, BG/NBD fit vs persons
    # scoring population = persons active in the last 90 days: 1.4M persons registered over 120 days give ~1.0M
    # the same dbt project on DuckDB, PostgreSQL (a private cluster the benchmark starts) and Spark (local session):
    # full build and one incremental day at ~2M events (issue #15); not part of `all` (Spark takes many minutes)
    "engines": {"persons": 20_000, "days": 365, "engines": ("duckdb", "postgres", "spark")},
    # the growth curve (issue #14): ~30M and ~100M events through generate, ingest, dbt, train, score and erase, no
    # Airflow (its overhead is measured at 10m); not part of `all` (100m takes about an hour and ~40 GB of disk).
    # two production builds (`ulm build`: audit schemas, gates, publish), every day but the last in full and then
    # the last day incremental (D90)
    "30m": {"persons": 300_000, "days": 365, "big": True},
    "100m": {"persons": 1_000_000, "days": 365, "big": True},
    "ml": {"train_persons": 200_000, "score_persons": 1_400_000, "score_days": 120, "days": 365,
           "bgnbd_sizes": [10_000, 50_000, 100_000, 200_000, 500_000, 1_000_000]},
}
NOT_IN_ALL = ("engines", "30m", "100m")  # too long for `make bench`: run them by name
ML_TRAIN = "train churn + LTV (MLflow, registry)"
ERASE = "erase 100 requests"
DASHBOARD = "dashboard pages (server render, cold / warm cache)"
ERASE_REQUESTS = 100
ML_SCORE_1M = "score 1M persons"
ML_BGNBD = "BG/NBD + Gamma-Gamma fit time vs persons"


@dataclass
class StageResult:
    scale: str
    stage: str
    seconds: float
    peak_rss_mb: float
    ok: bool
    detail: str = ""
    extra: dict = field(default_factory=dict)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure(cmd: list[str], env: dict[str, str], scale: str, stage: str, log_file: Path) -> StageResult:
    """Run a command, sampling the peak RSS of its process tree every 100 ms."""
    log.info("[%s] %s: %s", scale, stage, " ".join(cmd))
    load_before = os.getloadavg()[0]
    peak = 0
    start = time.perf_counter()
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=project_root())
        ps = psutil.Process(proc.pid)
        stop = threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss(ps))
                stop.wait(0.1)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        rc = proc.wait()
        stop.set()
        t.join()
    seconds = time.perf_counter() - start
    res = StageResult(scale, stage, round(seconds, 2), round(peak / 2**20, 1), rc == 0,
                      "" if rc == 0 else f"exit {rc}, see {log_file}",
                      # the machine's 1-minute load average before and after (2 cores: > 2 means contention)
                      {"load": [round(load_before, 1), round(os.getloadavg()[0], 1)]})
    log.info("[%s] %s: %.1f s, peak %.0f MB%s", scale, stage, res.seconds, res.peak_rss_mb,
             "" if res.ok else f" FAILED ({res.detail})")
    return res


def machine_description() -> dict:
    vm = psutil.virtual_memory()
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(vm.total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


DBT_FULL = "dbt build (full refresh)"
DBT_FULL_BEFORE = "dbt build (full, all but last day)"
BIG_FULL = "ulm build (full, all but last day: audit schemas, gates, publish)"
BIG_INC = "ulm build (one incremental day: audit schemas, gates, publish)"
DBT_INC = "dbt build (one incremental day)"
# the yardstick of the full build (D79): the six core marts from raw in one hand-written DuckDB script
REF_SQL = "SQL reference: core marts from raw, one hand-written DuckDB script (after the full build)"
REF_GOAL = 1.3  # full dbt build <= 1.3x the reference, at 10M and 30M events (issue #14)
DAG_FULL = "Airflow ulm_daily (first run: full build into audit schemas)"
DAG_INC = "Airflow ulm_daily (same day again: incremental)"
BUILD_FULL = "no Airflow: ingest + Gate 1 + erase + ulm build, one process (full build into audit schemas)"
BUILD_INC = "no Airflow: same day again (incremental)"
DEPLOY_UP = "Airflow deployment up (PostgreSQL, Redis, Celery worker, MLflow server)"
DEPLOY_FULL = "Airflow deployment: ulm_daily via REST (first run: full build into audit schemas)"
DEPLOY_INC = "Airflow deployment: ulm_daily via REST (same day again: incremental)"
DEPLOY_DOWN = "Airflow deployment down"


def _stages(scale: str, work: Path, ulm: list[str]) -> list[tuple[str, list[str], str | None]]:
    """(stage name, command, what to read after it: "dbt" run_results, "dag" run report, "json" the command's
    --out file, "scores:<warehouse>" the scored persons, or None)."""
    if scale == "ml":
        return _ml_stages(work, ulm)
    if scale == "engines":
        return _engine_stages(work, ulm)
    s = SCALES[scale]
    landing = work / "landing"
    as_of = END_DATE.isoformat()
    day_before = (END_DATE - timedelta(days=1)).isoformat()
    stages = [
        ("generate", ulm + ["generate", "--out", str(landing), "--persons", str(s["persons"]),
                            "--days", str(s["days"]), "--end-date", as_of, "--truth", str(work / "truth")], None),
        *_ingest_stages(work, landing, day_before),
    ]
    if s.get("big"):
        # production builds (audit schemas, Gates 2-3, publish): the published marts are what train and score read
        return stages + [
            (BIG_FULL, ulm + ["build", "--as-of", day_before, "--full-refresh"], "dbt"),
            (BIG_INC, ulm + ["build", "--as-of", as_of], "dbt"),
            (REF_SQL, [sys.executable, "-m", "ulm.bench.reference", str(work / "warehouse.duckdb"), as_of,
                       str(work / "sql_reference.json")], "json"),
            (ML_TRAIN, ulm + ["train", "--as-of", as_of], None),
            ("score all persons", ulm + ["score", "--as-of", as_of], f"scores:{work / 'warehouse.duckdb'}"),
        ] + _erase_stages(work, landing, ulm)
    stages += [
        # --dev: dbt alone (no gates, no publish), the reference the DAG's overhead is measured against
        (DBT_FULL_BEFORE, ulm + ["build", "--dev", "--as-of", day_before, "--full-refresh"], "dbt"),
        (DBT_INC, ulm + ["build", "--dev", "--as-of", as_of], "dbt"),
        (DBT_FULL, ulm + ["build", "--dev", "--as-of", as_of, "--full-refresh"], "dbt"),
        # same warehouse and as-of day, right after the full build; schema ref is dropped after timing
        (REF_SQL, [sys.executable, "-m", "ulm.bench.reference", str(work / "warehouse.duckdb"), as_of,
                   str(work / "sql_reference.json")], "json"),
    ]
    if s.get("dbt_only"):
        return stages
    run = ulm + ["run", "--as-of", as_of, "--no-ml", "--landing", str(landing), "--report"]
    wh = str(work / "warehouse.duckdb")
    reset = [sys.executable, "-m", "ulm.bench.deploy", "reset-audit", wh]
    # every step of the DAG in one process (python -m ulm.bench.deploy same-work): the yardstick (D45)
    same = [sys.executable, "-m", "ulm.bench.deploy", "same-work", "--as-of", as_of, "--landing", str(landing), "--out"]
    setup = ("from ulm.core.context import RunContext; "
             "from ulm.orchestration.airflow_env import airflow_env, ensure_airflow_db, ensure_manifest; "
             f"ctx = RunContext.create(warehouse={wh!r}, landing_dir={str(landing)!r}); "
             "env = airflow_env(ctx); ensure_airflow_db(env); ensure_manifest(env)")
    deployed = [sys.executable, "-m", "ulm.bench.deploy", "run", "--as-of", as_of, "--out"]
    # Orchestration overhead (D45): the same work three ways on the same data and day - one process without Airflow
    # (ingest, Gate 1, erase, `ulm build`), the
    # in-process DAG (`ulm run --no-ml`) and the real deployment (PostgreSQL metadata, Redis, Celery worker, MLflow
    # server on free loopback ports, triggered through the REST API, ulm_ml paused). Measured side by side - the
    # three first runs (each from empty audit schemas: a full build), then the three reruns of the day (incremental)
    # - so that the load of this shared machine drifts as little as possible between a run and its reference.
    stages += [("Airflow one-time setup (metadata DB, dbt manifest)", [sys.executable, "-c", setup], None),
               (DEPLOY_UP, ulm + ["deploy", "up"], None),
               ("reset the audit schemas before the run without Airflow", reset, None),
               (BUILD_FULL, same + [str(work / "same_work_1.json")], "json"),
               ("reset the audit schemas before the in-process DAG", reset, None),
               (DAG_FULL, run + [str(work / "dag_run_1.json")], "dag"),
               ("reset the audit schemas before the deployed DAG", reset, None),
               (DEPLOY_FULL, deployed + [str(work / "deploy_run_1.json")], "json"),
               (BUILD_INC, same + [str(work / "same_work_2.json")], "json"),
               (DAG_INC, run + [str(work / "dag_run_2.json")], "dag"),
               (DEPLOY_INC, deployed + [str(work / "deploy_run_2.json")], "json"),
               (DEPLOY_DOWN, ulm + ["deploy", "down"], None),
               # the last publish wrote the serving snapshot the dashboard reads
               (DASHBOARD, [sys.executable, "-c", "import json, sys; from pathlib import Path; "
                            "from ulm.dashboard.bench import page_times; "
                            "Path(sys.argv[2]).write_text(json.dumps(page_times(Path(sys.argv[1]))))",
                            str(work / "serving" / "serving.duckdb"), str(work / "dashboard_pages.json")], "json"),
               (ML_TRAIN, ulm + ["train", "--as-of", as_of], None),
               ("score all persons", ulm + ["score", "--as-of", as_of], None)]
    return stages + _erase_stages(work, landing, ulm)


def _erase_stages(work: Path, landing: Path, ulm: list[str]) -> list[tuple[str, list[str], str | None]]:
    # erasure at demo scale: 100 requests for accounts spread over the warehouse, landed as a file like any other
    requests = landing / "erasure_requests" / f"erasure_requests_bench_{END_DATE:%Y%m%d}.parquet"
    land = ("import duckdb, datetime, pathlib, pyarrow as pa, pyarrow.parquet as pq; "
            f"pathlib.Path({str(requests.parent)!r}).mkdir(parents=True, exist_ok=True); "
            f"con = duckdb.connect({str(work / 'warehouse.duckdb')!r}, read_only=True); "
            f"ids = [r[0] for r in con.execute('select user_id from raw.users group by user_id "
            f"order by hash(user_id) limit {ERASE_REQUESTS}').fetchall()]; con.close(); "
            "pq.write_table(pa.table({'request_id': [f'bench-{i}' for i in range(len(ids))], 'user_id': ids, "
            "'requested_at': [datetime.datetime(2025, 12, 31, 1)] * len(ids)}), " + repr(str(requests)) + ")")
    return [(f"land {ERASE_REQUESTS} erasure requests", [sys.executable, "-c", land], None),
            ("ingest the requests", ulm + ["ingest", str(landing)], None),
            (ERASE, ulm + ["erase"], None)]


def engine_stage(target: str, what: str) -> str:
    return f"{target}: dbt build ({what})"


def _engine_stages(work: Path, ulm: list[str]) -> list[tuple[str, list[str], str | None]]:
    """Generate and ingest ~2M events once (DuckDB validates and loads on every target), then per target: the raw
    copy to it, a full developer build as of the day before the last, and the next day incremental (as-of moved by a
    day, nothing new loaded: the same for each engine)."""
    s = SCALES["engines"]
    landing = work / "landing"
    as_of, day_before = END_DATE.isoformat(), (END_DATE - timedelta(days=1)).isoformat()
    stages = [("generate", ulm + ["generate", "--out", str(landing), "--persons", str(s["persons"]),
                                  "--days", str(s["days"]), "--end-date", as_of], None),
              ("ingest (all days, DuckDB)", ulm + ["ingest", str(landing)], None)]
    for target in s["engines"]:
        if target != "duckdb":
            stages.append((f"{target}: copy raw", ulm + ["ingest", str(landing), "--target", target], None))
        stages += [(engine_stage(target, "full"), ulm + ["build", "--dev", "--target", target, "--as-of",
                                                         day_before, "--full-refresh"], "dbt"),
                   (engine_stage(target, "incremental day"), ulm + ["build", "--dev", "--target", target,
                                                                    "--as-of", as_of], "dbt")]
    return stages


# --------------------------------------------------------------------------- ingest: the plain-DuckDB yardstick

INGEST_FIRST = "ingest (first load: all but the last day)"
INGEST_DAILY = "ingest (one daily load)"
INGEST_REF = "ingest reference: plain DuckDB, same checks, same files (first load)"


def _ref_value(src: str, src_type: str) -> str:
    """A source value with empty text as NULL (typed Parquet columns are used as they are)."""
    return f"NULLIF({src}, '')" if src_type == "VARCHAR" else src


def _ref_typed(col, v: str, src_type: str) -> str:
    """Hand-written parse of one (normalized) source value to its contract type; NULL when it does not parse."""
    from ulm.core.contract import DUCKDB_TYPES

    target = DUCKDB_TYPES[col.type]
    if src_type == target:
        return v
    if col.type == "timestamp":
        return f"CAST(timezone('UTC', TRY_CAST({v} AS TIMESTAMPTZ)) AS TIMESTAMP)"
    if col.type == "json":
        return f"CASE WHEN json_valid({v}) THEN {v} END"
    return f"TRY_CAST({v} AS {target})"


def reference_ingest(landing_dir: Path, warehouse: Path, until: date | None = None) -> dict:
    """What a plain DuckDB load of the same landing files with the same checks costs: per table one
    ``read_parquet`` over the file list (``union_by_name``), parse + first failing reason code (required, type,
    enum, timestamp window, ranges, amount bound, row rules, unknown account) + the original row as JSON for the
    rows that fail, duplicate keys (identical vs conflicting, the first row in file order stays: a window over the
    keys that repeat), then accepted rows (with their source file), quarantine and a per-file reconciliation, all
    in one transaction. No registry, orphans, versions, suppression or per-file invalid ratio: the yardstick for
    ``ulm ingest``. Returns ``{"seconds", "events", "rows", "files"}`` (seconds measured inside the process)."""
    import duckdb

    from ulm.core import contract
    from ulm.core.settings import param
    from ulm.ingest.loader import discover, table_order

    files, _ = discover(Path(landing_dir), until)
    t0 = time.perf_counter()
    con = duckdb.connect(str(warehouse))
    con.execute("SET TimeZone = 'UTC'")
    lo = str(param("min_valid_timestamp"))
    hi = f"now()::TIMESTAMP + INTERVAL {float(param('future_tolerance_hours'))} HOUR"
    counts = {}
    con.execute("BEGIN")
    con.execute("CREATE TABLE ref_quarantine (table_name VARCHAR, source_file VARCHAR, row_number BIGINT, "
                "reason_code VARCHAR, original_row VARCHAR)")
    con.execute("CREATE TABLE ref_audit (table_name VARCHAR, source_file VARCHAR, rows_read BIGINT, "
                "rows_accepted BIGINT, rows_quarantined BIGINT, rows_duplicate BIGINT)")
    if not any(f.table == "users" for f in files):  # the foreign-key checks still need the table
        con.execute("CREATE TABLE ref_users (user_id VARCHAR)")
    for name in table_order():
        paths = [str(f.path) for f in files if f.table == name and f.format == "parquet"]
        if not paths:
            continue
        t = contract.TABLES[name]
        have = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
                                f"read_parquet({paths!r}, union_by_name=true))").fetchall())
        v = {c.name: f'"v_{c.name}"' for c in t.columns}
        src = {c: f'"s_{c}"' for c in have}  # the file's columns, as read
        norm = ", ".join(f'{_ref_value(src[c.name], have[c.name]) if c.name in have else "NULL"} AS {v[c.name]}'
                         for c in t.columns)
        typed = ", ".join(f'{_ref_typed(c, v[c.name], have.get(c.name, "VARCHAR"))} AS "{c.name}"' for c in t.columns)
        whens = [f"WHEN {v[c.name]} IS NULL THEN 'missing_required'" for c in t.columns if c.required]
        whens += [f'WHEN {v[c.name]} IS NOT NULL AND "{c.name}" IS NULL THEN \'bad_type\'' for c in t.columns]
        whens += [f'WHEN "{c.name}" NOT IN ({", ".join(repr(e) for e in c.enum)}) THEN \'unknown_enum\''
                  for c in t.columns if c.enum]
        whens += [f'WHEN "{c.name}" < \'{lo}\' THEN \'timestamp_too_old\'' for c in t.columns
                  if c.type in ("timestamp", "date")]
        whens += [f'WHEN "{c.name}" > {hi} THEN \'timestamp_in_future\'' for c in t.columns
                  if c.type in ("timestamp", "date")]
        whens += [f'WHEN "{c.name}" < {c.min_value} OR "{c.name}" > {c.max_value if c.max_value is not None else "NULL"}'
                  f" THEN 'out_of_range'" for c in t.columns if c.min_value is not None or c.max_value is not None]
        whens += [f'WHEN "{c.name}" > {float(param(c.max_param))} THEN \'amount_out_of_range\''
                  for c in t.columns if c.max_param]
        whens += [f"WHEN NOT ({rule}) THEN 'constraint'" for tbl, _code, rule in contract.ROW_RULES if tbl == name]
        whens += [f'WHEN "{col}" IS NOT NULL AND "{col}" NOT IN (SELECT user_id FROM ref_users) '
                  f"THEN 'unknown_account'" for col in t.foreign_keys]
        key = ", ".join(f'"{k}"' for k in t.key)
        cols = ", ".join(f'"{c}"' for c in t.column_names)
        orig = ", ".join(f'"{c}" := {src[c]}' for c in have)
        reads = ", ".join(f'"{c}" AS {src[c]}' for c in have)
        con.execute(f"""
            CREATE TEMP TABLE s AS
            WITH p AS (
              SELECT CAST(file_index AS BIGINT) AS fi, file_row_number AS rn, {reads}
              FROM read_parquet({paths!r}, union_by_name=true)
            ), r AS (
              SELECT *, CASE {" ".join(whens)} END AS reason FROM (SELECT n.*, {typed} FROM (SELECT *, {norm} FROM p) n)
            )
            SELECT fi, rn, {cols}, reason,
                   CASE WHEN reason IS NOT NULL THEN CAST(to_json(struct_pack({orig})) AS VARCHAR) END AS original_row
            FROM r""")
        # duplicate keys among rows that would load: the first in file order stays, identical copies are
        # duplicates, different content is a conflict (the window runs over the keys whose hash repeats only)
        cand = "(reason IS NULL OR reason = 'unknown_account')"
        con.execute(f"""
            CREATE TEMP TABLE d AS
            SELECT fi, rn, CASE WHEN hash({cols}) = first_value(hash({cols})) OVER w THEN 'duplicate'
                                ELSE 'duplicate_key_conflict' END AS dup, row_number() OVER w AS n
            FROM s WHERE {cand} AND hash({key}) IN (SELECT hash({key}) FROM s WHERE {cand} GROUP BY ALL
                                                    HAVING count(*) > 1)
            WINDOW w AS (PARTITION BY {key} ORDER BY fi, rn)""")
        con.execute("UPDATE s SET reason = d.dup FROM d WHERE d.n > 1 AND s.fi = d.fi AND s.rn = d.rn")
        con.execute("DROP TABLE d")
        file_name = f"{paths!r}[fi + 1]"
        con.execute(f"CREATE TABLE ref_{name} AS SELECT {cols}, {file_name} AS _source_file FROM s "
                    f"WHERE reason IS NULL")
        con.execute(f"""INSERT INTO ref_quarantine SELECT '{name}', {file_name}, rn, reason,
                        coalesce(original_row, CAST(to_json(struct_pack({cols})) AS VARCHAR))
                        FROM s WHERE reason <> 'duplicate'""")
        con.execute(f"""INSERT INTO ref_audit SELECT '{name}', {file_name}, count(*), count(*) FILTER (reason IS NULL),
                        count(*) FILTER (reason <> 'duplicate'), count(*) FILTER (reason = 'duplicate')
                        FROM s GROUP BY fi""")
        counts[name] = con.execute("SELECT count(*) FROM s").fetchone()[0]
        con.execute("DROP TABLE s")
    con.execute("COMMIT")
    con.close()
    return {"seconds": round(time.perf_counter() - t0, 3), "events": counts.get("events", 0),
            "rows": sum(counts.values()), "files": len([f for f in files if f.format == "parquet"])}


# One in-process ingest, timed inside the process (the stage's wall time adds interpreter start and imports);
# argv: landing, warehouse, until ('' = all), JSON out
_INGEST_SCRIPT = (
    "import json, sys, time; from datetime import date; from pathlib import Path; "
    "from ulm.ingest import ingest_dir; t = time.perf_counter(); "
    "s = ingest_dir(Path(sys.argv[1]), Path(sys.argv[2]), until=date.fromisoformat(sys.argv[3]) if sys.argv[3] "
    "else None, progress=False); sec = time.perf_counter() - t; tb = s['tables']; "
    "Path(sys.argv[4]).write_text(json.dumps({'ingest_s': round(sec, 3), 'events': tb['events']['rows_read'], "
    "'files': sum(v['files'] for v in tb.values()), 'rows': sum(v['rows_read'] for v in tb.values())}))")
# the plain-DuckDB reference on the same files, into its own warehouse (removed afterwards)
_REFERENCE_SCRIPT = (
    "import json, sys; from datetime import date; from pathlib import Path; "
    "from ulm.bench import reference_ingest; wh = Path(sys.argv[2]); "
    "r = reference_ingest(Path(sys.argv[1]), wh, until=date.fromisoformat(sys.argv[3])); wh.unlink(); "
    "Path(sys.argv[4]).write_text(json.dumps({'ingest_s': r['seconds'], 'events': r['events'], "
    "'files': r['files'], 'rows': r['rows']}))")


def _ingest_stages(work: Path, landing: Path, day_before: str) -> list[tuple[str, list[str], str | None]]:
    """First load (every day but the last: one daily file per table and day), the plain-DuckDB reference on the
    same files, then the last day as a daily load: each reports in-process seconds, events and files."""
    py = [sys.executable, "-c"]
    wh = str(work / "warehouse.duckdb")
    return [
        (INGEST_REF, py + [_REFERENCE_SCRIPT, str(landing), str(work / "reference.duckdb"), day_before,
                           str(work / "ingest_reference.json")], "json"),
        (INGEST_FIRST, py + [_INGEST_SCRIPT, str(landing), wh, day_before, str(work / "ingest_first.json")], "json"),
        (INGEST_DAILY, py + [_INGEST_SCRIPT, str(landing), wh, "", str(work / "ingest_daily.json")], "json"),
    ]


def dbt_breakdown(run_results: Path, slowest: int = 5) -> dict:
    """Where a dbt invocation spent its time: dbt's own elapsed, summed model and test seconds, slowest models."""
    if not run_results.exists():
        return {}
    rr = json.loads(run_results.read_text())
    models = [(r["unique_id"].split(".")[-1], r["execution_time"]) for r in rr["results"]
              if r["unique_id"].startswith("model.")]
    tests = [r["execution_time"] for r in rr["results"] if not r["unique_id"].startswith("model.")]
    return {"dbt_elapsed_s": round(rr["elapsed_time"], 1), "model_s": round(sum(t for _, t in models), 1),
            "test_s": round(sum(tests), 1), "n_tests": len(tests),
            "slowest_models": [[name, round(t, 1)] for name, t in sorted(models, key=lambda m: -m[1])[:slowest]]}


def dag_breakdown(report: Path) -> dict:
    """Seconds of the DAG run and of its dbt part from `ulm run --report`: the group (the one `dbt_build` task, or
    Cosmos' producer + watcher sensors) and the task that ran dbt (`dbt_build` or the producer)."""
    if not report.exists():
        return {}
    dag = json.loads(report.read_text())["dags"].get("ulm_daily", {})
    secs = dag.get("task_seconds", {})
    dbt = sum(v for k, v in secs.items() if k.startswith("dbt_audit."))
    producer = sum(v for k, v in secs.items() if k.endswith(("dbt_producer_watcher", ".dbt_build")))
    gates = sum(v for k, v in secs.items() if k.startswith("gate"))
    return {"dag_s": dag.get("seconds"), "dbt_group_s": round(dbt, 1), "dbt_producer_s": round(producer, 1),
            "gates_s": round(gates, 1), "tasks": len(secs)}


def _ml_stages(work: Path, ulm: list[str]) -> list[tuple[str, list[str], str | None]]:
    s = SCALES["ml"]
    as_of = END_DATE.isoformat()
    py = [sys.executable, "-m", "ulm.bench.ml"]
    train_wh, score_wh = work / "ml_train.duckdb", work / "ml_score.duckdb"
    synth = py + ["synth", "--days", str(s["days"]), "--end", as_of, "--warehouse"]
    return [
        (f"synthetic interface tables, {s['train_persons']:,} persons",
         synth + [str(train_wh), "--persons", str(s["train_persons"])], None),
        (ML_TRAIN, ulm + ["--warehouse", str(train_wh), "train", "--as-of", as_of], None),
        (f"synthetic interface tables, {s['score_persons']:,} persons registered over {s['score_days']} days",
         py + ["synth", "--days", str(s["score_days"]), "--end", as_of, "--warehouse", str(score_wh), "--persons",
               str(s["score_persons"]), "--snapshots-from", str(train_wh)], None),
        (ML_SCORE_1M, ulm + ["--warehouse", str(score_wh), "score", "--as-of", as_of], f"scores:{score_wh}"),
        (ML_BGNBD, py + ["bgnbd-scaling", "--warehouse", str(score_wh), "--sizes",
                         ",".join(str(n) for n in s["bgnbd_sizes"]), "--out", str(work / "bgnbd.json")], "json"),
    ]


def _count_scores(warehouse: Path, day: date) -> int:
    with connect_read_only(warehouse) as con:
        return con.execute("select count(*) from ml.scores where score_date = ?", [day]).fetchone()[0]


def _count_rows(warehouse: Path) -> dict:
    import duckdb

    if not warehouse.exists():
        return {}
    con = connect_read_only(warehouse)
    try:
        out = {}
        for t in ("users", "events", "orders"):
            try:
                out[t] = con.execute(f"select count(*) from raw.{t}").fetchone()[0]
            except duckdb.Error:
                pass
        return out
    finally:
        con.close()


def run_bench(scale: str = "all", out_md: Path | None = None, only: str | None = None,
              workdir: Path | None = None) -> dict:
    """Run the stages of each scale and write the report.

    ``only``: run just the stages whose name starts with this text, or with one of several comma-separated ones
    (e.g. ``Airflow,reset,no Airflow``: the orchestration-overhead group), in ``workdir``, a work
    directory kept from an earlier run (``ULM_BENCH_KEEP=1``), and merge them into the existing report: a stage
    group is re-measured after a change without regenerating and reloading the data.
    """
    out_md = out_md or project_root() / "docs" / "BENCHMARKS.md"
    scales = [k for k in SCALES if k not in NOT_IN_ALL] if scale == "all" else [scale]
    if only and (workdir is None or len(scales) != 1):
        raise UlmError("bench --only needs one --scale and the --workdir of an earlier run of that scale")
    ulm = [sys.executable, "-m", "ulm.cli"]
    results: list[StageResult] = []
    counts: dict[str, dict] = {}
    for sc in scales:
        work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"ulm-bench-{sc}-"))
        env = dict(os.environ, ULM_WAREHOUSE=str(work / "warehouse.duckdb"), ULM_DATA_DIR=str(work),
                   ULM_PII_KEY=_settings.pii_key() or "benchmark-only-key", **_deploy_env())
        log_file = work / "bench.log"
        cluster = None
        try:
            if "postgres" in SCALES[sc].get("engines", ()):  # a private PostgreSQL for the postgres target
                from ulm.warehouse import postgres

                cluster = postgres.LocalCluster(work / "postgres")
                env.update(cluster.start().env())
            prefixes = tuple(x.strip() for x in only.split(",") if x.strip()) if only else ()
            stages = [st for st in _stages(sc, work, ulm) if not prefixes or st[0].startswith(prefixes)]
            if not stages:
                raise UlmError(f"bench: no stage of scale {sc} starts with {only!r}")
            for stage, cmd, after in stages:
                res = measure(cmd, env, sc, stage, log_file)
                results.append(res)
                if not res.ok:
                    break
                if after == "dbt":
                    res.extra.update(dbt_breakdown(work / "warehouse_dbt" / "target" / "run_results.json"))
                elif after == "dag":
                    res.extra.update(dag_breakdown(Path(cmd[-1])))
                elif after and after.startswith("scores:"):
                    res.extra["persons_scored"] = _count_scores(Path(after.split(":", 1)[1]), END_DATE)
                elif after == "json":
                    res.extra.update(json.loads(Path(cmd[-1]).read_text()))
                    # a deployed run's tasks run under the Celery worker, not under the measured process
                    res.peak_rss_mb = max(res.peak_rss_mb, res.extra.get("worker_peak_rss_mb", 0))
            counts[sc] = _count_rows(work / "warehouse.duckdb")
            ratio = reference_ratio([asdict(r) for r in results], sc)
            for r in results:
                if ratio and r.scale == sc and r.stage == REF_SQL:
                    r.extra.update(dbt_full_s=ratio["dbt_s"], dbt_over_reference=round(ratio["ratio"], 3))
            for r in results:
                if r.scale == sc and counts[sc].get("events"):
                    if r.stage == "generate":
                        r.extra["events_per_s"] = round(counts[sc]["events"] / max(r.seconds, 1e-9))
                    elif r.extra.get("ingest_s") and r.extra.get("events"):  # in-process time of the load
                        r.extra["events_per_s"] = round(r.extra["events"] / r.extra["ingest_s"])
        finally:
            if cluster is not None:
                cluster.stop()
            if (work / "deploy" / "run").exists():  # never leave a deployment running behind a failed stage
                subprocess.run(ulm + ["deploy", "down"], env=env, cwd=project_root(), capture_output=True)
            if not _settings.settings().bench_keep and workdir is None:
                shutil.rmtree(work, ignore_errors=True)
    report = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "row_counts": counts,
        "results": [asdict(r) for r in results],
    }
    previous = out_md.with_suffix(".json")
    if only:
        report = merge_reports(json.loads(previous.read_text()), report)
    elif scale != "all" and previous.exists():  # one scale re-measured: the other scales' results stay
        report = replace_scales(json.loads(previous.read_text()), report)
    write_report(report, out_md)
    return report


def _deploy_env() -> dict[str, str]:
    """Free loopback ports for the benchmark's deployment (never a developer's deployment on the default ports)
    and a manual schedule."""
    import socket

    socks = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        ports = [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
    names = ("ULM_DEPLOY_PG_PORT", "ULM_DEPLOY_REDIS_PORT", "ULM_DEPLOY_AIRFLOW_PORT", "ULM_DEPLOY_MLFLOW_PORT")
    # manual schedule: unpausing a daily DAG would first run the latest interval (wall-clock day) ahead of ours
    return {name: str(port) for name, port in zip(names, ports)} | {"ULM_DEPLOY_HOST": "127.0.0.1",
                                                                     "ULM_DAG_SCHEDULE": "manual"}


def replace_scales(old: dict, new: dict) -> dict:
    """``old`` with every result of the scales measured in ``new`` replaced by ``new``'s (stages renamed or dropped
    since go too); the other scales keep their results, and ``updated`` says what was measured when."""
    scales = {r["scale"] for r in new["results"]}
    results = [r for r in old.get("results", []) if r["scale"] not in scales] + new["results"]
    counts = {**old.get("row_counts", {}), **new.get("row_counts", {})}
    # an earlier re-measure of only these scales is superseded by this one: its results are gone
    kept = [u for u in old.get("updated", []) if not set(u["scale"].split(", ")) <= scales]
    updated = kept + [{"at": new["generated_at"], "scale": ", ".join(sorted(scales)),
                       "stages": sorted({r["stage"] for r in new["results"]})}]
    return {**old, "machine": new.get("machine", old.get("machine")), "results": results, "row_counts": counts,
            "updated": updated}


def merge_reports(old: dict, new: dict) -> dict:
    """``old`` with every (scale, stage) result of ``new`` replaced (or appended), in the old order."""
    fresh = {(r["scale"], r["stage"]): r for r in new["results"]}
    results = [fresh.pop((r["scale"], r["stage"]), r) for r in old["results"]] + list(fresh.values())
    updated = sorted({r["scale"] for r in new["results"]})
    return {**old, "results": results, "updated": old.get("updated", []) + [
        {"at": new["generated_at"], "scale": ", ".join(updated), "stages": sorted({r["stage"] for r in new["results"]})}]}


def write_report(report: dict, out_md: Path) -> None:
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.with_suffix(".json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    m = report["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `ulm bench` (`make bench`); do not edit by hand. Each stage is a separate `ulm` process;",
        "peak memory is the peak resident set of its whole process tree, sampled every 100 ms.",
        "",
        f"- measured: {report['generated_at']}",
        *[f"- re-measured {u['at']} ({u['scale']}): {', '.join(u['stages'])}" for u in report.get("updated", [])],
        f"- machine: {m['cpus']} cores ({m['cpu_model']}), {m['memory_gb']} GB RAM, Python {m['python']}, "
        f"{m['platform']}",
        "",
    ]
    for sc, c in report["row_counts"].items():
        if c:
            lines.append(f"- scale `{sc}`: " + ", ".join(f"{k} {v:,}" for k, v in c.items()))
    lines += ["", "| scale | stage | seconds | peak RSS (MB) | throughput | ok |", "|---|---|---:|---:|---|---|"]
    for r in report["results"]:
        thr = ", ".join(f"{k} {v:,}" for k, v in r.get("extra", {}).items() if k in ("events_per_s", "persons_scored"))
        lines.append(f"| {r['scale']} | {r['stage']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {thr} | "
                     f"{'yes' if r['ok'] else 'NO: ' + r['detail']} |")
    lines += ["", "## Goals (from the issues) vs measured", ""] + goal_lines(report["results"])
    chart = growth_chart(report, out_md.parent / GROWTH_PNG)
    if chart:
        lines += ["", "## Growth: seconds vs events, per stage", "",
                  f"Log-log, one line per stage over the scales {', '.join(chart)} (same stages, the events of each "
                  "scale's warehouse; the builds are developer builds at small and 10m, `ulm build` with gates and "
                  "publish at 30m and 100m). A slope of 1 is linear growth; a flat line is a fixed cost.", "",
                  f"![seconds vs events per stage]({GROWTH_PNG})"]
    lines += detail_lines(report["results"])
    out_md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("benchmark report written to %s", out_md)


GROWTH_PNG = "benchmarks_growth.png"
GROWTH_SCALES = ("small", "10m", "30m", "100m")
# (label, stage or (stage at small/10m, stage at 30m/100m)): what grows with the data; the full build is the one of
# every day but the last (a developer build at small and 10m, `ulm build` with gates and publish at 30m and 100m)
GROWTH_FULL = (DBT_FULL_BEFORE, BIG_FULL)
GROWTH_STAGES = (("generate", "generate"), ("first ingest", INGEST_FIRST), ("daily ingest", INGEST_DAILY),
                 ("full build", GROWTH_FULL), ("incremental day", (DBT_INC, BIG_INC)),
                 ("SQL reference", REF_SQL), ("train", ML_TRAIN), ("score", "score all persons"), ("erase 100", ERASE))


def growth_chart(report: dict, png: Path) -> list[str]:
    """A log-log chart of wall seconds vs events per stage over the scales measured (at least two); returns the
    scales drawn (none: no chart written)."""
    by = _by(report["results"])
    events = {sc: report.get("row_counts", {}).get(sc, {}).get("events") for sc in GROWTH_SCALES}

    def key(sc: str, stage) -> tuple[str, str]:
        return (sc, stage if isinstance(stage, str) else stage[SCALES.get(sc, {}).get("big", False)])

    scales = [sc for sc in GROWTH_SCALES if events.get(sc) and any(key(sc, st) in by for _, st in GROWTH_STAGES)]
    if len(scales) < 2:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for label, stage in GROWTH_STAGES:
        pts = [(events[sc], by[key(sc, stage)]["seconds"]) for sc in scales if key(sc, stage) in by]
        if len(pts) >= 2:
            ax.plot(*zip(*pts), marker="o", label=label)
    full = [(events[sc], by[key(sc, GROWTH_FULL)]["seconds"]) for sc in scales if key(sc, GROWTH_FULL) in by]
    if full:  # what linear growth from the smallest full build would look like
        (x0, y0), x1 = full[0], events[scales[-1]]
        ax.plot([x0, x1], [y0, y0 * x1 / x0], linestyle="--", color="grey", linewidth=1,
                label="linear from the first full build")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events in the warehouse")
    ax.set_ylabel("wall seconds (log)")
    ax.set_title("ulm bench: seconds vs events per stage (" + ", ".join(scales) + ")")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return scales


def goal_lines(results: list[dict]) -> list[str]:
    """Each stated goal with the measured value and whether it is met."""
    by = _by(results)
    out = ["| goal | measured | met |", "|---|---|---|"]

    def row(goal: str, measured: str, met: bool) -> None:
        out.append(f"| {goal} | {measured} | {'yes' if met else '**no**'} |")

    full = by.get(("10m", DBT_FULL))
    inc = by.get(("10m", DBT_INC))
    gen = by.get(("10m", "generate"))
    if gen:
        row("generate 10M events in about a minute", f"{gen['seconds']:.0f} s", gen["seconds"] <= 90)
    if full:
        row("full dbt build at 10M events < 120 s", f"{full['seconds']:.0f} s", full["seconds"] < 120)
        row("full dbt build at 10M events peak memory < 6 GB", f"{full['peak_rss_mb'] / 1024:.1f} GB",
            full["peak_rss_mb"] < 6144)
    if full and inc:
        share = inc["seconds"] / full["seconds"]
        row("one incremental day < 15% of the full build", f"{share:.0%}", share < 0.15)
        floor, floor_full = by.get(("tiny", DBT_INC)), by.get(("tiny", DBT_FULL))
        if floor:
            out.append(f"| (context: the same incremental build on 300 persons x 30 days takes {floor['seconds']:.0f} s = "
                       f"{floor['seconds'] / full['seconds']:.0%} of the 10M full build: the per-invocation and per-node "
                       f"floor) | | |")
        if floor and floor_full and full["seconds"] > floor_full["seconds"]:
            above = (inc["seconds"] - floor["seconds"]) / (full["seconds"] - floor_full["seconds"])
            out.append(f"| (context: data-dependent work of the incremental day above that floor, vs the full build's: "
                       f"{max(above, 0):.0%}) | | |")
    for scale in dict.fromkeys(r["scale"] for r in results):
        rr = reference_ratio(results, scale)
        if not rr:
            continue
        measured = f"{rr['ratio']:.2f}x ({rr['dbt_s']:.0f} s vs {rr['ref_s']:.0f} s)"
        if SCALES.get(scale, {}).get("big"):  # D90: the build measured there is `ulm build`, gates and publish too
            measured += "; the build side is `ulm build`, with gates and publish"
        if scale in ("10m", "30m"):
            row(f"full dbt build <= {REF_GOAL}x the hand-written SQL reference of the core marts ({scale})", measured,
                rr["ratio"] <= REF_GOAL)
        else:
            out.append(f"| (context: full dbt build / hand-written SQL reference at scale {scale}: {measured}; "
                       f"the goal applies at 10m and 30m) | | |")
    big_goal_lines(by, out, row)
    dash = by.get(("10m", DASHBOARD)) or by.get(("small", DASHBOARD))
    if dash:
        pages = {k: v for k, v in dash.get("extra", {}).items() if isinstance(v, dict) and "warm" in v}
        if pages:
            warm = max(v["warm"] for v in pages.values())
            cold = max(v["cold"] for v in pages.values())
            row(f"every dashboard page <= 2 s with query caching ({dash['scale']}; slowest cold page {cold:.2f} s)",
                f"{warm:.2f} s", warm <= 2)
    er = by.get(("small", ERASE))
    if er:
        row(f"{ERASE_REQUESTS} erasure requests <= 10 s at demo scale (20k persons), whole command",
            f"{er['seconds']:.1f} s", er["seconds"] <= 10)
    tr = by.get(("ml", ML_TRAIN))
    if tr:
        row("training both models on 200k persons < 5 min", f"{tr['seconds']:.0f} s", tr["seconds"] < 300)
    sc = by.get(("ml", ML_SCORE_1M))
    if sc:
        n = sc.get("extra", {}).get("persons_scored", 0)
        row("scoring 1M persons < 60 s", f"{sc['seconds']:.0f} s for {n:,} persons", sc["seconds"] < 60 and n >= 10**6)
    for scale in ("small", "10m"):
        ing = ingest_summary(results, scale)
        if ing.get("first"):
            first = ing["first"]
            row(f"first ingest ({scale}: {first['files']:,} files, {first['events']:,} events) >= 1M events/s",
                f"{first['events_per_s']:,} events/s", first["events_per_s"] >= 1_000_000)
        if ing.get("first") and ing.get("reference"):
            share = ing["reference"]["ingest_s"] / ing["first"]["ingest_s"]
            row(f"first ingest >= 0.3x the speed of a plain DuckDB load with the same checks ({scale})",
                f"{share:.2f}x (ULM {ing['first']['ingest_s']:.1f} s, reference {ing['reference']['ingest_s']:.1f} s; "
                f"ULM / reference {1 / share:.2f})", share >= 0.3)
        if ing.get("daily"):
            daily = ing["daily"]
            row(f"daily load fixed cost <= 2 s ({scale}: {daily['files']} files, {daily['rows']:,} rows)",
                f"{daily['ingest_s']:.2f} s in the process ({daily['wall_s']:.1f} s wall with interpreter start)",
                daily["ingest_s"] <= 2)
    for scale in ("small", "10m"):
        for d in dag_ratio(results, scale):
            alone = f"; {d['seconds'] / d['dbt_s']:.2f}x the dbt build alone" if d["dbt_s"] else ""
            if d["build_s"]:
                ratio = d["seconds"] / d["build_s"]
                row(f"{d['runner']} wall time <= {d['goal']}x the same work without Airflow "
                    f"({scale}, {d['label']})",
                    f"{ratio:.2f}x ({d['seconds']:.0f} s vs {d['build_s']:.0f} s{alone})", ratio <= d["goal"])
            elif d["dbt_s"]:
                out.append(f"| (context: {d['runner']} ({scale}, {d['label']}) {d['seconds'] / d['dbt_s']:.2f}x the "
                           f"dbt build alone; the same work without Airflow not measured in that run) | | |")
    return out


BIG_GOALS = {"full_s": 600, "inc_share": 0.10, "rss_mb": 16 * 1024, "train_s": 600, "score_s": 30}


def big_goal_lines(by: dict[tuple[str, str], dict], out: list[str], row: Callable[[str, str, bool], None]) -> None:
    """Issue #14's goals at ~100M events (1M persons x 365 days), through goal_lines' ``row`` (context lines go to
    ``out``): full build <= 10 min, one incremental day <= 10% of it, peak RSS <= 16 GB in every ULM stage (the two
    plain-DuckDB yardsticks aside), training <= 10 min, scoring <= 30 s; BG/NBD + Gamma-Gamma on 1M persons from the
    `ml` scale's fit-time table."""
    g = BIG_GOALS
    full = by.get(("100m", BIG_FULL))
    inc = by.get(("100m", BIG_INC))
    if full:
        row("full build at 100M events <= 10 min (`ulm build`: dbt, gates, publish)", f"{full['seconds'] / 60:.1f} min",
            full["seconds"] <= g["full_s"])
    if full and inc:
        share = inc["seconds"] / full["seconds"]
        row("one incremental day <= 10% of the full build (100m)", f"{share:.0%} ({inc['seconds']:.0f} s)",
            share <= g["inc_share"])
    stages = [r for (sc, st), r in by.items() if sc == "100m" and st not in (INGEST_REF, REF_SQL)]  # ULM's own
    if stages:
        top = max(stages, key=lambda r: r["peak_rss_mb"])
        row("peak RSS <= 16 GB in every stage (100m)", f"{top['peak_rss_mb'] / 1024:.1f} GB ({top['stage']})",
            top["peak_rss_mb"] <= g["rss_mb"])
    tr = by.get(("100m", ML_TRAIN))
    if tr:
        row("training churn + LTV at 100m <= 10 min, bounded memory (sampled to the training cap)",
            f"{tr['seconds'] / 60:.1f} min, {tr['peak_rss_mb'] / 1024:.1f} GB", tr["seconds"] <= g["train_s"])
    sc = by.get(("100m", "score all persons"))
    if sc:
        n = sc.get("extra", {}).get("persons_scored", 0)
        # the goal names 1M persons; the 100m warehouse's scoring population (analytics consent, active in the last
        # 90 days) is what it is, and most of a scoring run is fixed cost (MLflow, model loads), so no extrapolation
        row(f"scoring <= 30 s (100m: its scoring population, {n:,} persons; 1M synthetic persons: the ml scale)",
            f"{sc['seconds']:.0f} s", sc["seconds"] <= g["score_s"])
    er = by.get(("100m", ERASE))
    if er:
        out.append(f"| (context: {ERASE_REQUESTS} erasure requests at 100m: {er['seconds']:.0f} s, "
                   f"{er['peak_rss_mb'] / 1024:.1f} GB) | | |")
    bg = by.get(("ml", ML_BGNBD))
    fits = {f["persons"]: f for f in (bg or {}).get("extra", {}).get("sizes", [])}
    if 1_000_000 in fits:
        f = fits[1_000_000]
        total = f["bgnbd_seconds"] + f["gg_seconds"]
        row("BG/NBD + Gamma-Gamma on 1M persons <= 30 s (ml scale)", f"{total:.1f} s", total <= 30)


def reference_ratio(results: list[dict], scale: str) -> dict | None:
    """The full dbt build of a scale beside the SQL reference of the same run: wall seconds of both processes,
    ``ratio`` = dbt / reference; dbt's own elapsed time and the script's in-process seconds beside them."""
    by = _by(results)
    # 30m / 100m build in full once, as of the day before the reference's (D90)
    dbt, ref = by.get((scale, DBT_FULL)) or by.get((scale, BIG_FULL)), by.get((scale, REF_SQL))
    if not dbt or not ref or not ref["seconds"]:
        return None
    return {"dbt_s": dbt["seconds"], "ref_s": ref["seconds"], "ratio": dbt["seconds"] / ref["seconds"],
            "dbt_elapsed_s": dbt.get("extra", {}).get("dbt_elapsed_s"), "ref_sql_s": ref.get("extra", {}).get("sql_s"),
            "rows": ref.get("extra", {}).get("rows", {})}


def _by(results: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["scale"], r["stage"]): r for r in results if r["ok"]}


def ingest_summary(results: list[dict], scale: str) -> dict[str, dict]:
    """The ingest stages of a scale ("first", "daily", "reference"): in-process seconds, wall seconds, files,
    events, rows, events/s."""
    by = _by(results)
    out = {}
    for key, stage in (("first", INGEST_FIRST), ("daily", INGEST_DAILY), ("reference", INGEST_REF)):
        r = by.get((scale, stage))
        e = (r or {}).get("extra", {})
        if r and e.get("ingest_s"):
            out[key] = {"ingest_s": e["ingest_s"], "wall_s": r["seconds"], "files": e.get("files", 0),
                        "events": e.get("events", 0), "rows": e.get("rows", 0),
                        "events_per_s": round(e.get("events", 0) / e["ingest_s"])}
    return out


# (runner, first-run stage, rerun stage, goal: wall time <= goal x the same work without Airflow; issue #13)
RUNNERS = (("in-process DAG", DAG_FULL, DAG_INC, 1.5), ("deployed DAG", DEPLOY_FULL, DEPLOY_INC, 1.2))


def dag_ratio(results: list[dict], scale: str) -> list[dict]:
    """Each Airflow run of a scale beside its references: the same work in one process without Airflow (ingest,
    Gate 1, erase, ``ulm build``) and the dbt build alone (``ulm build --dev``). ``build_s``/``dbt_s`` are None when not
    measured."""
    by = _by(results)
    out = []
    for runner, full_stage, inc_stage, goal in RUNNERS:
        for stage, build_stage, dbt_stage, label in ((full_stage, BUILD_FULL, DBT_FULL, "full build"),
                                                     (inc_stage, BUILD_INC, DBT_INC, "incremental day")):
            run = by.get((scale, stage))
            if not run:
                continue
            build, dbt = by.get((scale, build_stage)), by.get((scale, dbt_stage))
            out.append({"runner": runner, "label": label, "stage": stage, "seconds": run["seconds"],
                        "build_s": build["seconds"] if build else None, "dbt_s": dbt["seconds"] if dbt else None,
                        "goal": goal, "extra": run.get("extra", {})})
    return out


def detail_lines(results: list[dict]) -> list[str]:
    """Where the dbt builds spend their time, the Airflow overhead, ingest vs its plain-DuckDB reference, the full
    dbt build vs the hand-written SQL reference, and BG/NBD fit time vs persons."""
    by = _by(results)
    out: list[str] = []
    dbt_rows = [r for r in results if r["ok"] and "dbt_elapsed_s" in r.get("extra", {})]
    if dbt_rows:
        out += ["", "## dbt builds: where the time goes", "",
                "Wall = the `ulm build` process (Python + dbt import, parse, adapter start, run, exit); dbt = dbt's "
                "own elapsed run time; model / test seconds are summed over nodes (2 threads run in parallel).", "",
                "| scale | build | wall s | dbt s | models s | tests s (n) | slowest five models (s) |",
                "|---|---|---:|---:|---:|---:|---|"]
        for r in dbt_rows:
            e = r["extra"]
            top = ", ".join(f"{n} {t:.1f}" for n, t in e["slowest_models"])
            out.append(f"| {r['scale']} | {r['stage'].removeprefix('dbt build ')} | {r['seconds']:.1f} | "
                       f"{e['dbt_elapsed_s']:.1f} | {e['model_s']:.1f} | {e['test_s']:.1f} ({e['n_tests']}) | {top} |")
    engines = [t for t in SCALES["engines"]["engines"] if (("engines", engine_stage(t, "full")) in by)]
    if engines:
        out += ["", "## Engines: the same project on DuckDB, PostgreSQL and Spark", "",
                "Scale `engines` (~2M events): one ingest into DuckDB, then per target the raw copy, a full developer "
                "build (`ulm build --dev --target T --full-refresh`) and the next day (as-of moved, nothing new "
                "loaded). Wall = the `ulm build` process; ratios against DuckDB in the same run. "
                "Which engine for which scale: docs/ORCHESTRATION.md#which-engine.", "",
                "| target | raw copy s | full build wall s | dbt s | incremental day wall s | dbt s | full / DuckDB | "
                "incremental / DuckDB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        def cell(r: dict | None, key: str = "seconds") -> str:
            v = (r or {}).get(key) if key == "seconds" else (r or {}).get("extra", {}).get(key)
            return f"{v:.1f}" if v is not None else ""

        def ratio(r: dict | None, b: dict | None) -> str:
            return f"{r['seconds'] / b['seconds']:.2f}x" if r and b and b["seconds"] else ""

        base = {w: by.get(("engines", engine_stage("duckdb", w))) for w in ("full", "incremental day")}
        for t in engines:
            full, inc = (by.get(("engines", engine_stage(t, w))) for w in ("full", "incremental day"))
            out.append(f"| {t} | {cell(by.get(('engines', f'{t}: copy raw')))} | {cell(full)} | "
                       f"{cell(full, 'dbt_elapsed_s')} | {cell(inc)} | {cell(inc, 'dbt_elapsed_s')} | "
                       f"{ratio(full, base['full'])} | {ratio(inc, base['incremental day'])} |")
    dag_scales = [sc for sc in dict.fromkeys(r["scale"] for r in results) if dag_ratio(results, sc)]
    if dag_scales:
        out += ["", "## Orchestration overhead: Airflow vs the same work without it", "",
                "In-process DAG = `ulm run --no-ml` (a child process runs `dag.test`: Airflow start, ingest of "
                "already-loaded files, Gate 1, the one dbt task (D32), Gates 2-3, publish, export). Deployed DAG = the "
                "same DAG in `ulm deploy` (PostgreSQL metadata, Redis, Celery worker), triggered through the REST API "
                "and timed from the trigger request to the run's end. References on the same data and day: the same "
                "work without Airflow (`python -m ulm.bench.deploy same-work`: ingest, Gate 1, erase, then `ulm build`'s "
                "dbt build into the audit schemas, Gates 2-3, publish and export, in one process) and the dbt build alone "
                "(`ulm build --dev`). Each runner's first run starts from empty audit schemas (a full build), its "
                "second reruns the day (incremental).",
                "The last column is the machine's 1-minute load average before and after the run (2 cores: above 2, "
                "other work competed).",
                "", "| scale | runner | run | wall s | dbt task s | gates s | no Airflow s | ratio | dbt alone s | "
                "ratio | load |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for sc in dag_scales:
            for d in dag_ratio(results, sc):
                e = d["extra"]
                b = f"{d['build_s']:.1f} | {d['seconds'] / d['build_s']:.2f}x" if d["build_s"] else " | "
                a = f"{d['dbt_s']:.1f} | {d['seconds'] / d['dbt_s']:.2f}x" if d["dbt_s"] else " | "
                load = "-".join(str(x) for x in e["load"]) if e.get("load") else ""
                out.append(f"| {sc} | {d['runner']} | {d['label']} | {d['seconds']:.1f} | "
                           f"{e.get('dbt_group_s', 0):.1f} | {e.get('gates_s', 0):.1f} | {b} | {a} | {load} |")
    ing_rows = [(sc, ingest_summary(results, sc)) for sc in dict.fromkeys(r["scale"] for r in results)]
    ing_rows = [(sc, i) for sc, i in ing_rows if i]
    if ing_rows:
        out += ["", "## Ingest: ULM vs a plain DuckDB load of the same files", "",
                "First load = every day but the last (one daily file per table and day), then that last day as a "
                "daily load. The reference reads the same files with one `read_parquet` per table and applies the same "
                "row checks (types, required, enums, timestamp window, ranges, row rules, unknown accounts, duplicate "
                "keys) in one transaction, without registry, orphans, versions, suppression or per-file audit. "
                "Seconds are measured inside each process (wall adds interpreter start and imports).", "",
                "| scale | load | files | rows | events | s (in process) | wall s | events/s | ULM / reference |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for sc, ing in ing_rows:
            for key, label in (("reference", "plain DuckDB reference"), ("first", "ULM first load"),
                               ("daily", "ULM daily load")):
                if key not in ing:
                    continue
                i = ing[key]
                ratio = (f"{i['ingest_s'] / ing['reference']['ingest_s']:.2f}"
                         if key == "first" and "reference" in ing else "")
                out.append(f"| {sc} | {label} | {i['files']:,} | {i['rows']:,} | {i['events']:,} | "
                           f"{i['ingest_s']:.2f} | {i['wall_s']:.1f} | {i['events_per_s']:,} | {ratio} |")
    refs = [(sc, rr) for sc in dict.fromkeys(r["scale"] for r in results) if (rr := reference_ratio(results, sc))]
    if refs:
        out += ["", "## Full dbt build vs a hand-written SQL reference", "",
                "The reference (`ulm/bench/reference.sql`, D79) computes the six core marts - persons (identity), "
                "person-day activity, lifecycle stage intervals, daily KPIs, AARRR funnel, RFM - from `raw` in one "
                "plain DuckDB script with the same exclusions (duplicates, erasure, as-of), in the same warehouse "
                "and run right after the full build; `tests/test_reference.py` checks that it agrees with the dbt "
                "marts. The dbt build does more (every mart, data tests, incremental bookkeeping): the ratio is what "
                "the whole dbt build costs per unit of the core work done by hand. Wall = each process as a whole; "
                "dbt s = dbt's own elapsed time; script s = the SQL alone, inside its process.", "",
                "| scale | dbt wall s | dbt s | reference wall s | script s | dbt / reference (wall) | "
                "ref rows (persons, person-days) |", "|---|---:|---:|---:|---:|---:|---|"]
        for sc, rr in refs:
            dbt_s = f"{rr['dbt_elapsed_s']:.1f}" if rr["dbt_elapsed_s"] is not None else ""
            sql_s = f"{rr['ref_sql_s']:.1f}" if rr["ref_sql_s"] is not None else ""
            rows = rr["rows"]
            out.append(f"| {sc} | {rr['dbt_s']:.1f} | {dbt_s} | {rr['ref_s']:.1f} | {sql_s} | {rr['ratio']:.2f}x | "
                       f"{rows.get('persons', 0):,}, {rows.get('person_activity_daily', 0):,} |")
    bg = by.get(("ml", ML_BGNBD))
    if bg and bg.get("extra", {}).get("sizes"):
        out += ["", "## BG/NBD and Gamma-Gamma fit time vs persons (pymc-marketing MAP, same code path as training)", "",
                "| persons | BG/NBD s | Gamma-Gamma s |", "|---:|---:|---:|"]
        for row in bg["extra"]["sizes"]:
            out.append(f"| {row['persons']:,} | {row['bgnbd_seconds']:.1f} | {row['gg_seconds']:.1f} |")
    return out
