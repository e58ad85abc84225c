"""Right to be forgotten and right of access (docs/METRICS.md#privacy, docs/PRIVACY.md#erasure).

``erase`` processes every pending ``raw.erasure_requests`` row in one set-based pass, in one transaction:

1. **Whose data.** The requested accounts, every account of their persons in any identity table the builds left
   (``int_identity``, ``dim_accounts``, audit copies), and every raw account that shares a phone or union id with
   them that may link (the identity guards of docs/METRICS.md#identity: not blocked, not shared by more than
   ``max_accounts_per_identifier`` accounts), multi-hop. A junk phone therefore never pulls strangers in.
2. **Suppression list.** Keyed hashes (suppression key, never the raw value) of those user ids and usable
   identifiers go to ``raw.erased_subjects``; landing quarantines later rows that match as ``erased_subject``
   (:mod:`ulm.ingest.suppression`), so re-sent data does not bring the person back.
3. **Every layer.** Rows of those accounts and persons are deleted from every table of every schema (raw,
   quarantine, staging, intermediate, marts, audit copies, ML features and scores); references from other people's
   rows (an invite they accepted, an account they referred) are set to NULL; gate results lose the ids in their
   samples.
4. **Files.** Audience exports are rewritten without the person; GX validation results and data docs, and MLflow
   text artifacts, have the ids replaced by ``[erased]``; the serving snapshot readers open is rewritten from the
   scrubbed marts and swapped in.
5. **Audit.** ``audit.erasure_log`` gets one row per request and table with the rows removed, never an identifier.
   The request row stays in ``raw.erasure_requests`` as the legal record of the request.
6. **PostgreSQL side** (docs/PRIVACY.md#erasure-on-postgresql). When the warehouse has one (``target="postgres"``,
   or ``audit.publish_log`` records a Postgres publish), its identity tables join the plan, and the same accounts
   and persons are deleted from every Postgres schema (raw, staging, intermediate, marts, audit copies, ``ml``) in
   ONE Postgres transaction, committed before the DuckDB one; its rows are logged as ``postgres:schema.table``. An
   unreachable Postgres fails the erasure with one line and nothing is marked done.
7. **Spark side** (D86). When the warehouse has one (``target="spark"``, or its ``<stem>_spark/`` directory
   exists), the Spark tables' identity pairs join the plan, every Spark table holding the accounts or persons is
   re-written without them (references nulled; Parquet has no DELETE), and the Spark copies of ``raw`` and ``ml``
   are re-written from the erased DuckDB tables; logged as ``spark:db.table``. Before the DuckDB commit, as on
   Postgres.

``access_export``: everything held about one account's person (raw rows, quarantined rows, every other layer) as
JSON, plus a short Markdown summary next to it.
"""
from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from ulm.core import contract, settings
from ulm.core.errors import UlmError
from ulm.core.settings import param
from ulm.privacy import keys
from ulm.privacy.hashing import hmac_sha256
from ulm.transform import serving
from ulm.warehouse import connect, connect_read_only, ensure_audit_schema, ensure_raw_schema, quote, transaction

log = logging.getLogger("ulm.privacy.erasure")

# columns saying whose row it is outside raw (raw tables declare theirs in the contract)
OWNER_ACCOUNT = ("user_id", "inviter_user_id")
OWNER_PERSON = ("person_id", "inviter_person_id", "sharer_person_id")
# columns pointing at the person from SOMEONE ELSE's row (who referred / invited / was brought in): nulled
REF_ACCOUNT = ("referrer_user_id", "invitee_user_id")
REF_PERSON = ("referrer_person_id", "invitee_person_id", "new_person_id")
IDENTIFIERS = ("phone", "union_id")  # raw users columns that link accounts (docs/METRICS.md#identity)
MAX_HOPS = 50
ERASED = "[erased]"
TEXT_SUFFIXES = {".json", ".html", ".csv", ".txt", ".md", ".yaml", ".yml", ".log"}


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# ----------------------------------------------------------------------------------------------- whose data

def _tables_with(con, columns: tuple[str, ...], raw: bool) -> list[tuple[str, str, str]]:
    op = "=" if raw else "<>"
    return con.execute(f"""
        select c.table_schema, c.table_name, c.column_name
        from information_schema.columns c
        join information_schema.tables t using (table_catalog, table_schema, table_name)
        where t.table_type = 'BASE TABLE' and c.table_schema {op} 'raw' and c.table_schema not like 'temp%'
          and c.table_catalog = current_database()
          and c.column_name in ({", ".join("'" + c + "'" for c in columns)})
        order by 1, 2, 3
    """).fetchall()


