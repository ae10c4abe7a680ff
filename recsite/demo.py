"""Demo data: a believable streaming catalog, its audience and 90 days of behaviour.

Two steps, so the interesting part can be tested without a database:

- ``demo_generate`` is pure (numpy, no database) and deterministic for a seed. It builds a
  taxonomy, a catalog whose descriptions mention their tags' words (so text models can
  learn tags), people with latent tastes (a mixture over taste clusters defined by genre
  and mood tags), and sessions of Segment-style events in which the chance of picking an
  item is popularity (Zipf-like) times taste affinity, so collaborative filtering has
  real signal to find.
- ``demo_load`` writes the result with a few bulk inserts inside one transaction.

``demo_seed`` ties them together and refuses to load twice; it also creates the demo
recommenders and placements, and the demo experiments (``experiments.demo``). The taxonomy,
taste clusters and word lists the generator draws from are in ``recsite.demo_words``.
"""

from __future__ import annotations

import gc
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import IO, NamedTuple

import numpy as np
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from catalog.models import Item, ItemTag, Tag
from experiments.demo import demo_experiments_create
from personalization.interactions import interactions_rebuild
from personalization.models import AnonymousId, Event, Profile, Source
from recsite.demo_words import (
    ADJECTIVES,
    COUNTRIES,
    FIRST_NAMES,
    FORMAT_NOUNS,
    INCITING,
    LAST_NAMES,
    MERCH,
    NOUNS,
    OCCUPATIONS,
    PLACES,
    SEARCH_TYPOS,
    SETTING_PHRASES,
    TASTES,
    TAXONOMY,
    Taste,
)

SOURCE_NAME = "demo"
WINDOW_DAYS = 90
BATCH_SIZE = 5000
# Every session starts at least this long before ``now`` and lasts less, so no event is
# ever in the future.
_SESSION_MARGIN_S = 4 * 3600

T = Event.Type


class DemoDataError(Exception):
    """The demo data cannot be loaded (for example, the catalog is not empty)."""


# --- Generated rows ------------------------------------------------------------------------
# Plain named tuples: cheap to build by the hundred thousand, immutable, comparable in tests.


class DemoTag(NamedTuple):
    slug_path: str
    name: str
    description: str

    @property
    def parent_path(self) -> str | None:
        return self.slug_path.rpartition("/")[0] or None


class DemoItem(NamedTuple):
    external_id: str
    title: str
    description: str
    kind: str
    release_date: date
    metadata: dict
    tag_paths: tuple[str, ...]
    taste: int  # the latent taste cluster the item was written for (not stored)


class DemoProfile(NamedTuple):
    external_id: str | None
    anonymous_id: str | None
    traits: dict
    first_seen: datetime | None
    last_seen: datetime | None
    identified_at: datetime | None  # set for profiles that started anonymous
    taste: int  # the dominant latent taste cluster (not stored)


class DemoEvent(NamedTuple):
    message_id: str
    name: str
    type: str
    profile: int  # index into DemoData.profiles
    item: int | None  # index into DemoData.items
    value: float | None
    properties: dict
    timestamp: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DemoData:
    seed: int
    now: datetime
    tags: tuple[DemoTag, ...]
    items: tuple[DemoItem, ...]
    profiles: tuple[DemoProfile, ...]
    events: tuple[DemoEvent, ...]
    taste_names: tuple[str, ...]


# --- Taxonomy --------------------------------------------------------------------------------
# The tree itself, the taste clusters and the word lists are data: see ``recsite.demo_words``.


class _Taxonomy:
    """The tag tree flattened: rows in parent-first order plus lookups by name."""

    def __init__(self, spec: tuple) -> None:
        self.tags: list[DemoTag] = []
        # facet -> leaf or group name -> slug path; names are unique within a facet.
        self.by_name: dict[str, dict[str, str]] = {}
        self.leaves: dict[str, list[str]] = {}  # group or facet path -> leaf paths below it
        self.name_of: dict[str, str] = {}
        for facet, description, groups in spec:
            facet_path = slugify(facet)
            self._add(facet_path, facet, description)
            names = self.by_name[facet] = {}
            for group, group_description, leaves in groups:
                group_path = f"{facet_path}/{slugify(group)}"
                self._add(group_path, group, group_description)
                names[group] = group_path
                for leaf in leaves:
                    leaf_path = f"{group_path}/{slugify(leaf)}"
                    self._add(leaf_path, leaf, "")
                    if leaf in names:
                        raise ValueError(f"Tag name {leaf!r} is used twice in {facet}")
                    names[leaf] = leaf_path
                    self.leaves.setdefault(group_path, []).append(leaf_path)
                    self.leaves.setdefault(facet_path, []).append(leaf_path)

    def _add(self, path: str, name: str, description: str) -> None:
        self.tags.append(DemoTag(path, name, description))
        self.name_of[path] = name

    def path(self, facet: str, name: str) -> str:
        return self.by_name[facet][name]

    def group_of(self, path: str) -> str:
        return path.rpartition("/")[0]


# Segment-style names for each canonical type, as a tracking plan would send them.
VIDEO_EVENT_NAMES = {
    T.SEARCH: "Content Searched", T.VIEW: "Content Viewed", T.ADD_TO_LIST: "Added to Watchlist",
    T.PLAY: "Video Playback Started", T.PAUSE: "Video Playback Paused",
    T.COMPLETE: "Video Playback Completed", T.ABANDON: "Video Playback Exited", T.RATE: "Content Rated",
}  # fmt: skip
PRODUCT_EVENT_NAMES = {
    T.VIEW: "Product Viewed", T.ADD_TO_LIST: "Product Added to Wishlist", T.ADD_TO_CART: "Product Added",
    T.PURCHASE: "Order Completed",
}  # fmt: skip

# Weekly and daily rhythm: busier on Friday to Sunday, in the evening, and on weekend afternoons.
_DOW_WEIGHTS = np.array([0.92, 0.88, 0.9, 0.95, 1.08, 1.3, 1.25])
_HOURS_WEEKDAY = np.array([0.35, 0.2, 0.12, 0.08, 0.06, 0.08, 0.18, 0.35, 0.45, 0.45, 0.45, 0.5,
                           0.65, 0.6, 0.55, 0.6, 0.75, 0.95, 1.25, 1.6, 1.85, 1.8, 1.4, 0.8])  # fmt: skip
