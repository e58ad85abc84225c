"""The write lock of one warehouse file: only one ULM process writes it at a time.

Every writer (``ulm run`` / ``backfill``, ``ingest``, ``build``, ``train``, ``score``, ``erase``) holds an exclusive
``flock`` on ``<warehouse file>.lock`` (beside the warehouse, whatever data directory the caller uses), holding
the owner's pid and what it runs. A second writer fails at once with a message naming that pid, or waits up to
``wait_seconds``. The kernel releases the lock when the owner dies, so a crash never wedges it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from ulm.core.errors import UlmError

log = logging.getLogger("ulm.lock")


def lock_path(warehouse: Path) -> Path:
    warehouse = Path(warehouse).resolve()
    return warehouse.with_name(warehouse.name + ".lock")


@contextlib.contextmanager
def write_lock(warehouse: Path, what: str, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Exclusive lock on the warehouse for a writing run; UlmError naming the holder when busy."""
    path = lock_path(warehouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    acquired = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UlmError(
                        f"another ULM run is writing the warehouse ({holder(path)}; lock {path}); "
                        f"wait for it to finish, or pass --wait SECONDS") from None
                time.sleep(0.5)
        _note_takeover(path)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "what": what,
                                 "since": datetime.now().isoformat(timespec="seconds")}).encode())
        os.fsync(fd)
        acquired = True
        yield path
    finally:
        if acquired:  # released by us: an empty file; a holder that died leaves its record behind
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _note_takeover(path: Path) -> None:
    """Log when the previous holder died without releasing the lock (the kernel released it for us)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return
    pid = info.get("pid")
    if pid and pid != os.getpid():
        log.warning("taking over the write lock of %s from pid %s (%s since %s), which is no longer running",
                    path.name, pid, info.get("what", "?"), info.get("since", "?"))


def holder(path: Path) -> str:
    """Who holds (or last held) the lock file: ``pid N: what since T``."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "pid unknown"
    return f"pid {info.get('pid', '?')}: {info.get('what', '?')} since {info.get('since', '?')}"
