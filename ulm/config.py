"""Paths and parameters.

Every SPEC *(param)* lives in one place: ``dbt_project/dbt_project.yml`` under ``vars.ulm``.
Python reads that same block through :func:`params`, so SQL and Python never disagree.
Paths resolve from the project root (``ULM_HOME`` or the repository checkout this file is in).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """Root of the ULM checkout (holds ``dbt_project/``); ``ULM_HOME`` overrides."""
    env = os.environ.get("ULM_HOME")
    if env:
        return Path(env).resolve()
    return PACKAGE_DIR.parent


def shared_dir() -> Path:
    """The team's shared folder (SPEC, seeds, CDNOW data) next to the checkout; ``ULM_SHARED_DIR`` overrides."""
    env = os.environ.get("ULM_SHARED_DIR")
    return Path(env).resolve() if env else project_root().parent / "shared"


def cdnow_dir() -> Path:
    return shared_dir() / "data" / "cdnow"


def dbt_project_dir() -> Path:
    return project_root() / "dbt_project"


def data_dir() -> Path:
    """Where generated data, the warehouse, MLflow and Airflow state live (git-ignored)."""
    return Path(os.environ.get("ULM_DATA_DIR", project_root() / "data")).resolve()


def warehouse_path() -> Path:
    """DuckDB warehouse file: ``--warehouse`` / ``ULM_WAREHOUSE``, default ``data/warehouse.duckdb``."""
    env = os.environ.get("ULM_WAREHOUSE")
    return Path(env).resolve() if env else data_dir() / "warehouse.duckdb"


@lru_cache(maxsize=1)
def _dbt_vars() -> dict[str, Any]:
    with open(dbt_project_dir() / "dbt_project.yml", encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    return doc.get("vars", {})


def params() -> dict[str, Any]:
    """All SPEC parameters (a copy of ``vars.ulm`` in dbt_project.yml)."""
    return dict(_dbt_vars()["ulm"])


def param(name: str) -> Any:
    p = _dbt_vars()["ulm"]
    if name not in p:
        raise KeyError(f"unknown parameter {name!r}: add it to vars.ulm in dbt_project/dbt_project.yml")
    return p[name]
