"""All new files of one table in one set-based pass (docs/LOADING.md#one-load--one-file-one-pass-per-table).

Per-file behaviour is kept exactly — one ``load_id``, ``raw.load_audit`` row, registry row, reconciliation and
``max_invalid_ratio`` per file — but the work is done once per table:

1. per file, without a transaction and without reading rows: sha256 (skip if already ingested; a second file with
   the same content waits for the next pass, so it is skipped when the first one loads), header / schema checks
   (:mod:`ulm.ingest.sources`); a file that fails is audited ``failed`` and left out, the others go on;
2. one ``stage_sql`` per schema group (normally one per table) into ``_stage``, every row keyed by
   ``_rn = file position * 2^40 + row number``, so ``ORDER BY _rn`` is the order per-file loads would see;
3. one transaction: re-validate pending orphans, quarantine rows of erased persons, mark duplicates across all
   files at once (the reference row of a key is the stored one, else its first occurrence in file order: exactly
   what loading the files one by one gives), count per file (``GROUP BY`` file), fail the files above the invalid
   ratio (their rows leave ``_stage``; if they held the reference row of a key that later files repeat, the marks
   are recomputed without them), insert accepted rows, quarantine, key hashes, audit and registry rows, commit.

``users`` is versioned (:mod:`ulm.ingest.versions`): a key that several files of the batch carry is a chain of
versions whose outcome depends on the files before it. Files are then processed in *rounds*: maximal runs of
consecutive files sharing no key, each round one set-based pass inside the same transaction, written before the
next round is classified. Without such keys (the common case, and every daily load) there is one round. When a
``users`` row links a new account to an erased person (phone / union id on the suppression list), every file is
its own round, so the new account is suppressed from the next file on, as per-file loads do.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

import duckdb

from ulm.core import contract
from ulm.core.errors import ContractError
from ulm.core.settings import param
from ulm.ingest import sources, suppression, versions
from ulm.ingest.files import (
    LandingFile,
    LoadResult,
    first_line,
    is_write_failure,
    key_index,
    load_error,
    load_id_of,
    sha256_file,
    utc_now,
)
from ulm.ingest.sources import SourceFile, file_of, row_in_file
from ulm.ingest.validate import (
    DUPLICATE_KEY_CONFLICT,
    ERASED_SUBJECT,
    ORPHAN_REASON,
    Rules,
    ident,
    json_source_sql,
    key_hash_sql,
    lit,
    row_hash_sql,
    stage_sql,
)
from ulm.warehouse import transaction

log = logging.getLogger("ulm.ingest")

_DUPLICATE = versions.DUPLICATE  # internal outcome in the stage table: counted, neither loaded nor quarantined
_NOT_INVALID = (_DUPLICATE, ORPHAN_REASON, ERASED_SUBJECT)  # outcomes that do not count toward max_invalid_ratio
_F = file_of()
# landing bytes read in one set-based pass (~20M events of Parquet, ~2M rows of CSV): bounds the staged rows
MAX_PASS_BYTES = 256 << 20


# --------------------------------------------------------------------------- orphans

def pending_count(con: duckdb.DuckDBPyConnection, table_name: str) -> int:
    """Unreleased orphans (rows whose only fault was an unknown account) of a table."""
    return con.execute(
        "SELECT count(*) FROM raw.quarantine WHERE table_name = ? AND reason_code = ? AND released_at IS NULL",
        [table_name, ORPHAN_REASON],
    ).fetchone()[0]


def _key_join(table: contract.Table, a: str, b: str) -> str:
    return " AND ".join(f"{a}.{ident(k)} = {b}.{ident(k)}" for k in table.key)


def _keys(table: contract.Table, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + ident(k) for k in table.key)


def stage_release(con: duckdb.DuckDBPyConnection, table: contract.Table, rules: Rules) -> bool:
    """Re-validate the table's unreleased orphans into ``_pending`` (``_rn`` = quarantine_id) and pick those whose
    account now exists into ``_release`` (never over a key that is already loaded). Nothing is written yet;
    returns whether there were orphans at all."""
    if not table.foreign_keys or not pending_count(con, table.name):
        return False
    where = (
        f"raw.quarantine WHERE table_name = {lit(table.name)} "
        f"AND reason_code = {lit(ORPHAN_REASON)} AND released_at IS NULL"
    )
    source = json_source_sql(table, "original_row", where, "quarantine_id")
    types = {c: "VARCHAR" for c in table.column_names}
    con.execute(f"CREATE TEMP TABLE _pending AS {stage_sql(table, source, types, rules)}")
    if not con.execute("SELECT count(*) FROM _pending WHERE _reason IS NULL").fetchone()[0]:
        con.execute("CREATE TEMP TABLE _release AS SELECT * FROM _pending WHERE FALSE")  # no account arrived
        return True
    # probe the key-hash index (inner join, the small pending side is the build side), confirm exact keys
    # against raw only on a hash hit
    con.execute(
        f"CREATE TEMP TABLE _blocked AS SELECT DISTINCT p._rn FROM _pending p "
        f"JOIN {key_index(table.name)} k ON p._kh = k.key_hash WHERE p._reason IS NULL"
    )
    if con.execute("SELECT count(*) FROM _blocked").fetchone()[0]:
        con.execute(
            f"DELETE FROM _blocked WHERE _rn NOT IN (SELECT p._rn FROM _pending p "
            f"SEMI JOIN raw.{table.name} r ON {_key_join(table, 'p', 'r')})"
        )
    con.execute(
        "CREATE TEMP TABLE _release AS SELECT * FROM _pending "
        "WHERE _reason IS NULL AND _rn NOT IN (SELECT _rn FROM _blocked)"
    )
    return True


def apply_release(con: duckdb.DuckDBPyConnection, table: contract.Table, load_id: str, now: datetime) -> int:
    """Move the rows of ``_release`` into ``raw.<table>`` under their original lineage; returns how many."""
    n = con.execute("SELECT count(*) FROM _release").fetchone()[0]
    if n:
        cols = ", ".join("p." + ident(c) for c in table.column_names)
        con.execute(
            f"INSERT INTO raw.{table.name} SELECT {cols}, q.load_id, {lit(now.isoformat(' '))}::TIMESTAMP, "
            f"q.source_file FROM _release p JOIN raw.quarantine q ON q.quarantine_id = p._rn"
        )
        con.execute(f"INSERT INTO {key_index(table.name)} SELECT _kh FROM _release")
        con.execute(
            f"UPDATE raw.quarantine SET released_at = {lit(now.isoformat(' '))}::TIMESTAMP, "
            f"released_load_id = {lit(load_id)} WHERE quarantine_id IN (SELECT _rn FROM _release)"
        )
    return int(n)


# --------------------------------------------------------------------------- duplicates

def mark_duplicates(con: duckdb.DuckDBPyConnection, table: contract.Table, has_pending: bool) -> None:
    """Flag staged rows whose key already exists (raw, pending orphans, an earlier row in file order).

    The reference row of a key is the existing one, else its first occurrence by ``_rn`` (file order, then row
    order). Another row with identical content is a duplicate (counted); with different content it is
    quarantined as ``duplicate_key_conflict``. Only rows that would otherwise load (valid or orphan) take part.
    The reasons the marked rows had before are kept in ``_marked`` (see :func:`unmark_duplicates`).
    """
    cand = f"(_reason IS NULL OR _reason = {lit(ORPHAN_REASON)})"
    keys, keys_s = _keys(table), _keys(table, "s")
    # probe the narrow key-hash index first; read raw rows only for keys that may already be loaded
    hits = con.execute(
        f"SELECT count(*) FROM {key_index(table.name)} k "
        f"JOIN (SELECT _kh FROM _stage WHERE {cand}) s ON k.key_hash = s._kh"
    ).fetchone()[0]
    parts = [f"SELECT {keys}, NULL::UBIGINT AS _h FROM _stage WHERE FALSE"]
    if hits:
        parts.append(
            f"SELECT {_keys(table, 'r')}, {row_hash_sql(table, 'r')} FROM raw.{table.name} r "
            f"SEMI JOIN (SELECT {keys} FROM _stage WHERE {cand}) s ON {_key_join(table, 'r', 's')}"
        )
    if has_pending:  # every pending orphan: the ones released by this load are not in raw yet
        parts.append(f"SELECT {_keys(table, 'p')}, {row_hash_sql(table, 'p')} FROM _pending p")
    con.execute(
        f"CREATE TEMP TABLE _existing AS SELECT {keys}, any_value(_h) AS _h "
        f"FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL"
    )
    # candidate keys by key hash (cheap integer grouping); exact keys decide below
    con.execute(
        f"CREATE TEMP TABLE _dupkeys AS SELECT _kh FROM _stage WHERE {cand} GROUP BY _kh HAVING count(*) > 1 "
        f"UNION SELECT {key_hash_sql(table)} FROM _existing"
    )
    if not con.execute("SELECT count(*) FROM _dupkeys").fetchone()[0]:  # no key repeats: nothing to mark
        con.execute("CREATE TEMP TABLE _dd AS SELECT NULL::BIGINT AS _rn, NULL::BOOLEAN AS same, "
                    "NULL::BOOLEAN AS is_dup WHERE FALSE")
        con.execute("CREATE TEMP TABLE _marked AS SELECT _rn, _reason, _col, _detail FROM _stage WHERE FALSE")
        return
    con.execute(f"""
        CREATE TEMP TABLE _dd AS
        WITH c AS (
          SELECT s._rn, {keys_s}, {row_hash_sql(table, 's')} AS _h FROM _stage s
          SEMI JOIN _dupkeys k ON s._kh = k._kh WHERE {cand}
        )
        SELECT c._rn,
               CASE WHEN e._h IS NOT NULL THEN c._h = e._h
                    ELSE c._h = arg_min(c._h, c._rn) OVER w END AS same,
               e._h IS NOT NULL OR c._rn > min(c._rn) OVER w AS is_dup
        FROM c LEFT JOIN _existing e ON {_key_join(table, 'c', 'e')}
        WINDOW w AS (PARTITION BY {_keys(table, 'c')})""")
    key0 = table.key[0]
    conflict = f"column {key0}: {DUPLICATE_KEY_CONFLICT}: key already loaded with different content"
    con.execute("CREATE TEMP TABLE _marked AS SELECT s._rn, s._reason, s._col, s._detail FROM _stage s "
                "SEMI JOIN (SELECT _rn FROM _dd WHERE is_dup) d ON s._rn = d._rn")
    con.execute(f"""
        UPDATE _stage SET
          _reason = CASE WHEN d.same THEN {lit(_DUPLICATE)} ELSE {lit(DUPLICATE_KEY_CONFLICT)} END,
          _col = {lit(key0)},
          _detail = CASE WHEN d.same THEN NULL ELSE {lit(conflict)} END
        FROM _dd d WHERE _stage._rn = d._rn AND d.is_dup""")


def unmark_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    """Undo :func:`mark_duplicates` (the marked rows get their reasons back) so it can run again."""
    con.execute("UPDATE _stage SET _reason = m._reason, _col = m._col, _detail = m._detail "
                "FROM _marked m WHERE _stage._rn = m._rn")
    for t in ("_existing", "_dupkeys", "_dd", "_marked"):
        con.execute(f"DROP TABLE IF EXISTS temp.{t}")


# --------------------------------------------------------------------------- per-file counts and the ratio

def _file_counts(con: duckdb.DuckDBPyConnection) -> dict[int, dict[str, int]]:
    """Per file position: rows read, accepted, quarantined, duplicate, invalid, erased."""
    rows = con.execute(f"""
        SELECT {_F} AS f, count(*), count(*) FILTER (_reason IS NULL),
               count(*) FILTER (_reason <> {lit(_DUPLICATE)}),
               count(*) FILTER (_reason = {lit(_DUPLICATE)}),
               count(*) FILTER (_reason NOT IN ({", ".join(lit(x) for x in _NOT_INVALID)})),
               count(*) FILTER (_reason = {lit(ERASED_SUBJECT)})
        FROM _stage GROUP BY 1""").fetchall()
    names = ("read", "accepted", "quarantined", "duplicate", "invalid", "erased")
    return {int(r[0]): dict(zip(names, (int(x) for x in r[1:]), strict=True)) for r in rows}


def _over_ratio(c: dict[str, int]) -> bool:
    return c["read"] > 0 and c["invalid"] / c["read"] > float(param("max_invalid_ratio"))


def _ratio_error(con: duckdb.DuckDBPyConnection, sf: SourceFile, c: dict[str, int]) -> ContractError:
    """The ContractError of a file above ``max_invalid_ratio``, naming its dominant column and rule."""
    limit = float(param("max_invalid_ratio"))
    col, reason, n = con.execute(f"""
        SELECT _col, _reason, count(*) AS n FROM _stage
        WHERE {_F} = {sf.f} AND _reason NOT IN ({", ".join(lit(x) for x in _NOT_INVALID)})
        GROUP BY ALL ORDER BY n DESC, _col, _reason LIMIT 1""").fetchone()
    read, invalid = c["read"], c["invalid"]
    return ContractError(
        f"{sf.label}: column {col}: {reason}: invalid ratio {invalid / read:.2%} ({invalid} of {read} rows; "
        f"{n} {reason} in {col}) exceeds max_invalid_ratio {limit:.2%}"
    )


def _drop_file(con: duckdb.DuckDBPyConnection, f: int) -> None:
    con.execute(f"DELETE FROM _stage WHERE {_F} = {f}")


def _classify_appends(con: duckdb.DuckDBPyConnection, table: contract.Table, files: dict[int, SourceFile],
                      failed: dict[int, BaseException], has_pending: bool) -> dict[int, dict[str, int]]:
    """Duplicates across the whole batch, then the ratio per file. A file above the ratio leaves the batch; when
    it held rows of keys that other files repeat, the marks are recomputed without it (rare)."""
    while True:
        mark_duplicates(con, table, has_pending)
        counts = _file_counts(con)
        bad = [f for f in sorted(counts) if _over_ratio(counts[f])]
        if not bad:
            return counts
        remark = False
        for f in bad:
            failed[f] = _ratio_error(con, files[f], counts.pop(f))
            collides = con.execute(f"SELECT count(*) FROM _dd WHERE {file_of('_rn')} = {f}").fetchone()[0]
            _drop_file(con, f)
            if collides:
                remark = True
                break
        if not remark:
            return counts
        unmark_duplicates(con)


def _classify_versions(con: duckdb.DuckDBPyConnection, table: contract.Table, files: dict[int, SourceFile],
                       failed: dict[int, BaseException]) -> dict[int, dict[str, int]]:
    """One round of a versioned table: its files share no key, so each file's outcome is its own."""
    versions.mark_versions(con, table, key_index(table.name))
    counts = _file_counts(con)
    for f in sorted(counts):
        if _over_ratio(counts[f]):
            failed[f] = _ratio_error(con, files[f], counts.pop(f))
            _drop_file(con, f)
    for f, n in versions.new_versions_by_file(con, table).items():
        if f in counts:
            counts[f]["new_version"] = n
    return counts


