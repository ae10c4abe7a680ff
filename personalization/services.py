"""Recommender services: parameters, training runs, activation and rollback.

Serving lives in ``serving.py``; the algorithms (pure numpy/scipy) in ``recommenders.py``
and the offline metrics in ``evaluation.py``. Views, API views, commands and tasks call
these functions; they hold the business rules.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from catalog.models import Item, ItemTag
from recsite.services import audit_record

from . import evaluation, recommenders
from .interactions import EVENT_WEIGHTS  # kept there: ingestion needs it without NumPy and pandas
from .models import Event, Interaction, ModelArtifact, PrecomputedList, Profile, Recommender, TrainingRun

logger = logging.getLogger(__name__)


class TrainingError(Exception):
    """A training run could not be requested or completed; the message is for people."""


# --- Parameters ------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""


# Settings every algorithm understands: the data window, the split and the evaluation.
COMMON_PARAMS: dict[str, Param] = {
    "window_days": Param(float, 365.0, 1, 3650, help="Interactions newer than this are used."),
    "split": Param(
        str, "chronological", choices=("chronological", "random"), help="Offline evaluation split."
    ),
    "test_ratio": Param(float, 0.2, 0.05, 0.5, help="Share of each user's interactions held out."),
    "seed": Param(int, 0, 0, 2**31 - 1, help="Seed of the random split and of ALS."),
    "k": Param(int, 10, 1, 100, help="Cut-off of the offline metrics."),
    "precompute": Param(int, 100, 0, 500, help="Top-N stored per active profile after training."),
    "active_days": Param(float, 30.0, 1, 3650, help="Profiles seen this recently get precomputed lists."),
}

ALGORITHM_PARAMS: dict[str, dict[str, Param]] = {
    "trending": {
        "window_days": Param(float, 90.0, 1, 3650, help="Events newer than this count."),
        "half_life_days": Param(float, 7.0, 0.1, 365, help="An event's weight halves every this many days."),
        "keep": Param(int, 1000, 10, 100_000, help="Length of the stored ranking."),
    },
    "popularity": {},
    "item_knn": {
        "neighbours": Param(int, 100, 1, 2000, help="Neighbours kept per item."),
        "shrink": Param(float, 10.0, 0, 1000, help="Shrinks similarities resting on few co-occurrences."),
    },
    "ease": {
        "l2": Param(float, 200.0, 0.001, 1e6, help="Regularisation lambda."),
        "max_items": Param(int, 10_000, 10, 50_000, help="Memory cap: the most popular items kept."),
    },
    "als": {
        "factors": Param(int, 64, 2, 512, help="Latent factors."),
        "regularization": Param(float, 0.05, 0, 10, help="L2 regularisation."),
        "iterations": Param(int, 15, 1, 100, help="ALS sweeps."),
        "alpha": Param(float, 10.0, 0, 1000, help="Confidence scaling: c = 1 + alpha * strength."),
    },
    "content": {
        "weighting": Param(str, "bm25", choices=("bm25", "tfidf"), help="Term weighting."),
        "text_weight": Param(float, 0.5, 0, 10, help="Weight of title/description words against tags."),
        "declared_weight": Param(float, 0.5, 0, 10, help="Weight of declared (quiz) preferences."),
    },
    "hybrid": {
        "blend": Param(
            dict,
            {"ease": 0.5, "item_knn": 0.3, "content": 0.2},
            help='Component algorithms and weights, e.g. {"ease": 0.6, "content": 0.4}.',
        ),
    },
}
MATRIX_ALGORITHMS = ("popularity", "item_knn", "ease", "als", "content", "hybrid")


def recommender_params_clean(*, algorithm: str, params: Any) -> dict:
    """Validate ``params`` for ``algorithm`` and return them with types coerced.

    Raises ``ValidationError`` whose message names the parameter (``params.l2: ...``).
    """
    if algorithm not in ALGORITHM_PARAMS:
        raise ValidationError(f"Unknown algorithm {algorithm!r}.", code="algorithm")
    if params in (None, ""):
        return {}
    if not isinstance(params, dict):
        raise ValidationError('Enter a JSON object, for example {"l2": 300}.')
    allowed = {**(COMMON_PARAMS if algorithm != "trending" else {}), **ALGORITHM_PARAMS[algorithm]}
    cleaned: dict[str, Any] = {}
    for name, value in params.items():
        spec = allowed.get(name)
        if spec is None:
            raise ValidationError(
                f"params.{name}: unknown parameter for {algorithm}; allowed: {', '.join(sorted(allowed))}."
            )
        cleaned[name] = _param_coerce(name, value, spec, algorithm)
    return cleaned


def _param_coerce(name: str, value: Any, spec: Param, algorithm: str) -> Any:
    if spec.kind is dict:
        if not isinstance(value, dict) or not value:
            raise ValidationError(f"params.{name}: expected a non-empty JSON object.")
        for part, weight in value.items():
            if part not in ALGORITHM_PARAMS or part in ("hybrid", "trending"):
                raise ValidationError(f"params.{name}.{part}: not an algorithm a hybrid can blend.")
            if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
                raise ValidationError(f"params.{name}.{part}: the weight must be a positive number.")
        return {part: float(weight) for part, weight in value.items()}
    if spec.kind is str:
        if value not in spec.choices:
            raise ValidationError(f"params.{name}: must be one of {', '.join(spec.choices)}.")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"params.{name}: must be a number.")
    if spec.kind is int and float(value) != int(value):
        raise ValidationError(f"params.{name}: must be a whole number.")
    value = spec.kind(value)
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise ValidationError(f"params.{name}: must be between {spec.low:g} and {spec.high:g}.")
    return value


def recommender_params_effective(*, algorithm: str, params: dict) -> dict:
    """Defaults overlaid with the recommender's own parameters, as a run records them."""
    specs = {**(COMMON_PARAMS if algorithm != "trending" else {}), **ALGORITHM_PARAMS[algorithm]}
    return {**{name: spec.default for name, spec in specs.items()}, **params}