def _identity_tables(con) -> list[str]:
    """Non-raw tables mapping accounts to persons (both user_id and person_id)."""
    return [f"{quote(s)}.{quote(t)}" for s, t in con.execute("""
        select table_schema, table_name from information_schema.columns
        join information_schema.tables using (table_catalog, table_schema, table_name)
        where table_type = 'BASE TABLE' and table_schema <> 'raw' and table_catalog = current_database()
          and column_name in ('user_id', 'person_id')
        group by all having count(distinct column_name) = 2 order by 1, 2""").fetchall()]


def _blocked(value: str) -> bool:
    """The identifier may not link (block list or blocked pattern: the params of docs/METRICS.md#identity)."""
    v = value.strip()
    if v in {str(x) for x in (param("identity_blocked_values") or [])}:
        return True
    return any(re.fullmatch(str(p), v) for p in (param("identity_blocked_patterns") or []))


def _usable_identifiers(con) -> None:
    """``_er_ids(kind, value)``: linking identifiers of the accounts in ``_er_accounts`` (raw values, temp only)."""
    limit = int(param("max_accounts_per_identifier"))
    con.execute("create or replace temp table _er_ids (kind varchar, value varchar)")
    for kind in IDENTIFIERS:
        rows = con.execute(f"""
            with mine as (
                select distinct trim({kind}) as value from raw.users
                where user_id in (select user_id from _er_accounts) and nullif(trim({kind}), '') is not null
            )
            select m.value from mine m join raw.users u on trim(u.{kind}) = m.value
            group by m.value having count(distinct u.user_id) <= ?""", [limit]).fetchall()
        values = [v for (v,) in rows if not _blocked(v)]
        if values:
            con.execute("insert into _er_ids select ?, unnest(?::varchar[])", [kind, values])


def _plan(con, pending: list[tuple], extra_identity: tuple[str, ...] = ()) -> None:
    """Temp tables ``_er_accounts(request_id, user_id)`` and ``_er_persons(request_id, person_id)``;
    ``extra_identity``: more (user_id, person_id) tables to follow (the Postgres side's identity pairs)."""
    con.execute("create or replace temp table _er_accounts (request_id varchar, user_id varchar)")
    con.execute("create or replace temp table _er_persons (request_id varchar, person_id varchar)")
    con.executemany("insert into _er_accounts values (?, ?)", [(r[0], r[1]) for r in pending])
    identity = _identity_tables(con) + list(extra_identity)
    for _ in range(MAX_HOPS):
        before = con.execute("select count(*) from _er_accounts").fetchone()[0] + \
            con.execute("select count(*) from _er_persons").fetchone()[0]
        for t in identity:  # accounts -> persons -> accounts, in every identity table the builds left
            con.execute(f"""insert into _er_persons select distinct a.request_id, i.person_id
                from _er_accounts a join {t} i on i.user_id = a.user_id
                where i.person_id is not null and i.person_id not in (select person_id from _er_persons)""")
            con.execute(f"""insert into _er_accounts select distinct p.request_id, i.user_id
                from _er_persons p join {t} i on i.person_id = p.person_id
                where i.user_id is not null and i.user_id not in (select user_id from _er_accounts)""")
        _usable_identifiers(con)  # raw accounts sharing a linking identifier (also those not built yet)
        for kind in IDENTIFIERS:
            con.execute(f"""insert into _er_accounts select distinct a.request_id, u2.user_id
                from _er_accounts a join raw.users u1 on u1.user_id = a.user_id
                join _er_ids i on i.kind = '{kind}' and i.value = trim(u1.{kind})
                join raw.users u2 on trim(u2.{kind}) = i.value
                where u2.user_id not in (select user_id from _er_accounts)""")
        # one request per account and person: the earliest request that reached it
        for t, c in (("_er_accounts", "user_id"), ("_er_persons", "person_id")):
            con.execute(f"create or replace temp table {t} as select min(request_id) as request_id, {c} "
                        f"from {t} group by {c}")
        after = con.execute("select count(*) from _er_accounts").fetchone()[0] + \
            con.execute("select count(*) from _er_persons").fetchone()[0]
        if after == before:
            break


