"""Schema names of the warehouse (one place; dbt's layers get the run's prefix, see RunContext.schema)."""

RAW = "raw"  # landing tables as loaded, quarantine, load audit, file registry: the only place raw PII lives
AUDIT = "audit"  # publish log, gate results, erasure log
ML = "ml"  # scores, feature snapshots, fairness / drift reports, alerts
PUBLISHED = "marts"  # what consumers read: replaced only by publish
AUDIT_PREFIX = "audit_"  # a write-audit-publish build writes audit_staging / audit_intermediate / audit_marts
LAYERS = ("staging", "intermediate", "marts")
