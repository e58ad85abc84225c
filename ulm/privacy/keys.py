"""The secret keys of the keyed hashes (docs/PRIVACY.md#key-safety): where they come from, and that they match.

* **Where from.** Deployments set ``ULM_PII_KEY`` (e.g. from a secret manager). Only the local demo (``ulm demo``,
  ``make demo``) creates a key: :func:`ensure_local_pii_key` with ``demo=True`` writes a random one to
  ``<data dir>/.pii_key`` (git-ignored, mode 0600) and exports it. Outside the demo an unset key is an error,
  except that a key file the demo made is used (and the log says so), so ``make demo`` followed by ``ulm run``
  keeps working. An empty key file is an error naming the file: a new key would silently change every hash.
* **That they match.** ``audit.key_fingerprints`` records a fingerprint of the key each role's hashes were made
  with (role ``pii``: staging and everything built on it; ``suppression``: the erasure suppression list). The first
  use records it; :func:`verify_key` then refuses a different key with one line, instead of silently re-hashing.
  Changing the PII key on purpose is ``ulm rotate-key`` (docs/PRIVACY.md#key-rotation).

A key is never printed, logged or stored; a fingerprint (an HMAC of a fixed label under the key, 64 bits) reveals
nothing about it.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from ulm.core import settings
from ulm.core.errors import UlmError
from ulm.warehouse import AUDIT, ensure_audit_schema

log = logging.getLogger("ulm.privacy")

ROLES = ("pii", "suppression")
FINGERPRINT_LABEL = b"ulm-key-fingerprint-v1"
FINGERPRINTS = f"{AUDIT}.key_fingerprints"
DOCS_SAFETY = "docs/PRIVACY.md#key-safety"
DOCS_ROTATION = "docs/PRIVACY.md#key-rotation"
MISSING_KEY = (f"{settings.PII_KEY_ENV} is not set: export this deployment's key (from your secret store; a new "
               f"deployment makes one with `export {settings.PII_KEY_ENV}=$(openssl rand -hex 32)`); only `ulm demo` "
               f"creates a local key ({DOCS_SAFETY})")


# ------------------------------------------------------------------------------------------------ where from

def local_key_file() -> Path:
    return settings.data_dir() / ".pii_key"


def _read_key_file(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise UlmError(f"key file {path} is empty: put the key this data dir's warehouse was built with back into "
                       f"it, or export {settings.PII_KEY_ENV} ({DOCS_SAFETY})")
    return value


def ensure_local_pii_key(*, demo: bool = False) -> str:
    """Make sure this process (and the processes it starts) has the PII key; return where it came from.

    ``ULM_PII_KEY`` if set; else the demo's key file ``<data dir>/.pii_key`` if it exists (logged); else, for the
    demo only (``demo=True``), a new random key written to that file. Otherwise UlmError: outside the demo a key is
    never invented. An empty key file is always an error.
    """
    if settings.pii_key():
        return f"environment variable {settings.PII_KEY_ENV}"
    path = local_key_file()
    if path.exists():
        settings.export_pii_key(_read_key_file(path))
        source = f"demo key file {path}"
        if not demo:
            log.info("PII key: %s is not set, using the %s", settings.PII_KEY_ENV, source)
        return source
    if not demo:
        raise UlmError(MISSING_KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(secrets.token_hex(32), encoding="utf-8")
    settings.export_pii_key(_read_key_file(path))
    return f"new demo key file {path}"


def local_key_fingerprint() -> str | None:
    """The fingerprint of the key in the demo's key file, or None when there is no (non-empty) file."""
    path = local_key_file()
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        return None
    return fingerprint(_read_key_file(path))


def current_key(role: str = "pii") -> str:
    """The key of a role from the environment (``suppression``: ULM_SUPPRESSION_KEY, else the PII key)."""
    if role not in ROLES:
        raise ValueError(f"unknown key role {role!r}: one of {', '.join(ROLES)}")
    key = settings.pii_key() if role == "pii" else settings.suppression_key()
    if not key:
        raise UlmError(MISSING_KEY)
    return key


