"""Serving recommendations: placements, fallback chains, filters, diversity, explanations.

A warm profile is served from the list precomputed after training (one indexed read);
anyone else is scored on the fly from their interactions or declared preferences. Models
are loaded from the database once per process and kept in a small LRU.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db.models import Q

from catalog.models import Item, ItemTag, Tag

from . import recommenders
from .models import (
    AnonymousId,
    DeclaredPreference,
    Interaction,
    ModelArtifact,
    Placement,
    PrecomputedList,
    Profile,
    Recommender,
)
from .services import artifact_unpack, item_tag_paths


class ServingError(Exception):
    """The request cannot be served; ``field`` names the offending parameter."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


# --- Loaded models -------------------------------------------------------------------


@dataclass
class LoadedRun:
    run_id: int
    ranking: list[tuple[int, float]] = field(default_factory=list)  # trending: (item pk, score)
    model: recommenders.Recommender | None = None
    item_ids: np.ndarray | None = None  # model index -> Item pk
    item_pos: dict[int, int] = field(default_factory=dict)  # Item pk -> model index


_LOADED: OrderedDict[int, LoadedRun] = OrderedDict()
_LOCK = threading.Lock()


def run_load(run_id: int) -> LoadedRun:
    """The fitted model of a run, loaded once per process (runs never change once stored)."""
    with _LOCK:
        if run_id in _LOADED:
            _LOADED.move_to_end(run_id)
            return _LOADED[run_id]
    artifact = ModelArtifact.objects.get(run_id=run_id)
    data = bytes(artifact.data)
    if artifact.format == "json":
        payload = json.loads(data)
        loaded = LoadedRun(
            run_id=run_id, ranking=list(zip(payload["item_ids"], payload["scores"], strict=True))
        )
    else:
        model, item_ids = artifact_unpack(data)
        loaded = LoadedRun(
            run_id=run_id,
            model=model,
            item_ids=item_ids,
            item_pos={int(pk): i for i, pk in enumerate(item_ids.tolist())},
        )
    with _LOCK:
        _LOADED[run_id] = loaded
        while len(_LOADED) > settings.SERVING_MODELS_PER_PROCESS:
            _LOADED.popitem(last=False)
    return loaded


# --- Profiles --------------------------------------------------------------------------


@dataclass
class ProfileState:
    profile: Profile | None
    consumed: set[int] = field(default_factory=set)  # every item the profile interacted with
    positive: list[tuple[int, float]] = field(default_factory=list)  # (item pk, strength), latest first
    liked_tags: list[str] = field(default_factory=list)
    disliked_tags: list[str] = field(default_factory=list)


def profile_resolve(*, user_id: str | None = None, anonymous_id: str | None = None) -> Profile | None:
    if user_id:
        return Profile.objects.filter(external_id=user_id).first()
    if anonymous_id:
        link = AnonymousId.objects.select_related("profile").filter(anonymous_id=anonymous_id).first()
        return link.profile if link else None
    return None


def profile_state(profile: Profile | None) -> ProfileState:
    state = ProfileState(profile=profile)
    if profile is None:
        return state
    # The interaction table is kept current at ingestion, so consumption after the last
    # training is excluded at once.
    for item_id, strength in (
        Interaction.objects.filter(profile=profile).order_by("-last_at").values_list("item_id", "strength")
    ):
        state.consumed.add(item_id)
        if strength > 0:
            state.positive.append((item_id, strength))
    for path, sentiment in DeclaredPreference.objects.filter(profile=profile).values_list(
        "tag__slug_path", "sentiment"
    ):
        (state.liked_tags if sentiment > 0 else state.disliked_tags).append(path)
    return state


# --- Candidates ------------------------------------------------------------------------


@dataclass
class Candidate:
    item_id: int
    score: float
    reason: dict
    recommender: str


def _user_row(loaded: LoadedRun, state: ProfileState) -> sp.csr_matrix:
    cols, vals = [], []
    for item_id, strength in state.positive:
        index = loaded.item_pos.get(item_id)
        if index is not None:
            cols.append(index)
            vals.append(strength)
    return sp.csr_matrix(
        (np.asarray(vals, dtype=np.float32), (np.zeros(len(cols), dtype=np.int64), cols)),
        shape=(1, len(loaded.item_ids)),
    )