def _suppress(con, now: datetime) -> int:
    """Add keyed hashes of the accounts' user ids and linking identifiers to ``raw.erased_subjects``."""
    key = (settings.suppression_key() or "").encode("utf-8")
    rows = [(hmac_sha256(u, key), "user_id", r) for r, u in
            con.execute("select request_id, user_id from _er_accounts").fetchall()]
    rows += [(hmac_sha256(v, key), kind, None) for kind, v in
             con.execute("select kind, value from _er_ids").fetchall()]
    rows = [(h, k, r) for h, k, r in rows if h]
    if rows:
        con.execute("create or replace temp table _er_hashes (h varchar, kind varchar, request_id varchar)")
        con.executemany("insert into _er_hashes values (?, ?, ?)", rows)
        con.execute("""insert into raw.erased_subjects
            select h, kind, any_value(request_id), ?, 'erase' from _er_hashes group by h, kind
            on conflict do nothing""", [now])
        con.execute("drop table _er_hashes")
    return len(rows)


# ----------------------------------------------------------------------------------------------- removal

def _count_and_delete(con, removed: dict, label: str, table: str, column: str, ids: str, where: str = "") -> None:
    """Delete rows of ``table`` whose ``column`` is in ``ids`` (a temp table with request_id), counted per request."""
    match = f"{quote(column)} in (select id from {ids})"
    extra = f" and ({where})" if where else ""
    for request_id, n in con.execute(f"""
            select m.request_id, count(*) from {table} t join {ids} m on t.{quote(column)} = m.id
            where true{extra} group by 1""").fetchall():
        removed.setdefault(request_id, {}).setdefault(label, 0)
        removed[request_id][label] += n
    con.execute(f"delete from {table} where {match}{extra}")


def _remove(con) -> dict[str, dict[str, int]]:
    """Delete the planned accounts' and persons' rows everywhere; {request_id: {table: rows}}."""
    removed: dict[str, dict[str, int]] = {}
    con.execute("create or replace temp table _er_acc as select request_id, user_id as id from _er_accounts")
    con.execute("create or replace temp table _er_per as select request_id, person_id as id from _er_persons")
    # references from other people's rows first (raw and every other layer)
    for raw in (True, False):
        for schema, table, column in _tables_with(con, REF_ACCOUNT + REF_PERSON, raw=raw):
            ids = "_er_acc" if column in REF_ACCOUNT else "_er_per"
            con.execute(f'update {quote(schema)}.{quote(table)} set {quote(column)} = null '
                        f'where {quote(column)} in (select id from {ids})')
    for name, table in contract.TABLES.items():
        for column in table.owner_columns:
            _count_and_delete(con, removed, f"raw.{name}", f"raw.{quote(name)}", column, "_er_acc")
    owners = sorted({c for t in contract.TABLES.values() for c in t.owner_columns})
    refs = sorted({c for t in contract.TABLES.values() for c in t.reference_columns})
    owner_of = "coalesce(" + ", ".join(f"json_extract_string(original_row, '$.{c}')" for c in owners) + ")"
    for request_id, n in con.execute(f"""
            select m.request_id, count(*) from raw.quarantine q join _er_acc m on {owner_of.replace('original_row',
            'q.original_row')} = m.id group by 1""").fetchall():
        removed.setdefault(request_id, {})["raw.quarantine"] = n
    con.execute(f"delete from raw.quarantine where {owner_of} in (select id from _er_acc)")
    for c in refs:  # other people's quarantined rows keep no reference to the person
        con.execute(f"""update raw.quarantine set original_row = json_merge_patch(original_row, '{{"{c}": null}}')
            where json_extract_string(original_row, '$.{c}') in (select id from _er_acc)""")
    for schema, table, column in _tables_with(con, OWNER_ACCOUNT + OWNER_PERSON, raw=False):
        ids = "_er_acc" if column in OWNER_ACCOUNT else "_er_per"
        _count_and_delete(con, removed, f"{schema}.{table}", f"{quote(schema)}.{quote(table)}", column, ids)
    _scrub_gate_results(con)
    return removed


def _id_pattern(con) -> str | None:
    ids = [r[0] for r in con.execute("select id from _er_acc union select id from _er_per").fetchall() if r[0]]
    if not ids:
        return None
    return r"\b(" + "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True)) + r")\b"


def _scrub_gate_results(con) -> None:
    """Samples of unexpected values in gate results may name the person: replace the ids."""
    pattern = _id_pattern(con)
    if pattern is None or not con.execute(
            "select count(*) from information_schema.tables where table_schema = 'audit' "
            "and table_name = 'gate_results'").fetchone()[0]:
        return
    con.execute(f"""update audit.gate_results set
            observed_value = regexp_replace(observed_value, ?, '{ERASED}', 'g'),
            details = regexp_replace(details, ?, '{ERASED}', 'g')
        where regexp_matches(coalesce(observed_value, ''), ?) or regexp_matches(coalesce(details, ''), ?)""",
                [pattern] * 4)


# ----------------------------------------------------------------------------------------------- files