# --- Training runs ------------------------------------------------------------------


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
                params=recommender_params_effective(
                    algorithm=recommender.algorithm, params=recommender.params
                ),
                activate_on_success=activate,
                requested_by=requested_by if requested_by and requested_by.is_authenticated else None,
                message="Waiting for a worker",
            )
    except IntegrityError:
        raise TrainingError(f"{recommender.name} already has a training run queued or running.") from None
    # robust: with the broker down the request still succeeds; the run stays queued and
    # training_runs_reap_stale sends it again (tests/faults/test_broker_outage.py).
    transaction.on_commit(lambda: training_run_execute.delay(run.pk), robust=True)
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
        if run.recommender.algorithm == Recommender.Algorithm.TRENDING:
            _train_trending(run)
        else:
            _train_matrix(run)
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


def _train_trending(run: TrainingRun) -> None:
    """Time-decayed popularity from raw events: what is hot now, whoever watched it."""
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
    _run_update(run.pk, progress=20, message=f"Loaded {len(frame):,} interactions", snapshot_at=now)

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
    _run_finish(
        run,
        phases=phases,
        metrics=metrics,
        data_sizes={
            "interactions": len(frame),
            "train": int(train.sum()),
            "test": int(split.test.sum()),
            "user_count": len(user_ids),
            "item_count": len(item_ids),
        },
        artifact=("json", data),
        precomputed=[],
    )


@dataclass
class Snapshot:
    """The training data of a run: dense indices over active items and profiles."""

    item_ids: np.ndarray  # index -> Item pk (every active item, so new items can be scored)
    user_ids: np.ndarray  # index -> Profile pk
    user_index: np.ndarray  # one entry per interaction
    item_index: np.ndarray
    strength: np.ndarray
    seconds: np.ndarray  # last interaction time, for the chronological split
    item_tags: list[list[str]]  # tag paths (with their ancestors) per item index
    item_texts: list[str]

    def matrix(self, mask: np.ndarray | None = None) -> sp.csr_matrix:
        rows, cols, vals = self.user_index, self.item_index, self.strength
        if mask is not None:
            rows, cols, vals = rows[mask], cols[mask], vals[mask]
        shape = (len(self.user_ids), len(self.item_ids))
        return sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=shape)

    def tag_matrix(self) -> sp.csr_matrix:
        """Items x tags (binary), for diversity and calibration metrics."""
        vocabulary: dict[str, int] = {}
        rows, cols = [], []
        for item, tags in enumerate(self.item_tags):
            for tag in tags:
                rows.append(item)
                cols.append(vocabulary.setdefault(tag, len(vocabulary)))
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(self.item_ids), max(len(vocabulary), 1)))


