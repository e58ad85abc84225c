"""Test-wide settings: never touch the developer's data/ folder; a fixed, test-only PII key."""
from __future__ import annotations

import os
import tempfile

import pytest

# Set before any ulm module resolves paths. Tests that need their own warehouse pass it explicitly.
_SESSION_DATA = tempfile.mkdtemp(prefix="ulm-test-data-")
os.environ.setdefault("ULM_DATA_DIR", _SESSION_DATA)
os.environ.setdefault("ULM_WAREHOUSE", os.path.join(_SESSION_DATA, "warehouse.duckdb"))
os.environ["ULM_PII_KEY"] = "test-only-pii-key-not-a-secret"
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def test_data_dir() -> str:
    return _SESSION_DATA


@pytest.fixture(scope="session")
def cdnow_sample_warehouse(tmp_path_factory):
    """CDNOW_sample ingested and built as of 1997-09-30 through the platform path (shared by dbt and ML tests)."""
    from datetime import date

    from ulm.core.context import RunContext
    from ulm.core.settings import cdnow_dir
    from ulm.ingest import ingest_cdnow
    from ulm.transform.dbt import run_dbt

    wh = tmp_path_factory.mktemp("cdnow_sample") / "wh.duckdb"
    ingest_cdnow(cdnow_dir() / "CDNOW_sample.txt", wh, progress=False)
    run_dbt(RunContext.create(as_of=date(1997, 9, 30), warehouse=wh), "run", select="+mart_clv_summary", progress=False)
    return wh


@pytest.fixture
def landing(tmp_path):
    """An empty landing folder path (tests write the files they need)."""
    return tmp_path / "landing"


@pytest.fixture
def wh(tmp_path):
    """A warehouse file path of this test (modules with a prepared warehouse define their own ``wh``)."""
    return tmp_path / "wh.duckdb"


# The slowest modules first (measured: docs/ORCHESTRATION.md#tests). `make test` distributes whole files over two
# workers in collection order; started last, a 15-minute module would run alone at the end while the other worker
# idles (longest-processing-time-first scheduling).
SLOWEST_FIRST = ("test_runs_converge.py", "test_deployment.py", "test_e2e_airflow.py", "test_spark.py",
                 "test_keys.py", "test_serving.py", "test_dbt_core.py", "test_identity_guards.py", "test_docs.py",
                 "test_privacy_lasting.py", "test_analyst_marts.py", "test_foundation_e2e.py", "test_privacy.py",
                 "test_dashboard.py", "test_postgres_run.py", "test_engines.py", "test_ml_pipeline.py",
                 "test_ml_clv.py")


def pytest_collection_modifyitems(session, config, items) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file is kept
