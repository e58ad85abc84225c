"""The Spark target (issue #15): a local pyspark session for dbt-spark's ``session`` method, and the raw layer on it.

* :func:`spark_dir` — everything Spark keeps for one warehouse sits next to the DuckDB file, in
  ``<warehouse stem>_spark/``: ``warehouse/`` (``spark.sql.warehouse.dir``, the models' Parquet files),
  ``metastore_db/`` (the embedded Derby metastore with the table definitions) and ``sources/`` (the raw copy);
* :func:`session_conf` / :func:`session` — the one Spark session of a process: ``local[2]``, UI off, 2 shuffle
  partitions (tiny data), naive timestamps (``TIMESTAMP_NTZ``, session time zone UTC) as DuckDB's. dbt-spark's
  ``session`` connection calls ``SparkSession.builder.getOrCreate()`` for every statement, so the session started
  here before dbt runs is the one dbt uses (one JVM per process). ``dbt_project/profiles.yml`` repeats the same
  settings (``server_side_parameters``) for a plain ``dbt --target spark`` run;
* :func:`sync_raw` — the raw layer on Spark: ingest validates and quarantines in DuckDB as on the ``duckdb``
  target, then each DuckDB table of ``raw`` and ``ml`` is written to Parquet by DuckDB and registered as a Spark
  table over that file, so Spark ``raw`` equals DuckDB ``raw``.

The PII key: ``hash_pii()`` on Spark is HMAC-SHA256 by commons-codec (shipped with Spark) through the built-in
``java_method``, the key read inside the JVM from its environment variable ``DBT_ENV_SECRET_ULM_PII_KEY``
(``spark__hash_pii`` in ``dbt_project/macros/spark_engines.sql``): never in compiled SQL or logs. A JVM reads its
environment once, at launch, so :func:`session` starts the JVM with the key set and checks, on every call, that the
running JVM hashes with the current key (a process that changed keys must start a new process).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ulm.core.errors import UlmError

SOURCE_SCHEMAS = ("raw", "ml")
DIR_ENV = "ULM_SPARK_DIR"  # what the `spark` output of dbt_project/profiles.yml reads
KEY_ENV = "DBT_ENV_SECRET_ULM_PII_KEY"  # the JVM's copy of the PII key (dbt scrubs DBT_ENV_SECRET_* from logs)
KEY_PROBE = "ulm-spark-key-probe"
HMAC_SQL = ("java_method('org.apache.commons.codec.digest.HmacUtils', 'hmacSha256Hex', "
            "java_method('java.lang.System', 'getenv', '" + KEY_ENV + "'), {value})")
# DuckDB types Parquet (or Spark) has no form for, exported as one Spark reads
_EXPORT = {"HUGEINT": "decimal(38, 0)", "UBIGINT": "decimal(20, 0)", "UINTEGER": "bigint", "UUID": "varchar",
           "JSON": "varchar", "INTERVAL": "varchar", "TIMESTAMP WITH TIME ZONE": "timestamp"}


def spark_dir(warehouse: Path) -> Path:
    """Where Spark keeps this warehouse's tables, metastore and raw copy."""
    warehouse = Path(warehouse)
    return warehouse.parent / f"{warehouse.stem}_spark"


def java_available() -> bool:
    """A Java runtime Spark can launch (JAVA_HOME or `java` on PATH)."""
    home = os.environ.get("JAVA_HOME")
    return bool((home and Path(home, "bin", "java").exists()) or shutil.which("java"))


