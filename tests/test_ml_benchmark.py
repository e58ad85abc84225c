"""`python -m ml.benchmark`: synthetic warehouse and the BG/NBD scaling table, run for real on tiny sizes.

Only the shape and sanity of the output are checked here; the speed goals live in the bench report.
"""
from __future__ import annotations

import json

import duckdb
import pytest

from ml import benchmark


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "wh.duckdb"
    assert benchmark.main(["synth", "--warehouse", str(path), "--persons", "1500", "--days", "200",
                           "--seed", "3"]) == 0
    return path


def test_synth_writes_the_intermediate_tables(warehouse):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        persons = con.execute("select count(*) from intermediate.int_persons").fetchone()[0]
        active = con.execute("select count(*) from intermediate.int_person_daily_activity").fetchone()[0]
        orders = con.execute("select count(*) from intermediate.int_orders").fetchone()[0]
        con.execute("select count(*) from intermediate.int_invites").fetchone()
    assert persons == 1500 and active > persons and orders > 0


def test_bgnbd_scaling_json(warehouse, tmp_path, capsys):
    out = tmp_path / "bgnbd.json"
    assert benchmark.main(["bgnbd-scaling", "--warehouse", str(warehouse), "--sizes", "200,400",
                           "--out", str(out), "--no-warmup"]) == 0
    captured = capsys.readouterr()
    # progress goes to stderr (stdout may carry third-party log lines, e.g. arviz's import notices)
    assert "200 persons" in captured.err and "[ml.benchmark]" not in captured.out
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
    assert help_exit.value.code == 0 and "bgnbd-scaling" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        benchmark.main(["bgnbd-scaling", "--warehouse", "x.duckdb", "--sizes", "ten", "--out", "x.json"])
    assert bad.value.code == 2 and "comma-separated" in capsys.readouterr().err
