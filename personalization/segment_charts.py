"""Plotly figures for segments: plain rows in, figure dicts out (no Django imports)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import plotly.graph_objects as go

from .charts import LAYOUT, figure_dict


def size_over_time(rows: Iterable[tuple[datetime, int]]) -> dict:
    """A line of the segment's size after each refresh."""
    points = list(rows)
    fig = go.Figure()
    fig.add_scatter(
        x=[when.isoformat() for when, _ in points],
        y=[size for _, size in points],
        mode="lines+markers",
        name="size",
        line={"color": "#4f46e5", "shape": "hv"},
    )
    fig.update_layout(**LAYOUT, yaxis_title="profiles", height=300, showlegend=False)
    return figure_dict(fig)


def entries_exits_per_day(rows: Iterable[tuple[date, int, int]]) -> dict:
    """Bars per day: entries up, exits down."""
    points = sorted(rows)
    fig = go.Figure()
    days = [day.isoformat() for day, _, _ in points]
    fig.add_bar(x=days, y=[entered for _, entered, _ in points], name="entered", marker_color="#10b981")
    fig.add_bar(x=days, y=[-exited for _, _, exited in points], name="exited", marker_color="#ef4444")
    fig.update_layout(**LAYOUT, barmode="relative", yaxis_title="profiles", height=300)
    return figure_dict(fig)