def require_pii_key() -> str:
    """The PII key; UlmError naming ULM_PII_KEY and how to set one when missing."""
    return current_key("pii")


# ------------------------------------------------------------------------------------------------ fingerprints

def fingerprint(key: str) -> str:
    """A short public identifier of a key: HMAC-SHA256(key, fixed label), first 16 hex characters."""
    return hmac.new(key.encode("utf-8"), FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class Recorded:
    """The fingerprint in force for a role: the newest row of ``audit.key_fingerprints``."""

    role: str
    fingerprint: str
    recorded_at: datetime
    note: str | None

    def when(self) -> str:
        return f"{self.recorded_at:%Y-%m-%d %H:%M} UTC"


def recorded_fingerprint(con: duckdb.DuckDBPyConnection, role: str = "pii") -> Recorded | None:
    """The fingerprint recorded for ``role`` (the newest row), or None when none was recorded yet."""
    # fetchall, not fetchone: a half-read result would block later work on the caller's connection (DuckDB 2)
    if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                       [AUDIT, "key_fingerprints"]).fetchall():
        return None
    rows = con.execute(f"SELECT fingerprint, recorded_at, note FROM {FINGERPRINTS} WHERE role = ? "
                       "ORDER BY recorded_at DESC, rowid DESC LIMIT 1", [role]).fetchall()
    return Recorded(role, *rows[0]) if rows else None


def record_fingerprint(con: duckdb.DuckDBPyConnection, role: str, fp: str, note: str | None = None,
                       at: datetime | None = None) -> datetime:
    """Record ``fp`` as the fingerprint in force for ``role``; returns its ``recorded_at``."""
    if role not in ROLES:
        raise ValueError(f"unknown key role {role!r}: one of {', '.join(ROLES)}")
    ensure_audit_schema(con)
    at = at or datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute(f"INSERT INTO {FINGERPRINTS} (role, fingerprint, recorded_at, note) VALUES (?, ?, ?, ?)",
                [role, fp, at, note])
    return at


def key_name(role: str) -> str:
    """How the key of a role is named in messages."""
    if role == "pii":
        return settings.PII_KEY_ENV
    if settings.suppression_key() == settings.pii_key():
        return f"{settings.SUPPRESSION_KEY_ENV} (not set, so {settings.PII_KEY_ENV})"
    return settings.SUPPRESSION_KEY_ENV


def mismatch_message(role: str, rec: Recorded, current_fp: str) -> str:
    seen = f"fingerprint {rec.fingerprint} recorded {rec.when()}; this key: {current_fp}"
    if role == "pii":
        return (f"{key_name(role)} does not match the key this warehouse was built with ({seen}); restore that key, "
                f"or re-hash on purpose with `ulm rotate-key --as-of DATE` ({DOCS_ROTATION})")
    return (f"{key_name(role)} does not match the key the suppression list raw.erased_subjects was made with "
            f"({seen}); set {settings.SUPPRESSION_KEY_ENV} to the key the suppression list was made with (the PII "
            f"key in force before the last `ulm rotate-key`) ({DOCS_ROTATION})")


def verify_key(con: duckdb.DuckDBPyConnection, role: str = "pii", *, record: bool = True) -> None:
    """UlmError unless the current key of ``role`` is the one recorded for this warehouse.

    Nothing recorded yet: with ``record`` the current key's fingerprint is recorded (first use), else nothing
    happens. A missing key is a UlmError naming ULM_PII_KEY. The key itself is never printed or logged.
    """
    fp = fingerprint(current_key(role))
    rec = recorded_fingerprint(con, role)
    if rec is None:
        if record:
            record_fingerprint(con, role, fp, note="first use")
            log.debug("recorded the %s key fingerprint %s", role, fp)
        return
    if rec.fingerprint != fp:
        raise UlmError(mismatch_message(role, rec, fp))
