"""Dashboard and business-impact figures, and the one palette every chart takes its colours from.

Pure module: plain data in, Plotly figure dicts out (no Django imports). A recommender keeps
its algorithm's colour and a variant its position's colour on every page; placements, which
have neither, get a colour from a stable hash of their key, so a placement looks the same on
every chart and every day. ``personalization.charts`` and ``experiments.charts`` take their
layout and colours from here (this module imports neither, so there is no cycle).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from datetime import date

import plotly.graph_objects as go

LAYOUT = {
    "margin": {"l": 48, "r": 16, "t": 24, "b": 40},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
    "legend": {"orientation": "h", "y": -0.15},
    "hovermode": "x unified",
}


def figure_dict(fig: go.Figure) -> dict:
    """A JSON-safe dict that Plotly.newPlot accepts (dates and numpy values serialised)."""
    return json.loads(fig.to_json())


# One colour per canonical event type, the same on every page.
TYPE_COLOURS = {
    "view": "#9aa5b1",
    "play": "#3b82f6",
    "pause": "#a78bfa",
    "complete": "#10b981",
    "abandon": "#ef4444",
    "rate": "#f59e0b",
    "like": "#ec4899",
    "dislike": "#7f1d1d",
    "add_to_list": "#14b8a6",
    "add_to_cart": "#f97316",
    "purchase": "#84cc16",
    "search": "#64748b",
    "click": "#0ea5e9",
    "page": "#cbd5e1",
    "other": "#d4d4d8",
}
# One colour per recommender algorithm, the same on every page.
ALGORITHM_COLOURS = {
    "trending": "#f59e0b",
    "popularity": "#9aa5b1",
    "item_knn": "#3b82f6",
    "ease": "#10b981",
    "als": "#8b5cf6",
    "content": "#ec4899",
    "hybrid": "#0ea5e9",
}
# Experiment variants by position: control first (grey), then treatments.
VARIANT_COLOURS = ("#64748b", "#4f46e5", "#10b981", "#f59e0b", "#ec4899", "#0ea5e9")
# Colours for keys without a fixed one (placements, recommenders of unknown algorithm).
EXTRA_COLOURS = (
    "#4f46e5",
    "#0ea5e9",
    "#10b981",
    "#f59e0b",
    "#ec4899",
    "#84cc16",
    "#a78bfa",
    "#f97316",
    "#14b8a6",
    "#ef4444",
)
NEUTRAL = "#9aa5b1"


def stable_colour(key: str) -> str:
    """The same colour for the same key in every process (``hash()`` is salted per process)."""
    if not key:
        return NEUTRAL
    return EXTRA_COLOURS[zlib.crc32(key.encode()) % len(EXTRA_COLOURS)]


def recommender_colour(name: str, algorithm: str | None = None) -> str:
    """A recommender's colour: its algorithm's, else one derived from its name."""
    if algorithm and algorithm in ALGORITHM_COLOURS:
        return ALGORITHM_COLOURS[algorithm]
    guess = name.replace("-", "_")  # demo recommenders are named after their algorithm
    if guess in ALGORITHM_COLOURS:
        return ALGORITHM_COLOURS[guess]
    return stable_colour(name)


def variant_colour(position: int) -> str:
    """Control first (grey), then treatments: the experiment report's colours."""
    return VARIANT_COLOURS[position % len(VARIANT_COLOURS)]


def categorical_colour(index: int) -> str:
    """The n-th colour of a chart's own categories (e.g. facets), in palette order."""
    return EXTRA_COLOURS[index % len(EXTRA_COLOURS)]


def placement_colour(key: str) -> str:
    return stable_colour(key)


def event_type_colour(event_type: str) -> str:
    return TYPE_COLOURS.get(event_type, TYPE_COLOURS["other"])


def series_colour(key: str, *, by: str, algorithms: dict[str, str] | None = None) -> str:
    if by == "recommender":
        return recommender_colour(key, (algorithms or {}).get(key))
    return placement_colour(key)


def _days(days: Sequence[date]) -> list[str]:
    return [d.isoformat() for d in days]


def lines_over_time(
    *,
    days: Sequence[date],
    series: Sequence[tuple[str, Sequence[float | None], str]],
    y_title: str,
    percent: bool = True,
    height: int = 320,
) -> dict:
    """One line per (label, values, colour); gaps where a value is None (no data that day)."""
    fig = go.Figure()
    x = _days(days)
    for label, values, colour in series:
        fig.add_scatter(
            x=x,
            y=[None if v is None else (v * 100 if percent else v) for v in values],
            name=label,
            mode="lines+markers",
            line={"color": colour, "width": 2},
            marker={"size": 5},
            connectgaps=False,
            hovertemplate="%{y:.1f}%<extra>" + label + "</extra>" if percent else None,
        )
    fig.update_layout(**LAYOUT, height=height, yaxis_title=y_title)
    if percent:
        fig.update_yaxes(ticksuffix="%", rangemode="tozero")
    return figure_dict(fig)


def impressions_and_ctr(
    *, days: Sequence[date], impressions: Sequence[int], clicks: Sequence[int], height: int = 320
) -> dict:
    """Impressions per day as bars, click-through rate as a line on a second axis."""
    fig = go.Figure()
    x = _days(days)
    fig.add_bar(x=x, y=list(impressions), name="impressions", marker_color="#c7d2fe", yaxis="y")
    ctr = [c / i * 100 if i else None for c, i in zip(clicks, impressions, strict=True)]
    fig.add_scatter(
        x=x, y=ctr, name="CTR", mode="lines+markers", line={"color": "#4f46e5", "width": 2}, yaxis="y2"
    )
    fig.update_layout(
        **LAYOUT,
        height=height,
        yaxis={"title": "impressions", "rangemode": "tozero"},
        yaxis2={"title": "CTR", "overlaying": "y", "side": "right", "ticksuffix": "%", "rangemode": "tozero"},
    )
    return figure_dict(fig)


def daily_counts(
    *, days: Sequence[date], series: Sequence[tuple[str, Sequence[int], str]], y_title: str, height: int = 280
) -> dict:
    """Lines of daily counts (active profiles, events), one colour each."""
    return lines_over_time(days=days, series=series, y_title=y_title, percent=False, height=height)
