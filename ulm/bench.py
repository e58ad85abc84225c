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
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psutil

from ulm.config import project_root

log = logging.getLogger("ulm.bench")

END_DATE = date(2025, 12, 31)

# scale name -> generator arguments. 10m: ~10M events over a year (see docs/GENERATOR.md for the event rate).
SCALES = {
    "small": {"persons": 20_000, "days": 365},
    "10m": {"persons": 100_000, "days": 365},  # ~10.3M events (docs/GENERATOR.md)
}


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
                      "" if rc == 0 else f"exit {rc}, see {log_file}")
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


def _stages(scale: str, work: Path, ulm: list[str]) -> list[tuple[str, list[str], str | None]]:
    """(stage name, command, count hint) for one scale. Later stages are added as the platform grows."""
    s = SCALES[scale]
    landing = work / "landing"
    as_of = END_DATE.isoformat()
    day_before = (END_DATE - timedelta(days=1)).isoformat()
    stages = [
        ("generate", ulm + ["generate", "--out", str(landing), "--persons", str(s["persons"]),
                            "--days", str(s["days"]), "--end-date", as_of, "--truth", str(work / "truth")], None),
        ("ingest", ulm + ["ingest", str(landing)], None),
    ]
    if (project_root() / "ulm" / "build.py").exists():
        stages += [
            ("dbt build (full, all but last day)", ulm + ["build", "--as-of", day_before, "--full-refresh"], None),
            ("dbt build (one incremental day)", ulm + ["build", "--as-of", as_of], None),
            ("dbt build (full refresh)", ulm + ["build", "--as-of", as_of, "--full-refresh"], None),
        ]
    if (project_root() / "ml" / "train.py").exists():
        stages += [
            ("train churn + LTV (MLflow, registry)", ulm + ["train", "--as-of", as_of], None),
            ("score all persons", ulm + ["score", "--as-of", as_of], None),
        ]
    return stages


def _count_rows(warehouse: Path) -> dict:
    import duckdb

    if not warehouse.exists():
        return {}
    con = duckdb.connect(str(warehouse), read_only=True)
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


def run_bench(scale: str = "all", out_md: Path | None = None) -> dict:
    out_md = out_md or project_root() / "docs" / "BENCHMARKS.md"
    scales = list(SCALES) if scale == "all" else [scale]
    ulm = [sys.executable, "-m", "ulm.cli"]
    results: list[StageResult] = []
    counts: dict[str, dict] = {}
    for sc in scales:
        work = Path(tempfile.mkdtemp(prefix=f"ulm-bench-{sc}-"))
        env = dict(os.environ, ULM_WAREHOUSE=str(work / "warehouse.duckdb"), ULM_DATA_DIR=str(work),
                   ULM_PII_KEY=os.environ.get("ULM_PII_KEY", "benchmark-only-key"))
        log_file = work / "bench.log"
        try:
            for stage, cmd, _ in _stages(sc, work, ulm):
                res = measure(cmd, env, sc, stage, log_file)
                results.append(res)
                if not res.ok:
                    break
            counts[sc] = _count_rows(work / "warehouse.duckdb")
            for r in results:
                if r.scale == sc and counts[sc].get("events"):
                    if r.stage in ("generate", "ingest"):
                        r.extra["events_per_s"] = round(counts[sc]["events"] / max(r.seconds, 1e-9))
        finally:
            if not os.environ.get("ULM_BENCH_KEEP"):
                shutil.rmtree(work, ignore_errors=True)
    report = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "row_counts": counts,
        "results": [asdict(r) for r in results],
    }
    write_report(report, out_md)
    return report


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
        f"- machine: {m['cpus']} cores ({m['cpu_model']}), {m['memory_gb']} GB RAM, Python {m['python']}, "
        f"{m['platform']}",
        "",
    ]
    for sc, c in report["row_counts"].items():
        if c:
            lines.append(f"- scale `{sc}`: " + ", ".join(f"{k} {v:,}" for k, v in c.items()))
    lines += ["", "| scale | stage | seconds | peak RSS (MB) | throughput | ok |", "|---|---|---:|---:|---|---|"]
    for r in report["results"]:
        thr = ", ".join(f"{k} {v:,}" for k, v in r.get("extra", {}).items())
        lines.append(f"| {r['scale']} | {r['stage']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {thr} | "
                     f"{'yes' if r['ok'] else 'NO: ' + r['detail']} |")
    lines += ["", "## Goals (from the issues) vs measured", ""] + goal_lines(report["results"])
    out_md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("benchmark report written to %s", out_md)


def goal_lines(results: list[dict]) -> list[str]:
    """Each stated goal with the measured value and whether it is met."""
    by = {(r["scale"], r["stage"]): r for r in results if r["ok"]}
    out = ["| goal | measured | met |", "|---|---|---|"]

    def row(goal: str, measured: str, met: bool) -> None:
        out.append(f"| {goal} | {measured} | {'yes' if met else '**no**'} |")

    full = by.get(("10m", "dbt build (full refresh)"))
    inc = by.get(("10m", "dbt build (one incremental day)"))
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
    tr = by.get(("10m", "train churn + LTV (MLflow, registry)"))
    if tr:
        row("training both models < 5 min (10m scale: ~100k persons)", f"{tr['seconds']:.0f} s", tr["seconds"] < 300)
    return out
