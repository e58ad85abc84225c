"""The warehouse: the only code that opens a DuckDB connection to it, and everything named in it.

* :func:`connect` (read-write, creating the file) and :func:`connect_read_only`, both turning DuckDB's
  lock conflicts into one-line errors; :func:`transaction` (BEGIN / COMMIT, ROLLBACK on any error);
* schema names (:mod:`ulm.warehouse.schemas`) and the DDL of the tables ULM itself owns: raw landing tables,
  quarantine, load audit, file registry, audit logs, ML outputs (:mod:`ulm.warehouse.ddl`);
* the write lock, keyed on the warehouse file (:mod:`ulm.warehouse.lock`).
"""
from ulm.warehouse.connection import connect, connect_read_only, quote, relations, table_exists, transaction
from ulm.warehouse.ddl import ensure_audit_schema, ensure_ml_schema, ensure_raw_schema
from ulm.warehouse.lock import write_lock
from ulm.warehouse.schemas import AUDIT, AUDIT_PREFIX, ML, PUBLISHED, RAW

__all__ = ["connect", "connect_read_only", "transaction", "quote", "relations", "table_exists",
           "ensure_raw_schema", "ensure_audit_schema", "ensure_ml_schema", "write_lock",
           "RAW", "AUDIT", "ML", "PUBLISHED", "AUDIT_PREFIX"]
