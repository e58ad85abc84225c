"""`ulm demo` / `make demo`: the main job end to end on the embedded default.

generate (if the landing folder is absent) -> the daily pipeline for the last generated day
(ingest -> gates -> dbt build -> publish -> exports -> ML) -> a printed summary of what happened and where.
"""
from __future__ import annotations

import logging
import re
import time
from datetime import date, datetime
from pathlib import Path

from ulm.core.context import RunContext
from ulm.core.errors import UlmError

log = logging.getLogger("ulm.cli.demo")

_STAMP = re.compile(r"_(\d{8})\.(parquet|csv)$")


def last_landing_day(landing: Path) -> date:
    """The newest business day present in the landing folder (from the events files' date stamps)."""
    stamps = [m.group(1) for p in (landing / "events").glob("events_*") if (m := _STAMP.search(p.name))]
    if not stamps:
        raise UlmError(f"{landing}/events holds no events_YYYYMMDD.parquet|csv files; run `ulm generate` first")
    return datetime.strptime(max(stamps), "%Y%m%d").date()


def run_demo(ctx: RunContext, persons: int, days: int, seed: int, defects: float, regenerate: bool) -> dict:
    from ulm.privacy.keys import ensure_local_pii_key

    t0 = time.perf_counter()
    landing, truth = ctx.landing_dir, ctx.data_dir / "truth"
    key_source = ensure_local_pii_key(demo=True)  # the only place a key is created (docs/PRIVACY.md#key-safety)
    log.info("PII hashing key: %s", key_source)
    if regenerate or not (landing / "events").exists():
        from ulm.generate import generate

        log.info("step 1/3: generating %s persons x %s days into %s", f"{persons:,}", days, landing)
        generate(out_dir=landing, persons=persons, days=days, seed=seed, defects=defects, truth_dir=truth,
                 progress=True)
    else:
        log.info("step 1/3: landing data already in %s (use --regenerate to rebuild it)", landing)
    as_of = last_landing_day(landing)

    from ulm.orchestration.runner import run

    log.info("step 2/3: Airflow DAGs ulm_daily + ulm_ml as of %s (ingest, gates, dbt, publish, export, "
             "train, score)", as_of)
    run_ctx = ctx.with_(as_of=as_of)
    result = run(run_ctx, ml=True, train=True)
    log.info("step 3/3: summary")
    from ulm.cli.report import print_summary

    print_summary(run_ctx, seconds=time.perf_counter() - t0)
    return result
