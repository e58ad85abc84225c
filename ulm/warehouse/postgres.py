"""The PostgreSQL target (issue #15): connection settings, a private loopback cluster, and the raw-layer copy.

* :class:`PgConfig` — where the Postgres warehouse is, from ``ULM_PG_HOST / _PORT / _USER / _DBNAME`` and the
  password from ``ULM_PG_PASSWORD`` only (no default secret). :meth:`PgConfig.dbt_env` is what dbt's ``postgres``
  output in ``dbt_project/profiles.yml`` reads;
* :func:`pg_bin`, :func:`as_postgres`, :func:`give_to_postgres` — PostgreSQL's server binaries, run as user
  ``postgres`` when root (shared with ``ulm deploy``, which imports them);
* :class:`LocalCluster` — initdb + pg_ctl of a private cluster in a directory, listening on 127.0.0.1 only (tests);
* :func:`copy_from_duckdb` — the raw layer on Postgres: ingest validates and quarantines in DuckDB as on the
  ``duckdb`` target, then the DuckDB tables of ``raw`` (and ``ml``) are copied to Postgres with ``COPY FROM STDIN``
  (CSV), one transaction per table, so Postgres ``raw`` equals DuckDB ``raw``. DuckDB's postgres extension is not
  used: extensions download from outside the package registries, which this project cannot depend on.
* :func:`prepare` — what a dbt run on Postgres needs: the ``pgcrypto`` extension (``hmac()`` for ``hash_pii``),
  ``public.ulm_money`` (money means rounded as DuckDB rounds them) and the source schemas;
* :func:`publish_schema` — the Postgres publish: a schema swap in one transaction.

The PII key reaches Postgres as the session setting ``ulm.pii_key`` through libpq's ``PGOPTIONS`` in the dbt
process's environment (:func:`pii_session_env`): it never appears in compiled SQL, dbt's logs or a table.
"""
from __future__ import annotations

import io
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ulm.core.errors import UlmError

PII_SETTING = "ulm.pii_key"
SOURCE_SCHEMAS = ("raw", "ml")
ENV = {"host": "ULM_PG_HOST", "port": "ULM_PG_PORT", "user": "ULM_PG_USER", "dbname": "ULM_PG_DBNAME",
       "password": "ULM_PG_PASSWORD"}
DBT_PASSWORD_ENV = "DBT_ENV_SECRET_ULM_PG_PASSWORD"  # what dbt receives (scrubbed from its logs)


@dataclass(frozen=True)
class PgConfig:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "ulm"
    dbname: str = "ulm"
    password: str | None = None

    @classmethod
    def from_env(cls) -> PgConfig:
        from ulm.core import settings

        return cls(**settings.postgres())

    def env(self) -> dict[str, str]:
        """ULM_PG_* variables naming this database (the password included: for child processes only)."""
        out = {ENV["host"]: self.host, ENV["port"]: str(self.port), ENV["user"]: self.user,
               ENV["dbname"]: self.dbname}
        if self.password:
            out[ENV["password"]] = self.password
        return out

    def dbt_env(self) -> dict[str, str]:
        out = {k: v for k, v in self.env().items() if k != ENV["password"]}
        if self.password:
            out[DBT_PASSWORD_ENV] = self.password
        return out

    def connect(self, dbname: str | None = None, **kw: Any):
        import psycopg2

        try:
            return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname or self.dbname,
                                    password=self.password, connect_timeout=10, **kw)
        except psycopg2.OperationalError as exc:
            first = str(exc).strip().splitlines()
            raise UlmError(f"PostgreSQL at {self.host}:{self.port}/{dbname or self.dbname}: "
                           f"{first[0] if first else exc}") from None


def _pg_options_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def pii_session_env(key: str) -> dict[str, str]:
    """libpq's PGOPTIONS setting ``ulm.pii_key`` for every session of the process (dbt's connections; it replaces
    a PGOPTIONS of the caller for the dbt run)."""
    return {"PGOPTIONS": f"-c {PII_SETTING}={_pg_options_escape(key)}"}