def _rounds(con: duckdb.DuckDBPyConnection, table: contract.Table, ok: list[SourceFile],
            linked: bool) -> list[list[SourceFile]]:
    """Runs of consecutive files to classify together (module docstring): all files for append tables."""
    if not table.version_column or len(ok) <= 1:
        return [ok]
    if linked:
        return [[sf] for sf in ok]
    key = ident(table.key[0])
    # per file: the latest earlier file carrying one of its keys (among rows that take part in versioning)
    prev = dict(con.execute(f"""
        WITH k AS (SELECT DISTINCT {_F} AS f, {key} AS k FROM _stage WHERE _reason IS NULL)
        SELECT f, max(p) FROM (SELECT f, lag(f) OVER (PARTITION BY k ORDER BY f) AS p FROM k)
        GROUP BY f HAVING max(p) IS NOT NULL""").fetchall())
    rounds: list[list[SourceFile]] = [[]]
    for sf in ok:
        if rounds[-1] and prev.get(sf.f, -1) >= rounds[-1][0].f:
            rounds.append([])
        rounds[-1].append(sf)
    return rounds


# --------------------------------------------------------------------------- writing

def _per_file(values: list[str]) -> str:
    """SQL: the value of a staged row's file, from one value per batch position."""
    if len(set(values)) == 1:
        return lit(values[0])
    return "[" + ", ".join(lit(v) for v in values) + f"][{_F} + 1]"


