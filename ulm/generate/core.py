"""``generate()``: run the day-major simulation and write landing files, ground truth and defect manifest."""
from __future__ import annotations

import json
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import track

from ulm.core.contract import AGE_BANDS, CHANNELS, PLATFORMS, REGIONS, TABLES
from ulm.core.errors import UlmError

from . import tables as T
from . import writer
from .calendar import build_calendar
from .defects import Injector
from .population import LINK_NAMES, Accounts, Persons, build_accounts, build_persons
from .settings import DEFAULT_END_DATE, GenSettings
from .simulate import Simulator

MAX_DEFECT_RATE = 0.5
MAX_PENDING = 64  # queued file writes (bounds memory to a few days of rows)


def _check_args(persons: int, days: int, defects: float, fmt: str) -> None:
    if persons < 10:
        raise UlmError(f"generate: persons={persons} is too small (rule: persons >= 10)")
    if days < 1:
        raise UlmError(f"generate: days={days} (rule: days >= 1)")
    if not 0.0 <= defects <= MAX_DEFECT_RATE:
        raise UlmError(f"generate: defects={defects} (rule: 0 <= defects <= {MAX_DEFECT_RATE})")
    if fmt not in writer.FORMATS:
        raise UlmError(f"generate: fmt={fmt!r} (rule: one of {', '.join(writer.FORMATS)})")


def generate(out_dir: Path, persons: int = 20000, days: int = 365, end_date: date | None = None, seed: int = 42,
             defects: float = 0.0, truth_dir: Path | None = None, fmt: str = "parquet",
             progress: bool = True, settings: GenSettings | None = None) -> dict:
    """Simulate ``persons`` persons over the ``days`` business days ending ``end_date`` (default 2025-12-31).

    Writes ``<out_dir>/<table>/<table>_YYYYMMDD.<fmt>`` (landing contract, ``ulm.core.contract.TABLES``),
    ``<truth_dir>/accounts.parquet``, ``<truth_dir>/persons.parquet`` and, with ``defects > 0``,
    ``<truth_dir>/defects_manifest.json``. Same arguments give byte-identical data. Returns a summary.
    """
    _check_args(persons, days, defects, fmt)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    truth_dir = Path(truth_dir) if truth_dir is not None else out_dir.parent / "truth"
    end_date = end_date or DEFAULT_END_DATE
    gs = settings or GenSettings()
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    writer.clear_landing(out_dir)

    cal = build_calendar(end_date, days)
    pop_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    people = build_persons(pop_rng, persons, cal, gs)
    accounts = build_accounts(pop_rng, people, gs, salt=int(pop_rng.integers(0, 2**31)))
    sim = Simulator(people, accounts, cal, gs, np.random.default_rng(np.random.SeedSequence([seed, 2])))
    injector = Injector(defects, seed) if defects > 0 else None

    rows = {t: 0 for t in TABLES}
    files = 0
    # file writes overlap the next days' simulation (pyarrow releases the GIL); at most MAX_PENDING queued
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque[Future] = deque()
        for t in track(range(days), description="simulating days", disable=not progress, transient=True):
            for name, tbl in sim.step(t).items():
                if tbl.num_rows == 0:
                    continue
                rel = writer.relpath(name, cal.dates[t], fmt)
                if injector is not None:
                    tbl = injector.apply(name, t, tbl, rel)
                pending.append(pool.submit(writer.write, out_dir, rel, tbl, fmt))
                rows[name] += tbl.num_rows
                files += 1
            while len(pending) > MAX_PENDING:
                pending.popleft().result()
        for f in pending:
            f.result()

    n_acc = _write_truth(truth_dir, sim, people, accounts, cal.dates)
    manifest = None
    if injector is not None:
        manifest = truth_dir / "defects_manifest.json"
        injector.write_manifest(manifest)
    seconds = time.perf_counter() - t0
    summary = {
        "out_dir": str(out_dir), "truth_dir": str(truth_dir), "format": fmt, "seed": seed,
        "start_date": cal.dates[0].isoformat(), "end_date": end_date.isoformat(), "days": days,
        "persons": persons, "accounts": n_acc, "defects": defects, "rows": rows, "files": files,
        "manifest": str(manifest) if manifest else None, "seconds": round(seconds, 2),
        "events_per_second": round(rows["events"] / seconds) if seconds > 0 else None,
    }
    (truth_dir / "generation.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _write_truth(truth_dir: Path, sim: Simulator, p: Persons, a: Accounts, dates: list[date]) -> int:
    """Ground truth for model evaluation, outside the landing folder: account -> person map and traits."""
    made = np.flatnonzero(sim.acc_reg_sec >= 0)
    pid = T.prefixed("P", np.arange(p.n))
    pq.write_table(pa.table({
        "user_id": a.user_id.take(pa.array(made)),
        "true_person_id": pid.take(pa.array(a.person[made])),
        "platform": T.take(T.vocab(PLATFORMS), a.platform[made]),
        "account_rank": a.rank[made].astype(np.int32),
        "linked_to_previous_by": T.take(T.vocab(LINK_NAMES), a.link[made]),
        "registered_at": T.timestamps(sim.acc_reg_sec[made]),
        "users_row_late_days": a.late_days[made].astype(np.int32),
    }), truth_dir / "accounts.parquet")
    day0 = (dates[0] - date(1970, 1, 1)).days

    def as_date(offsets: np.ndarray, plus: int = 0) -> pa.Array:
        """date32 of day indexes (null where negative)."""
        off = np.asarray(offsets, dtype=np.int64)
        return pa.array((day0 + off + plus).astype(np.int32), mask=off < 0).cast(pa.date32())

    dead = sim.dead_day >= 0
    n_accounts = np.bincount(a.person[made], minlength=p.n)
    pq.write_table(pa.table({
        "true_person_id": pid,
        "registered_on": as_date(p.reg_day),
        "acquisition_channel": T.take(T.vocab(CHANNELS), p.channel),
        "platform": T.take(T.vocab(PLATFORMS), p.platform),
        "region": T.take(T.vocab(REGIONS), p.region),
        "city_tier": p.city_tier.astype(np.int32),
        "age_band": T.take(T.vocab(AGE_BANDS), p.age_band),
        "n_accounts": n_accounts.astype(np.int32),
        "purchase_rate_per_day": p.lam,
        "visit_prob_per_day": p.act,
        "dropout_prob_per_active_day": p.drop,
        "tourist": p.tourist,
        "spend_scale_cny": p.spend,
        "share_rate_per_active_day": p.share_rate,
        "influence": p.influence,
        "arrived_via_share_link": p.via_share,
        "is_churned": dead,
        "last_alive_date": as_date(sim.dead_day),
        "churn_date": as_date(sim.dead_day, plus=1),
        "last_active_date": as_date(sim.last_active),
        "ever_purchased": sim.bought,
    }), truth_dir / "persons.parquet")
    return len(made)