_HOURS_WEEKEND = np.array([0.5, 0.3, 0.18, 0.1, 0.07, 0.07, 0.12, 0.25, 0.5, 0.75, 0.9, 1.0,
                           1.1, 1.1, 1.05, 1.05, 1.1, 1.2, 1.4, 1.65, 1.8, 1.7, 1.35, 0.9])  # fmt: skip


# --- Generation ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Catalog:
    """The catalog plus the arrays that drive behaviour (not stored)."""

    items: list[DemoItem]
    n_content: int
    popularity: np.ndarray  # (items,), Zipf-like
    affinity: np.ndarray  # (items, tastes), 0..1, 1 for the taste the item fits best
    runtime_s: np.ndarray  # (items,), seconds of a film or an episode
    price: np.ndarray  # (items,), 0 for content
    release_ts: np.ndarray  # (items,), epoch seconds


def demo_generate(*, seed: int, items: int, profiles: int, events: int, now: datetime) -> DemoData:
    """Generate the demo data set in memory; the same arguments give identical data."""
    if items < 1 or profiles < 1 or events < 0:
        raise ValueError("items and profiles must be positive and events non-negative")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    # Independent streams, so that asking for more events does not change the catalog.
    rng_catalog, rng_people, rng_events = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    taxonomy = _Taxonomy(TAXONOMY)
    catalog = _catalog_generate(rng_catalog, taxonomy=taxonomy, n=items, now=now)
    theta, activity, window, anonymous_only, traits = _people_generate(rng_people, n=profiles)
    profile_rows, event_rows = _behaviour_generate(
        rng_events,
        catalog=catalog,
        taxonomy=taxonomy,
        theta=theta,
        activity=activity,
        window=window,
        anonymous_only=anonymous_only,
        traits=traits,
        n_events=events,
        now=now,
    )
    return DemoData(
        seed=seed,
        now=now,
        tags=tuple(taxonomy.tags),
        items=tuple(catalog.items),
        profiles=tuple(profile_rows),
        events=tuple(event_rows),
        taste_names=tuple(t.name for t in TASTES),
    )


def _pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float] | None = None):
    if weights is None:
        return options[int(rng.integers(len(options)))]
    p = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _catalog_generate(rng: np.random.Generator, *, taxonomy: _Taxonomy, n: int, now: datetime) -> _Catalog:
    n_products = round(n * 0.08) if n >= 25 else 0
    n_content = n - n_products
    n_tastes = len(TASTES)
    shares = np.array([t.share for t in TASTES])
    item_taste = rng.choice(n_tastes, size=n_content, p=shares / shares.sum())
    # Zipf-like popularity over a random ranking, so external ids say nothing about it.
    popularity = 1.0 / (rng.permutation(n_content) + 1.0) ** 0.95
    today = now.date()
    # A few recent releases inside the window: they get a launch spike in the events.
    n_new = max(1, round(n_content * 0.03)) if n_content >= 30 else 0
    new_items = set(rng.choice(n_content, size=n_new, replace=False).tolist()) if n_new else set()

    cutoff = today - timedelta(days=WINDOW_DAYS + 1)
    mood_leaves = taxonomy.leaves["mood"]
    theme_leaves = taxonomy.leaves["theme"]
    setting_leaves = taxonomy.leaves["setting"]
    titles: set[str] = set()
    rows: list[DemoItem] = []
    runtime = np.zeros(n)
    price = np.zeros(n)
    release_ts = np.zeros(n)

    for i in range(n_content):
        taste = TASTES[item_taste[i]]
        genre = _genre_pick(rng, taxonomy, taste)
        genres = [genre]
        if rng.random() < 0.3:  # cross-genre titles blur the clusters, as real catalogs do
            other = _genre_pick(rng, taxonomy, TASTES[int(rng.integers(n_tastes))])
            if other != genre:
                genres.append(other)
        n_moods = 1 + int(rng.random() < 0.5)
        moods = [taxonomy.path("Mood", str(m)) for m in rng.choice(taste.moods, size=n_moods, replace=False)]
        if rng.random() < 0.15:
            moods[-1] = _pick(rng, mood_leaves)
        themes = list(dict.fromkeys(_pick(rng, theme_leaves) for _ in range(1 + (rng.random() < 0.6))))
        audience = taxonomy.path("Audience", _pick(rng, taste.audiences))
        places = [
            taxonomy.path("Setting", _pick(rng, taste.settings))
            if rng.random() < 0.7
            else _pick(rng, setting_leaves)
        ]
        if rng.random() < 0.3:
            places.append(_pick(rng, setting_leaves))
        places = list(dict.fromkeys(places))
        kind = "series" if rng.random() < taste.series_share else "movie"
        genre_name = taxonomy.name_of[genre]
        group_name = taxonomy.name_of[taxonomy.group_of(genre)]
        fmt = _format_pick(rng, kind=kind, genre_name=genre_name, group_name=group_name)
        tag_paths = tuple(dict.fromkeys([*genres, *moods, *themes, audience, *places,
                                         taxonomy.path("Format", fmt)]))  # fmt: skip

        if i in new_items:
            released = today - timedelta(days=int(rng.integers(10, 80)))
        else:
            age = min(int(rng.exponential(taste.year_scale)), today.year - 1950)
            released = date(today.year - age, 1, 1) + timedelta(days=int(rng.integers(365)))
            while released > cutoff:  # the back catalog predates the window
                released -= timedelta(days=365)
        if kind == "movie":
            minutes = int(rng.integers(80, 150)) if fmt != "Short film" else int(rng.integers(12, 40))
            metadata = {"runtime_minutes": minutes}
        else:
            minutes = int(rng.integers(22, 60))
            metadata = {"episode_minutes": minutes, "seasons": int(rng.geometric(0.45))}
        metadata["maturity_rating"] = _maturity(taxonomy.name_of[audience])
        title = _title_generate(rng, taste=taste, taken=titles, year=released.year)
        description = _description_generate(
            rng, taxonomy=taxonomy, kind=kind, fmt=fmt, genres=genres, moods=moods, themes=themes,
            settings=places, audience=audience,
        )  # fmt: skip
        rows.append(
            DemoItem(
                f"m{i + 1:05d}", title, description, kind, released, metadata, tag_paths, int(item_taste[i])
            )
        )
        runtime[i] = minutes * 60
        release_ts[i] = datetime.combine(released, dtime.min, UTC).timestamp()
    if new_items:
        popularity[list(new_items)] *= 4.0  # launches are promoted

    affinity = np.zeros((n, n_tastes))
    for i, row in enumerate(rows):
        affinity[i] = _affinity(taxonomy, row.tag_paths)

    # Merchandise for popular titles; it inherits the title's genres, moods and audience.
    related = rng.choice(n_content, size=n_products, p=popularity**0.7 / (popularity**0.7).sum())
    product_pop = np.zeros(n_products)
    for j, source_index in enumerate(related):
        source = rows[source_index]
        category = _pick(rng, tuple(MERCH))
        noun, base_price = _pick(rng, MERCH[category])
        title = f"{source.title} {' '.join(w[:1].upper() + w[1:] for w in noun.split())}"
        if title in titles:
            title = f"{title} (edition {j + 1})"
        titles.add(title)
        unit_price = round(round(base_price * float(rng.uniform(0.85, 1.25))) - 0.01, 2)
        inherited = tuple(p for p in source.tag_paths if p.split("/", 1)[0] in ("genre", "mood", "audience"))
        tag_paths = (taxonomy.path("Format", category), *inherited)
        genre_words = " and ".join(taxonomy.name_of[p].lower() for p in inherited if p.startswith("genre/"))
        mood_words = " and ".join(taxonomy.name_of[p].lower() for p in inherited if p.startswith("mood/"))
        description = (
            f"Official {noun.lower()} from {source.title}. "
            f"A gift for fans of {mood_words} {genre_words} titles. Part of our {category.lower()} range."
        )
        released = min(source.release_date + timedelta(days=int(rng.integers(0, 200))), cutoff)
        if source.release_date > cutoff:
            released = source.release_date  # merchandise launches with the title
        index = n_content + j
        rows.append(
            DemoItem(
                f"p{j + 1:05d}", title, description, "product", released,
                {"price": unit_price, "currency": "USD", "related_item": source.external_id,
                 "category": category},
                tag_paths, source.taste,
            )
        )  # fmt: skip
        affinity[index] = affinity[source_index]
        price[index] = unit_price
        release_ts[index] = datetime.combine(released, dtime.min, UTC).timestamp()
        product_pop[j] = popularity[source_index] * rng.uniform(0.2, 1.0)

    return _Catalog(
        items=rows,
        n_content=n_content,
        popularity=np.concatenate([popularity, product_pop]),
        affinity=affinity,
        runtime_s=runtime,
        price=price,
        release_ts=release_ts,
    )