def _scrub_exports(con, data_dir: Path) -> int:
    """Rewrite audience export files without the erased persons (atomic per file); returns files changed."""
    changed = 0
    root = data_dir / "exports"
    if not root.is_dir():
        return 0
    for path in sorted([*root.glob("*/*.parquet"), *root.glob("*/*.csv")]):
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
        src = str(path).replace("'", "''")
        try:
            cols = [r[0] for r in con.execute(f"describe select * from {reader}('{src}')").fetchall()]
        except duckdb.Error as exc:
            log.warning("erasure: cannot read export %s (%s); check it by hand", path, str(exc).splitlines()[0])
            continue
        id_cols = [c for c in cols if c in OWNER_PERSON + OWNER_ACCOUNT]
        if not id_cols:
            continue
        hit = " or ".join(f"{quote(c)}::varchar in (select id from _er_per union select id from _er_acc)"
                          for c in id_cols)
        if not con.execute(f"select count(*) from {reader}('{src}') where {hit}").fetchone()[0]:
            continue
        tmp = path.with_name(f".{path.name}.erasing")
        fmt = "(format parquet)" if path.suffix == ".parquet" else "(format csv, header true)"
        con.execute(f"copy (select * from {reader}('{src}') where not ({hit})) to "
                    f"'{str(tmp).replace(chr(39), chr(39) * 2)}' {fmt}")
        tmp.replace(path)
        changed += 1
    return changed


def _scrub_text_files(roots: list[Path], pattern: str) -> int:
    """Replace the ids in text files under ``roots`` (GX results and docs, MLflow text artifacts)."""
    rx = re.compile(pattern)
    changed = 0
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            new = rx.sub(ERASED, text)
            if new != text:
                tmp = path.with_name(f".{path.name}.erasing")
                tmp.write_text(new, encoding="utf-8")
                tmp.replace(path)
                changed += 1
    return changed


def _scrub_files(con, data_dir: Path) -> dict[str, int]:
    pattern = _id_pattern(con)
    if pattern is None:
        return {}
    s = settings.settings()
    out = {"export_files": _scrub_exports(con, data_dir),
           "text_files": _scrub_text_files([data_dir / "gx", data_dir / "docs", s.mlflow_dir], pattern)}
    if serving.serving_path(data_dir).exists():  # readers' copy: rewritten from the scrubbed marts, swapped in
        as_of, run_id = (con.execute("select as_of, run_id from audit.publish_log order by published_at desc "
                                     "limit 1").fetchall() or [(None, None)])[0]
        serving.refresh(con, data_dir, as_of, run_id, reason="erasure")
        out["serving_snapshot"] = 1
    return out


# ----------------------------------------------------------------------------------------------- postgres side

def postgres_side(con, target: str | None):
    """The Postgres warehouse to erase on too, or None: asked for (``target == "postgres"``) or recorded (a publish
    of this warehouse ran on Postgres: ``audit.publish_log.source_schema`` starts with ``postgres:``)."""
    from ulm.warehouse import postgres

    recorded = con.execute("select count(*) from information_schema.tables where table_schema = 'audit' and "
                           "table_name = 'publish_log'").fetchone()[0] and con.execute(
        "select count(*) from audit.publish_log where source_schema like 'postgres:%'").fetchone()[0]
    return postgres.PgConfig.from_env() if target == "postgres" or recorded else None


PG_SYSTEM = "('pg_catalog', 'information_schema', 'pg_toast')"


def _pg_tables_with(cur, columns: tuple[str, ...], raw: bool) -> list[tuple[str, str, str]]:
    op = "=" if raw else "<>"
    cur.execute(f"""select c.table_schema, c.table_name, c.column_name from information_schema.columns c
        join information_schema.tables t using (table_catalog, table_schema, table_name)
        where t.table_type = 'BASE TABLE' and c.table_schema {op} 'raw' and c.table_schema not in {PG_SYSTEM}
          and c.table_schema not like 'pg_temp%%' and c.column_name = any(%s) order by 1, 2, 3""", (list(columns),))
    return cur.fetchall()