def _candidates(recommender: Recommender, state: ProfileState, n: int) -> list[Candidate]:
    loaded = run_load(recommender.active_run_id)
    name = recommender.name
    if loaded.model is None:
        return [Candidate(pk, score, {"type": "trending"}, name) for pk, score in loaded.ranking[: n * 2]]
    if state.profile is not None:
        stored = (
            PrecomputedList.objects.filter(run_id=recommender.active_run_id, profile=state.profile)
            .values_list("item_ids", "scores", "reasons")
            .first()
        )
        if stored is not None:
            item_ids, scores, reasons = stored
            return [
                Candidate(pk, score, reasons[i] if i < len(reasons) else {"type": "similar_taste"}, name)
                for i, (pk, score) in enumerate(zip(item_ids, scores, strict=True))
            ]
    row = _user_row(loaded, state)
    options = {}
    if isinstance(loaded.model, recommenders.ContentModel) and (state.liked_tags or state.disliked_tags):
        options = {"liked_tags": [state.liked_tags], "disliked_tags": [state.disliked_tags]}
    elif row.nnz == 0 and not isinstance(loaded.model, recommenders.PopularityModel):
        return []  # nothing to personalise from: the fallback chain takes over
    items, scores = loaded.model.recommend(row, k=n, **options)
    valid = items[0] >= 0
    picked, values = items[0][valid], scores[0][valid]
    explain_options = {k: v[0] for k, v in options.items()}
    reasons = loaded.model.explain(row, picked[:20].tolist(), **explain_options)
    out = []
    for i, (index, score) in enumerate(zip(picked.tolist(), values.tolist(), strict=True)):
        reason = dict(reasons[i]) if i < len(reasons) else {"type": "similar_taste"}
        if "item" in reason:
            reason["item"] = int(loaded.item_ids[reason["item"]])
        out.append(Candidate(int(loaded.item_ids[index]), float(score), reason, name))
    return out


# --- Results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    item: Item
    score: float
    rank: int
    reason: str
    reason_data: dict
    recommendation_id: str
    recommender: str


@dataclass
class Served:
    recommender: Recommender
    placement: Placement | None
    profile: Profile | None
    results: list[Recommendation]
    experiment: dict | None = None  # {"key", "variant"} when a running experiment decided


def placement_experiment(
    *, placement: Placement, user_id: str | None, anonymous_id: str | None
) -> tuple[dict | None, str | None]:
    """Apply a running experiment on this placement: its variants' payloads name the
    placement (``{"placement": "home", "recommender": "ease"}``). The assignment is sticky
    and records an exposure. Returns the experiment summary and the recommender to use."""
    from experiments.models import Experiment
    from experiments.services import ExperimentError, experiment_assign

    if not (user_id or anonymous_id):
        return None, None
    experiment = (
        Experiment.objects.filter(
            status=Experiment.Status.RUNNING, variants__payload__placement=placement.key
        )
        .order_by("pk")
        .first()
    )
    if experiment is None:
        return None, None
    try:
        result = experiment_assign(
            key=experiment.key, user_id=user_id, anonymous_id=anonymous_id, source="recommendations"
        )
    except ExperimentError:
        return None, None
    if result.variant is None:
        return {"key": experiment.key, "variant": None, "in_experiment": False}, None
    summary = {"key": experiment.key, "variant": result.variant.key, "in_experiment": result.in_experiment}
    return summary, result.variant.payload.get("recommender")