def _write_rows(con: duckdb.DuckDBPyConnection, table: contract.Table, batch: list[SourceFile], now: datetime) -> None:
    ts = f"{lit(now.isoformat(' '))}::TIMESTAMP"
    load_id = _per_file([sf.load_id for sf in batch])
    source = _per_file([sf.source_file for sf in batch])
    cols = ", ".join(ident(c) for c in table.column_names)
    con.execute(f"INSERT INTO raw.{table.name} SELECT {cols}, {load_id}, {ts}, {source} "
                f"FROM _stage WHERE _reason IS NULL")
    con.execute(f"INSERT INTO {key_index(table.name)} SELECT _kh FROM _stage WHERE _reason IS NULL")
    con.execute(f"""
        INSERT INTO raw.quarantine
        SELECT {load_id} || ':' || CAST({row_in_file()} AS VARCHAR), {lit(table.name)}, _orig, _reason, _detail,
               {load_id}, {source}, {ts}, NULL, NULL
        FROM _stage WHERE _reason <> {lit(_DUPLICATE)}""")


_AUDIT_TYPES = ("VARCHAR",) * 4 + ("BIGINT",) * 5 + ("VARCHAR",) * 2 + ("TIMESTAMP",) * 2
_REGISTRY_TYPES = ("VARCHAR",) * 4 + ("TIMESTAMP",)


