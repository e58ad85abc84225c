"""Loaders from landing files into DuckDB schema ``raw`` (docs/METRICS.md#landing-contract, #validity-quarantine-and-reconciliation) and the CDNOW mapping.

``ingest_dir`` loads ``<landing_dir>/<table>/*.parquet|*.csv``; ``ingest_cdnow`` maps a CDNOW
transaction file to users + orders and loads it through the same path. See docs/LOADING.md.
"""
from ulm.ingest.cdnow import ingest_cdnow
from ulm.ingest.loader import ingest_dir

__all__ = ["ingest_dir", "ingest_cdnow"]
