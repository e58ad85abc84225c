"""dbt model contracts (docs/ARCHITECTURE.md#data-tests-contracts-and-gates): every model declares every column with a
portable data type, NOT NULL is a contract constraint the engine enforces at build (not a data test), and no check
is made both by dbt and by a GX gate.

The yml checks only read the project files; the last test runs a real `ulm build` that a contract violation fails.
"""
from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from ulm.cli import main
from ulm.core import contract
from ulm.quality.marts import is_proportion

PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
# type names DuckDB and PostgreSQL both accept (the contract is checked through DuckDB, which normalises them)
PORTABLE = re.compile(r"^(varchar|text|integer|bigint|smallint|boolean|date|timestamp|double precision|"
                      r"decimal\(\d+,\d+\))$")


def _models() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for p in sorted(PROJECT.joinpath("models").rglob("*.yml")):
        for m in (yaml.safe_load(p.read_text()) or {}).get("models") or []:
            out[m["name"]] = {**m, "_dir": p.parent.relative_to(PROJECT / "models").parts[0]}
    return out


def _sql_models() -> set[str]:
    return {p.stem for p in PROJECT.joinpath("models").rglob("*.sql")}


def _tests(entry: dict) -> list:
    return list(entry.get("data_tests") or [])


def _test_name(t) -> str:
    return t if isinstance(t, str) else next(iter(t))


def test_contracts_are_enforced_project_wide():
    cfg = yaml.safe_load(PROJECT.joinpath("dbt_project.yml").read_text())["models"]["ulm"]
    assert cfg["+contract"] == {"enforced": True}
    assert cfg["+on_schema_change"] == "fail"  # incremental models with a contract: append_new_columns or fail


def test_every_model_declares_every_column_with_a_portable_type():
    models = _models()
    assert set(models) == _sql_models(), "every model needs a yml entry (the contract lists its columns)"
    bad = [f"{m}.{c['name']}: {c.get('data_type')!r}" for m, e in models.items() for c in e.get("columns") or []
           if not PORTABLE.match(str(c.get("data_type", "")))]
    assert not bad, f"columns without a portable data_type: {bad}"


def test_not_null_is_a_contract_constraint_not_a_data_test():
    offenders = [f"{m}.{c['name']}" for m, e in _models().items() for c in e.get("columns") or []
                 if "not_null" in map(_test_name, _tests(c))]
    assert not offenders, f"not_null data tests (use constraints: [{{type: not_null}}]): {offenders}"
    n = sum(1 for e in _models().values() for c in e.get("columns") or []
            for k in c.get("constraints") or [] if k["type"] == "not_null")
    assert n > 250


def _not_null(models: dict[str, dict], model: str) -> set[str]:
    return {c["name"] for c in models[model].get("columns") or []
            if any(k["type"] == "not_null" for k in c.get("constraints") or [])}


def test_staging_contracts_cover_every_required_landing_column():
    """Gate 2 counts no NULLs: it relies on these constraints (ulm/quality/staging.py)."""
    models = _models()
    missing = []
    for t in contract.TABLES.values():
        have = _not_null(models, f"stg_{t.name}")
        columns = {c["name"] for c in models[f"stg_{t.name}"]["columns"]}
        for col in t.columns:
            if (col.required or col.name in t.key) and col.name in columns and col.name not in have:
                missing.append(f"stg_{t.name}.{col.name}")
    assert not missing, f"required landing columns without a not_null constraint: {missing}"


def test_no_check_is_both_a_dbt_test_and_a_gate():
    """The overlaps removed from dbt (docs/ARCHITECTURE.md#data-tests-contracts-and-gates) stay removed."""
    models = _models()
    dupes = []
    for t in contract.TABLES.values():  # Gate 2: key uniqueness, enum sets, ranges of the landing contract
        e = models[f"stg_{t.name}"]
        if any(_test_name(x) == "marts_unique_combination" for x in _tests(e)):
            dupes.append(f"stg_{t.name}: key uniqueness")
        for c in e.get("columns") or []:
            spec = t.col(c["name"]) if c["name"] in t.column_names else None
            names = set(map(_test_name, _tests(c)))
            if c["name"] in t.key and "unique" in names:
                dupes.append(f"stg_{t.name}.{c['name']}: unique")
            if spec and (spec.enum or spec.min_value is not None) and "accepted_values" in names:
                dupes.append(f"stg_{t.name}.{c['name']}: accepted_values")
    for m, e in models.items():  # Gate 3: persons, stage intervals, proportions
        if e["_dir"] != "marts":
            continue
        for c in e.get("columns") or []:
            for x in _tests(c):
                name = _test_name(x)
                if c["name"] == "person_id" and name == "relationships":
                    dupes.append(f"{m}.person_id: relationships")
                if is_proportion(c["name"]) and name == "marts_between":
                    dupes.append(f"{m}.{c['name']}: marts_between")
        if m == "dim_persons" and "unique" in map(_test_name, _tests(e["columns"][0])):
            dupes.append("dim_persons.person_id: unique")
        if m == "fct_lifecycle_stage_history" and _tests(e):
            dupes.append("fct_lifecycle_stage_history: unique intervals")
    assert not dupes, f"checks made both by dbt and by a gate: {dupes}"


@pytest.mark.slow
def test_null_in_a_contracted_column_fails_the_build_and_publishes_nothing(tmp_path):
    """A raw row the loader would refuse (no platform) written straight into raw: the stg model's contract refuses
    it while the table is built, `ulm build` fails naming the model and the column, and `marts` stays unpublished."""
    wh = tmp_path / "wh.duckdb"
    with duckdb.connect(str(wh)) as con:
        con.execute("create schema raw")
        con.execute(contract.raw_ddl("users"))
        con.execute("insert into raw.users (user_id, platform, registered_at, acquisition_channel) values "
                    "('u1', 'live', '2025-01-01', 'organic'), ('u2', NULL, '2025-01-02', 'organic')")
    result = CliRunner().invoke(main, ["--warehouse", str(wh), "build", "--as-of", "2025-01-10"])
    assert result.exit_code != 0
    out = " ".join(result.output.split())
    # the one-line error names the model and the column (dbt builds the table as <model>__dbt_tmp, then renames it)
    error = out[out.rindex("error: dbt build failed"):]
    assert re.search(r"stg_user_versions \(error: .*NOT NULL constraint failed: stg_user_versions(__dbt_tmp)?\.platform",
                     error), error
    with duckdb.connect(str(wh), read_only=True) as con:
        published = con.execute("select count(*) from information_schema.tables where table_schema = 'marts'")
        assert published.fetchone()[0] == 0
