"""What serving keeps in memory so that a warm profile costs one database query.

A request for recommendations needs the serving configuration (recommenders and their
active runs, placements, experiments running on placements), a few columns of each item it
returns, the profile's precomputed list and the profile's current interactions. Only the
last one must be read fresh every time: consumption after training is excluded at once.
The rest lives here:

- the configuration snapshot, per process, reloaded when it is older than
  ``SERVING_CACHE_SECONDS``; a changed catalog fingerprint (items, item tags, tags) at that
  moment also drops the item table. Edits, activations and experiment starts therefore
  reach every process, whichever path made them, within that many seconds;
- the item table (the columns results show, the tags filters and diversity use), per
  process, filled on demand and dropped with the catalog fingerprint or after
  ``ITEMS_MAX_AGE`` seconds (bulk updates that bypass ``updated_at`` are caught then);
- precomputed lists, per process (an LRU of ``SERVING_LISTS_PER_PROCESS``) in front of the
  Django cache (Redis when configured) in front of the database. A run's lists never
  change once stored, so entries are keyed by run and profile and never go stale.

API tokens (with their users and permissions) are remembered for ``SERVING_CACHE_SECONDS``
too, for every API endpoint, by ``recsite.tokens``; ``serving_cache_clear`` forgets them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from datetime import date

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Max, Sum
from django.urls import reverse

from catalog.models import Item, ItemTag, Tag
from recsite.tokens import token_cache_clear

from .models import Placement, PrecomputedList, Recommender

# The item table is rebuilt at least this often, whatever the fingerprint says.
ITEMS_MAX_AGE = 60.0
# A process keeps at most this many items; past it the table starts again empty.
ITEMS_MAX = 200_000

_LOCK = threading.Lock()


# --- Configuration snapshot ------------------------------------------------------------


@dataclass(frozen=True)
class RecommenderRef:
    """What serving needs of a recommender with an active model."""

    pk: int
    name: str
    algorithm: str
    active_run_id: int
    version: int
    # The run's id and creation time: ids repeat after a database restore, this does not.
    run_key: str = ""


@dataclass(frozen=True)
class PlacementRef:
    """A placement as serving reads it; overrides make modified copies (``replace``)."""

    pk: int
    key: str
    name: str
    recommender: str
    fallbacks: tuple[str, ...]
    k: int
    include_tags: tuple[str, ...]
    exclude_tags: tuple[str, ...]
    kinds: tuple[str, ...]
    exclude_consumed: bool
    diversity: float
    segment_overrides: dict[str, str]


@dataclass
class Snapshot:
    loaded_at: float
    recommenders: dict[str, RecommenderRef]  # trained recommenders by name
    names: set[str]  # every recommender name, trained or not
    placements: dict[str, PlacementRef]
    experiments: dict[str, str]  # placement key -> key of the running experiment deciding it
    catalog: tuple


_snapshot: Snapshot | None = None
_PLACEMENT_FIELDS = tuple(f.name for f in fields(PlacementRef))
_PLACEMENT_COLUMNS = tuple("recommender__name" if f == "recommender" else f for f in _PLACEMENT_FIELDS)


def _catalog_fingerprint() -> tuple:
    items = Item.objects.aggregate(n=Count("pk"), at=Max("updated_at"))
    item_tags = ItemTag.objects.aggregate(n=Count("pk"), last=Max("pk"))
    tags = Tag.objects.aggregate(n=Count("pk"), versions=Sum("version"))
    return (*items.values(), *item_tags.values(), *tags.values())


def _snapshot_load() -> Snapshot:
    from experiments.models import Experiment, Variant

    recommenders, names = {}, set()
    for pk, name, algorithm, run_id, version, created in Recommender.objects.values_list(
        "pk", "name", "algorithm", "active_run_id", "active_run__version", "active_run__created_at"
    ):
        names.add(name)
        if run_id is not None:
            run_key = f"{run_id}.{created.timestamp():.6f}"
            recommenders[name] = RecommenderRef(pk, name, algorithm, run_id, version, run_key)
    placements = {}
    for row in Placement.objects.values_list(*_PLACEMENT_COLUMNS):
        values = dict(zip(_PLACEMENT_FIELDS, row, strict=True))
        for name in ("fallbacks", "include_tags", "exclude_tags", "kinds"):
            values[name] = tuple(values[name] or ())
        values["segment_overrides"] = dict(values["segment_overrides"] or {})
        placements[values["key"]] = PlacementRef(**values)
    # The experiment with the lowest id wins a placement, as placement_experiment always did.
    experiments: dict[str, str] = {}
    for payload, key in (
        Variant.objects.filter(experiment__status=Experiment.Status.RUNNING)
        .order_by("experiment_id", "position", "pk")
        .values_list("payload", "experiment__key")
    ):
        placement = payload.get("placement") if isinstance(payload, dict) else None
        if isinstance(placement, str):
            experiments.setdefault(placement, key)
    return Snapshot(
        loaded_at=time.monotonic(),
        recommenders=recommenders,
        names=names,
        placements=placements,
        experiments=experiments,
        catalog=_catalog_fingerprint(),
    )


def snapshot_get() -> Snapshot:
    """The serving configuration, at most ``SERVING_CACHE_SECONDS`` old."""
    global _snapshot, _items, _tag_names
    current = _snapshot
    if current is not None and time.monotonic() - current.loaded_at < settings.SERVING_CACHE_SECONDS:
        return current
    fresh = _snapshot_load()
    with _LOCK:
        if current is None or fresh.catalog != current.catalog:
            # New tables rather than clear(): a request holding the old one stays consistent.
            _items, _tag_names = {}, {}
        _snapshot = fresh
    return fresh


# --- Items -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemRef:
    """The columns of an item that results show, plus its tags. Quacks like ``Item`` for
    templates (``year``, ``get_absolute_url``)."""

    pk: int
    external_id: str
    title: str
    kind: str
    active: bool
    release_date: date | None
    image_url: str
    tags: tuple[str, ...] = ()  # the item's own tag paths ("genre/anime/mecha")
    tag_vector: tuple[str, ...] = field(
        default=(), repr=False
    )  # those paths and their ancestors below the facet

    @property
    def id(self) -> int:
        return self.pk

    @property
    def year(self) -> int | None:
        return self.release_date.year if self.release_date else None

    def get_absolute_url(self) -> str:
        return reverse("catalog:item_detail", args=[self.pk])

    def under(self, paths) -> bool:
        """Whether the item carries a tag at or below one of ``paths``."""
        return any(tag == path or tag.startswith(path + "/") for tag in self.tags for path in paths)


_items: dict[int, ItemRef] = {}
_items_loaded_at = 0.0
_tag_names: dict[str, str] = {}


def items_get(item_ids) -> dict[int, ItemRef]:
    """The items among ``item_ids`` that exist, from the process's item table (two queries
    for those it does not hold yet)."""
    global _items, _tag_names, _items_loaded_at
    snapshot_get()  # drops the table when the catalog fingerprint moved
    now = time.monotonic()
    if now - _items_loaded_at > ITEMS_MAX_AGE or len(_items) > ITEMS_MAX:
        with _LOCK:
            _items, _tag_names = {}, {}
            _items_loaded_at = now
    table = _items
    missing = [pk for pk in item_ids if pk not in table]
    if missing:
        tags: dict[int, list[str]] = {}
        for item_id, path in ItemTag.objects.filter(item_id__in=missing).values_list(
            "item_id", "tag__slug_path"
        ):
            tags.setdefault(item_id, []).append(path)
        for pk, external_id, title, kind, active, released, image in Item.objects.filter(
            pk__in=missing
        ).values_list("pk", "external_id", "title", "kind", "active", "release_date", "image_url"):
            own = sorted(tags.get(pk, ()))
            vector: list[str] = []
            for path in own:
                parts = path.split("/")
                for depth in range(2, len(parts) + 1):
                    prefix = "/".join(parts[:depth])
                    if prefix not in vector:
                        vector.append(prefix)
            table[pk] = ItemRef(
                pk, external_id, title, kind, active, released, image, tuple(own), tuple(vector)
            )
    return {pk: table[pk] for pk in item_ids if pk in table}


def tag_names_get(paths) -> dict[str, str]:
    names = _tag_names
    missing = [p for p in paths if p not in names]
    if missing:
        found = dict(Tag.objects.filter(slug_path__in=missing).values_list("slug_path", "name"))
        for path in missing:
            names[path] = found.get(path, path.rsplit("/", 1)[-1])
    return {p: names[p] for p in paths}


# --- Precomputed lists ---------------------------------------------------------------------

_lists: OrderedDict[tuple[str, int], tuple | None] = OrderedDict()
_MISSING = "none"  # cached "this profile has no list in this run"


def precomputed_get(*, run: RecommenderRef, profile_id: int) -> tuple[list, list, list] | None:
    """``(item_ids, scores, reasons)`` of a profile's list from the active run, or None. Lists
    are written with the run and never change, so every layer may keep them as long as it
    likes."""
    key = (run.run_key, profile_id)
    with _LOCK:
        if key in _lists:
            _lists.move_to_end(key)
            return _lists[key]
    cache_key = f"serving:list:{run.run_key}:{profile_id}"
    stored = cache.get(cache_key)
    if stored is None:
        row = (
            PrecomputedList.objects.filter(run_id=run.active_run_id, profile_id=profile_id)
            .values_list("item_ids", "scores", "reasons")
            .first()
        )
        stored = tuple(row) if row is not None else _MISSING
        cache.set(cache_key, stored, settings.SERVING_LIST_CACHE_SECONDS)
    value = None if stored == _MISSING else stored
    with _LOCK:
        _lists[key] = value
        while len(_lists) > settings.SERVING_LISTS_PER_PROCESS:
            _lists.popitem(last=False)
    return value


def serving_cache_clear() -> None:
    """Forget everything this process holds (tests; after restoring a backup)."""
    global _snapshot, _items, _tag_names, _items_loaded_at
    with _LOCK:
        _snapshot = None
        _items, _tag_names = {}, {}
        _items_loaded_at = 0.0
        _lists.clear()
    token_cache_clear()
