"""Plotly figure builders for the coverage dashboard: plain data in, figure dicts out (no Django)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date

import plotly.graph_objects as go

LAYOUT = {
    "margin": {"l": 48, "r": 16, "t": 24, "b": 40},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
    "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
    "legend": {"orientation": "h", "y": -0.2},
}
BRAND = "#4f46e5"
WARN = "#b45309"


def _figure_dict(fig: go.Figure) -> dict:
    return json.loads(fig.to_json())


def items_per_facet(rows: Sequence[tuple[str, int]]) -> dict:
    """Bars: items carrying at least one tag of each facet."""
    fig = go.Figure(go.Bar(x=[r[0] for r in rows], y=[r[1] for r in rows], marker_color=BRAND))
    fig.update_layout(**LAYOUT, yaxis_title="items", height=320)
    return _figure_dict(fig)


def missing_share(rows: Sequence[tuple[str, float]]) -> dict:
    """Horizontal bars: share of active items with no tag in each required facet (0-1)."""
    fig = go.Figure(
        go.Bar(
            y=[r[0] for r in rows],
            x=[r[1] for r in rows],
            orientation="h",
            marker_color=WARN,
            text=[f"{r[1]:.0%}" for r in rows],
            textposition="auto",
        )
    )
    fig.update_layout(
        **LAYOUT, xaxis={"tickformat": ".0%", "range": [0, 1]}, height=80 + 40 * max(1, len(rows))
    )
    return _figure_dict(fig)


def rare_tags(rows: Sequence[tuple[str, int]]) -> dict:
    """Horizontal bars: the tags with the fewest items (candidates to merge or retire)."""
    fig = go.Figure(
        go.Bar(y=[r[0] for r in rows], x=[r[1] for r in rows], orientation="h", marker_color=BRAND)
    )
    fig.update_layout(
        **LAYOUT, xaxis_title="items", yaxis={"autorange": "reversed"}, height=100 + 22 * max(1, len(rows))
    )
    return _figure_dict(fig)


def throughput(rows: Iterable[tuple[date, str, int]]) -> dict:
    """Stacked bars: tag changes per editor per day."""
    by_editor: dict[str, dict[date, int]] = {}
    for day, editor, count in rows:
        by_editor.setdefault(editor, {})[day] = by_editor.get(editor, {}).get(day, 0) + count
    fig = go.Figure()
    for editor in sorted(by_editor, key=lambda e: -sum(by_editor[e].values())):
        points = sorted(by_editor[editor].items())
        fig.add_bar(x=[d.isoformat() for d, _ in points], y=[c for _, c in points], name=editor)
    fig.update_layout(**LAYOUT, barmode="stack", yaxis_title="tag changes", height=340, hovermode="x unified")
    return _figure_dict(fig)