def item_tag_paths(item_ids: list[int] | None = None) -> dict[int, list[str]]:
    """Each item's tag paths plus their ancestors below the facet ("genre/anime" for
    "genre/anime/mecha"), so that a broader taste matches narrower tags."""
    rows = ItemTag.objects.all()
    if item_ids is not None:
        rows = rows.filter(item_id__in=item_ids)
    out: dict[int, list[str]] = {}
    for item_id, path in rows.values_list("item_id", "tag__slug_path").iterator(chunk_size=10_000):
        parts = path.split("/")
        tags = out.setdefault(item_id, [])
        for depth in range(2, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix not in tags:
                tags.append(prefix)
    return out


def _snapshot(*, window_days: float, with_text: bool) -> Snapshot:
    now = timezone.now()
    items = list(Item.objects.filter(active=True).order_by("pk").values_list("pk", "title", "description"))
    item_ids = np.array([pk for pk, _, _ in items], dtype=np.int64)
    rows = list(
        Interaction.objects.filter(strength__gt=0, last_at__gte=now - timedelta(days=window_days))
        .values_list("profile_id", "item_id", "strength", "last_at")
        .iterator(chunk_size=50_000)
    )
    if not rows or not len(item_ids):
        raise TrainingError(
            f"No positive interactions in the last {window_days:g} days: nothing to train on. "
            "Send events (or load the demo data) first."
        )
    frame = pd.DataFrame(rows, columns=["profile_id", "item_id", "strength", "last_at"])
    position = pd.Series(np.arange(len(item_ids)), index=item_ids)
    frame["item_index"] = frame["item_id"].map(position)
    frame = frame.dropna(subset=["item_index"])  # interactions with inactive items
    user_index, user_ids = pd.factorize(frame["profile_id"])
    tags = item_tag_paths()
    return Snapshot(
        item_ids=item_ids,
        user_ids=np.asarray(user_ids, dtype=np.int64),
        user_index=np.asarray(user_index, dtype=np.int64),
        item_index=frame["item_index"].to_numpy(dtype=np.int64),
        strength=frame["strength"].to_numpy(dtype=np.float32),
        seconds=frame["last_at"].map(lambda t: t.timestamp()).to_numpy(dtype=np.float64),
        item_tags=[tags.get(int(pk), []) for pk in item_ids],
        item_texts=[f"{title} {description}" for _, title, description in items] if with_text else [],
    )


def model_fit(*, algorithm: str, params: dict, snapshot: Snapshot, user_items: sp.csr_matrix):
    """Fit one algorithm on ``user_items`` (users x all active items)."""
    if algorithm == "popularity":
        return recommenders.popularity_fit(user_items=user_items)
    if algorithm == "item_knn":
        return recommenders.item_knn_fit(
            user_items=user_items, neighbours=int(params["neighbours"]), shrink=float(params["shrink"])
        )
    if algorithm == "ease":
        return recommenders.ease_fit(
            user_items=user_items, l2=float(params["l2"]), max_items=int(params["max_items"])
        )
    if algorithm == "als":
        return recommenders.als_fit(
            user_items=user_items,
            factors=int(params["factors"]),
            regularization=float(params["regularization"]),
            iterations=int(params["iterations"]),
            alpha=float(params["alpha"]),
            random_state=int(params.get("seed", 0)),
        )
    if algorithm == "content":
        return recommenders.content_fit(
            item_tags=snapshot.item_tags,
            item_texts=snapshot.item_texts or None,
            user_items=user_items,
            weighting=params["weighting"],
            text_weight=float(params["text_weight"]),
            declared_weight=float(params["declared_weight"]),
        )
    if algorithm == "hybrid":
        parts, weights = [], []
        for part, weight in params["blend"].items():
            part_params = recommender_params_effective(algorithm=part, params={})
            parts.append(
                model_fit(algorithm=part, params=part_params, snapshot=snapshot, user_items=user_items)
            )
            weights.append(weight)
        return recommenders.HybridModel(models=parts, weights=weights)
    raise TrainingError(f"Unknown algorithm {algorithm!r}.")


def _uses_text(algorithm: str, params: dict) -> bool:
    return algorithm == "content" or (algorithm == "hybrid" and "content" in params.get("blend", {}))


def _train_matrix(run: TrainingRun) -> None:
    params = run.params
    algorithm = run.recommender.algorithm
    k = int(params["k"])
    phases = _Phases()
    now = timezone.now()

    phases.start()
    snapshot = _snapshot(window_days=float(params["window_days"]), with_text=_uses_text(algorithm, params))
    phases.stop("snapshot")
    _run_update(
        run.pk, progress=15, message=f"Loaded {len(snapshot.strength):,} interactions", snapshot_at=now
    )

    phases.start()
    if params["split"] == "random":
        split = evaluation.random_split(
            snapshot.user_index, test_ratio=float(params["test_ratio"]), seed=int(params["seed"])
        )
    else:
        split = evaluation.chronological_split(
            snapshot.user_index, snapshot.seconds, test_ratio=float(params["test_ratio"])
        )
    train, test = snapshot.matrix(split.train), snapshot.matrix(split.test)
    phases.stop("split")
    _run_update(run.pk, progress=25, message="Fitting on the training split")

    phases.start()
    held_model = model_fit(algorithm=algorithm, params=params, snapshot=snapshot, user_items=train)
    phases.stop("fit")
    _run_update(run.pk, progress=45, message="Evaluating on held-out interactions")

    phases.start()
    metrics = evaluation.evaluate_model(held_model, train, test, k=k, item_tags=snapshot.tag_matrix())
    phases.stop("evaluate")
    _run_update(run.pk, progress=60, message="Fitting the final model on all data")

    phases.start()
    full = snapshot.matrix()
    model = model_fit(algorithm=algorithm, params=params, snapshot=snapshot, user_items=full)
    phases.stop("fit_final")
    _run_update(run.pk, progress=75, message="Precomputing lists for active profiles")

    phases.start()
    precomputed = _precompute(run, model=model, snapshot=snapshot, params=params, now=now)
    phases.stop("precompute")
    _run_update(run.pk, progress=90, message="Storing the model")

    data = artifact_pack(model=model, item_ids=snapshot.item_ids)
    _run_finish(
        run,
        phases=phases,
        metrics=metrics,
        data_sizes={
            "interactions": len(snapshot.strength),
            "train": int(split.train.sum()),
            "test": int(split.test.sum()),
            "user_count": len(snapshot.user_ids),
            "item_count": len(snapshot.item_ids),
            "precomputed_profiles": len(precomputed),
            "model_bytes": len(data),
        },
        artifact=("npz", data),
        precomputed=precomputed,
        note=getattr(model, "message", ""),
    )


def _precompute(run, *, model, snapshot: Snapshot, params: dict, now) -> list[PrecomputedList]:
    n = int(params["precompute"])
    if n == 0:
        return []
    active = set(
        Profile.objects.filter(last_seen__gte=now - timedelta(days=float(params["active_days"]))).values_list(
            "pk", flat=True
        )
    )
    users = np.array([u for u, pk in enumerate(snapshot.user_ids.tolist()) if pk in active], dtype=np.int64)
    if users.size == 0:
        return []
    items, scores = model.recommend(users, k=n)
    lists = []
    explained = min(n, 20)  # reasons for the part of the list that is shown
    for row, user in enumerate(users.tolist()):
        valid = items[row] >= 0
        picked = items[row][valid]
        reasons = [
            _reason_ids(r, snapshot.item_ids) for r in model.explain(user, picked[:explained].tolist())
        ]
        lists.append(
            PrecomputedList(
                run=run,
                profile_id=int(snapshot.user_ids[user]),
                item_ids=snapshot.item_ids[picked].tolist(),
                scores=[round(float(s), 5) for s in scores[row][valid]],
                reasons=reasons,
            )
        )
    return lists


def _reason_ids(reason: dict, item_ids: np.ndarray) -> dict:
    """Reasons from the algorithms speak of item indices; stored reasons speak of Item pks."""
    if "item" in reason:
        return {**reason, "item": int(item_ids[reason["item"]])}
    return dict(reason)


def artifact_pack(*, model, item_ids: np.ndarray) -> bytes:
    """One blob: the model's own bytes plus the index -> Item pk mapping."""
    buffer = io.BytesIO()
    np.savez(buffer, model=np.frombuffer(model.to_bytes(), dtype=np.uint8), item_ids=item_ids)
    return buffer.getvalue()


def artifact_unpack(data: bytes):
    with np.load(io.BytesIO(data), allow_pickle=False) as bundle:
        return recommenders.model_from_bytes(bundle["model"].tobytes()), bundle["item_ids"].copy()


def _run_finish(
    run: TrainingRun,
    *,
    phases: _Phases,
    metrics: dict,
    data_sizes: dict,
    artifact: tuple[str, bytes],
    precomputed: list[PrecomputedList],
    note: str = "",
) -> None:
    phases.start()
    fmt, data = artifact
    # A metric undefined on a tiny split comes out as NaN, which JSON columns refuse: store null.
    metrics = {name: _json_number(value) for name, value in metrics.items()}
    with transaction.atomic():
        updated = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.SUCCEEDED,
            progress=100,
            message=(note or "Done")[:300],
            finished_at=timezone.now(),
            metrics=metrics,
            data_sizes=data_sizes,
            timings=phases.timings,
        )
        if not updated:
            raise TrainingError("The run was stopped or marked failed while it was training.")
        ModelArtifact.objects.create(run_id=run.pk, format=fmt, data=data, size_bytes=len(data))
        PrecomputedList.objects.bulk_create(precomputed, batch_size=2000)
        if run.activate_on_success:
            _auto_activate(run, metrics)
    phases.stop("store")
    TrainingRun.objects.filter(pk=run.pk).update(timings=phases.timings)


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _auto_activate(run: TrainingRun, metrics: dict) -> None:
    """Activate unless the new version loses to the active one on the primary metric."""
    recommender = Recommender.objects.select_for_update().get(pk=run.recommender_id)
    active = recommender.active_run
    metric = recommender.primary_metric
    if recommender.auto_activate and active is not None and active.status == TrainingRun.Status.SUCCEEDED:
        new, old = metrics.get(metric), active.metrics.get(metric)
        if new is not None and old is not None and new < old:
            TrainingRun.objects.filter(pk=run.pk).update(
                activation_note=f"Not activated: {metric} {new:.4f} < active v{active.version}'s {old:.4f}."
            )
            return
    Recommender.objects.filter(pk=recommender.pk).update(active_run_id=run.pk)
    TrainingRun.objects.filter(pk=run.pk).update(activation_note="Activated automatically.")
    audit_record(actor=None, action="model.activate", target=run, detail={"automatic": True})


