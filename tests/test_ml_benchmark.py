"""`python -m ulm.bench.ml`: synthetic warehouse and the BG/NBD scaling table, run for real on tiny sizes.

Only the shape and sanity of the output are checked here; the speed goals live in the bench report.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ulm.bench import ml as benchmark
from ulm.ml import features, synthetic
from ulm.warehouse import connect_read_only

MARTS = Path(__file__).resolve().parents[1] / "dbt_project" / "models" / "marts"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "wh.duckdb"
    assert benchmark.main(["synth", "--warehouse", str(path), "--persons", "1500", "--days", "200",
                           "--seed", "3"]) == 0
    return path


def test_synth_writes_the_interface_tables(warehouse):
    with connect_read_only(warehouse) as con:
        n = {t: con.execute(f"select count(*) from marts.{t}").fetchone()[0] for t in features.INTERFACE}
        snapshot_days = [r[0] for r in con.execute(
            "select distinct snapshot_date from marts.fct_clv_snapshots order by 1").fetchall()]
    assert n["dim_persons"] == 1500 and n["fct_person_activity_daily"] > 1500 and n["fct_orders"] > 0
    assert n["fct_invites"] > 0 and n["fct_clv_snapshots"] > 0
    # month ends from the first purchase month, plus the end day (here a month end itself)
    assert snapshot_days[-1].isoformat() == "2025-12-31" and all((d.day > 27) for d in snapshot_days)


def _contracts() -> dict[str, dict[str, str]]:
    """{model: {column: data_type}} of the enforced dbt contracts in marts/core and marts/segmentation."""
    out = {}
    for yml in (MARTS / "core" / "_models.yml", MARTS / "segmentation" / "_models.yml"):
        for model in yaml.safe_load(yml.read_text())["models"]:
            if (model.get("config") or {}).get("contract", {}).get("enforced"):
                out[model["name"]] = {c["name"]: c["data_type"] for c in model["columns"]}
    return out


def test_interface_is_contracted_and_synthetic_types_match(warehouse):
    contracts = _contracts()
    assert set(features.INTERFACE) <= set(contracts)
    with connect_read_only(warehouse) as con:
        for table, written in synthetic.TYPES.items():
            got = dict(con.execute("select column_name, lower(data_type) from information_schema.columns "
                                   "where table_schema = 'marts' and table_name = ?", [table]).fetchall())
            contract = contracts[table]
            assert set(written) <= set(contract), f"{table}: columns outside the contract"
            for col in written:
                assert got[col].replace(" ", "") == contract[col].replace(" ", "") == written[col], (table, col)


def test_bgnbd_scaling_json(warehouse, tmp_path, capsys):
    out = tmp_path / "bgnbd.json"
    assert benchmark.main(["bgnbd-scaling", "--warehouse", str(warehouse), "--sizes", "200,400",
                           "--out", str(out), "--no-warmup"]) == 0
    captured = capsys.readouterr()
    # progress goes to stderr (stdout may carry third-party log lines, e.g. arviz's import notices)
    assert "200 persons" in captured.err and "[ulm.bench.ml]" not in captured.out
    report = json.loads(out.read_text())
    assert [row["persons"] for row in report["sizes"]] == [200, 400]
    for row in report["sizes"]:
        assert row["bgnbd_seconds"] > 0 and row["gg_seconds"] > 0
        assert 0 < row["repeat_buyers"] <= row["persons"]
        assert {"r", "alpha", "a", "b", "p", "q", "v"} <= set(row["params"])
    assert report["summary_persons"] >= 400


def test_sizes_beyond_the_summary_are_resampled_with_unique_ids():
    import pandas as pd

    summary = pd.DataFrame({"person_id": ["a", "b", "c"], "frequency": [0, 1, 2], "recency_days": [0, 5, 9],
                            "t_days": [10, 10, 10], "monetary_value": [0.0, 3.0, 4.0]})
    sample, resampled = benchmark.sample_persons(summary, 7, seed=1)
    assert resampled and len(sample) == 7 and sample["person_id"].is_unique
    sample, resampled = benchmark.sample_persons(summary, 2, seed=1)
    assert not resampled and set(sample["person_id"]) <= {"a", "b", "c"}


def test_help_and_bad_sizes(capsys):
    with pytest.raises(SystemExit) as help_exit:
        benchmark.main(["--help"])
    out = capsys.readouterr().out
    assert help_exit.value.code == 0 and "bgnbd-scaling" in out and "clv-holdout" in out
    with pytest.raises(SystemExit) as bad:
        benchmark.main(["bgnbd-scaling", "--warehouse", "x.duckdb", "--sizes", "ten", "--out", "x.json"])
    assert bad.value.code == 2 and "comma-separated" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_day:
        benchmark.main(["clv-holdout", "--calibration-end", "1997-13-01", "--out", "x.json"])
    assert bad_day.value.code == 2 and "not a date" in capsys.readouterr().err
