"""Secrets from the environment (docs/METRICS.md#privacy): the PII hashing key.

Deployments set ``ULM_PII_KEY`` (e.g. from a secret manager). For the local demo only, ``ensure_local_pii_key``
creates a random key in ``data/.pii_key`` (git-ignored, mode 0600) and exports it, so hashes are stable across runs
on one machine. The key is never printed or logged.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from ulm.core import settings


def local_key_file() -> Path:
    return settings.data_dir() / ".pii_key"


def ensure_local_pii_key() -> str:
    """Return the PII key from the environment, else from (or into) the local key file; export it."""
    if settings.pii_key():
        return "env"
    path = local_key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32), encoding="utf-8")
        path.chmod(0o600)
        source = f"new local key file {path}"
    else:
        source = f"local key file {path}"
    settings.export_pii_key(path.read_text(encoding="utf-8").strip())
    return source
