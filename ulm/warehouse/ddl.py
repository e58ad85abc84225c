"""DDL of every table ULM itself writes (dbt owns the staging / intermediate / marts models).

* ``raw``: one table per landing table (columns from the contract plus load lineage), ``raw.quarantine``,
  ``raw.load_audit``, the file registry ``raw._ingested_files`` and the suppression list ``raw.erased_subjects``;
* ``audit``: ``publish_log``, ``gate_results``, ``erasure_log``, ``key_fingerprints``;
* ``ml``: ``scores`` (the scoring batch writes it; dbt's ``int_scores_latest`` reads it).
"""
from __future__ import annotations

import duckdb

from ulm.core import contract

QUARANTINE = """
CREATE TABLE IF NOT EXISTS raw.quarantine (
  quarantine_id VARCHAR PRIMARY KEY,
  table_name VARCHAR NOT NULL,
  original_row JSON,
  reason_code VARCHAR NOT NULL,
  reason_detail VARCHAR,
  load_id VARCHAR NOT NULL,
  source_file VARCHAR,
  quarantined_at TIMESTAMP NOT NULL,
  released_at TIMESTAMP,
  released_load_id VARCHAR
)"""

LOAD_AUDIT = """
CREATE TABLE IF NOT EXISTS raw.load_audit (
  load_id VARCHAR NOT NULL,
  table_name VARCHAR NOT NULL,
  source_file VARCHAR,
  file_sha256 VARCHAR,
  rows_read BIGINT,
  rows_accepted BIGINT,
  rows_quarantined BIGINT,
  rows_duplicate BIGINT,
  rows_released BIGINT,
  status VARCHAR NOT NULL,
  message VARCHAR,
  started_at TIMESTAMP,
  finished_at TIMESTAMP
)"""

INGESTED_FILES = """
CREATE TABLE IF NOT EXISTS raw._ingested_files (
  table_name VARCHAR NOT NULL,
  file_sha256 VARCHAR NOT NULL,
  source_file VARCHAR,
  load_id VARCHAR NOT NULL,
  ingested_at TIMESTAMP NOT NULL,
  PRIMARY KEY (table_name, file_sha256)
)"""

PUBLISH_LOG = """
CREATE TABLE IF NOT EXISTS audit.publish_log (
  run_id VARCHAR NOT NULL,
  as_of DATE NOT NULL,
  source_schema VARCHAR NOT NULL,
  target_schema VARCHAR NOT NULL,
  tables INTEGER NOT NULL,
  total_rows BIGINT NOT NULL,
  published_at TIMESTAMP NOT NULL
)"""

GATE_RESULTS = """
CREATE TABLE IF NOT EXISTS audit.gate_results (
  run_id VARCHAR NOT NULL,
  as_of DATE NOT NULL,
  gate VARCHAR NOT NULL,
  suite VARCHAR NOT NULL,
  frame VARCHAR NOT NULL,
  expectation VARCHAR NOT NULL,
  "column" VARCHAR,
  observed_value VARCHAR,
  success BOOLEAN NOT NULL,
  severity VARCHAR NOT NULL,
  details VARCHAR,
  checked_at TIMESTAMP NOT NULL
)"""

ERASURE_LOG = """
CREATE TABLE IF NOT EXISTS audit.erasure_log (
  request_id VARCHAR,
  requested_at TIMESTAMP,
  processed_at TIMESTAMP,
  table_name VARCHAR,
  rows_removed BIGINT
)"""

# The erasure suppression list (docs/PRIVACY.md#erasure): keyed hashes (HMAC with the suppression key) of every
# identifier of an erased person; landing quarantines later rows that match as ``erased_subject``. No raw value.
ERASED_SUBJECTS = """
CREATE TABLE IF NOT EXISTS raw.erased_subjects (
  subject_hash VARCHAR NOT NULL,
  kind VARCHAR NOT NULL,
  request_id VARCHAR,
  added_at TIMESTAMP NOT NULL,
  added_by VARCHAR NOT NULL,
  PRIMARY KEY (subject_hash, kind)
)"""

# Fingerprints of the keys this warehouse's hashes were made with (docs/PRIVACY.md#key-safety): role 'pii' or
# 'suppression'; the newest row per role is the one in force. A fingerprint reveals nothing about the key.
KEY_FINGERPRINTS = """
CREATE TABLE IF NOT EXISTS audit.key_fingerprints (
  role VARCHAR NOT NULL,
  fingerprint VARCHAR NOT NULL,
  recorded_at TIMESTAMP NOT NULL,
  note VARCHAR
)"""

SCORES = """
CREATE TABLE IF NOT EXISTS ml.scores (
  person_id VARCHAR,
  score_date DATE,
  churn_probability DOUBLE,
  predicted_ltv_365 DECIMAL(18, 2),
  churn_model_version VARCHAR,
  ltv_model_version VARCHAR
)"""


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Schema ``raw``: one table per landing table plus quarantine, load audit and file registry."""
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for name in contract.TABLES:
        con.execute(contract.raw_ddl(name))
    for ddl in (QUARANTINE, LOAD_AUDIT, INGESTED_FILES, ERASED_SUBJECTS):
        con.execute(ddl)


def ensure_audit_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Schema ``audit``: publish log, gate results, erasure log."""
    con.execute("CREATE SCHEMA IF NOT EXISTS audit")
    for ddl in (PUBLISH_LOG, GATE_RESULTS, ERASURE_LOG, KEY_FINGERPRINTS):
        con.execute(ddl)


def ensure_ml_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Schema ``ml`` with ``ml.scores`` (empty and typed until the first scoring run)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ml")
    con.execute(SCORES)