def _genre_pick(rng: np.random.Generator, taxonomy: _Taxonomy, taste: Taste) -> str:
    names = tuple(taste.genres)
    path = taxonomy.path("Genre", _pick(rng, names, [taste.genres[n] for n in names]))
    if path.count("/") == 1:  # a broad genre: pick one of its sub-genres
        return _pick(rng, taxonomy.leaves[path])
    return path


def _format_pick(rng: np.random.Generator, *, kind: str, genre_name: str, group_name: str) -> str:
    if genre_name == "Stand-up":
        return "Stand-up special"
    if kind == "movie":
        if group_name == "Documentary":
            return "Documentary feature"
        if group_name in ("Animation", "Anime", "Kids and family"):
            return "Animated feature"
        return "Short film" if rng.random() < 0.06 else "Feature film"
    if group_name == "Documentary":
        return "Docuseries"
    if group_name == "Anime":
        return "Anime series"
    if group_name == "Reality":
        return "Reality series"
    return _pick(rng, ("Ongoing series", "Limited series", "Anthology series"), (0.6, 0.3, 0.1))


def _maturity(audience: str) -> str:
    if audience in ("Preschoolers", "Ages 6-9", "All ages", "Family movie night"):
        return "G"
    if audience in ("Ages 10-12", "Young teens"):
        return "PG"
    if audience == "Mature":
        return "R"
    return "PG-13"


def _affinity(taxonomy: _Taxonomy, tag_paths: Sequence[str]) -> np.ndarray:
    """How well an item fits each taste: its genres count fully, its moods half."""
    scores = np.full(len(TASTES), 0.05)
    moods = [taxonomy.name_of[p] for p in tag_paths if p.startswith("mood/")]
    genres = [p for p in tag_paths if p.startswith("genre/")]
    for t, taste in enumerate(TASTES):
        for path in genres:
            leaf, group = taxonomy.name_of[path], taxonomy.name_of[taxonomy.group_of(path)]
            scores[t] += taste.genres.get(leaf, taste.genres.get(group, 0.0))
        if moods:
            scores[t] += 0.5 * sum(m in taste.moods for m in moods) / len(moods)
    return scores / scores.max()


def _title_generate(rng: np.random.Generator, *, taste: Taste, taken: set[str], year: int) -> str:
    for _ in range(20):
        pattern = int(rng.integers(7))
        word = _pick(rng, taste.words)
        if pattern == 0:
            title = f"The {_pick(rng, ADJECTIVES)} {word}"
        elif pattern == 1:
            title = f"{word} of {_pick(rng, PLACES)}"
        elif pattern == 2:
            title = f"{_pick(rng, FIRST_NAMES)}'s {word}"
        elif pattern == 3:
            title = f"{_pick(rng, ADJECTIVES)} {_pick(rng, NOUNS)}"
        elif pattern == 4:
            title = f"The {word} {_pick(rng, NOUNS)}"
        elif pattern == 5:
            title = f"{_pick(rng, PLACES)}: {_pick(rng, ADJECTIVES)} {word}"
        else:
            title = f"{word} {_pick(rng, ('Rising', 'Protocol', 'Falls', 'Returns', 'Forever', 'Zero'))}"
        if title not in taken:
            break
    else:
        title = f"{title} ({year})"
        suffix = 2
        while title in taken:
            title = f"{title.rsplit(' (', 1)[0]} ({year}, part {suffix})"
            suffix += 1
    taken.add(title)
    return title


