"""Synthetic social-commerce data generator: the embedded default data source of ULM.

``generate(out_dir, persons, days, ...)`` simulates persons day by day (BG/NBD-like purchase and dropout
process, weekly cycle and 618 / Double 11 peaks, shares, invites, assists, KOLs, live rooms, communities,
multi-platform identities) and writes landing files in the layout of the landing contract
(``ulm.core.contract``) plus ground truth for model evaluation. See ``docs/GENERATOR.md``.
"""
from .core import generate
from .settings import DEFAULT_END_DATE, GenSettings

__all__ = ["generate", "GenSettings", "DEFAULT_END_DATE"]
