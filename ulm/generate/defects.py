"""Deterministic defect injection for loader tests (``generate(defects=RATE)``).

``floor(RATE x rows)`` clean rows of every day file are picked (so small files may get none and no
file's invalid share exceeds RATE); each picked row yields exactly
one defective row with exactly one fault, so the loader's first failing check (order: missing_required,
bad_type, unknown_enum, timestamp_too_old / timestamp_in_future, out_of_range, constraint,
unknown_account) is the intended reason:

* ``duplicate``: an identical copy of the row (same key), appended to the same file;
* every other reason: a *decoy* copy of the row with a fresh key (``<key>-d<n>``) and one column broken,
  appended to the same file. The clean row stays, so defects never cascade (e.g. a quarantined user
  would orphan all of its events) and the clean data is identical with or without defects.
  ``marketing_spend`` has a natural key (date, channel, platform), so there the row is broken in place.

Malformed values (``bad_type``): Parquet cannot hold a string in a typed column, so the file that holds
such a row stores that one column as string (all other values in it are valid ISO timestamps / decimal /
int text); in CSV every column is text anyway.

Every injected row is listed in ``<truth_dir>/defects_manifest.json`` with table, key, reason and file
(relative to the landing folder); ``counts`` sums them per table and reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ulm.core.contract import TABLES

from .writer import to_text

REASONS = ("missing_required", "bad_type", "unknown_enum", "timestamp_too_old", "timestamp_in_future",
           "out_of_range", "constraint", "unknown_account")
DUPLICATE = "duplicate"
FUTURE_TS = datetime(2099, 1, 1, 0, 0, 0)
OLD_TS = datetime(2014, 6, 1, 0, 0, 0)
BAD_TEXT = {"timestamp": "not-a-timestamp", "decimal": "12.3.4", "int": "seven", "date": "not-a-date"}

Op = Callable[[pa.Table, str, "Injector"], pa.Table]


def _set(tbl: pa.Table, col: str, values) -> pa.Table:
    """Replace a column, keeping its file type (text columns get the text form of typed values)."""
    i = tbl.schema.get_field_index(col)
    typ = tbl.schema.field(i).type
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array([values] * tbl.num_rows)
    if arr.type != typ:
        arr = to_text(arr) if pa.types.is_string(typ) else arr.cast(typ)
    return tbl.set_column(i, col, arr)


def _as_text(tbl: pa.Table, col: str) -> pa.Table:
    i = tbl.schema.get_field_index(col)
    return tbl.set_column(i, pa.field(col, pa.string()), to_text(tbl.column(col)))


def _null(t: pa.Table, col: str, inj: "Injector") -> pa.Table:
    return _set(t, col, pa.nulls(t.num_rows, t.schema.field(col).type))


def _bad_type(t: pa.Table, col: str, inj: "Injector") -> pa.Table:
    return _set(t, col, BAD_TEXT[TABLES[inj.table].col(col).type])


def _unknown_enum(t: pa.Table, col: str, inj: "Injector") -> pa.Table:
    # "<value>_v2" is outside every enum and keeps natural keys distinct (marketing_spend)
    return _set(t, col, pc.binary_join_element_wise(t.column(col), "_v2", ""))


def _ts(value: datetime, follow: str | None = None) -> Op:
    def op(t: pa.Table, col: str, inj: "Injector") -> pa.Table:
        t = _set(t, col, pa.array([value] * t.num_rows, type=pa.timestamp("us")))
        if follow:  # keep accepted_at >= sent_at so only the timestamp check fails
            later = pa.array([value + timedelta(minutes=1)] * t.num_rows, type=pa.timestamp("us"))
            cur = t.column(follow)
            t = _set(t, follow, pc.if_else(pc.is_null(cur), pa.nulls(t.num_rows, pa.timestamp("us")), later))
        return t
    return op


def _value(value) -> Op:
    return lambda t, col, inj: _set(t, col, value)


def _orphan(t: pa.Table, col: str, inj: "Injector") -> pa.Table:
    return _set(t, col, pa.array([f"zz_orphan{n}" for n in inj.counter(t.num_rows)]))


def _plus_one_of(base: str) -> Op:
    one = pa.scalar(Decimal("1.00"), pa.decimal128(18, 2))
    return lambda t, col, inj: _set(t, col, pc.add(t.column(base), one))


def _accepted_before_sent(t: pa.Table, col: str, inj: "Injector") -> pa.Table:
    inv = t.column("invitee_user_id")
    t = _set(t, "invitee_user_id", pc.if_else(pc.is_null(inv), t.column("inviter_user_id"), inv))
    return _set(t, col, pc.subtract(t.column("sent_at"), pa.scalar(timedelta(hours=1))))


@dataclass(frozen=True)
class Kind:
    reason: str
    column: str | None = None
    op: Op | None = None


def _k(reason: str, column: str | None = None, op: Op | None = None) -> Kind:
    return Kind(reason, column, op)


_DUP = _k(DUPLICATE)
# table -> kinds of defect; several entries per reason spread the faults over columns
KINDS: dict[str, list[Kind]] = {
    "users": [
        _DUP, _k("missing_required", "platform", _null), _k("missing_required", "registered_at", _null),
        _k("bad_type", "registered_at", _bad_type), _k("bad_type", "city_tier", _bad_type),
        _k("unknown_enum", "acquisition_channel", _unknown_enum), _k("unknown_enum", "region", _unknown_enum),
        _k("timestamp_too_old", "registered_at", _ts(OLD_TS)),
        _k("timestamp_in_future", "registered_at", _ts(FUTURE_TS)),
        _k("out_of_range", "city_tier", _value(9)),
    ],
    "events": [
        _DUP, _k("missing_required", "event_type", _null), _k("missing_required", "event_ts", _null),
        _k("bad_type", "event_ts", _bad_type), _k("unknown_enum", "event_type", _unknown_enum),
        _k("timestamp_too_old", "event_ts", _ts(OLD_TS)), _k("timestamp_in_future", "event_ts", _ts(FUTURE_TS)),
        _k("unknown_account", "user_id", _orphan),
    ],
    "orders": [
        _DUP, _k("missing_required", "status", _null), _k("missing_required", "paid_amount", _null),
        _k("bad_type", "gross_amount", _bad_type), _k("bad_type", "order_ts", _bad_type),
        _k("unknown_enum", "status", _unknown_enum), _k("unknown_enum", "scenario", _unknown_enum),
        _k("timestamp_too_old", "order_ts", _ts(OLD_TS)), _k("timestamp_in_future", "order_ts", _ts(FUTURE_TS)),
        _k("out_of_range", "refund_amount", _value(Decimal("-5.00"))),
        _k("constraint", "paid_amount", _plus_one_of("paid_amount")),
        _k("constraint", "refund_amount", _plus_one_of("paid_amount")),
        _k("unknown_account", "user_id", _orphan),
    ],
    "marketing_spend": [
        _DUP, _k("missing_required", "spend", _null), _k("bad_type", "spend", _bad_type),
        _k("unknown_enum", "acquisition_channel", _unknown_enum), _k("out_of_range", "spend", _value(Decimal("-100.00"))),
    ],
    "invites": [
        _DUP, _k("missing_required", "sent_at", _null), _k("bad_type", "accepted_at", _bad_type),
        _k("timestamp_too_old", "sent_at", _ts(OLD_TS)),
        _k("timestamp_in_future", "sent_at", _ts(FUTURE_TS, follow="accepted_at")),
        _k("constraint", "accepted_at", _accepted_before_sent), _k("unknown_account", "inviter_user_id", _orphan),
    ],
    "nps_responses": [
        _DUP, _k("missing_required", "score", _null), _k("bad_type", "score", _bad_type),
        _k("timestamp_too_old", "responded_at", _ts(OLD_TS)), _k("timestamp_in_future", "responded_at", _ts(FUTURE_TS)),
        _k("out_of_range", "score", _value(11)), _k("unknown_account", "user_id", _orphan),
    ],
    "erasure_requests": [
        _DUP, _k("missing_required", "requested_at", _null), _k("bad_type", "requested_at", _bad_type),
        _k("timestamp_too_old", "requested_at", _ts(OLD_TS)),
        _k("timestamp_in_future", "requested_at", _ts(FUTURE_TS)),
    ],
}
IN_PLACE = {"marketing_spend"}
TABLE_ORDER = tuple(TABLES)


@dataclass
class Injector:
    rate: float
    seed: int
    rows: list[dict] = field(default_factory=list)
    table: str = ""
    _n: int = 0

    def counter(self, k: int) -> range:
        start = self._n
        self._n += k
        return range(start, start + k)

    def apply(self, table: str, t: int, tbl: pa.Table, rel: str) -> pa.Table:
        """The day file's rows with defects added (deterministic per seed, table and day)."""
        if self.rate <= 0 or tbl.num_rows == 0:
            return tbl
        self.table = table
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 77, TABLE_ORDER.index(table), t]))
        # floor(rate x rows) per file, never rounded up: with rate <= max_invalid_ratio no file crosses the
        # loader's per-file invalid-ratio gate, so a demo with defects loads; small files may get none.
        n = int(np.floor(self.rate * tbl.num_rows + 1e-9))
        picked = np.sort(rng.choice(tbl.num_rows, size=n, replace=False)) if n else np.empty(0, dtype=np.int64)
        if len(picked) == 0:
            return tbl
        kinds = KINDS[table]
        kind = rng.integers(0, len(kinds), len(picked))
        for col in sorted({kinds[k].column for k in set(kind.tolist()) if kinds[k].reason == "bad_type"}):
            tbl = _as_text(tbl, col)  # valid text for every clean row of this file
        key = TABLES[table].key
        keep = np.ones(tbl.num_rows, dtype=bool)
        added = []
        for k in np.unique(kind):
            kd = kinds[k]
            rows = picked[kind == k]
            sub = tbl.take(pa.array(rows))
            if kd.op is not None:
                if table in IN_PLACE:
                    keep[rows] = False
                else:
                    fresh = pa.array([f"-d{n}" for n in self.counter(len(rows))])
                    sub = _set(sub, key[0], pc.binary_join_element_wise(sub.column(key[0]), fresh, ""))
                sub = kd.op(sub, kd.column, self)
            added.append(sub)
            for r in sub.select(list(key)).to_pylist():
                self.rows.append({"table": table, "key": "|".join(str(r[c]) for c in key), "reason": kd.reason,
                                  "file": rel})
        return pa.concat_tables([tbl.filter(pa.array(keep))] + added)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.rows:
            out.setdefault(r["table"], {}).setdefault(r["reason"], 0)
            out[r["table"]][r["reason"]] += 1
        return out

    def write_manifest(self, path: Path) -> None:
        doc = {"rate": self.rate, "seed": self.seed, "counts": self.counts(), "rows": self.rows}
        path.write_text(json.dumps(doc, indent=1, sort_keys=False), encoding="utf-8")