def _insert_rows(con: duckdb.DuckDBPyConnection, target: str, rows: list[list], types: tuple[str, ...]) -> None:
    """Rows into ``target`` with one statement: one list parameter per column, unnested side by side."""
    if not rows:
        return
    columns = [list(c) for c in zip(*rows, strict=True)]
    con.execute(f"INSERT INTO {target} SELECT " + ", ".join(f"unnest(?::{t}[])" for t in types), columns)


def _audit_row(r: LoadResult, status: str, message: str | None, started: datetime, finished: datetime) -> list:
    return [r.load_id, r.table, r.source_file, r.sha256, r.rows_read, r.rows_accepted, r.rows_quarantined,
            r.rows_duplicate, r.rows_released, status, message, started, finished]


def _notes(r: LoadResult) -> str | None:
    notes = [*r.warnings]
    if r.rows_new_version:
        notes.append(f"{r.rows_new_version} row(s) are new versions of known accounts")
    if r.rows_erased:
        notes.append(f"{r.rows_erased} row(s) of erased persons quarantined (erased_subject)")
    return "; ".join(notes) or None


def drop_temps(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the loader's temp tables (all start with ``_``)."""
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name LIKE '\\_%' "
                               "ESCAPE '\\'").fetchall():
        con.execute(f"DROP TABLE IF EXISTS temp.{ident(name)}")


