"""Console hygiene for the ML entry points (``train``, ``score``, the CLV holdout check): ULM's own log lines stay on
the console, third-party chatter moves to the debug log.

Inside :func:`third_party_quiet`:

* Python warnings raised from installed packages (``site-packages``: MLflow's type-hint and dataset-source hints,
  pandas deprecations inside MLflow, PyMC / PyTensor notices) are written to the ``ulm.ml.warnings`` logger at
  DEBUG (``ulm -v`` shows them), once per message; warnings raised from ULM's own code are shown as usual.
* The loggers of MLflow, ArviZ, PyMC, PyTensor and LightGBM are raised to ERROR (database-migration notices, the
  CloudPickle hint, ``arviz_base not installed``), then restored.
"""
from __future__ import annotations

import functools
import logging
import warnings
from contextlib import contextmanager

log = logging.getLogger("ulm.ml.warnings")

THIRD_PARTY_LOGGERS = ("mlflow", "arviz", "pymc", "pymc_marketing", "pymc_extras", "pytensor", "lightgbm", "alembic")
_PACKAGE_DIRS = ("site-packages", "dist-packages")


def is_third_party(filename: str) -> bool:
    return any(part in str(filename) for part in _PACKAGE_DIRS)


@contextmanager
def third_party_quiet():
    """Route third-party warnings to the debug log and silence third-party INFO/WARNING log records."""
    loggers = {name: logging.getLogger(name) for name in THIRD_PARTY_LOGGERS}
    levels = {name: lg.level for name, lg in loggers.items()}
    seen: set[str] = set()
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if not is_third_party(filename):
                return shown(message, category, filename, lineno, file, line)
            text = f"{category.__name__} in {filename}:{lineno}: {message}"
            if text not in seen:
                seen.add(text)
                log.debug(text)
            return None

        warnings.showwarning = show
        for lg in loggers.values():
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, lg in loggers.items():
                lg.setLevel(levels[name])


def quiet(fn):
    """Decorator form of :func:`third_party_quiet`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with third_party_quiet():
            return fn(*args, **kwargs)

    return wrapper
