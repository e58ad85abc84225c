"""Data-quality gates: suites as code, validated by Great Expectations (docs/METRICS.md#quality-gates-and-publishing)."""
