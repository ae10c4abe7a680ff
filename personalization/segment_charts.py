"""Plotly figures for segments: plain rows in, figure dicts out (no Django imports)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import plotly.graph_objects as go

from .charts import LAYOUT, figure_dict

# Horizontal bars need room for names on the left and per-bar hover labels.
HORIZONTAL = {"margin": {"l": 160, "r": 16, "t": 24, "b": 40}, "hovermode": "closest"}


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


def tag_affinity_profile(rows: Iterable[tuple[str, float, float]]) -> dict:
    """Horizontal bars per tag: the segment's share of interaction strength next to everyone's."""
    points = list(rows)[::-1]  # Plotly draws the first category at the bottom
    tags = [tag for tag, _, _ in points]
    fig = go.Figure()
    fig.add_bar(
        y=tags,
        x=[mine for _, mine, _ in points],
        orientation="h",
        name="segment",
        marker_color="#4f46e5",
        customdata=[[mine / everyone if everyone else None] for _, mine, everyone in points],
        hovertemplate="%{y}: %{x:.1%} of the segment's affinity (index %{customdata[0]:.2f}x)<extra></extra>",
    )
    fig.add_bar(
        y=tags,
        x=[everyone for _, _, everyone in points],
        orientation="h",
        name="everyone",
        marker_color="#94a3b8",
        hovertemplate="%{y}: %{x:.1%} of everyone's affinity<extra></extra>",
    )
    fig.update_layout(**LAYOUT, barmode="group", xaxis_tickformat=".0%", height=max(300, 28 * len(tags) + 80))
    fig.update_layout(**HORIZONTAL)
    return figure_dict(fig)


def overlap_with_segments(rows: Iterable[tuple[str, int, int, float]], *, size: int) -> dict:
    """Bars per other segment: the share of this segment's members also in it (Jaccard on hover)."""
    points = list(rows)[::-1]
    fig = go.Figure()
    fig.add_bar(
        y=[name for name, _, _, _ in points],
        x=[shared / size if size else 0 for _, shared, _, _ in points],
        orientation="h",
        marker_color="#0ea5e9",
        customdata=[[shared, other, jaccard] for _, shared, other, jaccard in points],
        hovertemplate=(
            "%{y}: %{customdata[0]} shared members (%{x:.1%} of this segment), "
            "%{customdata[1]} in it, Jaccard %{customdata[2]:.2f}<extra></extra>"
        ),
    )
    fig.update_layout(
        **LAYOUT,
        xaxis_tickformat=".0%",
        xaxis_range=[0, 1],
        showlegend=False,
        height=max(300, 28 * len(points) + 80),
    )
    fig.update_layout(**HORIZONTAL)
    return figure_dict(fig)