# --------------------------------------------------------------------------- one batch

def _classify_and_write(con: duckdb.DuckDBPyConnection, table: contract.Table, batch: list[SourceFile],
                        failed: dict[int, BaseException], staged: bool, rules: Rules,
                        now: datetime) -> dict[int, LoadResult]:
    """Inside the batch's transaction: everything after staging (module docstring, step 3)."""
    files = {sf.f: sf for sf in batch}
    has_pending = stage_release(con, table, rules)
    results: dict[int, LoadResult] = {}
    if staged:
        hits, linked = suppression.build(con, table)
        ok = [sf for sf in batch if sf.f not in failed]
        if hits and not linked:
            suppression.mark(con, table)
        rounds = _rounds(con, table, ok, linked)
        if len(rounds) > 1:
            con.execute("CREATE TEMP TABLE _stage_all AS SELECT * FROM _stage")
            con.execute("DROP TABLE _stage")
        for members in rounds:
            if len(rounds) > 1:
                con.execute(f"CREATE TEMP TABLE _stage AS SELECT * FROM _stage_all "
                            f"WHERE {_F} IN ({', '.join(str(sf.f) for sf in members)})")
            if linked:
                suppression.mark(con, table)
            if table.version_column:
                counts = _classify_versions(con, table, files, failed)
            else:
                counts = _classify_appends(con, table, files, failed, has_pending)
            if linked:
                suppression.record_links(con, table, now)
            sources.fill_original_rows(con, files)
            _write_rows(con, table, batch, now)
            for sf in members:
                if sf.f in failed:
                    continue
                c = counts.get(sf.f, {})
                results[sf.f] = LoadResult(
                    table.name, sf.load_id, sf.source_file, sf.sha256, rows_read=c.get("read", 0),
                    rows_accepted=c.get("accepted", 0), rows_quarantined=c.get("quarantined", 0),
                    rows_duplicate=c.get("duplicate", 0), rows_erased=c.get("erased", 0),
                    rows_new_version=c.get("new_version", 0), warnings=sf.warnings)
            for t in ("_existing", "_dupkeys", "_dd", "_marked", "_ref"):
                con.execute(f"DROP TABLE IF EXISTS temp.{t}")
            if len(rounds) > 1:
                con.execute("DROP TABLE _stage")
    if has_pending and results:  # the first file that loads releases the orphans whose account arrived
        first = results[min(results)]
        first.rows_released = apply_release(con, table, first.load_id, now)
    return results


