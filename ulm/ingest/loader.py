"""Landing files -> DuckDB schema ``raw`` (docs/METRICS.md#landing-contract, #validity-quarantine-and-reconciliation). See docs/LOADING.md for the full behaviour.

One load = one file (its own ``load_id``, ``raw.load_audit`` row, registry row, reconciliation and invalid ratio),
but one run loads all new files of a table in one set-based pass and one transaction (:mod:`ulm.ingest.batch`):

1. skip a file when its sha256 is already in ``raw._ingested_files`` (idempotent re-ingest);
2. check each file (CSV encoding and delimiter, repeated column names) and its schema (drift) -> the file's
   :class:`ContractError`: it is audited as ``failed`` and left out, the other files go on;
3. release earlier orphans of the table whose account now exists (late-arriving dimension);
4. stage every file with :func:`ulm.ingest.validate.stage_sql` (set-based parse + reason codes), one ``SELECT``
   per schema group over the file list;
5. mark duplicates of a unique key across the files in file order (identical -> counted, different content ->
   quarantined); ``users`` rows of known accounts become versions (:mod:`ulm.ingest.versions`);
6. enforce ``max_invalid_ratio`` per file (a file above it fails alone); insert accepted rows, quarantine rows,
   audit rows, registry rows; commit.

After every table is loaded, the first ContractError of the run (load order) is raised, naming file, column and
rule. A failed load raises its own error (never a failing ROLLBACK's); a warehouse I/O error (disk full) becomes a
one-line :class:`UlmError` naming the file(s) and stops the run.

``load_id`` = ``<table>:<file name>:<sha256[:12]>`` (deterministic: same content under the same name ->
same id). Release-only loads (no new file for a table, but orphans became loadable) use
``<table>:release:<UTC timestamp>``.
"""
from __future__ import annotations

import logging
import os
import re
import time
from datetime import date
from pathlib import Path

import duckdb

from ulm.core import contract
from ulm.core.errors import ContractError, UlmError
from ulm.ingest import batch
from ulm.ingest.files import (  # noqa: F401  (re-exported: the loader's public names)
    FORMATS,
    LandingFile,
    LoadResult,
    first_line,
    key_index,
    load_error,
    sha256_file,
    utc_now,
)
from ulm.ingest.validate import Rules, key_hash_sql
from ulm.warehouse import connect, ensure_raw_schema, transaction

log = logging.getLogger("ulm.ingest")

_STAMP = re.compile(r"(?:^|_)(\d{8})(?:_|$)")


# --------------------------------------------------------------------------- key-hash index