def _chain(*, recommender_name: str | None, placement: Placement | None) -> list[Recommender]:
    names: list[str] = []
    if recommender_name:
        names.append(recommender_name)
    elif placement is not None:
        names.append(placement.recommender.name)
        names.extend(placement.fallbacks)
    names.append(settings.DEFAULT_RECOMMENDER)
    by_name = (
        Recommender.objects.select_related("active_run")
        .only("name", "algorithm", "active_run_id", "active_run__version")
        .in_bulk(names, field_name="name")
    )
    if recommender_name:
        named = by_name.get(recommender_name)
        if named is None:
            raise ServingError(f"No recommender named {recommender_name!r}.", field="recommender", status=404)
        if named.active_run_id is None:
            raise ServingError(
                f"Recommender {recommender_name!r} has no active model yet: train it first.",
                field="recommender",
                status=409,
            )
    chain, seen = [], set()
    for name in names:
        recommender = by_name.get(name)
        if recommender is not None and recommender.active_run_id and name not in seen:
            seen.add(name)
            chain.append(recommender)
    if not chain:
        raise ServingError("No recommender has an active model yet: train it first.", status=409)
    return chain


def _tag_filter(item_ids: list[int], paths: list[str]) -> set[int]:
    """Items (among ``item_ids``) carrying a tag at or below one of ``paths``."""
    if not paths or not item_ids:
        return set()
    query = Q()
    for path in paths:
        query |= Q(tag__slug_path=path) | Q(tag__slug_path__startswith=f"{path}/")
    return set(ItemTag.objects.filter(query, item_id__in=item_ids).values_list("item_id", flat=True))


def _diversify(candidates: list[Candidate], *, k: int, diversity: float) -> list[Candidate]:
    """MMR over item tags: trade relevance for variety by ``diversity`` (0..1)."""
    if diversity <= 0 or len(candidates) <= 1:
        return candidates[:k]
    tags = item_tag_paths([c.item_id for c in candidates])
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for row, candidate in enumerate(candidates):
        for tag in tags.get(candidate.item_id, []):
            rows.append(row)
            cols.append(vocabulary.setdefault(tag, len(vocabulary)))
    vectors = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(candidates), max(len(vocabulary), 1))
    )
    order = recommenders.mmr_rerank(
        candidates=np.arange(len(candidates)),
        scores=np.array([c.score for c in candidates], dtype=np.float64),
        item_vectors=vectors,
        k=k,
        lambda_=1.0 - diversity,
    )
    return [candidates[i] for i in order.tolist()]


def _reason_text(reason: dict, items: dict[int, Item], tag_names: dict[str, str]) -> str:
    kind = reason.get("type")
    if kind == "because_you_watched" and reason.get("item") in items:
        return f"Because you watched {items[reason['item']].title}"
    if kind == "similar_to" and reason.get("item") in items:
        return f"Similar to {items[reason['item']].title}"
    if kind == "matches_your_taste" and reason.get("tags"):
        return "Matches your taste: " + ", ".join(
            tag_names.get(t, t.rsplit("/", 1)[-1]) for t in reason["tags"]
        )
    if kind == "new_in":
        return f"New in {reason.get('tag_name', 'your favourite tag')}"
    if kind == "similar_taste":
        return "Popular with people who share your taste"
    return "Trending now"


# What results need of an item (descriptions and metadata stay in the database).
ITEM_FIELDS = ("pk", "external_id", "title", "kind", "active", "release_date", "image_url")


def results_build(
    candidates: list[Candidate], *, k: int, placement: Placement | None = None
) -> list[Recommendation]:
    """Turn candidates into results: active items only, placement filters, reasons as text."""
    item_ids = [c.item_id for c in candidates]
    reason_items = [c.reason["item"] for c in candidates if isinstance(c.reason.get("item"), int)]
    items = Item.objects.only(*ITEM_FIELDS).in_bulk(set(item_ids) | set(reason_items))
    if placement is not None:
        kinds = set(placement.kinds)
        include = _tag_filter(item_ids, placement.include_tags) if placement.include_tags else None
        exclude = _tag_filter(item_ids, placement.exclude_tags)
        candidates = [
            c
            for c in candidates
            if (not kinds or (items.get(c.item_id) and items[c.item_id].kind in kinds))
            and (include is None or c.item_id in include)
            and c.item_id not in exclude
        ]
    candidates = [c for c in candidates if c.item_id in items and items[c.item_id].active]
    if placement is not None and placement.diversity > 0:
        candidates = _diversify(candidates[: k * 4], k=k, diversity=placement.diversity)
    candidates = candidates[:k]
    tag_paths = {t for c in candidates for t in c.reason.get("tags", [])}
    tag_names = (
        dict(Tag.objects.filter(slug_path__in=tag_paths).values_list("slug_path", "name"))
        if tag_paths
        else {}
    )
    return [
        Recommendation(
            item=items[c.item_id],
            score=round(float(c.score), 6),
            rank=rank,
            reason=_reason_text(c.reason, items, tag_names),
            reason_data=c.reason,
            recommendation_id=uuid.uuid4().hex,
            recommender=c.recommender,
        )
        for rank, c in enumerate(candidates, start=1)
    ]


