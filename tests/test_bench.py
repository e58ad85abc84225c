"""Report logic of `ulm bench` (the benchmark itself is too long for CI: `make bench` runs it).

The stage runner is exercised for real on one tiny stage; the goal and detail tables are checked on results whose
numbers are chosen so that each goal is met or missed on purpose.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ulm import bench


def _res(scale: str, stage: str, seconds: float, **extra) -> dict:
    return {"scale": scale, "stage": stage, "seconds": seconds, "peak_rss_mb": 100.0, "ok": True, "detail": "",
            "extra": extra}


def test_measure_runs_a_real_process_and_samples_memory(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import time; x = bytearray(80 * 2**20); time.sleep(0.5)"]
    res = bench.measure(cmd, {}, "t", "sleep", tmp_path / "log")
    assert res.ok and res.seconds >= 0.5 and res.peak_rss_mb >= 80
    bad = bench.measure([sys.executable, "-c", "raise SystemExit(3)"], {}, "t", "fail", tmp_path / "log")
    assert not bad.ok and "exit 3" in bad.detail


def test_dbt_breakdown_reads_run_results(tmp_path: Path) -> None:
    rr = tmp_path / "run_results.json"
    rr.write_text(json.dumps({"elapsed_time": 12.34, "results": [
        {"unique_id": f"model.ulm.m{i}", "execution_time": float(i)} for i in range(7)] + [
        {"unique_id": "test.ulm.not_null_x.abc", "execution_time": 0.5},
        {"unique_id": "test.ulm.unique_x.def", "execution_time": 0.25}]}))
    out = bench.dbt_breakdown(rr)
    assert out["dbt_elapsed_s"] == 12.3 and out["model_s"] == 21.0 and out["test_s"] == 0.8
    assert out["n_tests"] == 2 and [n for n, _ in out["slowest_models"]] == ["m6", "m5", "m4", "m3", "m2"]
    assert bench.dbt_breakdown(tmp_path / "missing.json") == {}


def test_dag_breakdown_sums_the_dbt_group_and_gates(tmp_path: Path) -> None:
    rep = tmp_path / "run.json"
    rep.write_text(json.dumps({"dags": {"ulm_daily": {"seconds": 50.0, "task_seconds": {
        "ingest": 3.0, "gate_landing": 2.0, "dbt_audit.dbt_producer_watcher": 30.0, "dbt_audit.m1_run": 0.5,
        "gate_staging": 1.0, "gate_marts": 1.5, "publish": 1.0}}}}))
    out = bench.dag_breakdown(rep)
    assert out == {"dag_s": 50.0, "dbt_group_s": 30.5, "dbt_producer_s": 30.0, "gates_s": 4.5, "tasks": 7}


def test_goals_and_details_say_met_or_not() -> None:
    results = [
        _res("10m", "generate", 20),
        _res("10m", bench.DBT_FULL, 100, dbt_elapsed_s=90.0, model_s=120.0, test_s=30.0, n_tests=331,
             slowest_models=[["stg_events", 27.0]]),
        _res("10m", bench.DBT_INC, 40, dbt_elapsed_s=30.0, model_s=40.0, test_s=20.0, n_tests=331,
             slowest_models=[["mart_kpi_daily", 9.0]]),
        _res("10m", bench.DAG_FULL, 125, dag_s=120.0, dbt_group_s=101.0, dbt_producer_s=95.0, gates_s=8.0, tasks=60),
        _res("10m", bench.DAG_INC, 80, dag_s=75.0, dbt_group_s=50.0, dbt_producer_s=45.0, gates_s=8.0, tasks=60),
        _res("10m", bench.BUILD_FULL, 110),
        _res("10m", bench.BUILD_INC, 50),
        _res("10m", bench.DEPLOY_FULL, 130, dag_s=128.0, dbt_group_s=100.0, dbt_producer_s=100.0, gates_s=9.0,
             load=[1.5, 2.5]),
        _res("small", bench.DBT_FULL, 10),
        _res("small", bench.DAG_FULL, 15, dag_s=14.0, dbt_group_s=9.0, dbt_producer_s=9.0, gates_s=2.0, tasks=9),
        _res("ml", bench.ML_TRAIN, 200),
        _res("ml", bench.ML_SCORE_1M, 75, persons_scored=1_000_001),
        _res("ml", bench.ML_BGNBD, 30, sizes=[{"persons": 10_000, "bgnbd_seconds": 2.0, "gg_seconds": 0.5}]),
    ]
    goals = "\n".join(bench.goal_lines(results))
    assert "| full dbt build at 10M events < 120 s | 100 s | yes |" in goals
    assert "| one incremental day < 15% of the full build | 40% | **no** |" in goals
    assert "| training both models on 200k persons < 5 min | 200 s | yes |" in goals
    assert "| scoring 1M persons < 60 s | 75 s for 1,000,001 persons | **no** |" in goals
    # the in-process DAG against the same work without Airflow: 125/110 within 1.5x, 80/50 not; the deployed run: 130/110 within 1.2x
    assert ("| in-process DAG wall time <= 1.5x the same work without Airflow (10m, full build) | "
            "1.14x (125 s vs 110 s; 1.25x the dbt build alone) | yes |") in goals
    assert "(10m, incremental day) | 1.60x (80 s vs 50 s; 2.00x the dbt build alone) | **no** |" in goals
    assert "| deployed DAG wall time <= 1.2x the same work without Airflow (10m, full build) | 1.18x" in goals
    assert "| (context: in-process DAG (small, full build) 1.50x the dbt build alone; the same work without Airflow not measured" in goals
    details = "\n".join(bench.detail_lines(results))
    assert "stg_events 27.0" in details
    assert "| 10m | in-process DAG | full build | 125.0 | 101.0 | 8.0 | 110.0 | 1.14x | 100.0 | 1.25x |  |" in details
    assert "| 10m | deployed DAG | full build | 130.0 | 100.0 | 9.0 | 110.0 | 1.18x | 100.0 | 1.30x | 1.5-2.5 |" in details
    assert "| small | in-process DAG | full build | 15.0 | 9.0 | 2.0 |  |  | 10.0 | 1.50x |" in details
    assert "| 10,000 | 2.0 | 0.5 |" in details


def test_merge_replaces_remeasured_stages_in_place() -> None:
    old = {"generated_at": "t0", "results": [_res("small", "a", 1), _res("small", "b", 2), _res("10m", "b", 3)]}
    new = {"generated_at": "t1", "results": [_res("small", "b", 9), _res("small", "c", 4)]}
    merged = bench.merge_reports(old, new)
    assert [(r["stage"], r["seconds"]) for r in merged["results"]] == [("a", 1), ("b", 9), ("b", 3), ("c", 4)]
    assert merged["generated_at"] == "t0" and merged["updated"] == [{"at": "t1", "scale": "small", "stages": ["b", "c"]}]


def test_one_scale_remeasured_keeps_the_other_scales() -> None:
    old = {"generated_at": "t0", "row_counts": {"10m": {"events": 10}, "small": {"events": 1}},
           "results": [_res("small", "a", 1), _res("small", "old stage", 2), _res("10m", "a", 3)]}
    new = {"generated_at": "t1", "row_counts": {"small": {"events": 2}}, "results": [_res("small", "a", 9)]}
    out = bench.replace_scales(old, new)
    assert [(r["scale"], r["stage"], r["seconds"]) for r in out["results"]] == [("10m", "a", 3), ("small", "a", 9)]
    assert out["row_counts"] == {"10m": {"events": 10}, "small": {"events": 2}}
    assert out["generated_at"] == "t0" and out["updated"] == [{"at": "t1", "scale": "small", "stages": ["a"]}]
    # a later re-measure of that scale supersedes this one's "re-measured" line; other scales' lines stay
    out["updated"].insert(0, {"at": "t-1", "scale": "10m", "stages": ["a"]})
    again = bench.replace_scales(out, {"generated_at": "t2", "results": [_res("small", "a", 5)]})
    assert [u["at"] for u in again["updated"]] == ["t-1", "t2"]


def test_reference_ratio_goal_and_details() -> None:
    """dbt / SQL reference per scale: a goal row at 10m and 30m (met at 1.25x, missed at 1.50x), context elsewhere."""
    rows = {"persons": 1000, "person_activity_daily": 5000}
    results = [
        _res("small", bench.DBT_FULL, 30, dbt_elapsed_s=25.0, model_s=20.0, test_s=5.0, n_tests=9, slowest_models=[]),
        _res("small", bench.REF_SQL, 10, sql_s=8.0, rows=rows),
        _res("10m", bench.DBT_FULL, 100, dbt_elapsed_s=90.0, model_s=80.0, test_s=10.0, n_tests=9, slowest_models=[]),
        _res("10m", bench.REF_SQL, 80, sql_s=78.0, rows=rows),
        _res("30m", bench.DBT_FULL, 300),
        _res("30m", bench.REF_SQL, 200, sql_s=199.0, rows=rows),
    ]
    goals = "\n".join(bench.goal_lines(results))
    assert ("| full dbt build <= 1.3x the hand-written SQL reference of the core marts (10m) | 1.25x (100 s vs 80 s) "
            "| yes |") in goals
    assert "core marts (30m) | 1.50x (300 s vs 200 s); the build side is `ulm build`, with gates and publish | **no** |" in goals
    assert "| (context: full dbt build / hand-written SQL reference at scale small: 3.00x (30 s vs 10 s)" in goals
    details = "\n".join(bench.detail_lines(results))
    assert "| 10m | 100.0 | 90.0 | 80.0 | 78.0 | 1.25x | 1,000, 5,000 |" in details
    assert "| 30m | 300.0 |  | 200.0 | 199.0 | 1.50x |" in details
    # no reference measured: no row, no section
    assert "SQL reference" not in "\n".join(bench.goal_lines(results[2:3]) + bench.detail_lines(results[2:3]))


def test_engines_scale_builds_every_target_and_reports_ratios_to_duckdb(tmp_path: Path) -> None:
    """`--scale engines`: the raw copy and both builds per target (duckdb first), not part of `all`; the report's
    engine table gives each target's ratio to DuckDB in the same run."""
    stages = bench._stages("engines", tmp_path, ["ulm"])
    names = [s[0] for s in stages]
    for t in ("duckdb", "postgres", "spark"):
        assert bench.engine_stage(t, "full") in names and bench.engine_stage(t, "incremental day") in names
    assert "postgres: copy raw" in names and "spark: copy raw" in names and "duckdb: copy raw" not in names
    spark_full = dict((s[0], s[1]) for s in stages)[bench.engine_stage("spark", "full")]
    assert spark_full[-3:] == ["--as-of", "2025-12-30", "--full-refresh"] and "--dev" in spark_full
    dbt = {"model_s": 1.0, "test_s": 1.0, "n_tests": 1, "slowest_models": [["m", 1.0]]}
    results = [_res("engines", bench.engine_stage("duckdb", "full"), 40, dbt_elapsed_s=30.0, **dbt),
               _res("engines", bench.engine_stage("duckdb", "incremental day"), 20, dbt_elapsed_s=15.0, **dbt),
               _res("engines", bench.engine_stage("spark", "full"), 400, dbt_elapsed_s=390.0, **dbt),
               _res("engines", bench.engine_stage("spark", "incremental day"), 300, dbt_elapsed_s=290.0, **dbt),
               _res("engines", "spark: copy raw", 12)]
    text = "\n".join(bench.detail_lines(results))
    assert "| spark | 12.0 | 400.0 | 390.0 | 300.0 | 290.0 | 10.00x | 15.00x |" in text