def ensure_key_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``raw._keys_<table>`` for every raw table (backfilled from ``raw.<table>`` the first time).

    Duplicate detection probes this narrow integer column instead of scanning every key string of a
    large raw table; only on a hit are the raw rows themselves read. Rows deleted from raw (erasure)
    leave stale hashes behind, which only cost a raw lookup that finds nothing.
    """
    have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw'").fetchall()}
    for table in contract.TABLES:
        if f"_keys_{table}" not in have:
            con.execute(f"CREATE TABLE {key_index(table)} (key_hash UBIGINT NOT NULL)")
            con.execute(f"INSERT INTO {key_index(table)} SELECT {key_hash_sql(contract.TABLES[table])} FROM raw.{table}")


# --------------------------------------------------------------------------- discovery

def table_order() -> list[str]:
    """Contract tables with referenced tables (users) before the tables that reference them."""
    referenced = {ref.split(".")[0] for t in contract.TABLES.values() for ref in t.foreign_keys.values()}
    return [t for t in contract.TABLES if t in referenced] + [t for t in contract.TABLES if t not in referenced]


def file_stamp(path: Path) -> date | None:
    """The ``YYYYMMDD`` stamp in a file name (``events_20250301.parquet``), or None."""
    m = _STAMP.search(path.stem)
    if not m:
        return None
    d = m.group(1)
    try:
        return date(int(d[:4]), int(d[4:6]), int(d[6:]))
    except ValueError:
        return None


def discover(landing_dir: Path, until: date | None = None) -> tuple[list[LandingFile], list[str]]:
    """Landing files in load order (dependency order of tables, then file name) and warnings."""
    landing_dir = Path(landing_dir)
    if not landing_dir.is_dir():
        raise UlmError(f"landing directory {landing_dir} does not exist")
    warnings = [
        f"{p}: not a contract table folder, ignored"
        for p in sorted(landing_dir.iterdir())
        if not (p.is_dir() and p.name in contract.TABLES) and not p.name.startswith(".")
    ]
    files: list[LandingFile] = []
    seen = 0  # landing files found, before the ``until`` filter
    for table in table_order():
        folder = landing_dir / table
        if not folder.is_dir():
            continue
        real = folder.resolve()  # once per folder; a file that is itself a symlink is resolved on its own
        with os.scandir(folder) as entries:
            listing = sorted(entries, key=lambda e: e.name)
        for e in listing:
            if e.name.startswith("."):
                continue
            p = folder / e.name
            if not e.is_file() or p.suffix.lower() not in FORMATS:
                warnings.append(f"{p}: not a .parquet or .csv file, ignored")
                continue
            seen += 1
            stamp = file_stamp(p)
            if until is not None and stamp is not None and stamp > until:
                continue
            files.append(LandingFile(table, p.resolve() if e.is_symlink() else real / e.name, e.name))
    if not seen:
        warnings.append(f"landing directory {landing_dir} holds no landing files")
    return files, warnings


# --------------------------------------------------------------------------- file hashes

FILE_HASHES = "raw._file_hashes"
_RACY_NS = 2_000_000_000  # a file modified this close to its hashing is hashed again next time


def ensure_file_hashes(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE IF NOT EXISTS {FILE_HASHES} (path VARCHAR PRIMARY KEY, size BIGINT NOT NULL, "
                "mtime_ns BIGINT NOT NULL, file_sha256 VARCHAR NOT NULL, hashed_at TIMESTAMP NOT NULL)")


class FileHashes:
    """sha256 of landing files, read again only when a file's path, size or modification time changed (the way
    git's index avoids re-reading unchanged files), so a daily run does not re-hash the whole landing history.

    The registry (``raw._ingested_files``) stays keyed by content; this is only a cache of ``sha256(file)``.
    A file modified less than 2 s before it was hashed is not cached (it may still be being written).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.known = {p: (size, mtime, sha) for p, size, mtime, sha in
                      con.execute(f"SELECT path, size, mtime_ns, file_sha256 FROM {FILE_HASHES}").fetchall()}
        self.new: dict[str, tuple[int, int, str]] = {}

    def __call__(self, lf: LandingFile) -> str:
        st = os.stat(lf.path)
        key = str(lf.path)
        hit = self.known.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        sha = sha256_file(lf.path)
        if lf.origin is None and time.time_ns() - st.st_mtime_ns > _RACY_NS:  # derived files are temporary
            self.known[key] = self.new[key] = (st.st_size, st.st_mtime_ns, sha)
        return sha

    def save(self, con: duckdb.DuckDBPyConnection) -> None:
        """Record the hashes computed in this run (best effort: the cache is never worth failing a run for)."""
        if not self.new:
            return
        paths = list(self.new)
        try:
            with transaction(con):
                con.execute(f"INSERT OR REPLACE INTO {FILE_HASHES} SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[]), "
                            "unnest(?::BIGINT[]), unnest(?::VARCHAR[]), ?::TIMESTAMP",
                            [paths, [self.new[p][0] for p in paths], [self.new[p][1] for p in paths],
                             [self.new[p][2] for p in paths], utc_now()])
        except duckdb.Error as exc:
            log.debug("recording file hashes failed: %s", first_line(exc))


# --------------------------------------------------------------------------- loads

def ingested_index(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str]:
    """(table, sha256) -> load_id of every file already ingested: one query per run instead of one per file."""
    rows = con.execute("SELECT table_name, file_sha256, load_id FROM raw._ingested_files").fetchall()
    return {(t, sha): load_id for t, sha, load_id in rows}


def load_file(con: duckdb.DuckDBPyConnection, lf: LandingFile, min_valid_timestamp: str | None = None,
              ingested: dict[tuple[str, str], str] | None = None) -> LoadResult:
    """Load one landing file (a batch of one, see :func:`ulm.ingest.batch.load_table`); skip it if already
    ingested. Raises its ContractError after auditing it as failed.

    ``ingested``: the caller's :func:`ingested_index` (kept up to date here); read from the warehouse when None.
    """
    if ingested is None:
        ingested = ingested_index(con)
    results, errors = batch.load_table(con, lf.table, [lf], ingested, min_valid_timestamp)
    if errors:
        raise errors[0]
    return results[0]


def release_only(con: duckdb.DuckDBPyConnection, table_name: str, min_valid_timestamp: str | None = None) -> LoadResult | None:
    """A load without a file: release the table's orphans whose account arrived; audited when any moved."""
    table = contract.TABLES[table_name]
    if not table.foreign_keys:
        return None
    if not batch.pending_count(con, table_name):
        return None
    now = utc_now()
    r = LoadResult(table_name, f"{table_name}:release:{now:%Y%m%dT%H%M%S}", "", "")
    try:
        with transaction(con):
            if batch.stage_release(con, table, Rules.for_load(now, min_valid_timestamp)):
                r.rows_released = batch.apply_release(con, table, r.load_id, now)
            if r.rows_released:
                con.execute("INSERT INTO raw.load_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [r.load_id, r.table, r.source_file, r.sha256, 0, 0, 0, 0, r.rows_released, "ok",
                             "released late-arriving rows", now, utc_now()])
            batch.drop_temps(con)
    except BaseException as exc:
        error = load_error(f"{table_name} (release of late-arriving rows)", exc)
        try:
            batch.drop_temps(con)
        except duckdb.Error as drop_exc:
            log.debug("%s: dropping temp tables failed: %s", table_name, first_line(drop_exc))
        if error is exc:
            raise
        raise error from exc
    return r if r.rows_released else None


