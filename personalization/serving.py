"""Serving recommendations: placements, fallback chains, filters, diversity, explanations.

A warm profile is served from the list precomputed after training; anyone else is scored
on the fly from their interactions or declared preferences. Models are loaded from the
database once per process and kept in a small LRU. The configuration, item columns and
precomputed lists come from servecache.py, so that a warm request reads only the profile's
current interactions from the database (one query).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db import connection

from catalog.models import Item, Tag

from . import recommenders, servecache
from .models import AnonymousId, DeclaredPreference, Interaction, ModelArtifact, Profile, Recommender
from .servecache import ItemRef, PlacementRef, RecommenderRef
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


class ProfileState:
    """What serving knows of one profile: its id, what it consumed (current, not as of the
    last training) and, read only when on-the-fly scoring asks, its declared preferences."""

    def __init__(self, profile_id: int | None, profile: Profile | None = None):
        self.profile_id = profile_id
        self._profile = profile
        self.consumed: set[int] = set()  # every item the profile interacted with
        self.positive: list[tuple[int, float]] = []  # (item pk, strength), latest first
        self._preferences: tuple[list[str], list[str]] | None = None

    @property
    def profile(self) -> Profile | None:
        if self._profile is None and self.profile_id is not None:
            self._profile = Profile.objects.filter(pk=self.profile_id).first()
        return self._profile

    def _declared(self) -> tuple[list[str], list[str]]:
        if self._preferences is None:
            liked: list[str] = []
            disliked: list[str] = []
            if self.profile_id is not None:
                for path, sentiment in DeclaredPreference.objects.filter(
                    profile_id=self.profile_id
                ).values_list("tag__slug_path", "sentiment"):
                    (liked if sentiment > 0 else disliked).append(path)
            self._preferences = liked, disliked
        return self._preferences

    @property
    def liked_tags(self) -> list[str]:
        return self._declared()[0]

    @property
    def disliked_tags(self) -> list[str]:
        return self._declared()[1]


def profile_resolve(*, user_id: str | None = None, anonymous_id: str | None = None) -> Profile | None:
    if user_id:
        return Profile.objects.filter(external_id=user_id).first()
    if anonymous_id:
        link = AnonymousId.objects.select_related("profile").filter(anonymous_id=anonymous_id).first()
        return link.profile if link else None
    return None


def profile_state(profile: Profile | None) -> ProfileState:
    state = ProfileState(profile.pk if profile is not None else None, profile)
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
    return state


@functools.cache
def _profile_sql(by: str) -> str:
    """The profile left-joined to its interactions, latest first. A profile without
    interactions gives one row of NULLs, so the order needs no NULLS LAST."""
    quote = connection.ops.quote_name
    profile, interaction = quote(Profile._meta.db_table), quote(Interaction._meta.db_table)
    if by == "user_id":
        source, where = f"{profile} p", "p.external_id = %s"
    else:
        source = f"{quote(AnonymousId._meta.db_table)} a JOIN {profile} p ON p.id = a.profile_id"
        where = "a.anonymous_id = %s"
    return (
        f"SELECT p.id, i.item_id, i.strength FROM {source} "
        f"LEFT JOIN {interaction} i ON i.profile_id = p.id WHERE {where} ORDER BY i.last_at DESC"
    )


def profile_state_load(*, user_id: str | None = None, anonymous_id: str | None = None) -> ProfileState:
    """A profile's id and current interactions in one query, in SQL written once rather than
    compiled by the ORM per request: the hot path of serving a warm profile."""
    if user_id:
        sql, value = _profile_sql("user_id"), user_id
    elif anonymous_id:
        sql, value = _profile_sql("anonymous_id"), anonymous_id
    else:
        return ProfileState(None)
    with connection.cursor() as cursor:
        cursor.execute(sql, [value])
        rows = cursor.fetchall()
    if not rows:
        return ProfileState(None)
    state = ProfileState(rows[0][0])
    for _, item_id, strength in rows:
        if item_id is not None:
            state.consumed.add(item_id)
            if strength > 0:
                state.positive.append((item_id, strength))
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


def _candidates(recommender: RecommenderRef, state: ProfileState, n: int) -> Iterable[Candidate]:
    loaded = run_load(recommender.active_run_id)
    name = recommender.name
    if loaded.model is None:
        return [Candidate(pk, score, {"type": "trending"}, name) for pk, score in loaded.ranking[: n * 2]]
    if state.profile_id is not None:
        stored = servecache.precomputed_get(run=recommender, profile_id=state.profile_id)
        if stored is not None:
            item_ids, scores, reasons = stored
            # Lazily: the caller usually stops after a few dozen of the stored hundred.
            return (
                Candidate(pk, score, reasons[i] if i < len(reasons) else {"type": "similar_taste"}, name)
                for i, (pk, score) in enumerate(zip(item_ids, scores, strict=True))
            )
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
    item: ItemRef
    score: float
    rank: int
    reason: str
    reason_data: dict
    recommendation_id: str
    recommender: str

    def as_dict(self) -> dict:
        """The JSON of one result (docs/api.md), built without a serializer: hot path."""
        return {
            "item": self.item.external_id,
            "title": self.item.title,
            "score": self.score,
            "rank": self.rank,
            "reason": self.reason,
            "reason_data": self.reason_data,
            "recommendation_id": self.recommendation_id,
            "recommender": self.recommender,
        }


@dataclass
class Served:
    recommender: RecommenderRef
    placement: PlacementRef | None
    state: ProfileState
    results: list[Recommendation]
    experiment: dict | None = None  # {"key", "variant"} when a running experiment decided

    @property
    def profile(self) -> Profile | None:
        return self.state.profile

    @property
    def known_profile(self) -> bool:
        return self.state.profile_id is not None


def placement_experiment(
    *, placement: PlacementRef, user_id: str | None, anonymous_id: str | None
) -> tuple[dict | None, str | None]:
    """Apply a running experiment on this placement: its variants' payloads name the
    placement (``{"placement": "home", "recommender": "ease"}``). The assignment is sticky
    and records an exposure. Returns the experiment summary and the recommender to use."""
    from experiments.services import ExperimentError, experiment_assign

    if not (user_id or anonymous_id):
        return None, None
    experiment_key = servecache.snapshot_get().experiments.get(placement.key)
    if experiment_key is None:
        return None, None
    try:
        result = experiment_assign(
            key=experiment_key, user_id=user_id, anonymous_id=anonymous_id, source="recommendations"
        )
    except ExperimentError:
        return None, None
    if result.variant is None:
        return {"key": experiment_key, "variant": None, "in_experiment": False}, None
    summary = {"key": experiment_key, "variant": result.variant.key, "in_experiment": result.in_experiment}
    return summary, result.variant.payload.get("recommender")


def _chain(*, recommender_name: str | None, placement: PlacementRef | None) -> list[RecommenderRef]:
    names: list[str] = []
    if recommender_name:
        names.append(recommender_name)
    elif placement is not None:
        names.append(placement.recommender)
        names.extend(placement.fallbacks)
    names.append(settings.DEFAULT_RECOMMENDER)
    snapshot = servecache.snapshot_get()
    if recommender_name and recommender_name not in snapshot.recommenders:
        if recommender_name not in snapshot.names:
            raise ServingError(f"No recommender named {recommender_name!r}.", field="recommender", status=404)
        raise ServingError(
            f"Recommender {recommender_name!r} has no active model yet: train it first.",
            field="recommender",
            status=409,
        )
    chain, seen = [], set()
    for name in names:
        recommender = snapshot.recommenders.get(name)
        if recommender is not None and name not in seen:
            seen.add(name)
            chain.append(recommender)
    if not chain:
        raise ServingError("No recommender has an active model yet: train it first.", status=409)
    return chain


def _diversify(
    candidates: list[Candidate], *, k: int, diversity: float, items: dict[int, ItemRef]
) -> list[Candidate]:
    """MMR over item tags: trade relevance for variety by ``diversity`` (0..1)."""
    if diversity <= 0 or len(candidates) <= 1:
        return candidates[:k]
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for row, candidate in enumerate(candidates):
        for tag in items[candidate.item_id].tag_vector:
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


def _reason_text(reason: dict, items: dict[int, ItemRef], tag_names: dict[str, str]) -> str:
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


def results_build(
    candidates: list[Candidate], *, k: int, placement: PlacementRef | None = None
) -> list[Recommendation]:
    """Turn candidates into results: active items only, placement filters, reasons as text."""
    wanted = {c.item_id for c in candidates}
    wanted.update(c.reason["item"] for c in candidates if isinstance(c.reason.get("item"), int))
    items = servecache.items_get(wanted)
    candidates = [c for c in candidates if c.item_id in items and items[c.item_id].active]
    if placement is not None:
        kinds = set(placement.kinds)
        candidates = [
            c
            for c in candidates
            if (not kinds or items[c.item_id].kind in kinds)
            and (not placement.include_tags or items[c.item_id].under(placement.include_tags))
            and not (placement.exclude_tags and items[c.item_id].under(placement.exclude_tags))
        ]
    if placement is not None and placement.diversity > 0:
        candidates = _diversify(candidates[: k * 4], k=k, diversity=placement.diversity, items=items)
    candidates = candidates[:k]
    tag_paths = {t for c in candidates for t in c.reason.get("tags", [])}
    tag_names = servecache.tag_names_get(tag_paths) if tag_paths else {}
    ids = os.urandom(16 * len(candidates)).hex()  # one random 32-hex id per result
    return [
        Recommendation(
            item=items[c.item_id],
            score=round(float(c.score), 6),
            rank=rank,
            reason=_reason_text(c.reason, items, tag_names),
            reason_data=c.reason,
            recommendation_id=ids[32 * (rank - 1) : 32 * rank],
            recommender=c.recommender,
        )
        for rank, c in enumerate(candidates, start=1)
    ]


def _apply_segment_override(placement: PlacementRef, state: ProfileState) -> PlacementRef:
    """A placement's ``segment_overrides`` ({"segment-key": "recommender-name"}) serve members
    of a segment with another recommender; the default one becomes its first fallback."""
    if not placement.segment_overrides or state.profile_id is None:
        return placement
    from .models import SegmentMembership

    current = set(
        SegmentMembership.objects.filter(
            profile_id=state.profile_id,
            exited_at__isnull=True,
            segment__key__in=list(placement.segment_overrides),
        ).values_list("segment__key", flat=True)
    )
    for segment_key, name in placement.segment_overrides.items():
        if segment_key in current:
            if name in servecache.snapshot_get().names and name != placement.recommender:
                return _with_recommender(placement, name)
            return placement
    return placement


def _with_recommender(placement: PlacementRef, name: str) -> PlacementRef:
    """The placement served by ``name`` first, its own recommender becoming the first fallback."""
    return replace(placement, recommender=name, fallbacks=(placement.recommender, *placement.fallbacks))


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
        placement = servecache.snapshot_get().placements.get(placement_key)
        if placement is None:
            raise ServingError(f"No placement with key {placement_key!r}.", field="placement", status=404)
        exclude_consumed = exclude_consumed and placement.exclude_consumed
    k = k if k is not None else (placement.k if placement is not None else 10)
    if not 1 <= k <= 100:
        raise ServingError("k must be between 1 and 100.", field="k")
    experiment = None
    if placement is not None and recommender_name is None:
        running = servecache.snapshot_get().experiments.get(placement.key)
        if running is not None:  # an interleaving test serves both recommenders in one list
            from experiments.modes import interleaving_serve

            interleaved = interleaving_serve(
                experiment_key=running, placement_key=placement.key, user_id=user_id,
                anonymous_id=anonymous_id, k=k, exclude_consumed=exclude_consumed,
            )  # fmt: skip
            if interleaved is not None:
                return interleaved
        experiment, variant_recommender = placement_experiment(
            placement=placement, user_id=user_id, anonymous_id=anonymous_id
        )
        if variant_recommender and variant_recommender in servecache.snapshot_get().names:
            placement = _with_recommender(placement, variant_recommender)
    if state is None:
        state = profile_state_load(user_id=user_id, anonymous_id=anonymous_id)
    if placement is not None and recommender_name is None and experiment is None:
        placement = _apply_segment_override(placement, state)
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
        recommender=chain[0], placement=placement, state=state, results=results, experiment=experiment
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
    state = profile_state_load(user_id=user_id, anonymous_id=anonymous_id)
    rows: list[Row] = []
    shown: set[int] = set()

    def add(key: str, title: str, results: list[Recommendation]) -> None:
        fresh = [r for r in results if r.item.pk not in shown][:k]
        if fresh:
            shown.update(r.item.pk for r in fresh)
            rows.append(Row(key=key, title=title, results=fresh))

    home = "home" in servecache.snapshot_get().placements
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
