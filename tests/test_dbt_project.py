"""The dbt project parses to exactly the unit tests we mean to have (docs/METRICS.md, every section's boundary rules).

dbt silently ignores a `unit_tests:` key nested under a model entry, so a misplaced test would never run while CI
stays green. `dbt ls` only parses the project (a few seconds, no warehouse needed) and must list exactly
`UNIT_TESTS_BY_MODEL` (tests/dbt_unit_tests.py).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dbt_unit_tests import UNIT_TESTS, UNIT_TESTS_BY_MODEL

PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"


def _dbt() -> str:
    exe = Path(sys.executable).parent / "dbt"
    return str(exe) if exe.exists() else (shutil.which("dbt") or pytest.skip("dbt executable not found"))


@pytest.fixture(scope="module")
def listed_unit_tests(tmp_path_factory) -> list[tuple[str, str]]:
    """(model, unit test name) for every unit test `dbt ls` finds."""
    tmp = tmp_path_factory.mktemp("dbt_ls")
    env = dict(os.environ, ULM_WAREHOUSE=str(tmp / "wh.duckdb"), DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    # dbt masks DBT_ENV_SECRET_* values in its output; parsing needs no key, so none can garble a test name
    env.pop("DBT_ENV_SECRET_ULM_PII_KEY", None)
    proc = subprocess.run(
        [_dbt(), "ls", "--resource-type", "unit_test", "--output", "json", "--output-keys", "unique_id", "--quiet",
         "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
         "--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = [json.loads(line)["unique_id"] for line in proc.stdout.splitlines() if line.startswith("{")]
    # unit_test.<project>.<model>.<name>
    return [tuple(uid.split(".", 3)[2:]) for uid in ids]


def test_dbt_parses_exactly_the_expected_unit_tests(listed_unit_tests):
    names = [name for _, name in listed_unit_tests]
    assert len(names) == len(set(names)), "unit test names must be unique across models"
    assert set(names) == UNIT_TESTS, (
        f"missing (not parsed): {sorted(UNIT_TESTS - set(names))}; unexpected: {sorted(set(names) - UNIT_TESTS)}")
    expected = {(model, name) for model, tests in UNIT_TESTS_BY_MODEL.items() for name in tests}
    assert set(listed_unit_tests) == expected


def _model_ymls() -> list[Path]:
    return sorted(PROJECT.joinpath("models").rglob("*.yml"))


def test_unit_tests_are_top_level_keys():
    """A `unit_tests:` key must sit at column 0 (dbt ignores one indented under a model)."""
    nested = [f"{p.relative_to(PROJECT)}:{i}" for p in _model_ymls()
              for i, line in enumerate(p.read_text().splitlines(), 1) if re.match(r"^\s+unit_tests:", line)]
    assert not nested, f"nested unit_tests keys: {nested}"


def test_unit_tests_pass_the_as_of_date_as_env_var():
    """One way to set the as-of date in a unit test: `overrides: env_vars: {ULM_AS_OF: ...}`."""
    offenders = []
    for p in _model_ymls():
        for ut in (yaml.safe_load(p.read_text()) or {}).get("unit_tests") or []:
            overrides = ut.get("overrides") or {}
            if "as_of" in (overrides.get("vars") or {}):
                offenders.append(f"{p.relative_to(PROJECT)}: {ut['name']}")
            as_of = (overrides.get("env_vars") or {}).get("ULM_AS_OF")
            if as_of is not None:
                assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(as_of)), f"{ut['name']}: ULM_AS_OF {as_of!r}"
    assert not offenders, f"unit tests overriding var as_of instead of env ULM_AS_OF: {offenders}"