def _pg_identity(con, pg_con) -> str:
    """DuckDB temp table ``_er_pg_identity(user_id, person_id)``: the pairs of every Postgres identity table
    (``int_identity``, ``dim_accounts``, audit copies: those not copied back to DuckDB)."""
    con.execute("create or replace temp table _er_pg_identity (user_id varchar, person_id varchar)")
    with pg_con.cursor() as cur:
        cur.execute(f"""select table_schema, table_name from information_schema.columns
            join information_schema.tables using (table_catalog, table_schema, table_name)
            where table_type = 'BASE TABLE' and table_schema <> 'raw' and table_schema not in {PG_SYSTEM}
              and column_name in ('user_id', 'person_id')
            group by 1, 2 having count(distinct column_name) = 2 order by 1, 2""")
        tables = cur.fetchall()
        if tables:
            cur.execute(" union ".join(f'select user_id::text, person_id::text from "{s}"."{t}" '
                                       f'where user_id is not null and person_id is not null' for s, t in tables))
            pairs = cur.fetchall()
            if pairs:
                con.executemany("insert into _er_pg_identity values (?, ?)", pairs)
    return "_er_pg_identity"


def _remove_postgres(con, pg_con) -> dict[str, dict[str, int]]:
    """The DuckDB plan (``_er_acc``, ``_er_per``) applied to every Postgres schema in one Postgres transaction:
    references nulled, owned rows deleted (raw, quarantine, every other layer), the new suppression hashes added to
    Postgres ``raw.erased_subjects``. {request_id: {"postgres:schema.table": rows}}; commits."""
    from psycopg2.extras import execute_values

    removed: dict[str, dict[str, int]] = {}
    accs = con.execute("select request_id, id from _er_acc").fetchall()
    pers = con.execute("select request_id, id from _er_per").fetchall()
    with pg_con, pg_con.cursor() as cur:
        for t, rows in (("_er_acc", accs), ("_er_per", pers)):
            cur.execute(f"create temp table {t} (request_id text, id text primary key) on commit drop")
            if rows:
                execute_values(cur, f"insert into {t} values %s", rows)

        def delete(label: str, table: str, match: str, ids: str) -> None:
            cur.execute(f"""with gone as (delete from {table} t using {ids} m where {match} = m.id returning
                m.request_id) select request_id, count(*) from gone group by 1""")
            for request_id, n in cur.fetchall():
                per = removed.setdefault(request_id, {})
                per[f"postgres:{label}"] = per.get(f"postgres:{label}", 0) + n

        for raw in (True, False):
            for schema, table, column in _pg_tables_with(cur, REF_ACCOUNT + REF_PERSON, raw=raw):
                ids = "_er_acc" if column in REF_ACCOUNT else "_er_per"
                cur.execute(f'update {quote(schema)}.{quote(table)} set {quote(column)} = null '
                            f'where {quote(column)}::text in (select id from {ids})')
        cur.execute("select table_name from information_schema.tables where table_schema = 'raw' "
                    "and table_type = 'BASE TABLE'")
        present = {("raw", t) for (t,) in cur.fetchall()}
        for name, table in contract.TABLES.items():
            if ("raw", name) in present:
                for column in table.owner_columns:
                    delete(f"raw.{name}", f"raw.{quote(name)}", f"t.{quote(column)}::text", "_er_acc")
        if ("raw", "quarantine") in present:
            owners = sorted({c for t in contract.TABLES.values() for c in t.owner_columns})
            refs = sorted({c for t in contract.TABLES.values() for c in t.reference_columns})
            owner_of = "coalesce(" + ", ".join(f"t.original_row::jsonb ->> '{c}'" for c in owners) + ")"
            delete("raw.quarantine", "raw.quarantine", owner_of, "_er_acc")
            for c in refs:
                cur.execute(f"""update raw.quarantine set original_row = original_row::jsonb - '{c}'
                    where original_row::jsonb ->> '{c}' in (select id from _er_acc)""")
        for schema, table, column in _pg_tables_with(cur, OWNER_ACCOUNT + OWNER_PERSON, raw=False):
            ids = "_er_acc" if column in OWNER_ACCOUNT else "_er_per"
            delete(f"{schema}.{table}", f"{quote(schema)}.{quote(table)}", f"t.{quote(column)}::text", ids)
        cur.execute("select 1 from information_schema.tables where table_schema = 'raw' and "
                    "table_name = 'erased_subjects'")
        if cur.fetchone():  # the suppression list as DuckDB now holds it (the next ingest copies it anyway)
            cur.execute("select subject_hash, kind from raw.erased_subjects")
            have = set(cur.fetchall())
            cols = [r[0] for r in con.execute("select column_name from duckdb_columns() where schema_name = 'raw' "
                                              "and table_name = 'erased_subjects' order by column_index").fetchall()]
            new = [r for r in con.execute(f"select {', '.join(quote(c) for c in cols)} from raw.erased_subjects")
                   .fetchall() if (r[0], r[1]) not in have]
            if new:
                execute_values(cur, f"insert into raw.erased_subjects ({', '.join(quote(c) for c in cols)}) "
                                    f"values %s", new)
    return removed