def session_conf(root: Path) -> dict[str, str]:
    """The Spark settings of a ULM session over ``root`` (the same as profiles.yml's server_side_parameters)."""
    root = Path(root).resolve()
    return {
        "spark.master": "local[2]",
        "spark.app.name": "ulm",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root}",
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.timestampType": "TIMESTAMP_NTZ",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",  # dbt-spark forces it too
        "spark.sql.legacy.createHiveTableByDefault": "false",
    }


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def session(root: Path, key: str) -> Any:
    """The process's Spark session over ``root`` (started on first use, with the PII key in the JVM's environment);
    UlmError when Java is missing or the running JVM holds another key or another directory."""
    if not java_available():
        raise UlmError("Spark needs Java 17+: `apt-get install openjdk-17-jre-headless` (Debian) or set JAVA_HOME")
    from pyspark.sql import SparkSession

    conf = session_conf(root)
    active = SparkSession.getActiveSession()
    if active is not None:  # Spark keeps the warehouse dir as a file: URI
        serving = active.conf.get("spark.sql.warehouse.dir").removeprefix("file:")
        if Path(serving) != Path(conf["spark.sql.warehouse.dir"]):
            raise UlmError(f"this process's Spark session serves {serving}, not {conf['spark.sql.warehouse.dir']}: "
                           "one Spark warehouse per process")
    Path(root).mkdir(parents=True, exist_ok=True)
    with _env({KEY_ENV: key, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}):
        builder = SparkSession.builder
        for k, v in conf.items():
            builder = builder.config(k, v)
        spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    got = spark.sql(f"select {HMAC_SQL.format(value=repr(KEY_PROBE))} as h").collect()[0][0]
    want = hmac.new(key.encode("utf-8"), KEY_PROBE.encode("utf-8"), hashlib.sha256).hexdigest()
    if got != want:
        raise UlmError("the Spark JVM of this process was started with another PII key (a JVM reads its environment "
                       "once): run again in a new process")
    return spark


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def sync_raw(warehouse: Path, key: str, schemas: tuple[str, ...] = SOURCE_SCHEMAS, con: Any = None) -> dict[str, int]:
    """Spark ``raw``/``ml`` := DuckDB ``raw``/``ml``: each table written to Parquet by DuckDB, then (re)registered as
    a Spark table over that file. ``con``: an open DuckDB connection to the warehouse to read through (inside its
    transaction: what it sees, uncommitted changes included; the erasure uses it), else a read-only one is opened.
    Returns {schema.table: rows}."""
    import duckdb

    warehouse = Path(warehouse)
    root = spark_dir(warehouse)
    spark = session(root, key)
    counts: dict[str, int] = {}
    own = con is None
    if own:
        con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for schema in schemas:
            tables = [r[0] for r in con.execute(
                "select table_name from duckdb_tables() where database_name = current_database() and schema_name = ?"
                " and not temporary order by 1", [schema]).fetchall()]
            spark.sql(f"create database if not exists {_q(schema)}")
            for table in tables:
                cols = con.execute(
                    "select column_name, data_type from duckdb_columns() where database_name = current_database() "
                    "and schema_name = ? and table_name = ? order by column_index", [schema, table]).fetchall()
                select = ", ".join(
                    f'cast("{c}" as {_EXPORT[t.upper()]}) as "{c}"' if t.upper() in _EXPORT else f'"{c}"'
                    for c, t in cols)
                out = (root / "sources" / schema / table).resolve()
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                con.execute(f'copy (select {select} from "{schema}"."{table}") to \'{out / "data.parquet"}\' '
                            "(format parquet)")
                counts[f"{schema}.{table}"] = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
                spark.sql(f"drop table if exists {_q(schema)}.{_q(table)}")
                spark.sql(f"create table {_q(schema)}.{_q(table)} using parquet location '{out}'")
                spark.sql(f"refresh table {_q(schema)}.{_q(table)}")
    finally:
        if own:
            con.close()
    return counts


def dbt_env(warehouse: Path) -> dict[str, str]:
    """What the `spark` output of profiles.yml reads."""
    return {DIR_ENV: str(spark_dir(Path(warehouse)).resolve())}