def _apply_segment_override(placement: Placement, state: ProfileState) -> None:
    """A placement's ``segment_overrides`` ({"segment-key": "recommender-name"}) serve members
    of a segment with another recommender; the default one becomes its first fallback."""
    if not placement.segment_overrides or state.profile is None:
        return
    from .models import SegmentMembership

    current = set(
        SegmentMembership.objects.filter(
            profile=state.profile, exited_at__isnull=True, segment__key__in=list(placement.segment_overrides)
        ).values_list("segment__key", flat=True)
    )
    for segment_key, name in placement.segment_overrides.items():
        if segment_key in current:
            override = Recommender.objects.filter(name=name).first()
            if override is not None and override.pk != placement.recommender_id:
                placement.fallbacks = [placement.recommender.name, *placement.fallbacks]
                placement.recommender = override
            return


def recommendations_get(
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    k: int | None = None,
    recommender_name: str | None = None,
    placement_key: str | None = None,
    exclude_consumed: bool = True,
    state: ProfileState | None = None,
) -> Served:
    """Recommendations for one profile: the placement's recommender, then its fallbacks,
    then the default, until ``k`` items survive the filters. ``k`` defaults to the
    placement's, else 10."""
    placement = None
    if placement_key:
        placement = Placement.objects.select_related("recommender").filter(key=placement_key).first()
        if placement is None:
            raise ServingError(f"No placement with key {placement_key!r}.", field="placement", status=404)
        exclude_consumed = exclude_consumed and placement.exclude_consumed
    k = k if k is not None else (placement.k if placement is not None else 10)
    if not 1 <= k <= 100:
        raise ServingError("k must be between 1 and 100.", field="k")
    experiment = None
    if placement is not None and recommender_name is None:
        experiment, variant_recommender = placement_experiment(
            placement=placement, user_id=user_id, anonymous_id=anonymous_id
        )
        if variant_recommender:
            placement.fallbacks = [placement.recommender.name, *placement.fallbacks]
            placement.recommender = (
                Recommender.objects.filter(name=variant_recommender).first() or placement.recommender
            )
    if state is None:
        state = profile_state(profile_resolve(user_id=user_id, anonymous_id=anonymous_id))
    if placement is not None and recommender_name is None and experiment is None:
        _apply_segment_override(placement, state)
    chain = _chain(recommender_name=recommender_name, placement=placement)
    want = k * 3 if placement is None or not (placement.include_tags or placement.kinds) else k * 10
    gathered: list[Candidate] = []
    seen: set[int] = set()
    for recommender in chain:
        for candidate in _candidates(recommender, state, max(want, 50)):
            if candidate.item_id in seen or (exclude_consumed and candidate.item_id in state.consumed):
                continue
            seen.add(candidate.item_id)
            gathered.append(candidate)
            if len(gathered) >= want:
                break
        if len(gathered) >= want:
            break
    results = results_build(gathered, k=k, placement=placement)
    return Served(
        recommender=chain[0],
        placement=placement,
        profile=state.profile,
        results=results,
        experiment=experiment,
    )


# --- Similar items and home rows --------------------------------------------------------

SIMILARITY_PREFERENCE = ("item_knn", "ease", "hybrid", "als", "content")


