"""The daily pipeline without a scheduler: ingest landing files up to the as-of day, then `dbt build`.

`ulm run` wraps the same steps in the Airflow DAG `ulm_daily` (gates, write-audit-publish, exports, ML);
this module is the plain path tests and benchmarks compare it with.
"""
from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

log = logging.getLogger("ulm.pipeline")


def run_daily(as_of: date, warehouse: Path, landing: Path) -> dict:
    from ulm.build import build
    from ulm.ingest import ingest_dir
    from ulm.keys import ensure_local_pii_key

    ensure_local_pii_key()
    ingested = ingest_dir(landing, warehouse, until=as_of, progress=True)
    built = build(as_of=as_of, warehouse=warehouse, progress=True)
    return {"ingest": ingested, "build": built}
