"""Plotly figures of an experiment report: plain data in, figure dicts out (no Django imports).

Variants take their colours from the shared palette (``recsite.charts``): control first, then
treatments, the same colour for a variant on every chart of the product.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from recsite.charts import LAYOUT, NEUTRAL, figure_dict, variant_colour

colour = variant_colour  # a variant's colour by its position


def metric_over_time(
    *, times: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], metric_name: str
) -> dict:
    """The cumulative value of the metric for each variant at each analysis time."""
    fig = go.Figure()
    for index, (name, values) in enumerate(series):
        fig.add_scatter(
            x=list(times), y=list(values), name=name, mode="lines+markers", line_color=colour(index)
        )
    fig.update_layout(**LAYOUT, height=320, yaxis_title=metric_name)
    return figure_dict(fig)


def lift_over_time(
    *,
    times: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], Sequence[float | None], Sequence[float | None]]],
) -> dict:
    """Relative lift of each treatment with its confidence band, at each analysis time.

    ``series`` holds (name, lift, low, high) with values as fractions (0.05 = +5%).
    """
    fig = go.Figure()
    for index, (name, lift, low, high) in enumerate(series, start=1):
        band = colour(index)
        fig.add_scatter(
            x=list(times) + list(times)[::-1],
            y=[_pct(v) for v in high] + [_pct(v) for v in low][::-1],
            fill="toself",
            mode="lines",
            fillcolor=_alpha(band, 0.15),
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
            name=f"{name} interval",
        )
        fig.add_scatter(
            x=list(times), y=[_pct(v) for v in lift], name=name, mode="lines+markers", line_color=band
        )
    fig.add_hline(y=0, line_dash="dot", line_color=NEUTRAL)
    fig.update_layout(**LAYOUT, height=320, yaxis_title="relative lift (%)")
    return figure_dict(fig)


def forest(*, rows: Sequence[tuple[str, float, float | None, float | None, str]]) -> dict:
    """One line per (metric, treatment): lift and interval. ``rows``: (label, lift, low, high, tone)."""
    tones = {"good": "#0f9d58", "bad": "#c0392b", "neutral": "#4f46e5"}
    labels = [r[0] for r in rows]
    fig = go.Figure()
    fig.add_scatter(
        x=[_pct(r[1]) for r in rows],
        y=labels,
        mode="markers",
        marker={"size": 10, "color": [tones.get(r[4], tones["neutral"]) for r in rows]},
        error_x={
            "type": "data",
            "symmetric": False,
            "array": [_pct(r[3] - r[1]) if r[3] is not None else 0 for r in rows],
            "arrayminus": [_pct(r[1] - r[2]) if r[2] is not None else 0 for r in rows],
        },
        name="lift",
        showlegend=False,
    )
    fig.add_vline(x=0, line_dash="dot", line_color=NEUTRAL)
    layout = {**LAYOUT, "hovermode": "closest"}
    fig.update_layout(
        **layout,
        height=max(180, 60 + 40 * len(rows)),
        xaxis_title="relative lift (%)",
        yaxis={"autorange": "reversed"},
    )
    return figure_dict(fig)


def distribution(*, series: Sequence[tuple[str, Sequence[tuple[float, int]]]], metric_name: str) -> dict:
    """Share of each variant's profiles at each per-profile value (bars side by side)."""
    fig = go.Figure()
    for index, (name, pairs) in enumerate(series):
        total = sum(c for _, c in pairs) or 1
        ordered = sorted(pairs)
        fig.add_bar(
            x=[v for v, _ in ordered],
            y=[100 * c / total for _, c in ordered],
            name=name,
            marker_color=colour(index),
        )
    fig.update_layout(
        **LAYOUT,
        height=300,
        barmode="group",
        xaxis_title=f"{metric_name} per profile",
        yaxis_title="% of profiles",
    )
    return figure_dict(fig)


def interleaving_credits(
    *, days: Sequence[str], a: Sequence[int], b: Sequence[int], names: Sequence[str]
) -> dict:
    """Clicks credited to each team per day, with the cumulative share won by team B."""
    fig = go.Figure()
    fig.add_bar(x=list(days), y=list(a), name=f"A: {names[0]}", marker_color=colour(0))
    fig.add_bar(x=list(days), y=list(b), name=f"B: {names[1]}", marker_color=colour(1))
    cum_a = cum_b = 0
    share = []
    for day_a, day_b in zip(a, b, strict=True):
        cum_a, cum_b = cum_a + day_a, cum_b + day_b
        share.append(round(100 * cum_b / (cum_a + cum_b), 2) if cum_a + cum_b else None)
    fig.add_scatter(
        x=list(days), y=share, name="B's share of credited clicks (cumulative, %)", yaxis="y2",
        mode="lines+markers", line_color="#10b981",
    )  # fmt: skip
    fig.update_layout(
        **LAYOUT,
        height=320,
        barmode="group",
        yaxis_title="credited clicks",
        yaxis2={"overlaying": "y", "side": "right", "range": [0, 100], "title": "% to B"},
    )
    return figure_dict(fig)


def allocation_over_time(*, times: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]) -> dict:
    """The share of traffic of every bandit arm after each posterior update (stacked to 100%)."""
    fig = go.Figure()
    for index, (name, shares) in enumerate(series):
        fig.add_scatter(
            x=list(times), y=[_pct(v) for v in shares], name=name, mode="lines", stackgroup="arms",
            line_color=colour(index),
        )  # fmt: skip
    fig.update_layout(**LAYOUT, height=320, yaxis_title="% of traffic", yaxis_range=[0, 100])
    return figure_dict(fig)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 4)


def _alpha(hex_colour: str, opacity: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{opacity})"