def _label(batch: list[SourceFile]) -> str:
    if len(batch) == 1:
        return batch[0].label
    return f"{batch[0].label} .. {batch[-1].label} ({len(batch)} {batch[0].lf.table} files)"


def _record_failure(con: duckdb.DuckDBPyConnection, batch: list[SourceFile], failed: dict[int, BaseException],
                    message: str, label: str, started: datetime) -> None:
    """Best effort: a ``failed`` audit row per file of a batch that did not commit (one statement)."""
    finished = utc_now()
    rows = [_audit_row(LoadResult(sf.lf.table, sf.load_id, sf.source_file, sf.sha256), "failed",
                       first_line(failed[sf.f]) if sf.f in failed else message, started, finished) for sf in batch]
    try:
        _insert_rows(con, "raw.load_audit", rows, _AUDIT_TYPES)
    except duckdb.Error as audit_exc:
        log.warning("%s: the failed load could not be recorded in raw.load_audit (%s); the error was: %s",
                    label, first_line(audit_exc), message)


def _run_batch(con: duckdb.DuckDBPyConnection, table: contract.Table, batch: list[SourceFile],
               min_valid_timestamp: str | None) -> tuple[dict[int, LoadResult], dict[int, BaseException]] | None:
    """Load one batch (files of one table with distinct content, none ingested yet). Returns the results and the
    ContractErrors by batch position, or None when a multi-file batch hit an unexpected database error (nothing
    was committed; the caller loads its files one by one)."""
    t0, started = time.perf_counter(), utc_now()
    failed: dict[int, BaseException] = {}
    label = _label(batch)
    try:
        rules = Rules.for_load(started, min_valid_timestamp)
        groups = sources.group(con, table, batch, failed)
        staged = sources.stage(con, table, groups, rules, failed)
        with transaction(con):
            results = _classify_and_write(con, table, batch, failed, staged, rules, started)
            finished = utc_now()
            rows = [_audit_row(results[sf.f], "ok", _notes(results[sf.f]), started, finished)
                    for sf in batch if sf.f in results]
            rows += [_audit_row(LoadResult(table.name, sf.load_id, sf.source_file, sf.sha256), "failed",
                                first_line(failed[sf.f]), started, finished) for sf in batch if sf.f in failed]
            _insert_rows(con, "raw.load_audit", rows, _AUDIT_TYPES)
            _insert_rows(con, "raw._ingested_files", [[table.name, sf.sha256, sf.source_file, sf.load_id, started]
                                                      for sf in batch if sf.f in results], _REGISTRY_TYPES)
            drop_temps(con)
    except BaseException as exc:
        # The load's own error is what propagates: cleanup and the failed-load audit rows are best effort
        # (after a disk-full / I/O error the database may refuse every further write).
        try:
            drop_temps(con)
        except duckdb.Error as drop_exc:
            log.debug("%s: dropping temp tables failed: %s", label, first_line(drop_exc))
        if (len(batch) > 1 and isinstance(exc, duckdb.Error) and not is_write_failure(exc)
                and not isinstance(exc, (duckdb.IOException, duckdb.InterruptException))):
            log.warning("%s: the batch failed (%s); loading its files one by one", label, first_line(exc))
            return None
        error = load_error(label, exc)
        _record_failure(con, batch, failed, first_line(error), label, started)
        if error is exc:
            raise
        raise error from exc
    seconds = time.perf_counter() - t0
    total = sum(r.rows_read for r in results.values()) + len(batch)
    for r in results.values():  # the batch's time, shared by rows read
        r.seconds = seconds * (r.rows_read + 1) / total
    return results, failed


