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


def recommender_comparison(
    rows: list[dict], *, metrics: tuple[str, ...] = ("ndcg@10", "recall@10", "precision@10")
) -> dict:
    """Grouped bars: each recommender's active version on the main accuracy metrics.

    ``rows``: [{"name", "algorithm", "metrics": {...}}]."""
    fig = go.Figure()
    for row in rows:
        fig.add_bar(
            name=row["name"],
            x=list(metrics),
            y=[row["metrics"].get(m) for m in metrics],
            marker_color=ALGORITHM_COLOURS.get(row["algorithm"], "#64748b"),
        )
    fig.update_layout(**LAYOUT, barmode="group", height=320, yaxis_title="offline metric (higher is better)")
    return figure_dict(fig)


def accuracy_vs_coverage(rows: list[dict]) -> dict:
    """Scatter of nDCG@10 against catalog coverage, one point per recommender version."""
    fig = go.Figure()
    for row in rows:
        fig.add_scatter(
            x=[row["metrics"].get("coverage")],
            y=[row["metrics"].get("ndcg@10")],
            mode="markers+text",
            text=[row["label"]],
            textposition="top center",
            name=row["label"],
            marker={"size": 12, "color": ALGORITHM_COLOURS.get(row["algorithm"], "#64748b")},
            showlegend=False,
        )
    layout = {**LAYOUT, "hovermode": "closest"}
    fig.update_layout(**layout, height=320, xaxis_title="catalog coverage", yaxis_title="nDCG@10")
    return figure_dict(fig)


def metric_history(runs: list[dict], *, metric: str = "ndcg@10") -> dict:
    """A recommender's primary metric across its successful versions."""
    fig = go.Figure()
    fig.add_scatter(
        x=[f"v{r['version']}" for r in runs],
        y=[r["metrics"].get(metric) for r in runs],
        mode="lines+markers",
        name=metric,
        marker_color="#4f46e5",
    )
    fig.update_layout(**LAYOUT, height=260, yaxis_title=metric)
    return figure_dict(fig)
