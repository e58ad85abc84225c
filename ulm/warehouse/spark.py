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


def sync_raw(warehouse: Path, key: str, schemas: tuple[str, ...] = SOURCE_SCHEMAS) -> dict[str, int]:
    """Spark ``raw``/``ml`` := DuckDB ``raw``/``ml``: each table written to Parquet by DuckDB, then (re)registered as
    a Spark table over that file. Returns {schema.table: rows}."""
    import duckdb

    warehouse = Path(warehouse)
    root = spark_dir(warehouse)
    spark = session(root, key)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for schema in schemas:
            tables = [r[0] for r in con.execute(
                "select table_name from duckdb_tables() where database_name = current_database() and schema_name = ?"
                " order by 1", [schema]).fetchall()]
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
        con.close()
    return counts


def dbt_env(warehouse: Path) -> dict[str, str]:
    """What the `spark` output of profiles.yml reads."""
    return {DIR_ENV: str(spark_dir(Path(warehouse)).resolve())}


def compare_schema(duck: Any, spark: Any, schema: str, rel_tol: float | None = None,
                   skip: tuple[str, ...] = ()) -> tuple[dict[str, int], list[str]]:
    """Compare every DuckDB table of ``schema`` with the Spark table of the same name, column by column (DuckDB's
    column order; '_' columns are load lineage and skipped), with :func:`ulm.warehouse.engines.compare_rows`.
    Returns ({table: rows}, differences)."""
    from ulm.warehouse import engines

    tol = engines.REL_TOL if rel_tol is None else rel_tol
    spark_tables = {r.tableName for r in spark.sql(f"show tables in {_q(schema)}").collect() if not r.isTemporary}
    counts: dict[str, int] = {}
    diffs: list[str] = []
    for table in engines.duckdb_tables(duck, schema):
        if table in skip:
            continue
        if table not in spark_tables:
            diffs.append(f"{schema}.{table}: missing on Spark")
            continue
        cols = [r[0] for r in duck.execute(
            "select column_name from duckdb_columns() where database_name = current_database() and schema_name = ? "
            "and table_name = ? order by column_index", [schema, table]).fetchall() if not r[0].startswith("_")]
        left = duck.execute(f'select {", ".join(chr(34) + c + chr(34) for c in cols)} from "{schema}"."{table}"'
                            ).fetchall()
        right = [tuple(r) for r in spark.sql(
            f'select {", ".join(_q(c) for c in cols)} from {_q(schema)}.{_q(table)}').collect()]
        counts[table] = len(left)
        diffs += engines.compare_rows(f"{schema}.{table}", cols, left, right, tol)
    return counts, diffs
