"""Plotly figure builders: plain data in, figure dicts out (no Django imports).

Colours come from the shared palette (``recsite.charts``), so an event type or a recommender
has the same colour here as on the dashboard and the business-impact page.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import plotly.graph_objects as go

from recsite.charts import LAYOUT, categorical_colour, event_type_colour, figure_dict, recommender_colour


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
            marker_color=event_type_colour(event_type),
        )
    fig.update_layout(**LAYOUT, barmode="stack", yaxis_title="events", height=360)
    return figure_dict(fig)


def tag_affinities(rows: Iterable[tuple[str, str, float]]) -> dict:
    """Horizontal bars of a profile's interaction strength per tag, one colour per facet.

    ``rows`` are (facet, tag, strength); negative strengths (disliked) point left.
    """
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
            marker_color=categorical_colour(n),
            hovertemplate="%{y}: %{x:.2f}<extra></extra>",
        )
    layout = {**LAYOUT, "hovermode": "closest", "margin": {**LAYOUT["margin"], "l": 200}}
    fig.update_layout(**layout, xaxis_title="interaction strength", height=max(260, 28 * count + 90))
    return figure_dict(fig)


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
            marker_color=recommender_colour(row["name"], row.get("algorithm")),
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
            marker={
                "size": 12,
                "color": recommender_colour(row.get("name", row["label"]), row.get("algorithm")),
            },
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