def recommender_activate(*, run: TrainingRun, user: AbstractBaseUser | None = None) -> TrainingRun:
    """Make a successful run the recommender's active model (activation or rollback)."""
    if run.status != TrainingRun.Status.SUCCEEDED or not ModelArtifact.objects.filter(run=run).exists():
        raise TrainingError(f"v{run.version} did not succeed, so it cannot serve.")
    who = f" by {user.get_username()}" if user is not None and user.is_authenticated else ""
    with transaction.atomic():
        Recommender.objects.filter(pk=run.recommender_id).update(
            active_run_id=run.pk, updated_at=timezone.now()
        )
        TrainingRun.objects.filter(pk=run.pk).update(
            activation_note=f"Activated manually{who} at {timezone.now():%Y-%m-%d %H:%M} UTC."
        )
        audit_record(actor=user, action="model.activate", target=run, detail={"automatic": False})
    run.refresh_from_db()
    return run


def training_runs_reap_stale(*, now=None) -> int:
    """Mark runs whose worker stopped reporting (killed, lost) as failed, and send again the
    runs still queued after TRAINING_REQUEUE_AFTER_SECONDS: their message was never sent (the
    broker was down) or was lost with a broker that kept no copy. A second message for a run is
    harmless: training_run_execute takes a queued run once (compare-and-set)."""
    from .tasks import training_run_execute

    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.TRAINING_STALE_AFTER_SECONDS)
    reaped = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=limit).update(
        status=TrainingRun.Status.FAILED,
        finished_at=now,
        message="Failed",
        error="The worker stopped reporting progress (killed or lost); the active model is unchanged.",
    )
    waiting = TrainingRun.objects.filter(
        status=TrainingRun.Status.QUEUED,
        created_at__lt=now - timedelta(seconds=settings.TRAINING_REQUEUE_AFTER_SECONDS),
    )
    for run_id in waiting.values_list("pk", flat=True):
        try:
            training_run_execute.delay(run_id)
        except Exception:  # the broker is still down: the next reap tries again
            logger.warning("could not send queued training run %s again; will retry", run_id, exc_info=True)
            break
    return reaped


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


def recommenders_train_untrained() -> list[TrainingRun]:
    """Queue a run for every recommender that has no active model and nothing queued."""
    runs = []
    for recommender in Recommender.objects.filter(active_run__isnull=True):
        try:
            runs.append(training_run_request(recommender=recommender))
        except TrainingError:
            continue
    return runs
