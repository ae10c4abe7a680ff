"""Personalization services: training runs and serving recommendations.

Views, API views, commands and tasks call these; they hold the business rules.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from catalog.models import Item

from . import evaluation, recommenders
from .models import Event, ModelArtifact, Profile, Recommender, TrainingRun

logger = logging.getLogger(__name__)

# Implicit-feedback weight of each canonical event type (negative = a bad signal).
EVENT_WEIGHTS: dict[str, float] = {
    "complete": 3.0,
    "purchase": 3.0,
    "add_to_list": 2.0,
    "like": 2.0,
    "add_to_cart": 1.5,
    "play": 1.0,
    "rate": 1.0,
    "view": 0.5,
    "click": 0.5,
    "pause": 0.0,
    "abandon": -1.0,
    "dislike": -2.0,
}

TRENDING_DEFAULTS = {"window_days": 90, "half_life_days": 7.0, "keep": 1000, "k": 10}


class TrainingError(Exception):
    """A training run could not be requested or completed; the message is for people."""


# --- Training -------------------------------------------------------------------------


def training_run_request(
    *, recommender: Recommender, requested_by: AbstractBaseUser | None = None, activate: bool = True
) -> TrainingRun:
    """Create a queued run and enqueue it after commit. Refuses a second unfinished run."""
    from .tasks import training_run_execute

    try:
        with transaction.atomic():
            last = recommender.runs.aggregate(v=Max("version"))["v"] or 0
            run = TrainingRun.objects.create(
                recommender=recommender,
                version=last + 1,
                params={**TRENDING_DEFAULTS, **recommender.params},
                activate_on_success=activate,
                requested_by=requested_by if requested_by and requested_by.is_authenticated else None,
                message="Waiting for a worker",
            )
    except IntegrityError:
        raise TrainingError(f"{recommender.name} already has a training run queued or running.") from None
    transaction.on_commit(lambda: training_run_execute.delay(run.pk))
    return run


def _run_update(run_id: int, **fields) -> bool:
    """Update a running run (compare-and-set on status); False when it is no longer running."""
    fields.setdefault("heartbeat_at", timezone.now())
    return TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(**fields) == 1


@dataclass
class _Phases:
    timings: dict[str, float] = field(default_factory=dict)
    _start: float = 0.0

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self, name: str) -> None:
        self.timings[name] = round(time.perf_counter() - self._start, 4)


def training_run_execute(*, run_id: int) -> TrainingRun:
    """Fit, evaluate and store a model for a queued run. Idempotent: a run that is not
    queued (already taken by another worker, or finished) is left alone."""
    now = timezone.now()
    taken = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=now, heartbeat_at=now, progress=1, message="Starting"
    )
    run = TrainingRun.objects.select_related("recommender").get(pk=run_id)
    if not taken:
        logger.info("training run %s is %s; nothing to do", run_id, run.status)
        return run
    try:
        _train(run)
    except Exception as exc:
        logger.exception("training run %s failed", run_id)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.FAILED,
            finished_at=timezone.now(),
            error=f"{detail}\n\n{traceback.format_exc()[-4000:]}",
            message="Failed",
        )
    run.refresh_from_db()
    return run


def _train(run: TrainingRun) -> None:
    params = run.params
    k = int(params.get("k", 10))
    window_days = float(params["window_days"])
    half_life = params.get("half_life_days")
    half_life = float(half_life) if half_life is not None else None
    phases = _Phases()

    phases.start()
    now = timezone.now()
    rows = list(
        Event.objects.filter(
            timestamp__gte=now - timedelta(days=window_days), item__isnull=False, type__in=list(EVENT_WEIGHTS)
        ).values_list("profile_id", "item_id", "type", "timestamp")
    )
    frame = pd.DataFrame(rows, columns=["profile_id", "item_id", "type", "timestamp"])
    phases.stop("snapshot")
    if frame.empty:
        raise TrainingError(
            f"No interactions with items in the last {window_days:g} days: nothing to train on."
        )
    _run_update(run.pk, progress=20, message=f"Loaded {len(frame):,} interactions")

    phases.start()
    user_index, user_ids = pd.factorize(frame["profile_id"])
    item_index, item_ids = pd.factorize(frame["item_id"])
    weights = frame["type"].map(EVENT_WEIGHTS).to_numpy(dtype=np.float64).clip(min=0.0)
    seconds = frame["timestamp"].map(lambda t: t.timestamp()).to_numpy(dtype=np.float64)
    age_days = (now.timestamp() - seconds) / 86400.0
    split = evaluation.chronological_split(
        user_index, seconds, test_ratio=float(params.get("test_ratio", 0.2))
    )
    phases.stop("split")
    _run_update(run.pk, progress=35, message="Fitting on the training split")

    phases.start()
    train = split.train
    held_model = recommenders.trending_fit(
        item_index=item_index[train],
        weights=weights[train],
        age_days=age_days[train],
        n_items=len(item_ids),
        half_life_days=half_life,
        keep=len(item_ids),
    )
    phases.stop("fit")
    _run_update(run.pk, progress=55, message="Evaluating on held-out interactions")

    phases.start()
    seen: dict[int, set[int]] = {}
    for u, i in zip(user_index[train].tolist(), item_index[train].tolist(), strict=True):
        seen.setdefault(u, set()).add(i)
    relevant: dict[int, set[int]] = {}
    for u, i, w in zip(
        user_index[split.test].tolist(),
        item_index[split.test].tolist(),
        weights[split.test].tolist(),
        strict=True,
    ):
        if w > 0 and i not in seen.get(u, ()):
            relevant.setdefault(u, set()).add(i)
    rankings = {u: [i for i, _ in held_model.top(k, exclude=seen.get(u, set()))] for u in relevant}
    metrics = evaluation.evaluate_rankings(rankings, relevant, k=k, n_items=len(item_ids))
    phases.stop("evaluate")
    _run_update(run.pk, progress=75, message="Fitting the final model on all data")

    phases.start()
    final = recommenders.trending_fit(
        item_index=item_index,
        weights=weights,
        age_days=age_days,
        n_items=len(item_ids),
        half_life_days=half_life,
        keep=int(params["keep"]),
    )
    payload = {
        "item_ids": [int(item_ids[i]) for i in final.item_index.tolist()],
        "scores": [round(float(s), 6) for s in final.scores.tolist()],
    }
    data = json.dumps(payload).encode()
    phases.stop("fit_final")
    _run_update(run.pk, progress=90, message="Storing the model")

    phases.start()
    with transaction.atomic():
        updated = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.SUCCEEDED,
            progress=100,
            message="Done",
            finished_at=timezone.now(),
            metrics=metrics,
            data_sizes={
                "interactions": len(frame),
                "train": int(train.sum()),
                "test": int(split.test.sum()),
                "user_count": len(user_ids),
                "item_count": len(item_ids),
            },
            timings=phases.timings,
        )
        if not updated:
            raise TrainingError("The run was stopped or marked failed while it was training.")
        ModelArtifact.objects.create(run_id=run.pk, format="json", data=data, size_bytes=len(data))
        if run.activate_on_success:
            Recommender.objects.filter(pk=run.recommender_id).update(active_run_id=run.pk)
    phases.stop("store")
    TrainingRun.objects.filter(pk=run.pk).update(timings=phases.timings)


def training_runs_reap_stale(*, now=None) -> int:
    """Mark runs whose worker stopped reporting (killed, lost) as failed."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.TRAINING_STALE_AFTER_SECONDS)
    return TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=limit).update(
        status=TrainingRun.Status.FAILED,
        finished_at=now,
        message="Failed",
        error="The worker stopped reporting progress (killed or lost); the active model is unchanged.",
    )


