"""Privacy: keyed hashing of PII (and the dbt plugin that hashes in SQL), the PII key, erasure and access."""
