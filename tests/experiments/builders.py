"""Builders for experiment tests: an experiment with variants and metrics, and events."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from experiments import services
from experiments.models import Experiment, ExperimentMetric, Metric
from personalization.models import Event, Profile, Source


def metric(key: str = "completion", **fields) -> Metric:
    defaults = {"name": key.replace("-", " "), "kind": Metric.Kind.CONVERSION, "event_type": "complete"}
    defaults.update(fields)
    return Metric.objects.create(key=key, **defaults)


def experiment(
    key: str = "home-row",
    *,
    weights: tuple[float, ...] = (0.5, 0.5),
    primary: Metric | None = None,
    others: list[tuple[Metric, str]] = (),
    start: bool = False,
    **fields,
) -> Experiment:
    exp = Experiment(key=key, name=fields.pop("name", key.replace("-", " ").title()), **fields)
    names = ["Control", "Variant B", "Variant C", "Variant D", "Variant E"]
    variants = [
        {"key": "control" if i == 0 else f"v{i}", "name": names[i], "weight": w, "payload": {"arm": i}}
        for i, w in enumerate(weights)
    ]
    primary = primary or Metric.objects.filter(key="completion").first() or metric()
    services.experiment_save(
        experiment=exp,
        variants=variants,
        metrics=[(primary, ExperimentMetric.Role.PRIMARY), *others],
    )
    if start:
        services.experiment_start(experiment=exp)
    return exp


def event(profile: Profile, kind: str, at: datetime, *, value=None, name=None, **properties) -> Event:
    source, _ = Source.objects.get_or_create(name="test")
    return Event.objects.create(
        source=source,
        message_id=f"m{Event.objects.count()}-{profile.pk}-{kind}-{at.timestamp()}",
        name=name or kind,
        type=kind,
        profile=profile,
        value=value,
        properties=properties,
        timestamp=at,
        received_at=timezone.now(),
    )