# --------------------------------------------------------------------------- many files

def _empty_summary() -> dict:
    return {"files": 0, "files_skipped": 0, "rows_read": 0, "rows_accepted": 0, "rows_quarantined": 0,
            "rows_duplicate": 0, "rows_released": 0, "rows_erased": 0, "rows_new_version": 0, "load_ids": [],
            "seconds": 0.0}


def _add(summary: dict, r: LoadResult) -> None:
    if r.skipped:
        summary["files_skipped"] += 1
        return
    if r.source_file:
        summary["files"] += 1
    for k in ("rows_read", "rows_accepted", "rows_quarantined", "rows_duplicate", "rows_released", "rows_erased",
              "rows_new_version"):
        summary[k] += getattr(r, k)
    summary["load_ids"].append(r.load_id)
    summary["seconds"] += r.seconds


def _progress(enabled: bool, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("ingest {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), disable=not enabled, transient=False)
    return progress, progress.add_task("", total=total)


def ingest_files(files: list[LandingFile], warehouse: Path, progress: bool = True,
                 min_valid_timestamp: str | None = None, warnings: list[str] | None = None) -> dict:
    """Load files into one warehouse opened once: table by table in dependency order (each table's files in the
    given order, in one set-based batch), then release-only loads; returns the summary.

    A file that breaks the contract fails alone (audited ``failed``); once every table is loaded, the first such
    ContractError is raised, with ``failures`` (every failed file's message, in load order) and ``summary`` (what
    this function would have returned) attached. A warehouse I/O error stops the run at once.
    """
    t0 = time.perf_counter()
    warnings = list(warnings or [])
    for w in warnings:
        log.warning(w)
    tables = {t: _empty_summary() for t in table_order()}
    by_table: dict[str, list[LandingFile]] = {t: [] for t in tables}
    for lf in files:
        by_table[lf.table].append(lf)
    errors: list[ContractError] = []
    con = connect(warehouse)
    try:
        try:
            ensure_raw_schema(con)
            ensure_key_indexes(con)
            ensure_file_hashes(con)
        except duckdb.Error as exc:
            error = load_error(f"warehouse {warehouse}", exc)
            if error is exc:
                raise
            raise error from exc
        bar, task = _progress(progress, len(files))
        ingested = ingested_index(con)
        hashes = FileHashes(con)
        with bar:
            for name, table_files in by_table.items():
                if not table_files:
                    continue
                bar.update(task, description=f"{name} ({len(table_files)} files)")
                results, failed = batch.load_table(con, name, table_files, ingested, min_valid_timestamp, hashes)
                for r in results:
                    for w in r.warnings:
                        log.warning(w)
                    _add(tables[name], r)
                errors += failed
                bar.advance(task, len(table_files))
        for name, s in tables.items():
            if not s["files"]:
                released = release_only(con, name, min_valid_timestamp)
                if released:
                    _add(s, released)
        hashes.save(con)
    finally:
        try:
            con.close()
        except duckdb.Error as exc:  # an invalidated database (fatal I/O error): the load's error is raised
            log.debug("closing the warehouse failed: %s", first_line(exc))
    for name, s in tables.items():
        if s["files"] or s["files_skipped"] or s["rows_released"]:
            log.info("%s: %d file(s) (%d already ingested), read %d, accepted %d, quarantined %d, "
                     "duplicates %d, released %d in %.1fs", name, s["files"], s["files_skipped"], s["rows_read"],
                     s["rows_accepted"], s["rows_quarantined"], s["rows_duplicate"], s["rows_released"], s["seconds"])
    summary = {"warehouse": str(warehouse), "tables": tables, "warnings": warnings,
               "seconds": round(time.perf_counter() - t0, 3)}
    if errors:
        for e in errors:
            log.error("%s", e)
        if len(errors) > 1:
            log.error("%d files failed and were not loaded (audited as failed in raw.load_audit); "
                      "the other files were loaded", len(errors))
        # the first failure is raised; callers that want the rest find every message and the run's summary on it
        errors[0].failures = [str(e) for e in errors]  # type: ignore[attr-defined]
        errors[0].summary = summary  # type: ignore[attr-defined]
        raise errors[0]
    return summary


def ingest_dir(landing_dir: Path, warehouse: Path, until: date | None = None, progress: bool = True) -> dict:
    """Ingest every landing file under ``landing_dir/<table>/`` (stamped files only up to ``until``).

    Returns ``{"warehouse", "seconds", "warnings", "tables": {table: {files, files_skipped, rows_read,
    rows_accepted, rows_quarantined, rows_duplicate, rows_released, load_ids, seconds}}}``.
    Raises ContractError (schema drift, invalid ratio) or UlmError (warehouse locked, no landing dir).
    """
    files, warnings = discover(Path(landing_dir), until)
    return ingest_files(files, Path(warehouse), progress, warnings=warnings)
