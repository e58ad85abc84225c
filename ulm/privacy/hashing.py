"""PII hashing (docs/METRICS.md#privacy): HMAC-SHA256 keyed by a secret from the environment.

One implementation serves both Python code (:func:`hmac_sha256`, :func:`hash_values`) and dbt: the dbt-duckdb
plugin class :class:`Plugin` (``plugins: [{module: ulm.privacy.hashing}]`` in ``dbt_project/profiles.yml``) registers the
vectorized UDF ``ulm_hmac_sha256(VARCHAR) -> VARCHAR`` on every warehouse connection, used through the
``hash_pii(col)`` macro. DuckDB 2.0 has ``sha256`` but no HMAC, hence the UDF.

The key is read from ``DBT_ENV_SECRET_ULM_PII_KEY`` (what ``ulm.transform.dbt`` passes to dbt, so dbt scrubs it from logs)
or ``ULM_PII_KEY``. It is never logged, printed or written into SQL.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from ulm.core import settings
from ulm.core.errors import UlmError

UDF_NAME = "ulm_hmac_sha256"


def pii_key() -> bytes:
    """The HMAC key from the environment; UlmError with a hint when missing."""
    value = settings.pii_key()
    if value:
        return value.encode("utf-8")
    raise UlmError("PII key missing: set ULM_PII_KEY (a secret, e.g. `export ULM_PII_KEY=$(openssl rand -hex 32)`)")


def hmac_sha256(value: str | None, key: bytes | None = None) -> str | None:
    """Hex HMAC-SHA256 of one value (None and blank stay None, so missing PII links nothing)."""
    if value is None or not value.strip():
        return None
    return hmac.new(key or pii_key(), value.strip().encode("utf-8"), hashlib.sha256).hexdigest()


def hash_values(values: Iterable[str | None], key: bytes | None = None) -> list[str | None]:
    """Hash many values with one key lookup; repeated values are hashed once."""
    k = key or pii_key()
    cache: dict[str, str | None] = {}
    out: list[str | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif v in cache:
            out.append(cache[v])
        else:
            cache[v] = h = hmac_sha256(v, k)
            out.append(h)
    return out


def _arrow_udf(key: bytes):
    def udf(col: pa.Array | pa.ChunkedArray) -> pa.Array:
        return pa.array(hash_values(col.to_pylist(), key), type=pa.string())

    return udf


def register_udf(conn: Any, key: bytes | None = None) -> None:
    """Register ``ulm_hmac_sha256`` on a DuckDB connection (vectorized over Arrow batches)."""
    import duckdb
    from duckdb import sqltypes

    try:
        k = key or pii_key()
    except UlmError as exc:
        message = str(exc)

        def missing(col: pa.Array) -> pa.Array:
            raise UlmError(message)

        fn = missing
    else:
        fn = _arrow_udf(k)
    try:
        conn.remove_function(UDF_NAME)
    except (duckdb.InvalidInputException, duckdb.CatalogException):
        pass
    conn.create_function(
        UDF_NAME, fn, [sqltypes.VARCHAR], sqltypes.VARCHAR,
        type="arrow", null_handling="special", side_effects=False,
    )


try:  # the dbt-duckdb plugin hook; dbt is optional for users of the plain helpers above
    from dbt.adapters.duckdb.plugins import BasePlugin
except ImportError:  # pragma: no cover
    BasePlugin = object  # type: ignore[assignment,misc]


class Plugin(BasePlugin):  # type: ignore[misc,valid-type]
    """dbt-duckdb plugin: registers the HMAC UDF on the warehouse connection and every cursor."""

    def configure_connection(self, conn: Any) -> None:
        register_udf(conn)

    def configure_cursor(self, cursor: Any) -> None:
        # Look the UDF up, never call it: without a key the connection holds a stand-in that raises "PII key
        # missing" when called, and reading that error as "not registered" made the re-registration below fail
        # with "ulm_hmac_sha256 already exists", hiding the key error.
        found = cursor.execute("select count(*) from duckdb_functions() where function_name = ?",
                               [UDF_NAME]).fetchall()
        if not found[0][0]:  # this cursor does not see the connection's UDF: register it here too
            register_udf(cursor)