# ----------------------------------------------------------------------------------------------- spark side

def spark_side(warehouse: Path, target: str | None) -> bool:
    """Erase on Spark too: asked for (``target == "spark"``) or the warehouse has a Spark side at all (its
    ``<stem>_spark/`` directory: any Spark build, dev builds included, holds person rows)."""
    from ulm.warehouse import spark

    return target == "spark" or spark.spark_dir(Path(warehouse)).exists()


def _spark_model_tables(sp) -> list[tuple[str, str, list[str]]]:
    """(database, table, columns) of every Spark table outside the source copies (``raw``, ``ml``: re-written from
    DuckDB); views are skipped (they select from tables that are erased themselves)."""
    from ulm.warehouse import spark

    out = []
    for db in sorted(d.name for d in sp.catalog.listDatabases()):
        if db in spark.SOURCE_SCHEMAS:
            continue
        for table, kind in spark.relations(sp, db).items():
            if kind != "VIEW":
                out.append((db, table, [c.name for c in sp.catalog.listColumns(f"`{db}`.`{table}`")]))
    return out


def _spark_identity(con, sp) -> str:
    """DuckDB temp table ``_er_spark_identity(user_id, person_id)``: the pairs of every Spark table holding both (the
    Spark builds' ``int_identity``, ``dim_accounts``, published copies)."""
    con.execute("create or replace temp table _er_spark_identity (user_id varchar, person_id varchar)")
    selects = [f"select cast(user_id as string) as user_id, cast(person_id as string) as person_id from `{db}`.`{t}` "
               "where user_id is not null and person_id is not null"
               for db, t, cols in _spark_model_tables(sp) if {"user_id", "person_id"} <= set(cols)]
    if selects:
        pairs = [tuple(r) for r in sp.sql(" union ".join(selects)).collect()]
        if pairs:
            con.executemany("insert into _er_spark_identity values (?, ?)", pairs)
    return "_er_spark_identity"


def _spark_in(column: str, ids: list[str]) -> str:
    """``column`` (as text) is one of ``ids``; false for NULL and for no ids (literals: erasure batches are small)."""
    if not ids:
        return "false"
    values = ", ".join("'" + i.replace("\\", "\\\\").replace("'", "\\'") + "'" for i in ids)
    return f"coalesce(cast(`{column}` as string) in ({values}), false)"


def _remove_spark(con, warehouse: Path, key: str) -> dict[str, dict[str, int]]:
    """The DuckDB plan (``_er_acc``, ``_er_per``) applied to Spark (D86): every Spark table with rows of those
    accounts or persons is re-written without them (references nulled) as a new Parquet table that then replaces it
    (Parquet tables have no DELETE); the source copies ``raw``/``ml`` are re-written from ``con``, which sees the
    erasure's own deletes. {request_id: {"spark:db.table": rows}}."""
    from ulm.warehouse import spark

    sp = spark.session(spark.spark_dir(Path(warehouse)), key)
    ids = {name: con.execute(f"select request_id, id from {name} where id is not null").fetchall()
           for name in ("_er_acc", "_er_per")}
    lists = {name: sorted({i for _, i in rows}) for name, rows in ids.items()}
    for name, rows in ids.items():  # the same temp tables on Spark, to count removed rows per request
        sp.createDataFrame(rows, "request_id string, id string").createOrReplaceTempView(name)
    removed: dict[str, dict[str, int]] = {}
    for db, table, cols in _spark_model_tables(sp):
        owners = [c for c in cols if c in OWNER_ACCOUNT + OWNER_PERSON]
        refs = [c for c in cols if c in REF_ACCOUNT + REF_PERSON]
        if not owners and not refs:
            continue
        which = {c: "_er_acc" if c in OWNER_ACCOUNT + REF_ACCOUNT else "_er_per" for c in owners + refs}
        owned = [_spark_in(c, lists[which[c]]) for c in owners]
        touched = " or ".join(owned + [_spark_in(c, lists[which[c]]) for c in refs]) or "false"
        rel = f"`{db}`.`{table}`"
        if not sp.sql(f"select 1 from {rel} where {touched} limit 1").collect():
            continue
        for i, c in enumerate(owners):  # each row counted once: for the first owner column that matches
            earlier = " or ".join(owned[:i]) or "false"
            for request_id, n in sp.sql(f"select m.request_id, count(*) from {rel} t join {which[c]} m "
                                        f"on cast(t.`{c}` as string) = m.id where not ({earlier}) "
                                        "group by 1").collect():
                per = removed.setdefault(request_id, {})
                per[f"spark:{db}.{table}"] = per.get(f"spark:{db}.{table}", 0) + n
        select = ", ".join(f"case when {_spark_in(c, lists[which[c]])} then null else `{c}` end as `{c}`"
                           if c in refs else f"`{c}`" for c in cols)
        keep = " or ".join(owned) or "false"
        tmp = f"`{db}`.`{table}__ulm_erasing`"
        sp.sql(f"drop table if exists {tmp}")
        sp.sql(f"create table {tmp} using parquet as select {select} from {rel} where not ({keep})")
        sp.sql(f"drop table {rel}")
        sp.sql(f"alter table {tmp} rename to {rel}")
    spark.sync_raw(Path(warehouse), key, con=con)  # raw (quarantine, suppression list) and ml as DuckDB now has them
    return removed


