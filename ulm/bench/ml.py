"""ML benchmark helpers, run as ``python -m ulm.bench.ml <subcommand>`` by the bench stages.

Subcommands (each a separate process so ``ulm bench`` can time it and sample its peak memory):

``synth``
    Writes the published interface tables (``ulm.ml.synthetic.write_interface``: ``marts.dim_persons``,
    ``fct_person_activity_daily``, ``fct_orders``, ``fct_invites``, ``fct_clv_snapshots``) for N persons into a
    warehouse: all that ``ulm train`` and ``ulm score`` read. ``--snapshots-from A`` also copies
    ``ml.feature_snapshots`` from the warehouse the champion was trained on, which ``ulm score`` samples as its
    drift reference.
``bgnbd-scaling``
    Fits BG/NBD and Gamma-Gamma (``ulm.ml.clv``, the code path training uses) on person samples of each size from
    the warehouse's CLV summary (``marts.fct_clv_snapshots`` of one day) and writes
    ``{"sizes": [{"persons", "bgnbd_seconds", "gg_seconds", ...}]}``.

``clv-holdout``
    CLV checked on predictions (``ulm.ml.clv_holdout``): ingests a CDNOW file (default ``CDNOW_sample.txt``) into a
    scratch warehouse and builds the CLV marts as of the holdout end (or uses ``--warehouse``, already built that
    far), calibrates BG/NBD and Pareto/NBD to ``--calibration-end`` (default 1997-09-30), predicts the holdout up to
    ``--holdout-end`` (default 1998-06-30, weeks 40-78), logs one MLflow run per model in ``ulm-clv`` and writes
    ``{"models": {"bgnbd": {"role", "run_id", "metrics"}, "pareto_nbd": ...}}`` (fitted parameters as ``param_*``).

Typical sequence (one ``ULM_DATA_DIR``, so scoring finds the champion trained on warehouse A)::

    python -m ulm.bench.ml synth --warehouse A.duckdb --persons 200000
    ULM_WAREHOUSE=A.duckdb ulm train --as-of 2025-12-31
    python -m ulm.bench.ml synth --warehouse B.duckdb --persons 1000000 --snapshots-from A.duckdb
    ULM_WAREHOUSE=B.duckdb ulm score --as-of 2025-12-31
    python -m ulm.bench.ml bgnbd-scaling --warehouse B.duckdb --sizes 10000,50000,100000 --out bgnbd.json

Speed goals are checked by the bench report, never by timed tests.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from ulm.core.errors import UlmError
from ulm.core.settings import cdnow_dir, data_dir
from ulm.ml import clv, features, synthetic
from ulm.warehouse import PUBLISHED, connect, connect_read_only, table_exists, transaction

DEFAULT_SIZES = (10_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)


def _progress(message: str) -> None:
    print(f"[ulm.bench.ml] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- synth


def _require_table(warehouse: Path, schema: str, table: str, hint: str) -> None:
    """UlmError naming the file and table when ``warehouse`` lacks ``schema.table``."""
    if not warehouse.exists():
        raise UlmError(f"{warehouse}: file missing (rule: needs table {schema}.{table}; {hint})")
    with connect_read_only(warehouse) as con:
        found = table_exists(con, schema, table)
    if not found:
        raise UlmError(f"{warehouse}: table {schema}.{table} missing ({hint})")


def copy_snapshots(source: Path, warehouse: Path) -> int:
    """Copy ``ml.feature_snapshots`` (the champion's training snapshots) from ``source`` into ``warehouse``."""
    _require_table(source, "ml", "feature_snapshots", "run `ulm train` on it first")
    with connect(warehouse) as con:
        con.execute("attach '" + str(source).replace("'", "''") + "' as src (read_only)")
        try:
            with transaction(con):
                con.execute("create schema if not exists ml")
                con.execute("create or replace table ml.feature_snapshots as select * from src.ml.feature_snapshots")
            return con.execute("select count(*) from ml.feature_snapshots").fetchone()[0]
        finally:
            con.execute("detach src")


def synth(warehouse: Path, persons: int, days: int, end: date, seed: int, snapshots_from: Path | None) -> dict:
    if snapshots_from is not None:  # fail before minutes of writing, not after
        _require_table(snapshots_from, "ml", "feature_snapshots", "run `ulm train` on it first")
    start = time.perf_counter()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    counts = {f"{PUBLISHED}.{t}": n for t, n in
              synthetic.write_interface(warehouse, persons=persons, days=days, end=end, seed=seed).items()}
    if snapshots_from is not None:
        counts["ml.feature_snapshots"] = copy_snapshots(snapshots_from, warehouse)
    counts["seconds"] = round(time.perf_counter() - start, 2)
    return counts


# ----------------------------------------------------------------------------------------------- BG/NBD scaling


def load_clv_summary(warehouse: Path, as_of: date | None) -> pd.DataFrame:
    """The ``marts.fct_clv_snapshots`` rows of ``as_of`` (default: the newest snapshot, i.e. ``mart_clv_summary``)."""
    _require_table(warehouse, PUBLISHED, "fct_clv_snapshots", "run `synth` or `ulm run` first")
    with connect_read_only(warehouse) as con:
        if as_of is None:
            as_of = con.execute(f"select max(snapshot_date) from {PUBLISHED}.fct_clv_snapshots").fetchone()[0]
        return features.clv_snapshot(con, as_of)


def sample_persons(summary: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, bool]:
    """``n`` persons drawn without replacement, or with replacement (fresh ids) when the summary is smaller."""
    rng = np.random.default_rng(seed)
    resampled = n > len(summary)
    idx = rng.choice(len(summary), size=n, replace=resampled)
    out = summary.iloc[np.sort(idx)].reset_index(drop=True)
    if resampled:
        out["person_id"] = np.arange(n).astype(str)
    return out, resampled


def fit_timings(sample: pd.DataFrame, time_unit_days: float = 7) -> dict:
    """Seconds for the BG/NBD and the Gamma-Gamma MAP fits of ``ulm.ml.clv`` on one sample, with the estimates."""
    frame = clv.to_model_frame(sample, time_unit_days)
    repeat = clv.repeat_buyers(frame)
    t0 = time.perf_counter()
    bg = clv.fit_bgnbd(frame)
    t1 = time.perf_counter()
    gg = clv.fit_gamma_gamma(repeat)
    t2 = time.perf_counter()
    return {"persons": len(frame), "repeat_buyers": len(repeat), "bgnbd_seconds": round(t1 - t0, 3),
            "gg_seconds": round(t2 - t1, 3), "params": {k: round(v, 4) for k, v in {**bg, **gg}.items()}}


def bgnbd_scaling(warehouse: Path, sizes: list[int], as_of: date | None = None, seed: int = 7,
                  warmup: bool = True) -> dict:
    """Fit times per sample size; ``warmup`` first fits a small sample so PyTensor's one-off C compilation
    (cached on disk afterwards) is not charged to the first size."""
    summary = load_clv_summary(warehouse, as_of)
    _progress(f"CLV summary: {len(summary)} persons with a purchase")
    if warmup:
        fit_timings(sample_persons(summary, min(2000, len(summary)), seed)[0])
    rows = []
    for n in sizes:
        sample, resampled = sample_persons(summary, n, seed)
        row = fit_timings(sample) | {"resampled": resampled}
        rows.append(row)
        _progress(f"{n} persons: BG/NBD {row['bgnbd_seconds']:.2f}s, Gamma-Gamma {row['gg_seconds']:.2f}s "
                  f"({row['repeat_buyers']} repeat buyers){' [resampled]' if resampled else ''}")
    return {"warehouse": str(warehouse), "summary_persons": len(summary), "sizes": rows}


# ----------------------------------------------------------------------------------------------- CLV holdout

CLV_MODELS = "+fct_clv_snapshots +fct_person_activity_daily"  # dbt selection the holdout check reads


def build_cdnow(cdnow_file: Path, warehouse: Path, as_of: date) -> None:
    """``cdnow_file`` ingested into a new ``warehouse`` and the CLV marts built as of ``as_of`` (dbt run)."""
    from ulm.core.context import RunContext
    from ulm.ingest import ingest_cdnow
    from ulm.privacy.keys import ensure_local_pii_key
    from ulm.transform.dbt import run_dbt

    ensure_local_pii_key()
    for path in (warehouse, warehouse.with_name(warehouse.name + ".wal")):  # a scratch file: rebuilt every time
        path.unlink(missing_ok=True)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    ingest_cdnow(cdnow_file, warehouse, progress=False)
    run_dbt(RunContext.create(as_of=as_of, warehouse=warehouse), "run", select=CLV_MODELS, progress=False)


def clv_holdout(warehouse: Path | None, cdnow_file: Path, calibration_end: date, holdout_end: date,
                workdir: Path | None = None) -> dict:
    """Run the CLV holdout check (on ``warehouse``, or on ``cdnow_file`` built into the scratch file
    ``<workdir>/cdnow_holdout.duckdb``, default workdir ``<data dir>/bench/clv_holdout``); returns the JSON report."""
    from ulm.ml import clv_holdout as check

    start = time.perf_counter()
    if warehouse is None:
        warehouse = (workdir or data_dir() / "bench" / "clv_holdout") / "cdnow_holdout.duckdb"
        _progress(f"ingest {cdnow_file.name} and build the CLV marts as of {holdout_end} into {warehouse}")
        build_cdnow(cdnow_file, warehouse, holdout_end)
    results = check.validate(warehouse, calibration_end, holdout_end)
    return {"warehouse": str(warehouse), "calibration_end": str(calibration_end), "holdout_end": str(holdout_end),
            "seconds": round(time.perf_counter() - start, 1),
            "models": {k: {"role": r.role, "run_id": r.run_id, "metrics": r.metrics} for k, r in results.items()}}


# ----------------------------------------------------------------------------------------------- CLI


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in YYYY-MM-DD form") from None


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(v.replace("_", "")) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of integers") from None
    if not sizes or min(sizes) < 10:
        raise argparse.ArgumentTypeError("sizes must be integers >= 10")
    return sizes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ulm.bench.ml", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="write the synthetic published tables ML reads for N persons")
    s.add_argument("--warehouse", type=Path, required=True, help="DuckDB file to create / replace tables in")
    s.add_argument("--persons", type=int, required=True)
    s.add_argument("--days", type=int, default=365, help="registration window in days (default 365)")
    s.add_argument("--end", type=_date, default=date(2025, 12, 31), help="last day, YYYY-MM-DD")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--snapshots-from", type=Path, default=None,
                   help="copy ml.feature_snapshots from this warehouse (drift reference for `ulm score`)")
    b = sub.add_parser("bgnbd-scaling", help="BG/NBD and Gamma-Gamma fit time vs number of persons")
    b.add_argument("--warehouse", type=Path, required=True)
    b.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES), help="comma-separated person counts")
    b.add_argument("--out", type=Path, required=True, help="JSON file to write")
    b.add_argument("--as-of", type=_date, default=None,
                   help="summary as of this day, a month end or the as-of day (marts.fct_clv_snapshots; "
                        "default: the newest snapshot = marts.mart_clv_summary)")
    b.add_argument("--seed", type=int, default=7)
    b.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the untimed warm-up fit (PyTensor compilation then counts in the first size)")
    c = sub.add_parser("clv-holdout", help="BG/NBD and Pareto/NBD checked on a holdout (CDNOW by default)")
    c.add_argument("--warehouse", type=Path, default=None,
                   help="warehouse with the CLV marts built up to the holdout end (default: build CDNOW into --workdir)")
    c.add_argument("--cdnow", type=Path, default=None, help="CDNOW file to ingest (default datasets/cdnow/CDNOW_sample.txt)")
    c.add_argument("--workdir", type=Path, default=None,
                   help="scratch folder for the built CDNOW warehouse (default <data dir>/bench/clv_holdout)")
    c.add_argument("--calibration-end", type=_date, default=date(1997, 9, 30))
    c.add_argument("--holdout-end", type=_date, default=date(1998, 6, 30))
    c.add_argument("--out", type=Path, required=True, help="JSON file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "synth":
        res = synth(args.warehouse, args.persons, args.days, args.end, args.seed, args.snapshots_from)
        _progress(f"synth: {res}")
        return 0
    if args.command == "clv-holdout":
        res = clv_holdout(args.warehouse, args.cdnow or cdnow_dir() / "CDNOW_sample.txt", args.calibration_end,
                          args.holdout_end, args.workdir)
    else:
        res = bgnbd_scaling(args.warehouse, args.sizes, args.as_of, args.seed, args.warmup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1), encoding="utf-8")
    _progress(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