def test_100m_scale_goals_and_growth_chart(tmp_path: Path) -> None:
    """`--scale 100m`: no Airflow, two production builds (full, then the last day), train / score / erase; the goal rows say met or missed (the
    plain-DuckDB yardsticks do not count for peak RSS) and the log-log chart is drawn over the scales measured."""
    names = [name for name, _, _ in bench._stages("100m", tmp_path, ["ulm"])]
    assert not any(n.startswith(("dbt build", "Airflow", "no Airflow")) for n in names)
    assert names.index(bench.BIG_FULL) < names.index(bench.BIG_INC) < names.index(bench.REF_SQL)
    assert {bench.ML_TRAIN, "score all persons", bench.ERASE} <= set(names)
    assert {"30m", "100m"} <= set(bench.NOT_IN_ALL) and "100m" in bench.SCALES
    big = dict(_res("100m", bench.INGEST_REF, 50), peak_rss_mb=30_000.0)  # the yardstick: not a ULM stage
    results = [
        _res("100m", bench.BIG_FULL, 500), _res("100m", bench.BIG_INC, 80), _res("100m", bench.REF_SQL, 250),
        dict(_res("100m", bench.ML_TRAIN, 700), peak_rss_mb=9000.0), big,
        _res("100m", "score all persons", 20, persons_scored=500_000),
        _res("ml", bench.ML_BGNBD, 90, sizes=[{"persons": 1_000_000, "bgnbd_seconds": 10.0, "gg_seconds": 8.0}]),
        _res("10m", bench.DBT_FULL_BEFORE, 60), _res("10m", bench.DBT_INC, 30),
    ]
    text = "\n".join(bench.goal_lines(results))
    assert "| full build at 100M events <= 10 min (`ulm build`: dbt, gates, publish) | 8.3 min | yes |" in text
    assert "full dbt build / hand-written SQL reference at scale 100m: 2.00x (500 s vs 250 s); the build side is `ulm build`" in text
    assert "| one incremental day <= 10% of the full build (100m) | 16% (80 s) | **no** |" in text
    assert "8.8 GB (train churn + LTV (MLflow, registry)) | yes |" in text
    assert "| 11.7 min, 8.8 GB | **no** |" in text
    assert "(100m: its scoring population, 500,000 persons; 1M synthetic persons: the ml scale) | 20 s | yes |" in text
    assert "| BG/NBD + Gamma-Gamma on 1M persons <= 30 s (ml scale) | 18.0 s | yes |" in text
    report = {"results": results, "row_counts": {"10m": {"events": 10_000_000}, "100m": {"events": 100_000_000}}}
    assert bench.growth_chart(report, tmp_path / "g.png") == ["10m", "100m"]
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert bench.growth_chart({"results": results, "row_counts": {"10m": {"events": 1}}}, tmp_path / "h.png") == []