def compare_schema(duck: Any, spark: Any, schema: str, rel_tol: float | None = None,
                   skip: tuple[str, ...] = (), spark_schema: str | None = None) -> tuple[dict[str, int], list[str]]:
    """Compare every DuckDB table of ``schema`` with the Spark table of the same name in ``spark_schema`` (default
    the same database name), column by column (DuckDB's column order; '_' columns are load lineage and skipped), with
    :func:`ulm.warehouse.engines.compare_rows`. Returns ({table: rows}, differences)."""
    spark_schema = spark_schema or schema
    from ulm.warehouse import engines

    tol = engines.REL_TOL if rel_tol is None else rel_tol
    spark_tables = {r.tableName for r in spark.sql(f"show tables in {_q(spark_schema)}").collect()
                    if not r.isTemporary}
    counts: dict[str, int] = {}
    diffs: list[str] = []
    for table in engines.duckdb_tables(duck, schema):
        if table in skip:
            continue
        if table not in spark_tables:
            diffs.append(f"{spark_schema}.{table}: missing on Spark")
            continue
        cols = [r[0] for r in duck.execute(
            "select column_name from duckdb_columns() where database_name = current_database() and schema_name = ? "
            "and table_name = ? order by column_index", [schema, table]).fetchall() if not r[0].startswith("_")]
        left = duck.execute(f'select {", ".join(chr(34) + c + chr(34) for c in cols)} from "{schema}"."{table}"'
                            ).fetchall()
        right = [tuple(r) for r in spark.sql(
            f'select {", ".join(_q(c) for c in cols)} from {_q(spark_schema)}.{_q(table)}').collect()]
        counts[table] = len(left)
        diffs += engines.compare_rows(f"{schema}.{table}", cols, left, right, tol)
    return counts, diffs


# ------------------------------------------------------------------------------------------ gates and publish

def relations(spark: Any, schema: str) -> dict[str, str]:
    """{name: 'VIEW' | 'MANAGED' | 'EXTERNAL'} of the (non-temporary) tables and views of Spark database ``schema``;
    {} when it does not exist."""
    if not spark.catalog.databaseExists(schema):
        return {}
    return {t.name: t.tableType for t in sorted(spark.catalog.listTables(schema), key=lambda t: t.name)
            if not t.isTemporary}


class Reader:
    """Read-only queries on the Spark warehouse, for the gates (what :class:`ulm.warehouse.postgres.Reader` is on
    PostgreSQL): :meth:`df` gives a pandas DataFrame (decimals as floats, as DuckDB's ``.df()``), :meth:`tables`
    {table: columns} of a database. It queries a separate session of the process's Spark (``newSession()``: the
    same JVM, tables and metastore, its own SQL settings) with ANSI SQL on and double-quoted identifiers, Spark 4's
    defaults (dbt-spark turns ANSI off in the session dbt uses), so the gates' portable frame SQL runs unchanged."""

    def __init__(self, warehouse: Path, key: str) -> None:
        self.spark = session(spark_dir(Path(warehouse)), key).newSession()
        self.spark.conf.set("spark.sql.ansi.enabled", "true")
        self.spark.conf.set("spark.sql.ansi.doubleQuotedIdentifiers", "true")

    def df(self, sql: str):
        import pandas as pd

        frame = self.spark.sql(sql)
        rows = [tuple(r) for r in frame.collect()]
        return pd.DataFrame.from_records(rows, columns=frame.columns, coerce_float=True)

    def tables(self, schema: str) -> dict[str, set[str]]:
        return {t: {c.name for c in self.spark.catalog.listColumns(f"{_q(schema)}.{_q(t)}")}
                for t in relations(self.spark, schema)}

    def close(self) -> None:
        pass  # the session belongs to the process (its JVM serves dbt and the other steps too)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


POINTER = "published_run"  # audit.published_run on Spark: the one-row view naming the published database


VERSION_INFIX = "__run_"  # <target>__run_<run id>: the publish copies, and only they, match <target>__run_*


def version_database(target: str, run_id: str) -> str:
    """The Spark database one publish copies ``target`` into: ``<target>__run_<run id>`` (letters, digits, '_')."""
    return f"{target}{VERSION_INFIX}" + "".join(c if c.isalnum() else "_" for c in run_id.lower())


