"""What every page shares: the page context the entry script sets, number formats, notes and chart helpers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from ulm.dashboard import DEFAULT_AIRFLOW_URL, DEFAULT_MLFLOW_URL
from ulm.dashboard.data import Filters, Snapshot

CTX = "_ulm_page_context"
INFO, WAIT = ":material/info:", ":material/hourglass_empty:"

STAGE_COLORS = {"prospect": "#b0b7c3", "new": "#74add1", "growing": "#4daf4a", "mature": "#1b7837",
                "declining": "#fdae61", "churned": "#d73027", "unknown": "#dddddd"}
STATUS_COLORS = {"new": "#4575b4", "returning": "#1a9850", "resurrecting": "#91cf60", "dormant": "#d73027"}
LEVEL_BADGES = {"challenge": ":green-background[challenge]", "target": ":blue-background[target]",
                "baseline": ":orange-background[baseline]", "below_baseline": ":red-background[below baseline]"}


@dataclass(frozen=True)
class PageContext:
    snap: Snapshot
    filters: Filters
    meta: dict[str, Any] = field(default_factory=dict)
    mlflow_url: str = DEFAULT_MLFLOW_URL
    airflow_url: str = DEFAULT_AIRFLOW_URL

    @property
    def as_of(self) -> date | None:
        return self.meta.get("as_of")

    @property
    def day(self) -> date | None:
        """The day the cards show: the end of the date range (the as-of day by default)."""
        return self.filters.end or self.as_of


def page_context() -> PageContext:
    ctx = st.session_state.get(CTX)
    if ctx is None:  # a page script run on its own, not through the entry script
        st.error("open the dashboard through `ulm dashboard` (its entry script sets the snapshot and filters)")
        st.stop()
    return ctx


# ------------------------------------------------------------------------------------------------ formats
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or (
        not isinstance(value, str) and pd.isna(value))


def fmt_int(value: Any) -> str:
    return "–" if _missing(value) else f"{int(round(float(value))):,}"


def fmt_num(value: Any, digits: int = 2) -> str:
    return "–" if _missing(value) else f"{float(value):,.{digits}f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    return "–" if _missing(value) else f"{float(value) * 100:.{digits}f}%"


def fmt_money(value: Any) -> str:
    return "–" if _missing(value) else f"{float(value):,.2f}"


# -------------------------------------------------------------------------------------------------- notes
def header(title: str, ctx: PageContext, applies: str) -> None:
    st.title(title)
    f = ctx.filters
    rng = f"{f.start} to {f.end}" if f.start and f.end else "all days"
    st.caption(f"Snapshot as of **{ctx.as_of or '?'}** · range {rng} · {applies}")


def absent(name: str) -> None:
    st.info(f"`{name}` is not in this snapshot (it appears after a build that publishes it).", icon=INFO)


def empty(what: str) -> None:
    st.info(f"no {what} in the selected range", icon=INFO)


def table(frame: pd.DataFrame, column_config: dict | None = None, **kwargs: Any) -> None:
    """``st.dataframe`` without the index; day columns (midnight timestamps) shown as YYYY-MM-DD."""
    config = {}
    for c in frame.columns:
        col = frame[c]
        if pd.api.types.is_datetime64_any_dtype(col) and col.notna().any():
            times = col.dropna()
            if (times == times.dt.normalize()).all():
                config[c] = st.column_config.DateColumn(format="YYYY-MM-DD")
            else:
                config[c] = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")
    config.update(column_config or {})
    kwargs.setdefault("width", "stretch")
    st.dataframe(frame, hide_index=True, column_config=config, **kwargs)


def person_table(frame: pd.DataFrame, **kwargs: Any) -> None:
    """A person-level table: the caption states the privacy rules it follows."""
    table(frame, **kwargs)
    st.caption("Person-level: persons with analytics consent only; `person_id` is a keyed hash.")


def day_axis(field: str, title: str | None = None) -> alt.X:
    """An ordinal x axis of days (bars get a full band each instead of a hairline on a time scale)."""
    return alt.X(f"yearmonthdate({field}):O", title=title,
                 axis=alt.Axis(format="%b %d", labelAngle=0, labelOverlap="greedy"))


# ------------------------------------------------------------------------------------------------- charts
def stage_scale(stages: list[str]) -> alt.Scale:
    return alt.Scale(domain=stages, range=[STAGE_COLORS.get(s, "#999999") for s in stages])


def bar_with_rule(frame: pd.DataFrame, x: str, y: str, threshold: float, title: str, color: str = "#4575b4",
                  below_color: str = "#d73027", label: str = "pause below") -> alt.LayerChart:
    """Horizontal bars of ``y`` per ``x``; below ``threshold`` in ``below_color``; a dashed rule at the threshold."""
    frame = frame.assign(_below=frame[y] < threshold)
    bars = alt.Chart(frame).mark_bar().encode(
        y=alt.Y(f"{x}:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)),
        x=alt.X(f"{y}:Q", title=title),
        color=alt.condition(alt.datum._below, alt.value(below_color), alt.value(color)),
        tooltip=[x, alt.Tooltip(f"{y}:Q", format=".2f")])
    rule = alt.Chart(pd.DataFrame({"t": [threshold]})).mark_rule(strokeDash=[6, 4], color="black").encode(x="t:Q")
    text = alt.Chart(pd.DataFrame({"t": [threshold], "label": [f"{label} {threshold:g}"]})).mark_text(
        align="left", dx=4, baseline="top").encode(x="t:Q", y=alt.value(2), text="label:N")
    return bars + rule + text


def heatmap(frame: pd.DataFrame, x: str, y: str, value: str, title: str, fmt: str = ".0%",
            x_title: str | None = None, y_title: str | None = None, text: bool = True) -> alt.LayerChart:
    base = alt.Chart(frame).encode(x=alt.X(f"{x}:O", title=x_title or x), y=alt.Y(f"{y}:O", title=y_title or y))
    rect = base.mark_rect().encode(color=alt.Color(f"{value}:Q", title=title, scale=alt.Scale(scheme="blues")),
                                   tooltip=[x, y, alt.Tooltip(f"{value}:Q", format=fmt)])
    if not text:
        return rect
    mid = float(frame[value].max()) / 2 if len(frame) and frame[value].notna().any() else 0.0
    label = base.mark_text(fontSize=10).encode(text=alt.Text(f"{value}:Q", format=fmt),
                                               color=alt.condition(f"datum.{value} > {mid}", alt.value("white"),
                                                                   alt.value("black")))
    return rect + label
