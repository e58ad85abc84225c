"""The CLI contract: --help everywhere, one-line errors with a non-zero exit."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ulm.cli import main


def _commands():
    return sorted(main.commands)


@pytest.mark.parametrize("name", _commands())
def test_every_command_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_top_level_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("generate", "ingest", "build", "demo", "bench"):
        assert name in result.output


def test_usage_error_is_one_line_and_nonzero(tmp_path):
    # neither a landing dir nor --cdnow: a UlmError, printed as one line, exit 1, no traceback
    proc = subprocess.run([sys.executable, "-m", "ulm.cli", "--warehouse", str(tmp_path / "w.duckdb"), "ingest"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_bad_date_is_rejected_with_reason():
    result = CliRunner().invoke(main, ["build", "--as-of", "2025-13-01"])
    assert result.exit_code == 2
    assert "not a date in YYYY-MM-DD form" in result.output


def test_writers_refuse_while_a_run_holds_the_lock(tmp_path):
    from ulm.warehouse import write_lock

    (tmp_path / "landing" / "users").mkdir(parents=True)
    with write_lock(tmp_path / "w.duckdb", "test holder"):
        proc = subprocess.run([sys.executable, "-m", "ulm.cli", "--warehouse", str(tmp_path / "w.duckdb"), "ingest",
                               str(tmp_path / "landing")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "another ULM run is writing the warehouse" in proc.stderr and "test holder" in proc.stderr
    assert not (tmp_path / "w.duckdb").exists()


def _ulm(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ulm.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_build_of_a_missing_or_empty_warehouse_fails_and_creates_nothing(tmp_path):
    missing = tmp_path / "typo.duckdb"
    proc = _ulm("--warehouse", str(missing), "build", "--as-of", "2025-12-31")
    assert proc.returncode == 1 and "does not exist" in proc.stderr and not missing.exists()
    empty = tmp_path / "empty.duckdb"
    from ulm.warehouse import connect, ensure_raw_schema

    with connect(empty) as con:
        ensure_raw_schema(con)
    proc = _ulm("--warehouse", str(empty), "build", "--as-of", "2025-12-31")
    assert proc.returncode == 1 and "holds no raw data" in proc.stderr


def test_a_partial_build_is_never_published():
    result = CliRunner().invoke(main, ["build", "--as-of", "2025-12-31", "--select", "stg_users"])
    assert result.exit_code == 1 and "--dev" in result.output


@pytest.mark.parametrize("name", ["ingest", "build", "run", "backfill", "train", "score", "erase"])
def test_every_writer_can_wait_for_the_lock(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0 and "--wait" in result.output


@pytest.mark.parametrize("name", ["ingest", "build", "run", "backfill", "score", "erase"])
def test_every_warehouse_command_takes_every_target(name):
    """Issue #15: the commands that read or write the warehouse run on each dbt target (the DAGs on Spark too)."""
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0 and "--target" in result.output
    assert all(t in result.output for t in ("duckdb", "postgres", "spark")), result.output