# ----------------------------------------------------------------------------------------------- local cluster

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0)
    for bindir in reversed(versions):
        if (bindir / name).exists():
            return str(bindir / name)
    raise UlmError(f"PostgreSQL's {name} is not installed: `apt-get install postgresql` (the Debian package)")


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the ``postgres`` user then (Debian creates it)."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if not runuser:
        raise UlmError("running as root needs `runuser` (util-linux) to start PostgreSQL as user postgres")
    return [runuser, "-u", "postgres", "--", *cmd]


def give_to_postgres(path: Path) -> None:
    """When root: ``path`` belongs to user postgres, and every parent lets others traverse it."""
    if os.geteuid() != 0:
        return
    import pwd

    pw = pwd.getpwnam("postgres")
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for parent in path.parents:  # the postgres user must be able to reach its data dir
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def _run(cmd: list[str], what: str, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise UlmError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def binaries_available() -> bool:
    try:
        pg_bin("initdb")
        pg_bin("pg_ctl")
    except UlmError:
        return False
    return True


class LocalCluster:
    """A private PostgreSQL cluster in ``root`` on 127.0.0.1:``port`` (no unix socket); stop() stops it."""

    def __init__(self, root: Path, port: int | None = None, user: str = "ulm", dbname: str = "ulm") -> None:
        self.root = Path(root)
        self.data = self.root / "pgdata"
        self.log = self.root / "postgres.log"
        self.port = port or free_port()
        self.config = PgConfig(port=self.port, user=user, dbname=dbname, password=secrets.token_hex(16))

    def start(self) -> PgConfig:
        self.root.mkdir(parents=True, exist_ok=True)
        give_to_postgres(self.root)
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            os.chmod(self.data, 0o700)
            pwfile = self.root / "pg.pw"
            _write_private(pwfile, self.config.password + "\n")
            give_to_postgres(pwfile)
            give_to_postgres(self.data)
            try:
                _run(as_postgres([pg_bin("initdb"), "-D", str(self.data), "-U", self.config.user, "--pwfile",
                                   str(pwfile), "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                                   "-E", "UTF8", "--locale=C", "--no-instructions"]), "initdb")
            finally:
                pwfile.unlink(missing_ok=True)
        self.log.touch()
        give_to_postgres(self.log)
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        _run(as_postgres([pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                           "-t", "60", "start"]), f"PostgreSQL start (log {self.log})")
        con = self.config.connect("postgres")
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (self.config.dbname,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{self.config.dbname}" owner "{self.config.user}"')
        finally:
            con.close()
        return self.config

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            give_to_postgres(self.root)  # a parent's mode may have been reset since start (pytest resets its base)
            _run(as_postgres([pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                 "PostgreSQL stop")

    def __enter__(self) -> PgConfig:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ----------------------------------------------------------------------------------------------- schemas

def prepare(cfg: PgConfig, schemas: tuple[str, ...] = SOURCE_SCHEMAS) -> None:
    """pgcrypto (hash_pii's hmac) and the source schemas exist (idempotent)."""
    con = cfg.connect()
    try:
        with con, con.cursor() as cur:
            cur.execute("create extension if not exists pgcrypto")
            cur.execute(MONEY_FROM_DOUBLE)
            for s in schemas:
                cur.execute(f'create schema if not exists "{s}"')
    finally:
        con.close()


# DuckDB turns a double into DECIMAL(p,2) by multiplying by 100 in double and rounding half away from zero (a money
# mean such as 136.95 / 2 is a double there: 68.475 -> 6847.499999999999 -> 68.47). PostgreSQL's float8 -> numeric keeps
# 15 significant digits first (68.48), so ulm_money(float8) does DuckDB's steps; exact while |d| < 1e13.
MONEY_FROM_DOUBLE = """
create or replace function public.ulm_money(d double precision) returns numeric
language sql immutable strict parallel safe as $fn$
select (t + case when abs(x - t) >= 0.5 then sign(x) else 0 end)::numeric / 100
from (select d * 100::float8 as x, trunc(d * 100::float8) as t) as s
$fn$
"""


def _pg_type(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith("DECIMAL"):
        return t.replace("DECIMAL", "numeric")
    simple = {"VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint",
              "TINYINT": "smallint", "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp",
              "TIMESTAMP WITH TIME ZONE": "timestamptz", "DOUBLE": "double precision", "FLOAT": "real",
              "HUGEINT": "numeric(38, 0)", "UBIGINT": "numeric(20, 0)", "UINTEGER": "bigint", "JSON": "jsonb",
              "UUID": "uuid", "TIME": "time", "BLOB": "bytea", "INTERVAL": "interval"}
    return simple.get(t, "text")  # lists, structs, maps: their text form


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_from_duckdb(duck: Any, cfg: PgConfig, schemas: tuple[str, ...] = SOURCE_SCHEMAS,
                     tables: list[tuple[str, str]] | None = None, batch_rows: int = 200_000) -> dict[str, int]:
    """Replace each DuckDB table of ``schemas`` (or the (schema, table) pairs ``tables``) on Postgres with a copy:
    drop + create + COPY FROM STDIN in one transaction per table. ``duck`` is a DuckDB connection. Returns
    ``{"schema.table": rows}``. NULL and '' stay apart (CSV: unquoted empty field vs quoted empty string)."""
    if tables is None:
        marks = ", ".join("?" * len(schemas))
        tables = duck.execute(f"select schema_name, table_name from duckdb_tables() where database_name = "
                              f"current_database() and schema_name in ({marks}) order by 1, 2",
                              list(schemas)).fetchall()
    prepare(cfg, tuple(sorted({s for s, _ in tables} | set(schemas))))
    out: dict[str, int] = {}
    con = cfg.connect()
    try:
        for schema, table in tables:
            cols = duck.execute("select column_name, data_type from duckdb_columns() where database_name = "
                                "current_database() and schema_name = ? and table_name = ? order by column_index",
                                [schema, table]).fetchall()
            ddl = ", ".join(f"{_q(c)} {_pg_type(t)}" for c, t in cols)
            select = ", ".join(f"cast({_q(c)} as varchar)" if _pg_type(t) in ("text", "jsonb", "uuid", "interval")
                               else _q(c) for c, t in cols)
            rel = f"{_q(schema)}.{_q(table)}"
            n = 0
            with con, con.cursor() as cur:
                cur.execute(f"drop table if exists {rel} cascade")
                cur.execute(f"create table {rel} ({ddl})")
                reader = duck.sql(f"select {select} from {rel}").to_arrow_reader(batch_rows)
                for batch in reader:
                    buf = _csv_batch(batch)
                    cur.copy_expert(f"copy {rel} from stdin with (format csv)", buf)
                    n += batch.num_rows
            out[f"{schema}.{table}"] = n
    finally:
        con.close()
    return out


def _csv_batch(batch: Any) -> io.StringIO:
    """One Arrow record batch as Postgres CSV: NULL is an unquoted empty field, every string is quoted."""
    import pyarrow as pa

    columns = []
    for col in batch.columns:
        values = col.to_pylist()
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            columns.append(["" if v is None else '"' + v.replace('"', '""') + '"' for v in values])
        elif pa.types.is_boolean(t):
            columns.append(["" if v is None else ("true" if v else "false") for v in values])
        elif pa.types.is_floating(t):
            columns.append(["" if v is None else repr(v) for v in values])
        else:  # integers, decimals, dates, timestamps: str() is Postgres' input format
            columns.append(["" if v is None else str(v) for v in values])
    buf = io.StringIO()
    buf.writelines(",".join(row) + "\n" for row in zip(*columns, strict=True))
    buf.seek(0)
    return buf


@contextmanager
def cursor(cfg: PgConfig) -> Iterator[Any]:
    con = cfg.connect()
    try:
        with con, con.cursor() as cur:
            yield cur
    finally:
        con.close()


def ensure_sources(duck: Any, cfg: PgConfig, schemas: tuple[str, ...] = SOURCE_SCHEMAS) -> dict[str, int]:
    """Copy the DuckDB tables of ``schemas`` that Postgres lacks (e.g. the empty ``ml.scores`` before any scoring)."""
    prepare(cfg, schemas)
    with cursor(cfg) as cur:
        cur.execute("select table_schema, table_name from information_schema.tables where table_schema = any(%s)",
                    (list(schemas),))
        present = set(cur.fetchall())
    marks = ", ".join("?" * len(schemas))
    wanted = duck.execute(f"select schema_name, table_name from duckdb_tables() where database_name = "
                          f"current_database() and schema_name in ({marks}) order by 1, 2", list(schemas)).fetchall()
    missing = [t for t in wanted if tuple(t) not in present]
    return copy_from_duckdb(duck, cfg, schemas, tables=missing) if missing else {}


def sync_raw(warehouse: Path, cfg: PgConfig, schemas: tuple[str, ...] = SOURCE_SCHEMAS) -> dict[str, int]:
    """Postgres ``raw`` (and ``ml``) := DuckDB's, table by table (what ``ulm ingest --target postgres`` does after
    the DuckDB load: landing rows, quarantine, load audit, the file registry and the suppression list)."""
    from ulm.warehouse import connect_read_only

    con = connect_read_only(Path(warehouse))
    try:
        return copy_from_duckdb(con, cfg, schemas)
    finally:
        con.close()


def create_database(cfg: PgConfig, dbname: str) -> PgConfig:
    """A new (or existing) database on the same server, owned by the same user; its config."""
    from dataclasses import replace

    con = cfg.connect("postgres")
    con.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with con.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (dbname,))
            if cur.fetchone() is None:
                cur.execute(f'create database {_q(dbname)} owner {_q(cfg.user)}')
    finally:
        con.close()
    out = replace(cfg, dbname=dbname)
    prepare(out)
    return out


def publish_schema(cfg: PgConfig, source: str = "audit_marts", target: str = "marts") -> dict[str, int]:
    """Publish on PostgreSQL: ``target`` := a copy of every table and view of ``source`` (views materialized), as a
    schema swap in ONE transaction (copy into ``<target>__next``, rename ``target`` away, rename the copy in, drop
    the old one). Readers see the old marts or the new ones, never a mix; ``source`` keeps its incremental state.
    Returns ``{table: rows}``. Raises UlmError (nothing changed) when ``source`` has no relations."""
    nxt, old = f"{target}__next", f"{target}__old"
    con = cfg.connect()
    try:
        with con, con.cursor() as cur:
            cur.execute("select table_name from information_schema.tables where table_schema = %s order by 1",
                        (source,))
            names = [r[0] for r in cur.fetchall()]
            if not names:
                raise UlmError(f"publish: schema {source} holds no relations on PostgreSQL; build first")
            cur.execute(f"drop schema if exists {_q(nxt)} cascade")
            cur.execute(f"create schema {_q(nxt)}")
            counts: dict[str, int] = {}
            for name in names:
                cur.execute(f"create table {_q(nxt)}.{_q(name)} as select * from {_q(source)}.{_q(name)}")
                counts[name] = cur.rowcount
            cur.execute("select 1 from information_schema.schemata where schema_name = %s", (target,))
            if cur.fetchone() is not None:
                cur.execute(f"drop schema if exists {_q(old)} cascade")
                cur.execute(f"alter schema {_q(target)} rename to {_q(old)}")
            cur.execute(f"alter schema {_q(nxt)} rename to {_q(target)}")
            cur.execute(f"drop schema if exists {_q(old)} cascade")
        return counts
    finally:
        con.close()


class Reader:
    """Read-only queries on the PostgreSQL warehouse, for the gates: :meth:`df` is what ``duckdb ... .df()`` is on
    DuckDB (numerics as floats, as DuckDB's ``.df()`` gives decimals), :meth:`tables` is
    :func:`ulm.quality.core.existing_tables`. One read-only autocommit session; use as a context manager."""

    def __init__(self, cfg: PgConfig) -> None:
        self.con = cfg.connect()
        self.con.set_session(readonly=True, autocommit=True)

    def df(self, sql: str):
        import pandas as pd

        with self.con.cursor() as cur:
            cur.execute(sql)
            cols = [d[0] for d in cur.description]
            return pd.DataFrame.from_records(cur.fetchall(), columns=cols, coerce_float=True)

    def tables(self, schema: str) -> dict[str, set[str]]:
        with self.con.cursor() as cur:
            cur.execute("select table_name, column_name from information_schema.columns where table_schema = %s",
                        (schema,))
            out: dict[str, set[str]] = {}
            for table, column in cur.fetchall():
                out.setdefault(table, set()).add(column)
        return out

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _duck_type(data_type: str, precision: int | None, scale: int | None) -> str:
    t = data_type.lower()
    if t == "numeric":
        return f"DECIMAL({precision},{scale})" if precision is not None else "DOUBLE"
    simple = {"text": "VARCHAR", "character varying": "VARCHAR", "character": "VARCHAR", "bigint": "BIGINT",
              "integer": "INTEGER", "smallint": "SMALLINT", "boolean": "BOOLEAN", "date": "DATE",
              "timestamp without time zone": "TIMESTAMP", "timestamp with time zone": "TIMESTAMPTZ",
              "double precision": "DOUBLE", "real": "FLOAT", "jsonb": "VARCHAR", "json": "VARCHAR",
              "uuid": "UUID", "time without time zone": "TIME", "interval": "INTERVAL"}
    return simple.get(t, "VARCHAR")


def copy_to_duckdb(cfg: PgConfig, schema: str, duck: Any, target_schema: str | None = None,
                   tables: list[str] | None = None) -> dict[str, int]:
    """The reverse of :func:`copy_from_duckdb`: every table of Postgres ``schema`` (or ``tables``) into DuckDB
    ``target_schema`` (default the same name) of the connection ``duck``, through ``COPY TO STDOUT`` (CSV, NULL and ''
    kept apart) into a private temp file that DuckDB reads with the columns' types. Runs in the caller's DuckDB
    transaction when there is one (each table is dropped and re-created). Returns ``{table: rows}``."""
    import tempfile

    target_schema = target_schema or schema
    out: dict[str, int] = {}
    duck.execute(f"create schema if not exists {_q(target_schema)}")
    with cursor(cfg) as cur, tempfile.TemporaryDirectory(prefix="ulm-pg-copy-") as tmp:
        cur.execute("select table_name, column_name, data_type, numeric_precision, numeric_scale "
                    "from information_schema.columns where table_schema = %s order by table_name, ordinal_position",
                    (schema,))
        columns: dict[str, list[tuple[str, str]]] = {}
        for table, column, dtype, precision, scale in cur.fetchall():
            if tables is None or table in tables:
                columns.setdefault(table, []).append((column, _duck_type(dtype, precision, scale)))
        for table, cols in columns.items():
            path = Path(tmp) / "t.csv"
            with open(path, "w", encoding="utf-8", newline="") as fh:
                cur.copy_expert(f"copy (select * from {_q(schema)}.{_q(table)}) to stdout with (format csv)", fh)
            spec = "{" + ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': '{t}'" for c, t in cols) + "}"
            rel = f"{_q(target_schema)}.{_q(table)}"
            duck.execute(f"drop table if exists {rel}")
            duck.execute(f"create table {rel} as select * from read_csv(?, columns = {spec}, header = false, "
                         "nullstr = '', allow_quoted_nulls = false, auto_detect = false, quote = '\"', "
                         "escape = '\"', delim = ',')", [str(path)])
            out[table] = duck.execute(f"select count(*) from {rel}").fetchone()[0]
    return out
