"""What the loader works on: landing files, load results, the key-hash index, and the error a failed load raises.

Shared by :mod:`ulm.ingest.sources` (reading files), :mod:`ulm.ingest.batch` (one set-based pass per table) and
:mod:`ulm.ingest.loader` (discovery and the run).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ulm.core.errors import UlmError

FORMATS = {".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class LandingFile:
    """One landing file to load into ``raw.<table>``; ``label`` names it in messages and load ids."""

    table: str
    path: Path
    label: str
    origin: str | None = None  # recorded as _source_file when the file is derived (e.g. CDNOW mapping)

    @property
    def format(self) -> str:
        return FORMATS[self.path.suffix.lower()]


@dataclass
class LoadResult:
    """Outcome of one load (mirrors its ``raw.load_audit`` row)."""

    table: str
    load_id: str
    source_file: str
    sha256: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_released: int = 0
    rows_erased: int = 0  # of rows_quarantined: rows of erased persons (erased_subject)
    rows_new_version: int = 0  # of rows_accepted: new versions of known accounts (users updates)
    skipped: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_id_of(table: str, label: str, sha256: str) -> str:
    """``<table>:<file name>:<sha256[:12]>``: same content under the same name -> same id."""
    return f"{table}:{label}:{sha256[:12]}"


def key_index(table: str) -> str:
    """Name of the key-hash index of a raw table (one UBIGINT per loaded row)."""
    return f"raw._keys_{table}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def utc_now() -> datetime:
    """Load time: naive UTC, like every raw timestamp."""
    return datetime.now(UTC).replace(tzinfo=None)


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def is_write_failure(exc: BaseException) -> bool:
    """DuckDB could not write the warehouse, its WAL or its temp spill (disk full, I/O error, invalidated)."""
    if not isinstance(exc, duckdb.Error):
        return False
    msg = str(exc).lower()
    return isinstance(exc, duckdb.FatalException) or any(
        s in msg for s in ("no space left", "could not write", "disk is full", "failed to create checkpoint"))


def load_error(label: str, exc: BaseException) -> BaseException:
    """The error a failed load raises: a warehouse I/O failure becomes a one-line UlmError naming ``label``
    (the file or files being loaded); anything else is raised as it is."""
    if isinstance(exc, duckdb.IOException) or is_write_failure(exc):
        detail = re.sub(r"^(?:FATAL |IO |TransactionContext )?Error: ", "", first_line(exc))
        detail = re.sub(r"^Failed(?: to commit)?: ", "", detail)
        return UlmError(f"{label}: load failed, warehouse I/O error: {detail} (free disk space, then re-run)")
    return exc
