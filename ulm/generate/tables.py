"""Arrow helpers: typed columns from numpy arrays and contract-ordered tables (``ulm.core.contract.TABLES``)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ulm.core.contract import TABLES

ARROW_TYPES = {
    "string": pa.string(),
    "json": pa.string(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "int": pa.int32(),
    "bool": pa.bool_(),
    "decimal": pa.decimal128(18, 2),
}


def schema(table: str) -> pa.Schema:
    """Parquet schema of a landing table: contract columns in contract order."""
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in TABLES[table].columns])


def vocab(values) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def take(voc: pa.Array, idx: np.ndarray) -> pa.Array:
    """``voc[idx]`` with null where ``idx < 0``."""
    idx = np.asarray(idx, dtype=np.int64)
    neg = idx < 0
    if neg.any():
        return voc.take(pa.array(np.where(neg, 0, idx), mask=neg))
    return voc.take(pa.array(idx))


def prefixed(prefix: str, numbers: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Ids like ``prefix + str(n)``; null where ``mask`` is true."""
    nums = pa.array(np.asarray(numbers, dtype=np.int64), mask=mask).cast(pa.string())
    return pc.binary_join_element_wise(prefix, nums, "")


def timestamps(epoch_seconds: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """timestamp[us], UTC-naive, from epoch seconds."""
    us = np.asarray(epoch_seconds, dtype=np.int64) * 1_000_000
    return pa.array(us, type=pa.timestamp("us"), mask=mask)


def decimals(cents: np.ndarray) -> pa.Array:
    """decimal128(18,2) from integer cents, exact (no float rounding)."""
    c = np.asarray(cents, dtype=np.int64)
    words = np.empty((len(c), 2), dtype=np.int64)
    words[:, 0] = c
    words[:, 1] = c >> 63  # sign extension of the 128-bit two's complement
    return pa.Array.from_buffers(pa.decimal128(18, 2), len(c), [None, pa.py_buffer(words.tobytes())])


def make_table(table: str, columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    """A contract-ordered, contract-typed table; raises KeyError naming a missing column."""
    sch = schema(table)
    arrays = []
    for f in sch:
        col = columns[f.name]
        arr = col if isinstance(col, (pa.Array, pa.ChunkedArray)) else pa.array(col)
        arrays.append(arr.cast(f.type) if arr.type != f.type else arr)
    return pa.Table.from_arrays(arrays, schema=sch)
