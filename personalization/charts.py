"""Plotly figure builders: plain data in, figure dicts out (no Django imports)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date

import plotly.graph_objects as go

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


def events_per_day(rows: Iterable[tuple[date, str, int]]) -> dict:
    """Stacked bars of events per day, one trace per canonical type."""
    by_type: dict[str, dict[date, int]] = {}
    for day, event_type, count in rows:
        by_type.setdefault(event_type, {})[day] = count
    fig = go.Figure()
    for event_type in sorted(by_type, key=lambda t: -sum(by_type[t].values())):
        points = sorted(by_type[event_type].items())
        fig.add_bar(
            x=[d.isoformat() for d, _ in points],
            y=[c for _, c in points],
            name=event_type.replace("_", " "),
            marker_color=TYPE_COLOURS.get(event_type, TYPE_COLOURS["other"]),
        )
    fig.update_layout(**LAYOUT, barmode="stack", yaxis_title="events", height=360)
    return figure_dict(fig)


def tag_affinities(rows: Iterable[tuple[str, str, float]]) -> dict:
    """Horizontal bars of a profile's interaction strength per tag, one colour per facet.

    ``rows`` are (facet, tag, strength); negative strengths (disliked) point left.
    """
    palette = ["#4f46e5", "#10b981", "#f59e0b", "#ec4899", "#0ea5e9", "#84cc16", "#a78bfa", "#f97316"]
    by_facet: dict[str, list[tuple[str, float]]] = {}
    for facet, tag, strength in rows:
        by_facet.setdefault(facet, []).append((tag, strength))
    fig = go.Figure()
    count = 0
    for n, facet in enumerate(sorted(by_facet)):
        points = sorted(by_facet[facet], key=lambda p: p[1])
        count += len(points)
        fig.add_bar(
            x=[s for _, s in points],
            y=[f"{facet} / {t}" for t, _ in points],
            orientation="h",
            name=facet,
            marker_color=palette[n % len(palette)],
            hovertemplate="%{y}: %{x:.2f}<extra></extra>",
        )
    layout = {**LAYOUT, "hovermode": "closest", "margin": {**LAYOUT["margin"], "l": 200}}
    fig.update_layout(**layout, xaxis_title="interaction strength", height=max(260, 28 * count + 90))
    return figure_dict(fig)
