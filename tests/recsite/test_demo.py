"""The demo data generator: deterministic, believable, and with real signal for the recommenders."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from io import StringIO
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F, Max, Min
from django.utils import timezone
from django.utils.text import slugify

from catalog.models import Item, ItemTag, Tag
from personalization.models import AnonymousId, Event, Profile, Source
from recsite.demo import DemoData, demo_generate

SIZES = {"items": 120, "profiles": 150, "events": 4000}
NOW = datetime(2026, 3, 15, 18, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def data() -> DemoData:
    return demo_generate(seed=11, now=NOW, **SIZES)


@pytest.fixture
def seeded() -> SimpleNamespace:
    """Loads the demo data through the command; returns when it ran and what it printed."""
    before, out = timezone.now(), StringIO()
    call_command("seed_demo", seed=11, stdout=out, **SIZES)
    return SimpleNamespace(before=before, after=timezone.now(), output=out.getvalue())


def item_sets(data: DemoData) -> dict[int, set[int]]:
    sets: dict[int, set[int]] = defaultdict(set)
    for event in data.events:
        if event.item is not None:
            sets[event.profile].add(event.item)
    return sets


# --- Pure generation ---------------------------------------------------------------------------


def test_the_same_seed_generates_identical_data_and_another_seed_does_not(data):
    assert demo_generate(seed=11, now=NOW, **SIZES) == data
    other = demo_generate(seed=12, now=NOW, **SIZES)
    assert other.items != data.items
    assert other.events != data.events
    assert other.tags == data.tags  # the taxonomy is fixed; only content and behaviour vary


def test_it_generates_exactly_the_requested_sizes(data):
    assert (len(data.items), len(data.profiles), len(data.events)) == (120, 150, 4000)
    assert [i.external_id for i in data.items if i.kind != "product"][:2] == ["m00001", "m00002"]
    assert next(i.external_id for i in data.items if i.kind == "product") == "p00001"
    assert len({e.message_id for e in data.events}) == 4000


def test_the_catalog_is_mostly_films_and_series_with_a_merchandise_section(data):
    kinds = Counter(item.kind for item in data.items)
    assert set(kinds) == {"movie", "series", "product"}
    assert 0.05 <= kinds["product"] / len(data.items) <= 0.11
    assert all(item.title and item.description and item.release_date for item in data.items)
    assert len({item.title for item in data.items}) == len(data.items)
    products = [item for item in data.items if item.kind == "product"]
    assert all(item.metadata["price"] > 0 for item in products)


def test_descriptions_mention_the_names_of_the_items_sub_genres(data):
    names = {tag.slug_path: tag.name.lower() for tag in data.tags}
    for item in data.items:
        genre = next(path for path in item.tag_paths if path.startswith("genre/"))
        assert names[genre] in item.description.lower(), (item.title, item.description)


def test_popularity_is_power_law_ish(data):
    counts = sorted(Counter(e.item for e in data.events if e.item is not None).values(), reverse=True)
    top_tenth = counts[: len(data.items) // 10]
    assert sum(top_tenth) / sum(counts) > 0.4


def test_people_with_the_same_taste_share_more_items_than_random_pairs(data):
    sets = item_sets(data)
    people = sorted(sets)

    def jaccard(a: int, b: int) -> float:
        return len(sets[a] & sets[b]) / len(sets[a] | sets[b])

    pairs = list(itertools.combinations(people, 2))
    same = [jaccard(a, b) for a, b in pairs if data.profiles[a].taste == data.profiles[b].taste]
    every = [jaccard(a, b) for a, b in pairs]
    assert np.mean(same) > 1.5 * np.mean(every)


def test_ratings_are_higher_for_items_that_match_the_persons_taste(data):
    ratings = [e for e in data.events if e.type == Event.Type.RATE]
    assert all(0.5 <= e.value <= 5 and e.value * 2 == int(e.value * 2) for e in ratings)
    match = [e.value for e in ratings if data.items[e.item].taste == data.profiles[e.profile].taste]
    other = [e.value for e in ratings if data.items[e.item].taste != data.profiles[e.profile].taste]
    assert np.mean(match) > np.mean(other) + 0.5


def test_sessions_run_view_then_play_then_complete_or_abandon(data):
    sessions: dict[str, list] = defaultdict(list)
    for event in data.events:
        sessions[event.properties["session_id"]].append(event)
    checked = 0
    for events in sessions.values():
        at = {e.type: e.timestamp for e in events}
        if Event.Type.PLAY in at:
            assert at[Event.Type.VIEW] < at[Event.Type.PLAY]
            end = at.get(Event.Type.COMPLETE) or at.get(Event.Type.ABANDON)
            if end:  # the very last session may have been cut short
                assert at[Event.Type.PLAY] < end
                assert not (Event.Type.COMPLETE in at and Event.Type.ABANDON in at)
                checked += 1
    assert checked > 200


def test_weekends_and_evenings_are_busier(data):
    per_weekday = Counter(e.timestamp.weekday() for e in data.events)
    assert (per_weekday[5] + per_weekday[6]) / 2 > sum(per_weekday[d] for d in range(5)) / 5
    hours = Counter(e.timestamp.hour for e in data.events)
    assert sum(hours[h] for h in range(18, 23)) > 2 * sum(hours[h] for h in range(2, 7))


# --- Loaded through the command --------------------------------------------------------------------


@pytest.mark.django_db
def test_loaded_counts_match_the_generated_data(seeded, data):
    assert "Loaded demo data (seed 11): 237 tags, 120 items" in seeded.output
    assert Item.objects.count() == len(data.items)
    assert Profile.objects.count() == len(data.profiles)
    # The demo experiments add the behaviour their treatments caused, and the business-impact demo
    # the recommendation clicks before some engagement, each under its own source.
    others = ("demo-experiments", "demo-recommendations")
    assert Event.objects.exclude(source__name__in=others).count() == len(data.events)
    assert Event.objects.filter(source__name="demo-recommendations", type="click").exists()
    assert Tag.objects.count() == len(data.tags)
    assert ItemTag.objects.count() == sum(len(item.tag_paths) for item in data.items)
    assert AnonymousId.objects.count() == sum(p.anonymous_id is not None for p in data.profiles)
    assert set(ItemTag.objects.values_list("source", flat=True)) == {ItemTag.Source.DEMO}
    assert Event.objects.filter(source=Source.objects.get(name="demo")).count() == len(data.events)


@pytest.mark.django_db
def test_the_taxonomy_has_six_facets_nested_two_to_three_levels(seeded):
    facets = Tag.objects.get_root_nodes()
    assert facets.count() >= 6
    assert {"Genre", "Mood", "Theme", "Audience", "Format", "Setting"} <= {f.name for f in facets}
    for facet in facets:
        assert Tag.objects.get_children(facet).exists()
        assert {t.depth for t in Tag.objects.get_descendants(facet)} == {2, 3}
    assert Tag.objects.count() >= 150
    assert Tag.objects.find_problems() == ([], [], [], [], [])
    mecha = Tag.objects.get(slug_path="genre/anime/mecha")
    assert mecha.label() == "Genre > Anime > Mecha"
    for tag in Tag.objects.all():
        assert tag.slug_path == "/".join(slugify(t.name) for t in [*Tag.objects.get_ancestors(tag), tag])


@pytest.mark.django_db
def test_every_item_has_tags_in_genre_and_mood(seeded):
    for facet in ("genre/", "mood/"):
        assert not Item.objects.exclude(item_tags__tag__slug_path__startswith=facet).exists()
    assert not Item.objects.filter(release_date__isnull=True).exists()


@pytest.mark.django_db
def test_events_span_90_days_with_only_canonical_types(seeded):
    span = Event.objects.aggregate(first=Min("timestamp"), last=Max("timestamp"))
    assert span["first"] >= seeded.before - timedelta(days=90)
    assert span["last"] <= seeded.after
    assert span["last"] - span["first"] > timedelta(days=85)
    types = set(Event.objects.values_list("type", flat=True))
    assert types <= set(Event.Type.values)
    assert {"view", "play", "pause", "complete", "abandon", "rate", "add_to_list", "search"} <= types
    assert {"add_to_cart", "purchase"} <= types
    searches = Event.objects.filter(type=Event.Type.SEARCH)
    assert not searches.filter(item__isnull=False).exists()
    assert all(s.properties["query"] for s in searches)
    for purchase in Event.objects.filter(type=Event.Type.PURCHASE).select_related("item"):
        assert purchase.item.kind == "product"
        assert purchase.value == purchase.item.metadata["price"]
    assert not Event.objects.filter(item__isnull=False, timestamp__date__lt=F("item__release_date")).exists()


@pytest.mark.django_db
def test_some_anonymous_visitors_are_identified_later_with_their_earlier_events(seeded):
    identified = Profile.objects.filter(
        external_id__isnull=False, anonymous_ids__anonymous_id__startswith="anon-"
    )
    assert identified.count() >= 0.1 * Profile.objects.count()
    profile = identified.first()
    anonymous_id = profile.anonymous_ids.get().anonymous_id
    before = profile.events.filter(properties__anonymous_id=anonymous_id)
    after = profile.events.exclude(properties__has_key="anonymous_id")
    assert before.exists() and after.exists()
    assert before.aggregate(t=Min("timestamp"))["t"] < after.aggregate(t=Min("timestamp"))["t"]
    assert profile.traits["name"] and profile.traits["plan"] in {"free", "standard", "premium"}
    anonymous_only = Profile.objects.filter(external_id__isnull=True)
    assert anonymous_only.exists()
    assert not anonymous_only.filter(anonymous_ids__isnull=True).exists()


@pytest.mark.django_db
def test_profiles_first_and_last_seen_come_from_their_events(seeded):
    for profile in Profile.objects.order_by("pk")[:20]:
        span = profile.events.aggregate(first=Min("timestamp"), last=Max("timestamp"))
        assert (profile.first_seen, profile.last_seen) == (span["first"], span["last"])


def table_sizes() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Tag, Item, ItemTag, Profile, AnonymousId, Event))


@pytest.mark.django_db
def test_a_second_load_is_refused_and_if_empty_makes_it_a_no_op(seeded):
    sizes = table_sizes()
    with pytest.raises(CommandError, match="already has items"):
        call_command("seed_demo", seed=12, stdout=StringIO(), **SIZES)
    out = StringIO()
    call_command("seed_demo", "--if-empty", seed=12, stdout=out, **SIZES)
    assert "not loaded" in out.getvalue()
    assert table_sizes() == sizes


@pytest.mark.django_db
def test_it_extends_a_hand_built_taxonomy_instead_of_duplicating_it():
    genre = Tag.objects.add_root({"name": "Genre", "slug": "genre", "slug_path": "genre"})
    anime = Tag.objects.add_child(genre, {"name": "Anime", "slug": "anime", "slug_path": "genre/anime"})
    # Sorts after the demo's anime sub-genres, so adding them shifts this node's path.
    idols = {"name": "Zombie idols", "slug": "zombie-idols", "slug_path": "genre/anime/zombie-idols"}
    Tag.objects.add_child(anime, idols)

    call_command("seed_demo", seed=11, stdout=StringIO(), **SIZES)

    assert Tag.objects.filter(slug_path="genre").get().pk == genre.pk
    assert Tag.objects.count() == len(demo_generate(seed=11, now=NOW, **SIZES).tags) + 1
    assert Tag.objects.find_problems() == ([], [], [], [], [])
    for path in ("genre/anime/mecha", "genre/anime/zombie-idols"):
        assert Tag.objects.get_parent(Tag.objects.get(slug_path=path)).pk == anime.pk


@pytest.mark.django_db
def test_the_demo_experiments_are_concluded_running_and_a_bandit_with_consistent_analyses(seeded):
    from experiments.models import BanditAllocation, Experiment

    concluded = Experiment.objects.get(key="home-row-hybrid")
    assert concluded.status == "concluded" and concluded.decision == "ship"
    assert concluded.decision_variant.key == "treatment"
    results = concluded.snapshots.order_by("-as_of").first().results
    primary = results["metrics"][0]
    assert primary["key"] == "completion-7d" and primary["role"] == "primary"
    control, treatment = primary["variants"]
    assert control["n"] > 0 and treatment["n"] > 0
    assert treatment["mean"] > control["mean"], "the shipped treatment caused extra completions"
    assert [s["key"] for s in results["segments"]] == ["heavy-viewers"]
    assert concluded.snapshots.count() == 4

    running = Experiment.objects.get(key="similar-items-ease")
    assert running.status == "running"
    assert {v.payload["placement"] for v in running.variants.all()} == {"because-you-watched"}
    assert running.snapshots.exists()

    bandit = Experiment.objects.get(key="hero-banner")
    allocations = list(BanditAllocation.objects.filter(experiment=bandit).order_by("computed_at"))
    assert len(allocations) == 15
    # Before any reward the three arms share the traffic (up to Monte Carlo noise).
    assert list(allocations[0].shares.values()) == pytest.approx([1 / 3] * 3, abs=0.02)
    assert all(share >= 0.05 - 1e-9 for a in allocations for share in a.shares.values())
    latest = bandit.snapshots.get().results["bandit"]["arms"]
    assert sum(a["trials"] for a in latest) == bandit.exposures.count()
    # Nothing the experiments caused lies in the future or outside a profile's timeline.
    assert not Event.objects.filter(timestamp__gt=seeded.after).exists()
    for profile in Profile.objects.filter(events__source__name="demo-experiments").distinct()[:20]:
        assert profile.last_seen == profile.events.aggregate(last=Max("timestamp"))["last"]