def _sha256(lf: LandingFile) -> str:
    return sha256_file(lf.path)


def load_table(con: duckdb.DuckDBPyConnection, table_name: str, files: list[LandingFile],
               ingested: dict[tuple[str, str], str], min_valid_timestamp: str | None = None,
               sha_of: Callable[[LandingFile], str] | None = None) -> tuple[list[LoadResult], list[ContractError]]:
    """Load files of one table (in load order) in as few set-based passes as their content allows.

    Returns one result per file (skipped ones included), in file order, and the ContractErrors of the files that
    failed (in file order; each is audited ``failed``, the other files are loaded). ``ingested`` is the run's
    :func:`registry index <ulm.ingest.loader.ingested_index>`, kept up to date. A warehouse I/O error (or any
    other unexpected error of a single-file load) is raised, after the failed loads were audited. ``sha_of``: how
    to get a file's sha256 (default: read it; the run passes its :class:`~ulm.ingest.loader.FileHashes`).
    """
    table = contract.TABLES[table_name]
    results: dict[int, LoadResult] = {}
    errors: dict[int, BaseException] = {}
    shas = [(sha_of or _sha256)(lf) for lf in files]
    todo = list(range(len(files)))
    while todo:
        batch: list[tuple[int, LandingFile]] = []
        later: list[int] = []
        seen: set[str] = set()
        for i in todo:
            lf, sha = files[i], shas[i]
            previous = ingested.get((table_name, sha))
            if previous:
                results[i] = LoadResult(table_name, previous, lf.origin or str(lf.path), sha, skipped=True)
            elif sha in seen:  # the same content twice: the copy is skipped once the first one loaded
                later.append(i)
            else:
                seen.add(sha)
                batch.append((i, lf))
        for part in _passes(batch):
            _load_batch(con, table, part, shas, ingested, min_valid_timestamp, results, errors)
        todo = later
    return [results[i] for i in sorted(results)], [errors[i] for i in sorted(errors)]  # type: ignore[misc]


def _passes(batch: list[tuple[int, LandingFile]]) -> list[list[tuple[int, LandingFile]]]:
    """Consecutive runs of files of at most :data:`MAX_PASS_BYTES` (a larger file is a pass of its own), so the
    staged rows of one pass stay bounded however long the landing history of a first load is. Every pass sees the
    committed result of the passes before it, exactly like per-file loads."""
    out: list[list[tuple[int, LandingFile]]] = [[]]
    size = 0
    for item in batch:
        n = item[1].path.stat().st_size
        if out[-1] and size + n > MAX_PASS_BYTES:
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return out


def _load_batch(con, table: contract.Table, batch: list[tuple[int, LandingFile]], shas: list[str],
                ingested: dict[tuple[str, str], str], min_valid_timestamp: str | None,
                results: dict[int, LoadResult], errors: dict[int, BaseException]) -> None:
    if not batch:
        return
    members = [SourceFile(f, lf, shas[i], load_id_of(table.name, lf.label, shas[i]))
               for f, (i, lf) in enumerate(batch)]
    out = _run_batch(con, table, members, min_valid_timestamp)
    if out is None:  # isolate the file that breaks the set-based pass
        for one in batch:
            _load_batch(con, table, [one], shas, ingested, min_valid_timestamp, results, errors)
        return
    loaded, failed = out
    for f, (i, _lf) in enumerate(batch):
        if f in loaded:
            results[i] = loaded[f]
            ingested[(table.name, shas[i])] = loaded[f].load_id
        else:
            errors[i] = failed[f]