def _description_generate(
    rng: np.random.Generator,
    *,
    taxonomy: _Taxonomy,
    kind: str,
    fmt: str,
    genres: list[str],
    moods: list[str],
    themes: list[str],
    settings: list[str],
    audience: str,
) -> str:
    """Sentences built around the item's tag names, so text models can learn the tags."""
    name = taxonomy.name_of
    genre = name[genres[0]].lower()
    mood = " and ".join(name[m].lower() for m in moods)
    where = " and ".join(SETTING_PHRASES.get(name[s], name[s]) for s in settings)
    noun = FORMAT_NOUNS.get(fmt, "film" if kind == "movie" else "series")
    occupation = _pick(rng, OCCUPATIONS)
    article = "an" if occupation[0] in "aeiou" else "a"
    sentences = [
        f"A {mood} {genre} {noun} set in {where}."
        if rng.random() < 0.85
        else f"A {genre} {noun} set in {where}.",
        f"{_pick(rng, FIRST_NAMES)}, {article} {occupation}, {_pick(rng, INCITING)}.",
    ]
    theme_words = [name[t].lower() for t in themes]
    if len(theme_words) == 1:
        sentences.append(f"A story of {theme_words[0]}.")
    else:
        sentences.append(
            _pick(rng, (f"A story of {theme_words[0]} and {theme_words[1]}.",
                        f"It explores {theme_words[0]}, {theme_words[1]} and what they cost."))
        )  # fmt: skip
    if len(genres) > 1:
        sentences.append(f"Part {name[genres[1]].lower()}, part {genre}.")
    audience_name = name[audience]
    if audience_name.startswith("Ages") or audience_name in (
        "Preschoolers",
        "All ages",
        "Family movie night",
    ):
        sentences.append(f"Made for {audience_name.lower()}.")
    return " ".join(sentences)