# ----------------------------------------------------------------------------------------------- erase

def erase(warehouse: Path, data_dir: Path | None = None, target: str | None = None) -> dict:
    """Process every pending erasure request (module docstring); ``target="postgres"`` (or a Postgres publish in
    ``audit.publish_log``) erases on the Postgres side (``ULM_PG_*``) too.

    Returns ``{"requests", "accounts", "persons", "suppressed", "rows_removed": {table: n}, "files": {...},
    "seconds"}``; counts only, never an identifier.
    """
    t0 = time.perf_counter()
    if not Path(warehouse).exists():
        raise UlmError(f"warehouse {warehouse} does not exist; run `ulm ingest` first")
    data_dir = Path(data_dir) if data_dir else settings.data_dir()
    con = connect(warehouse)
    try:
        ensure_raw_schema(con)
        ensure_audit_schema(con)
        pending = con.execute("""
            select request_id, user_id, requested_at from raw.erasure_requests
            where request_id not in (select request_id from audit.erasure_log)
            qualify row_number() over (partition by request_id order by _loaded_at) = 1
            order by requested_at, request_id""").fetchall()
        if not pending:
            return {"requests": 0, "accounts": 0, "persons": 0, "suppressed": 0, "rows_removed": {}, "files": {},
                    "seconds": round(time.perf_counter() - t0, 3)}
        keys.verify_key(con, "suppression")
        pg_cfg = postgres_side(con, target)
        pg_con = pg_cfg.connect() if pg_cfg else None  # unreachable: one UlmError line before anything changes
        spark_key = keys.require_pii_key() if spark_side(warehouse, target) else None
        now = _now()
        try:
            with transaction(con):
                extra = (_pg_identity(con, pg_con),) if pg_con else ()
                if spark_key:
                    from ulm.warehouse import spark

                    extra += (_spark_identity(con, spark.session(spark.spark_dir(Path(warehouse)), spark_key)),)
                _plan(con, pending, extra)
                accounts = con.execute("select count(*) from _er_accounts").fetchone()[0]
                persons = con.execute("select count(*) from _er_persons").fetchone()[0]
                suppressed = _suppress(con, now)
                removed = _remove(con)
                if pg_con:  # committed first: a DuckDB failure after it leaves the request pending, and a rerun
                    # deletes nothing more on Postgres (idempotent)
                    for request_id, per in _remove_postgres(con, pg_con).items():
                        for t, n in per.items():
                            removed.setdefault(request_id, {})[t] = n
                if spark_key:  # before the DuckDB commit too: a failure leaves the requests pending; a rerun re-plans
                    for request_id, per in _remove_spark(con, warehouse, spark_key).items():
                        for t, n in per.items():
                            removed.setdefault(request_id, {})[t] = n
                log_rows = []
                for request_id, requested_at, _ in [(r[0], r[2], None) for r in pending]:
                    per = removed.get(request_id, {})
                    log_rows += [(request_id, requested_at, now, t, n) for t, n in sorted(per.items())] or \
                        [(request_id, requested_at, now, "(none)", 0)]
                con.executemany("insert into audit.erasure_log values (?, ?, ?, ?, ?)", log_rows)
        finally:
            if pg_con:
                pg_con.close()
        files = _scrub_files(con, data_dir)
        con.execute("drop table if exists _er_ids")
    finally:
        con.close()
    totals: dict[str, int] = {}
    for per in removed.values():
        for t, n in per.items():
            totals[t] = totals.get(t, 0) + n
    seconds = round(time.perf_counter() - t0, 3)
    log.info("erasure: %d request(s), %d account(s), %d person(s): %s rows removed in %d tables, %d suppression "
             "entries, files changed %s, in %.1fs", len(pending), accounts, persons, f"{sum(totals.values()):,}",
             len(totals), suppressed, files, seconds)
    return {"requests": len(pending), "accounts": accounts, "persons": persons, "suppressed": suppressed,
            "rows_removed": totals, "files": files, "seconds": seconds}