def similar_items_get(
    *, item: Item, k: int = 10, recommender_name: str | None = None
) -> list[Recommendation]:
    """Items like ``item``. Without a named recommender, the first trained one able to
    compare items; new items without interactions fall back to content similarity."""
    if not 1 <= k <= 100:
        raise ServingError("k must be between 1 and 100.", field="k")
    if recommender_name:
        recommender = Recommender.objects.filter(name=recommender_name).first()
        if recommender is None:
            raise ServingError(f"No recommender named {recommender_name!r}.", field="recommender", status=404)
        if recommender.active_run_id is None:
            raise ServingError("That recommender has no active model yet.", field="recommender", status=409)
        candidates = [recommender]
    else:
        trained = {
            r.algorithm: r
            for r in Recommender.objects.filter(active_run__isnull=False, algorithm__in=SIMILARITY_PREFERENCE)
        }
        candidates = [trained[a] for a in SIMILARITY_PREFERENCE if a in trained]
    for recommender in candidates:
        loaded = run_load(recommender.active_run_id)
        index = loaded.item_pos.get(item.pk) if loaded.model is not None else None
        if index is None:
            continue
        try:
            picked, scores = loaded.model.similar_items(index, k=k * 2)
        except NotImplementedError:
            continue
        found = [
            Candidate(
                int(loaded.item_ids[i]), float(s), {"type": "similar_to", "item": item.pk}, recommender.name
            )
            for i, s in zip(picked.tolist(), scores.tolist(), strict=True)
            if i >= 0 and np.isfinite(s)
        ]
        if found:
            return results_build(found, k=k)
    return []


@dataclass
class Row:
    key: str
    title: str
    results: list[Recommendation]


def _favourite_tag(state: ProfileState) -> Tag | None:
    """The tag (below a facet) the profile's strongest interactions share most."""
    if not state.positive:
        if state.liked_tags:
            return Tag.objects.filter(slug_path=state.liked_tags[0]).first()
        return None
    weights: dict[str, float] = {}
    strengths = dict(state.positive[:200])
    for item_id, paths in item_tag_paths(list(strengths)).items():
        for path in paths:
            if path.count("/") == 1:  # sub-genre level: "genre/anime"
                weights[path] = weights.get(path, 0.0) + strengths[item_id]
    if not weights:
        return None
    best = max(sorted(weights), key=lambda p: weights[p])
    return Tag.objects.filter(slug_path=best).first()


def home_rows(*, user_id: str | None = None, anonymous_id: str | None = None, k: int = 12) -> list[Row]:
    """Netflix-like rows: top picks, because you watched X, trending, new in your favourite tag."""
    state = profile_state(profile_resolve(user_id=user_id, anonymous_id=anonymous_id))
    rows: list[Row] = []
    shown: set[int] = set()

    def add(key: str, title: str, results: list[Recommendation]) -> None:
        fresh = [r for r in results if r.item.pk not in shown][:k]
        if fresh:
            shown.update(r.item.pk for r in fresh)
            rows.append(Row(key=key, title=title, results=fresh))

    home = Placement.objects.filter(key="home").exists()
    try:
        top = recommendations_get(k=k, state=state, placement_key="home" if home else None)
        add("top_picks", "Top picks for you", top.results)
    except ServingError:
        pass
    recent = Item.objects.in_bulk([pk for pk, _ in state.positive[:2]])
    for item_id, _ in state.positive[:2]:
        item = recent.get(item_id)
        if item is None:
            continue
        similar = [r for r in similar_items_get(item=item, k=k * 2) if r.item.pk not in state.consumed]
        add(f"because_{item.external_id}", f"Because you watched {item.title}", similar)
    trending = Recommender.objects.filter(algorithm="trending", active_run__isnull=False).first()
    if trending is not None:
        add(
            "trending",
            "Trending now",
            recommendations_get(k=k * 2, state=state, recommender_name=trending.name).results,
        )
    tag = _favourite_tag(state)
    if tag is not None:
        newest = (
            Item.objects.filter(active=True, item_tags__tag__path__startswith=tag.path)
            .exclude(pk__in=state.consumed)
            .order_by("-release_date", "-created_at")
            .distinct()[: k * 2]
        )
        candidates = [
            Candidate(item.pk, 0.0, {"type": "new_in", "tag": tag.slug_path, "tag_name": tag.name}, "new")
            for item in newest
        ]
        add(f"new_in_{tag.slug}", f"New in {tag.name}", results_build(candidates, k=k * 2))
    return rows