def _people_generate(
    rng: np.random.Generator, *, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Latent tastes, heavy-tailed activity, active windows and traits for ``n`` people."""
    n_tastes = len(TASTES)
    shares = np.array([t.share for t in TASTES])
    dominant = rng.choice(n_tastes, size=n, p=shares / shares.sum())
    # Mostly one taste, with a spread over others; a Dirichlet keeps the spread lumpy.
    theta = 0.3 * rng.dirichlet(np.full(n_tastes, 0.3), size=n)
    theta[np.arange(n), dominant] += 0.7
    activity = rng.lognormal(0.0, 1.0, size=n)
    # Active windows in days [first, last]: most people span the window, some join or leave.
    window = np.zeros((n, 2), dtype=int)
    window[:, 1] = WINDOW_DAYS - 1
    cohort = rng.random(n)
    joined = cohort < 0.2
    window[joined, 0] = rng.integers(0, WINDOW_DAYS - 3, size=joined.sum())
    left = (cohort >= 0.2) & (cohort < 0.3)
    window[left, 1] = rng.integers(3, WINDOW_DAYS, size=left.sum())
    # Anonymous-only visitors are light users.
    light = np.argsort(activity)[: n // 2]
    anonymous_only = np.zeros(n, dtype=bool)
    anonymous_only[rng.choice(light, size=round(0.05 * n), replace=False)] = True
    activity[anonymous_only] *= 0.3

    countries, weights = zip(*COUNTRIES, strict=True)
    rank = np.argsort(np.argsort(activity)) / max(n - 1, 1)
    traits: list[dict] = []
    for u in range(n):
        if anonymous_only[u]:
            traits.append({})
            continue
        first, last = _pick(rng, FIRST_NAMES), _pick(rng, LAST_NAMES)
        # Heavier users pay more often for the bigger plans.
        premium = 0.12 + 0.25 * rank[u]
        plan = _pick(rng, ("free", "standard", "premium"), (0.7 - premium, 0.3, premium))
        entry = {
            "name": f"{first} {last}",
            "email": f"{slugify(first)}.{slugify(last)}{u + 1}@example.com",
            "country": _pick(rng, countries, weights),
            "plan": plan,
        }
        if rng.random() < 0.4:  # zero-party data: the onboarding quiz
            taste = TASTES[dominant[u]]
            entry["favorite_genres"] = [g for g in taste.genres if g in _GENRE_GROUPS][:2]
        traits.append(entry)
    return theta, activity, window, anonymous_only, traits


_GENRE_GROUPS = {group for group, _, _ in TAXONOMY[0][2]}


def _session_times(
    rng: np.random.Generator, *, day_first: np.ndarray, day_last: np.ndarray, now: datetime
) -> np.ndarray:
    """Session start times (epoch seconds) inside each session's day range, with weekly rhythm."""
    start = datetime.combine(now.date() - timedelta(days=WINDOW_DAYS - 1), dtime.min, UTC)
    weekday = np.array([(start + timedelta(days=d)).weekday() for d in range(WINDOW_DAYS)])
    growth = 1.0 + 0.2 * np.arange(WINDOW_DAYS) / WINDOW_DAYS  # the service is growing
    day_weight = _DOW_WEIGHTS[weekday] * growth * rng.lognormal(0.0, 0.08, size=WINDOW_DAYS)
    cdf = np.concatenate([[0.0], np.cumsum(day_weight)])
    limit = now.timestamp() - _SESSION_MARGIN_S
    hour_cdf = {
        False: np.cumsum(_HOURS_WEEKDAY) / _HOURS_WEEKDAY.sum(),
        True: np.cumsum(_HOURS_WEEKEND) / _HOURS_WEEKEND.sum(),
    }
    # Inverse-CDF sampling restricted to each session's own range of days.
    u = rng.uniform(cdf[day_first], cdf[day_last + 1])
    day = np.clip(np.searchsorted(cdf, u, side="right") - 1, day_first, day_last)
    t = np.empty(len(day))
    todo = np.arange(len(day))
    for _ in range(50):  # redraw the few that land after the limit on the last day
        r = rng.random(len(todo))
        weekend = weekday[day[todo]] >= 5
        hour = np.where(
            weekend, np.searchsorted(hour_cdf[True], r), np.searchsorted(hour_cdf[False], r)
        ).clip(0, 23)
        t[todo] = start.timestamp() + day[todo] * 86400 + hour * 3600 + rng.uniform(0, 3600, len(todo))
        todo = todo[t[todo] > limit]
        if not len(todo):
            break
        day[todo] = np.maximum(day[todo] - (rng.random(len(todo)) < 0.5), 0)
    return np.minimum(t, limit)


# Order of events inside a session; only used to cut the last session short.
_ORDER = {"search": 0, "view": 1, "list": 2, "play": 3, "pause": 4, "end": 5, "rate": 6, "cart": 3, "buy": 4}


def _behaviour_generate(
    rng: np.random.Generator,
    *,
    catalog: _Catalog,
    taxonomy: _Taxonomy,
    theta: np.ndarray,
    activity: np.ndarray,
    window: np.ndarray,
    anonymous_only: np.ndarray,
    traits: list[dict],
    n_events: int,
    now: datetime,
) -> tuple[list[DemoProfile], list[DemoEvent]]:
    n_people, n_tastes = theta.shape
    n_content = catalog.n_content
    has_products = len(catalog.items) > n_content

    # Sessions: one per person first (so everyone has a history), then extra ones drawn by
    # activity x length of the active window. More are drawn than needed; the event stream is
    # cut at exactly ``n_events``, which drops a random tail of the extra sessions.
    days_active = window[:, 1] - window[:, 0] + 1
    extra = math.ceil(n_events / 1.5) + 50
    weights = activity * days_active
    counts = rng.multinomial(extra, weights / weights.sum())
    s_profile = np.concatenate(
        [rng.permutation(n_people), rng.permutation(np.repeat(np.arange(n_people), counts))]
    )
    n_sessions = len(s_profile)
    # Kinds of session: 0 watch a title, 1 browse the shop, 2 search and click nothing.
    s_kind = rng.choice(3, size=n_sessions, p=(0.9, 0.06, 0.04) if has_products else (0.95, 0.0, 0.05))

    # The taste behind each session, then an item with P(item | taste) ~ popularity x affinity^2.
    cum = np.cumsum(theta[s_profile], axis=1)
    s_taste = np.minimum((cum < rng.random(n_sessions)[:, None] * cum[:, -1:]).sum(axis=1), n_tastes - 1)
    s_item = np.full(n_sessions, -1)
    for kind, lo, hi in ((0, 0, n_content), (1, n_content, len(catalog.items))):
        if hi <= lo:
            continue
        weight = catalog.popularity[lo:hi, None] * catalog.affinity[lo:hi] ** 2
        p = weight / weight.sum(axis=0)
        for t in range(n_tastes):
            sel = np.flatnonzero((s_kind == kind) & (s_taste == t))
            if len(sel):
                s_item[sel] = lo + rng.choice(hi - lo, size=len(sel), p=p[:, t])
    with_item = s_item >= 0
    item0 = np.where(with_item, s_item, 0)
    affinity = np.where(with_item, (theta[s_profile] * catalog.affinity[item0]).sum(axis=1), 0.0)

    t0 = _session_times(rng, day_first=window[s_profile, 0], day_last=window[s_profile, 1], now=now)
    # Nobody watches a title before its release: move those sessions into the days after it,
    # which also gives new releases their launch spike. The time of day is kept.
    release = np.where(with_item, catalog.release_ts[item0], 0.0)
    early = t0 < release
    if early.any():
        limit = now.timestamp() - _SESSION_MARGIN_S
        days_left = np.maximum((limit - release[early]) // 86400, 1)
        offset = np.floor(rng.exponential(4.0, early.sum())) % days_left
        moved = release[early] + offset * 86400 + t0[early] % 86400
        t0[early] = np.where(moved > limit, moved - 86400, moved)

    rows = _session_events(rng, s_kind=s_kind, affinity=affinity, item=item0, catalog=catalog, t0=t0)
    # Cut the stream at exactly n_events, in session order (sessions are in random order).
    order = np.lexsort((rows["order"], rows["session"]))
    for key in rows:
        rows[key] = rows[key][order][:n_events]
    if len(rows["session"]) < n_events:
        raise ValueError(f"Generated only {len(rows['session'])} events, fewer than {n_events}")

    kept_sessions = np.unique(rows["session"])
    profile_of = s_profile[rows["session"]]

    # Identity: ~15% of known people started anonymous and signed up later (at the start of
    # one of their sessions); ~5% never identify. Events before sign-up carry the anonymous id.
    sessions_per_profile = np.bincount(s_profile[kept_sessions], minlength=n_people)
    candidates = np.flatnonzero(~anonymous_only & (sessions_per_profile >= 2))
    n_late = min(round(0.15 * n_people), len(candidates))
    late = rng.choice(candidates, size=n_late, replace=False) if n_late else np.array([], dtype=int)
    anonymous_until = np.full(n_people, -np.inf)
    anonymous_until[anonymous_only] = np.inf
    session_start = {}
    for s in kept_sessions[np.isin(s_profile[kept_sessions], late)]:
        session_start.setdefault(int(s_profile[s]), []).append(t0[s])
    for u in late:
        starts = sorted(session_start[int(u)])
        anonymous_until[u] = starts[int(rng.integers(1, len(starts)))]
    anonymous_event = t0[rows["session"]] < anonymous_until[profile_of]
    has_anonymous_id = anonymous_only.copy()
    has_anonymous_id[late] = True
    anon_ids = [
        f"anon-{uuid.UUID(bytes=rng.bytes(16), version=4)}" if has_anonymous_id[u] else None
        for u in range(n_people)
    ]

    # Timestamps to ms, then the stream in time order; message ids follow that order.
    ts_ms = np.round(rows["time"] * 1000).astype(np.int64)
    latency_ms = rng.integers(50, 2500, size=len(ts_ms))
    chrono = np.lexsort((rows["order"], rows["session"], ts_ms))
    queries = _search_queries(rng, rows=rows, chrono=chrono, catalog=catalog, taxonomy=taxonomy)

    events: list[DemoEvent] = []
    first_ms = np.full(n_people, np.iinfo(np.int64).max)
    last_ms = np.full(n_people, np.iinfo(np.int64).min)
    np.minimum.at(first_ms, profile_of, ts_ms)
    np.maximum.at(last_ms, profile_of, ts_ms)
    types, items, sessions = rows["type"], rows["item"], rows["session"]
    values, positions = rows["value"], rows["position"]
    for n, e in enumerate(chrono.tolist(), start=1):
        type_ = _TYPE_VALUES[types[e]]
        item = int(items[e])
        u = int(profile_of[e])
        product = item >= n_content
        props: dict = {"session_id": f"sess-{sessions[e]:07d}"}
        value = None
        if type_ == T.SEARCH:
            props["query"] = queries[e]
            item = -1
        elif product:
            price = float(catalog.price[item])
            props.update(price=price, currency="USD")
            if type_ == T.PURCHASE:
                props["order_id"] = f"ord-{n:07d}"
                value = price
        elif type_ in (T.PAUSE, T.COMPLETE, T.ABANDON):
            props["position"] = int(positions[e])
        elif type_ == T.RATE:
            value = float(values[e])
        if anonymous_event[e]:
            props["anonymous_id"] = anon_ids[u]
        names = PRODUCT_EVENT_NAMES if product and item >= 0 else VIDEO_EVENT_NAMES
        timestamp = datetime.fromtimestamp(ts_ms[e] / 1000, UTC)
        events.append(
            DemoEvent(
                f"demo-{n:07d}", names[type_], type_, u, item if item >= 0 else None, value, props, timestamp,
                timestamp + timedelta(milliseconds=int(latency_ms[n - 1])),
            )
        )  # fmt: skip

    profiles: list[DemoProfile] = []
    for u in range(n_people):
        seen = first_ms[u] <= last_ms[u]
        first_seen = datetime.fromtimestamp(first_ms[u] / 1000, UTC) if seen else None
        last_seen = datetime.fromtimestamp(last_ms[u] / 1000, UTC) if seen else None
        identified_at = None
        entry = dict(traits[u])
        if not anonymous_only[u]:
            if has_anonymous_id[u]:
                identified_at = datetime.fromtimestamp(round(float(anonymous_until[u]), 3), UTC)
                signup = identified_at.date()
            elif first_seen is not None and window[u, 0] > 0:
                signup = first_seen.date()  # joined during the window
            else:
                signup = (first_seen or now).date() - timedelta(days=int(rng.integers(1, 1000)))
            entry["signup_date"] = signup.isoformat()
        profiles.append(
            DemoProfile(
                None if anonymous_only[u] else f"u{u + 1:05d}", anon_ids[u], entry, first_seen, last_seen,
                identified_at, int(np.argmax(theta[u])),
            )
        )  # fmt: skip
    return profiles, events


_TYPE_CODES = (T.SEARCH, T.VIEW, T.ADD_TO_LIST, T.PLAY, T.PAUSE, T.COMPLETE, T.ABANDON, T.RATE,
               T.ADD_TO_CART, T.PURCHASE)  # fmt: skip
_CODE = {t: code for code, t in enumerate(_TYPE_CODES)}
_TYPE_VALUES = tuple(t.value for t in _TYPE_CODES)  # plain strings in the generated rows


def _session_events(
    rng: np.random.Generator,
    *,
    s_kind: np.ndarray,
    affinity: np.ndarray,
    item: np.ndarray,
    catalog: _Catalog,
    t0: np.ndarray,
) -> dict[str, np.ndarray]:
    """Expand sessions into event rows, vectorised: search -> view -> play -> (pause) -> end -> rate."""
    n = len(s_kind)
    video, shop, search_only = s_kind == 0, s_kind == 1, s_kind == 2
    r = rng.random((12, n))
    runtime = catalog.runtime_s[item]

    searched = video & (r[0] < 0.08)
    t_view = t0 + np.where(searched, rng.uniform(10, 60, n), 0.0)
    listed = (video | shop) & (r[1] < np.where(video, 0.04 + 0.08 * affinity, 0.05))
    t_list = t_view + rng.uniform(5, 40, n)
    played = video & (r[2] < 0.45 + 0.45 * affinity)
    t_play = t_view + rng.uniform(5, 90, n)
    completed = played & (r[3] < 0.25 + 0.6 * affinity)
    abandoned = played & ~completed
    fraction = np.where(completed, 1.0, rng.uniform(0.03, 0.7, n))
    paused = played & (r[4] < 0.3)
    t_pause = t_play + rng.uniform(0.05, 0.95, n) * fraction * runtime
    pause_s = np.where(paused, rng.uniform(60, 1800, n), 0.0)
    t_end = t_play + fraction * runtime + pause_s
    rated = (completed & (r[5] < 0.18)) | (abandoned & (r[5] < 0.06))
    t_rate = t_end + rng.uniform(10, 120, n)
    # Ratings follow affinity, with noise; abandoning drags them down. Half-star steps.
    stars = 1.0 + 4.0 * affinity + rng.normal(0.0, 0.6, n) - np.where(abandoned, 1.0, 0.0)
    stars = np.clip(np.round(stars * 2) / 2, 0.5, 5.0)
    carted = shop & (r[6] < 0.3)
    t_cart = t_view + rng.uniform(20, 300, n)
    bought = carted & (r[7] < 0.5)
    t_buy = t_cart + rng.uniform(60, 900, n)

    parts = [
        (searched | search_only, "search", T.SEARCH, t0),
        (video | shop, "view", T.VIEW, t_view),
        (listed, "list", T.ADD_TO_LIST, t_list),
        (played, "play", T.PLAY, t_play),
        (paused, "pause", T.PAUSE, t_pause),
        (completed, "end", T.COMPLETE, t_end),
        (abandoned, "end", T.ABANDON, t_end),
        (rated, "rate", T.RATE, t_rate),
        (carted, "cart", T.ADD_TO_CART, t_cart),
        (bought, "buy", T.PURCHASE, t_buy),
    ]
    position = np.round(fraction * runtime).astype(np.int64)
    pause_position = np.round(t_pause - t_play).astype(np.int64)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("session", "order", "type", "time", "item", "value",
                                                         "position")}  # fmt: skip
    for mask, step, type_, times in parts:
        sel = np.flatnonzero(mask)
        rows["session"].append(sel)
        rows["order"].append(np.full(len(sel), _ORDER[step]))
        rows["type"].append(np.full(len(sel), _CODE[type_]))
        rows["time"].append(times[sel])
        rows["item"].append(np.where(search_only[sel], -1, item[sel]))
        rows["value"].append(stars[sel])
        rows["position"].append(pause_position[sel] if type_ == T.PAUSE else position[sel])
    return {k: np.concatenate(v) for k, v in rows.items()}


def _search_queries(
    rng: np.random.Generator, *, rows: dict[str, np.ndarray], chrono: np.ndarray, catalog: _Catalog,
    taxonomy: _Taxonomy,
) -> dict[int, str]:  # fmt: skip
    """What people typed: a sub-genre, a mood and genre, or words of the title they then opened."""
    search_code = _CODE[T.SEARCH]
    leaves = taxonomy.leaves["genre"] + taxonomy.leaves["mood"] + taxonomy.leaves["theme"]
    queries: dict[int, str] = {}
    for e in chrono[rows["type"][chrono] == search_code].tolist():
        item = int(rows["item"][e])
        roll = rng.random()
        if item < 0:  # a search that led nowhere
            queries[e] = (
                _pick(rng, SEARCH_TYPOS) if roll < 0.25 else taxonomy.name_of[_pick(rng, leaves)].lower()
            )
            continue
        row = catalog.items[item]
        genre = next((p for p in row.tag_paths if p.startswith("genre/")), None)
        mood = next((p for p in row.tag_paths if p.startswith("mood/")), None)
        if roll < 0.45:
            queries[e] = " ".join(row.title.lower().replace(":", "").split()[:2])
        elif roll < 0.8 or mood is None:
            queries[e] = taxonomy.name_of[genre].lower()
        else:
            queries[e] = f"{taxonomy.name_of[mood].lower()} {taxonomy.name_of[genre].lower()}"
    return queries


# --- Loading ---------------------------------------------------------------------------------------


def demo_load(*, data: DemoData, stdout: IO[str] | None = None) -> dict[str, int]:
    """Write generated data with bulk inserts in one transaction; returns rows created per table.

    Existing tags with the same slug path are reused, so a hand-built taxonomy is extended
    rather than duplicated. Requires a backend that returns primary keys from bulk inserts
    (PostgreSQL, SQLite >= 3.35).
    """

    def say(message: str) -> None:
        if stdout is not None:
            stdout.write(message + "\n")

    counts: dict[str, int] = {}
    with transaction.atomic():
        source, _ = Source.objects.get_or_create(name=SOURCE_NAME)
        tag_ids, counts["tags"] = _tags_load(data.tags)
        say(f"tags: {counts['tags']} created, {len(data.tags) - counts['tags']} reused")

        items = Item.objects.bulk_create(
            [
                Item(external_id=i.external_id, title=i.title, description=i.description, kind=i.kind,
                     release_date=i.release_date, metadata=i.metadata)
                for i in data.items
            ],
            batch_size=BATCH_SIZE,
        )  # fmt: skip
        item_ids = [i.pk for i in items]
        counts["items"] = len(items)
        counts["item_tags"] = len(
            ItemTag.objects.bulk_create(
                [
                    ItemTag(item_id=item_ids[n], tag_id=tag_ids[path], source=ItemTag.Source.DEMO)
                    for n, row in enumerate(data.items)
                    for path in row.tag_paths
                ],
                batch_size=BATCH_SIZE,
            )
        )
        say(f"items: {counts['items']}, item tags: {counts['item_tags']}")

        profiles = Profile.objects.bulk_create(
            [
                Profile(
                    external_id=p.external_id, traits=p.traits, first_seen=p.first_seen, last_seen=p.last_seen
                )
                for p in data.profiles
            ],
            batch_size=BATCH_SIZE,
        )
        profile_ids = [p.pk for p in profiles]
        if None in item_ids or None in profile_ids:
            raise DemoDataError("This database backend does not return ids from bulk inserts.")
        counts["profiles"] = len(profiles)
        counts["anonymous_ids"] = len(
            AnonymousId.objects.bulk_create(
                [
                    AnonymousId(anonymous_id=p.anonymous_id, profile_id=profile_ids[n])
                    for n, p in enumerate(data.profiles)
                    if p.anonymous_id
                ],
                batch_size=BATCH_SIZE,
            )
        )
        say(f"profiles: {counts['profiles']}, anonymous ids: {counts['anonymous_ids']}")

        counts["events"] = 0
        # Model.__init__ with positional values skips keyword handling: a fifth of the time it
        # takes to load 220k events. Only when the model's columns are exactly the ones expected.
        positional = tuple(f.attname for f in Event._meta.concrete_fields) == ("id", *_EVENT_FIELDS)
        for chunk in _chunks(data.events, BATCH_SIZE):
            rows = (
                (source.pk, e.message_id, e.name, e.type, profile_ids[e.profile],
                 None if e.item is None else item_ids[e.item], e.value, e.properties, e.timestamp,
                 e.received_at)
                for e in chunk
            )  # fmt: skip
            Event.objects.bulk_create(
                [
                    Event(None, *row) if positional else Event(**dict(zip(_EVENT_FIELDS, row, strict=True)))
                    for row in rows
                ]
            )
            counts["events"] += len(chunk)
            if counts["events"] % 50_000 < BATCH_SIZE or counts["events"] == len(data.events):
                say(f"events: {counts['events']:,} / {len(data.events):,}")
    return counts


_EVENT_FIELDS = (
    "source_id", "message_id", "name", "type", "profile_id", "item_id", "value", "properties", "timestamp",
    "received_at",
)  # fmt: skip


def _tags_load(tags: Sequence[DemoTag]) -> tuple[dict[str, int], int]:
    """Create the missing tags (given parents first); returns ids by slug path and how many were new.

    A facet that does not exist yet goes in with one treebeard bulk load; tags missing under an
    existing facet (a taxonomy built by hand) are added one by one in sorted position.
    """

    def fields(tag: DemoTag) -> dict:
        slug = tag.slug_path.rpartition("/")[2]
        return {"name": tag.name, "slug": slug, "slug_path": tag.slug_path, "description": tag.description}

    children: dict[str | None, list[DemoTag]] = defaultdict(list)
    for tag in tags:
        children[tag.parent_path].append(tag)

    def subtree(tag: DemoTag) -> dict:
        # Siblings in name order, the order treebeard keeps for Tag (node_order_by).
        below = sorted(children[tag.slug_path], key=lambda t: t.name)
        return {"data": fields(tag), "children": [subtree(child) for child in below]}

    paths = [t.slug_path for t in tags]
    existing = set(Tag.objects.filter(slug_path__in=paths).values_list("slug_path", flat=True))
    created = 0
    for facet in children[None]:
        if facet.slug_path not in existing:
            created += len(Tag.objects.load_bulk([subtree(facet)], bulk_create=True))
    ids = dict(Tag.objects.filter(slug_path__in=paths).values_list("slug_path", "pk"))
    for tag in tags:
        if tag.slug_path not in ids:
            # add_child re-reads the parent by pk, so sorted insertions that shift paths are safe.
            ids[tag.slug_path] = Tag.objects.add_child(Tag(pk=ids[tag.parent_path]), fields(tag)).pk
            created += 1
    return ids, created


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building and inserting ~1M small objects.

    They are freed by reference counting; without the pause the collector repeatedly walks
    the whole generated data set, which costs a quarter of the load time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _chunks(rows: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def demo_seed(
    *,
    seed: int = 7,
    items: int = 1200,
    profiles: int = 2500,
    events: int = 220_000,
    now: datetime | None = None,
    if_empty: bool = False,
    stdout: IO[str] | None = None,
) -> dict:
    """Generate and load the demo data into an empty catalog.

    With ``if_empty`` a catalog that already has items is left alone (``{"skipped": True}``);
    without it, that is an error, so loading twice never duplicates data.
    """
    refusal = "The catalog already has items; demo data loads only into an empty database."
    if Item.objects.exists():
        if if_empty:
            return {"skipped": True}
        raise DemoDataError(refusal)
    now = now or timezone.now()
    started = time.perf_counter()
    with _gc_paused():
        data = demo_generate(seed=seed, items=items, profiles=profiles, events=events, now=now)
    generated = time.perf_counter()
    try:
        with _gc_paused(), transaction.atomic():
            # Checked again inside the transaction: another seeder may have won meanwhile. On
            # PostgreSQL two can still overlap; the unique item external ids then stop the second.
            if Item.objects.exists():
                if if_empty:
                    return {"skipped": True}
                raise DemoDataError(refusal)
            counts = demo_load(data=data, stdout=stdout)
            counts["recommenders"] = demo_recommenders_ensure()
            # Before the interaction table is built: the experiments add the behaviour they caused.
            counts.update(demo_experiments_create(now=now, seed=seed))
            counts["interactions"] = interactions_rebuild()
    except IntegrityError:
        if if_empty and Item.objects.exists():
            return {"skipped": True}
        raise
    finished = time.perf_counter()
    return {
        "skipped": False,
        **counts,
        "generate_seconds": round(generated - started, 2),
        "load_seconds": round(finished - generated, 2),
    }


# Demo recommenders and placements: one per algorithm, so every page has something to show.
DEMO_RECOMMENDERS = [
    ("trending", "trending", {}, 6, "What is hot this week: popularity with a 7-day half-life."),
    ("popularity", "popularity", {}, 24, "All-time popularity: the baseline every model must beat."),
    ("item-knn", "item_knn", {}, 24, "People who watched this also watched: cosine item-kNN."),
    ("ease", "ease", {"l2": 300}, 24, "EASE: a closed-form linear model, strong on implicit feedback."),
    ("als", "als", {"factors": 32, "iterations": 10}, 24, "Matrix factorisation with implicit ALS."),
    ("content", "content", {}, 24, "Content-based on tags and descriptions; serves cold starts."),
    (
        "hybrid",
        "hybrid",
        {"blend": {"ease": 0.5, "item_knn": 0.3, "content": 0.2}},
        24,
        "EASE, item-kNN and content blended.",
    ),
]
DEMO_PLACEMENTS = [
    ("home", "Home: top picks", "hybrid", ["trending"], 12, 0.2),
    ("because-you-watched", "Because you watched", "item-knn", ["content", "trending"], 10, 0.0),
    ("email-picks", "Weekly email picks", "ease", ["trending"], 5, 0.4),
]


def demo_recommenders_ensure() -> int:
    """Create the demo recommenders and placements that do not exist yet. Idempotent."""
    from personalization.models import Placement, Recommender

    created = 0
    for name, algorithm, params, hours, description in DEMO_RECOMMENDERS:
        _, was_created = Recommender.objects.get_or_create(
            name=name,
            defaults={
                "algorithm": algorithm,
                "params": params,
                "retrain_every_hours": hours,
                "description": description,
            },
        )
        created += was_created
    for key, label, recommender, fallbacks, k, diversity in DEMO_PLACEMENTS:
        Placement.objects.get_or_create(
            key=key,
            defaults={
                "name": label,
                "recommender": Recommender.objects.get(name=recommender),
                "fallbacks": fallbacks,
                "k": k,
                "diversity": diversity,
            },
        )
    return created