# ----------------------------------------------------------------------------------------------- access

def access_export(warehouse: Path, user_id: str, out: Path) -> dict:
    """Write everything held about one account's person as JSON (``out``) plus a Markdown summary (``.md``).

    The person: the account, every account linked to it (as erasure finds them), their person ids. Returns
    ``{table: rows}``. The file holds the subject's own raw PII (it is for them): written with mode 0600.
    """
    con = connect_read_only(warehouse)
    try:
        con.execute("create temp table _acc (id varchar)")
        con.execute("insert into _acc values (?)", [user_id])
        identity = _identity_tables(con)
        con.execute("create temp table _per (id varchar)")
        for _ in range(3):
            for t in identity:
                con.execute(f"insert into _per select distinct person_id from {t} where user_id in "
                            f"(select id from _acc) and person_id not in (select id from _per)")
                con.execute(f"insert into _acc select distinct user_id from {t} where person_id in "
                            f"(select id from _per) and user_id not in (select id from _acc)")
        accounts = sorted(r[0] for r in con.execute("select id from _acc").fetchall())
        persons = sorted(r[0] for r in con.execute("select id from _per").fetchall())
        doc: dict[str, list[dict]] = {}
        for name, table in contract.TABLES.items():
            for column in table.owner_columns:
                _collect(con, doc, f"raw.{name}", f"raw.{quote(name)}", column, "_acc")
        owners = sorted({c for t in contract.TABLES.values() for c in t.owner_columns})
        owner_of = "coalesce(" + ", ".join(f"json_extract_string(original_row, '$.{c}')" for c in owners) + ")"
        cur = con.execute(f"select * from raw.quarantine where {owner_of} in (select id from _acc) "
                          f"order by quarantined_at, quarantine_id")
        _rows(doc, "raw.quarantine", cur)
        for schema, table, column in _tables_with(con, OWNER_ACCOUNT + OWNER_PERSON, raw=False):
            ids = "_acc" if column in OWNER_ACCOUNT else "_per"
            _collect(con, doc, f"{schema}.{table}", f"{quote(schema)}.{quote(table)}", column, ids)
    finally:
        con.close()
    if not any(doc.values()):
        raise UlmError(f"no data held for account {user_id!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {"user_id": user_id, "accounts": accounts, "person_ids": persons, "exported_at": _now().isoformat(),
            "tables": doc}
    _write_private(out, json.dumps(body, indent=1, default=str))
    _write_private(out.with_suffix(".md"), _summary(user_id, accounts, persons, doc))
    return {t: len(rows) for t, rows in doc.items()}


def _write_private(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


def _collect(con, doc, label: str, table: str, column: str, ids: str) -> None:
    cur = con.execute(f"select * from {table} where {quote(column)} in (select id from {ids})")
    _rows(doc, label, cur)


def _rows(doc, label: str, cur) -> None:
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    if rows:
        doc.setdefault(label, []).extend(rows)


def _summary(user_id: str, accounts: list[str], persons: list[str], doc: dict[str, list[dict]]) -> str:
    """A short human-readable account of what the JSON holds."""
    users = doc.get("raw.users", [])
    latest = {}
    for row in sorted(users, key=lambda r: str(r.get("consent_updated_at") or "")):
        latest[row["user_id"]] = row
    lines = [f"# Data held about account {user_id}", "",
             f"- person: {', '.join(persons) or '(not built yet)'}",
             f"- accounts of this person: {', '.join(accounts)}", ""]
    if latest:
        lines += ["| account | platform | registered | analytics consent | marketing consent | consent updated |",
                  "|---|---|---|---|---|---|"]
        for uid, r in sorted(latest.items()):
            lines.append(f"| {uid} | {r.get('platform')} | {r.get('registered_at')} | {r.get('consent_analytics')} "
                         f"| {r.get('consent_marketing')} | {r.get('consent_updated_at')} |")
        lines.append("")
    lines += ["| where | rows |", "|---|---|"]
    lines += [f"| {t} | {len(rows)} |" for t, rows in sorted(doc.items())]
    quarantined = doc.get("raw.quarantine", [])
    lines += ["", f"{len(quarantined)} row(s) about this person were rejected at landing (raw.quarantine) and are "
              "included with the reason.", "",
              "Raw contact identifiers (phone, device id, union id) appear only in the raw rows; every other layer "
              "holds keyed hashes."]
    return "\n".join(lines) + "\n"