def recommenders_retrain_due(*, now=None) -> list[TrainingRun]:
    """Request a run for every scheduled recommender whose last run is older than its period."""
    now = now or timezone.now()
    runs = []
    for recommender in Recommender.objects.filter(retrain_every_hours__isnull=False):
        last = recommender.runs.order_by("-created_at").values_list("created_at", flat=True).first()
        if last and last > now - timedelta(hours=recommender.retrain_every_hours):
            continue
        try:
            runs.append(training_run_request(recommender=recommender))
        except TrainingError:
            continue
    return runs


# --- Serving --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    item: Item
    score: float
    rank: int
    reason: str
    reason_data: dict
    recommendation_id: str


class ServingError(Exception):
    """The request cannot be served; ``field`` names the offending parameter."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


def _artifact_load(run_id: int) -> dict:
    key = f"recsite:artifact:{run_id}"
    payload = cache.get(key)
    if payload is None:
        artifact = ModelArtifact.objects.get(run_id=run_id)
        payload = json.loads(bytes(artifact.data))
        cache.set(key, payload, timeout=3600)
    return payload


def profile_resolve(*, user_id: str | None = None, anonymous_id: str | None = None) -> Profile | None:
    if user_id:
        return Profile.objects.filter(external_id=user_id).first()
    if anonymous_id:
        return Profile.objects.filter(anonymous_ids__anonymous_id=anonymous_id).first()
    return None


def recommendations_get(
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    k: int = 10,
    recommender_name: str | None = None,
    exclude_consumed: bool = True,
) -> tuple[Recommender, Profile | None, list[Recommendation]]:
    if not 1 <= k <= 100:
        raise ServingError("k must be between 1 and 100.", field="k")
    name = recommender_name or settings.DEFAULT_RECOMMENDER
    recommender = Recommender.objects.select_related("active_run").filter(name=name).first()
    if recommender is None:
        raise ServingError(f"No recommender named {name!r}.", field="recommender", status=404)
    if recommender.active_run_id is None:
        raise ServingError(
            f"Recommender {name!r} has no active model yet: train it first.", field="recommender", status=409
        )
    profile = profile_resolve(user_id=user_id, anonymous_id=anonymous_id)
    payload = _artifact_load(recommender.active_run_id)
    consumed: set[int] = set()
    if profile is not None and exclude_consumed:
        consumed = set(
            Event.objects.filter(profile=profile, item__isnull=False)
            .values_list("item_id", flat=True)
            .distinct()
        )
    picked = [
        (item_id, score)
        for item_id, score in zip(payload["item_ids"], payload["scores"], strict=True)
        if item_id not in consumed
    ]
    active_items = Item.objects.filter(pk__in=[i for i, _ in picked[: k * 3]], active=True).in_bulk()
    results: list[Recommendation] = []
    for item_id, score in picked:
        item = active_items.get(item_id)
        if item is None:
            continue
        results.append(
            Recommendation(
                item=item,
                score=score,
                rank=len(results) + 1,
                reason="Trending now",
                reason_data={"type": "trending"},
                recommendation_id=uuid.uuid4().hex,
            )
        )
        if len(results) == k:
            break
    return recommender, profile, results