def published_database(spark: Any, target: str = "marts") -> str | None:
    """The database ``audit.published_run`` names for ``target`` (None before the first publish)."""
    if POINTER not in relations(spark, "audit"):
        return None
    rows = spark.sql(f"select database_name from audit.{POINTER} where published_schema = '{target}'").collect()
    return rows[0][0] if rows else None


def publish_database(warehouse: Path, key: str, source: str, target: str, run_id: str) -> tuple[str, dict[str, int]]:
    """Spark's publish (docs/DECISIONS.md D84): copy every table of ``source`` into a new database
    ``<target>__run_<run id>``, then switch the one-row view ``audit.published_run`` to it (replacing one view is one
    metastore operation: readers that resolve the database through it see the old or the new run, never a mix);
    then ``target``'s views are re-pointed to the new copies one by one (``select * from marts.x`` for readers who
    do not need a consistent set) and copies older than the previous publish are dropped.
    Returns (the new database, {table: rows})."""
    spark = session(spark_dir(Path(warehouse)), key)
    tables = relations(spark, source)
    if not tables:
        raise UlmError(f"Spark database {source} holds no tables; nothing to publish")
    version = version_database(target, run_id)
    previous = published_database(spark, target)
    if version == previous:
        raise UlmError(f"publish: run {run_id} is already published on Spark as {version}")
    spark.sql(f"drop database if exists {_q(version)} cascade")
    spark.sql(f"create database {_q(version)}")
    counts: dict[str, int] = {}
    for t in tables:
        spark.sql(f"create table {_q(version)}.{_q(t)} using parquet as select * from {_q(source)}.{_q(t)}")
        counts[t] = spark.table(f"{_q(version)}.{_q(t)}").count()
    spark.sql("create database if not exists audit")
    spark.sql(f"create or replace view audit.{POINTER} as select '{target}' as published_schema, "
              f"'{version}' as database_name, '{run_id}' as run_id, "
              f"cast('{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}' as timestamp) as published_at")
    spark.sql(f"create database if not exists {_q(target)}")
    for name, kind in relations(spark, target).items():
        if name not in tables or kind != "VIEW":  # gone from the build, or a table left by a prefix-less dbt run
            spark.sql(f"drop {'view' if kind == 'VIEW' else 'table'} if exists {_q(target)}.{_q(name)}")
    for t in tables:
        spark.sql(f"create or replace view {_q(target)}.{_q(t)} as select * from {_q(version)}.{_q(t)}")
    for db in spark.catalog.listDatabases(f"{target}{VERSION_INFIX}*"):
        if db.name not in (version, previous) and db.name.startswith(f"{target}{VERSION_INFIX}"):
            spark.sql(f"drop database if exists {_q(db.name)} cascade")
    return version, counts


def copy_to_duckdb(warehouse: Path, key: str, database: str, duck: Any, target_schema: str,
                   tables: list[str] | None = None) -> dict[str, int]:
    """Every table of Spark ``database`` (or ``tables``) into DuckDB ``target_schema`` of the connection ``duck``
    through Arrow (Spark's ``toArrow()``; types as Spark holds them). Runs in the caller's DuckDB transaction when
    there is one (each table is dropped and re-created). Returns ``{table: rows}``."""
    spark = session(spark_dir(Path(warehouse)), key)
    out: dict[str, int] = {}
    duck.execute(f'create schema if not exists "{target_schema}"')
    for t in relations(spark, database):
        if tables is not None and t not in tables:
            continue
        arrow = spark.table(f"{_q(database)}.{_q(t)}").toArrow()
        rel = f'"{target_schema}"."{t}"'
        duck.register("_ulm_spark_copy", arrow)
        try:
            duck.execute(f"drop table if exists {rel}")
            duck.execute(f"create table {rel} as select * from _ulm_spark_copy")
        finally:
            duck.unregister("_ulm_spark_copy")
        out[t] = duck.execute(f"select count(*) from {rel}").fetchall()[0][0]  # fetched to the end: register()
    return out                                                                   # refuses a pending result
