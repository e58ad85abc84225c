"""Business-day calendar of a run: dates, UTC day bounds, weekly cycle and promotion peaks.

Day index ``t`` runs 0..days-1 and maps to the business date ``end_date - (days-1-t)`` in the business
timezone (docs/METRICS.md#conventions, param ``business_timezone``). Local seconds of a day map linearly into the UTC interval
``[start, next_start)`` of that business day, so every generated timestamp lands in its business day.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from ulm.core.settings import param

# (month, day, peak multiplier on purchases, ramp-up days before the peak)
PROMOTIONS = ((6, 18, 3.0, 17), (11, 11, 4.0, 21), (12, 12, 2.0, 6), (3, 8, 1.5, 3))
WEEKLY_ACTIVITY = (0.95, 0.95, 0.97, 1.0, 1.05, 1.12, 1.1)  # Monday..Sunday


@dataclass(frozen=True)
class Calendar:
    dates: list[date]
    start_utc: np.ndarray  # epoch seconds of each business day's local midnight, int64
    length: np.ndarray  # seconds in each business day (86400 without DST)
    purchase_factor: np.ndarray  # promotion x weekly multiplier on purchase hazard
    activity_factor: np.ndarray  # multiplier on visit probability
    acquisition_factor: np.ndarray  # relative registration volume
    promo: np.ndarray  # bool: promotion period (deeper discounts)

    @property
    def days(self) -> int:
        return len(self.dates)

    def utc_seconds(self, t: int, local_sec: np.ndarray) -> np.ndarray:
        """Epoch seconds (UTC) of local seconds-of-day on day ``t``."""
        ls = np.asarray(local_sec, dtype=np.int64)
        if self.length[t] == 86400:
            return self.start_utc[t] + ls
        return self.start_utc[t] + (ls * int(self.length[t])) // 86400


def _promo_factor(d: date) -> float:
    best = 1.0
    for month, day, peak, ramp in PROMOTIONS:
        peak_day = date(d.year, month, day)
        delta = (peak_day - d).days
        if delta == 0:
            f = peak
        elif 0 < delta <= ramp:
            f = 1.0 + (peak - 1.0) * 0.45 * (1.0 - delta / (ramp + 1.0))
        elif -2 <= delta < 0:
            f = 1.0 + (peak - 1.0) * 0.25
        else:
            f = 1.0
        best = max(best, f)
    return best


def build_calendar(end_date: date, days: int) -> Calendar:
    tz = ZoneInfo(param("business_timezone"))
    dates = [end_date - timedelta(days=days - 1 - t) for t in range(days)]
    bounds = [datetime.combine(d, time(0), tzinfo=tz).timestamp() for d in dates]
    bounds.append(datetime.combine(end_date + timedelta(days=1), time(0), tzinfo=tz).timestamp())
    b = np.asarray(bounds, dtype=np.int64)
    promo = np.array([_promo_factor(d) for d in dates])
    weekly = np.array([WEEKLY_ACTIVITY[d.weekday()] for d in dates])
    trend = 1.0 + 0.8 * np.arange(days) / max(days, 1)
    return Calendar(
        dates=dates,
        start_utc=b[:-1],
        length=np.diff(b),
        purchase_factor=promo * weekly,
        activity_factor=(1.0 + 0.3 * (promo - 1.0)) * weekly,
        acquisition_factor=trend * (1.0 + 0.5 * (promo - 1.0)) * weekly,
        promo=promo > 1.05,
    )
