"""Discovered segments: clusters on tag affinity, described by their most distinctive tags."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from catalog import services as catalog_services
from catalog.models import Item, ItemTag, Tag
from personalization import segments
from personalization.models import Interaction, Profile, Segment, SegmentMembership


def test_cluster_profiles_picks_the_k_with_the_best_silhouette():
    rng = np.random.default_rng(1)
    blobs = np.vstack([rng.normal(centre, 0.1, size=(30, 2)) for centre in ((0, 0), (5, 5), (0, 5))])
    labels, k, scores = segments.cluster_profiles(blobs, max_k=6)
    assert k == 3 and max(scores, key=scores.get) == 3
    # Each blob is one cluster.
    assert {len(set(labels[i : i + 30])) for i in (0, 30, 60)} == {1}


@pytest.fixture
def two_tastes(db):
    """Twelve anime fans and eight drama fans."""
    genre = Tag.objects.add_root({"name": "Genre"})
    anime = catalog_services.tag_create(name="Anime", parent=genre)
    drama = catalog_services.tag_create(name="Drama", parent=Tag.objects.get(pk=genre.pk))
    now = timezone.now()
    items = {}
    for name, tag in (("anime", anime), ("drama", drama)):
        items[name] = [Item.objects.create(external_id=f"{name}{n}", title=f"{name} {n}") for n in range(3)]
        for item in items[name]:
            ItemTag.objects.create(item=item, tag=tag)
    for n in range(20):
        taste = "anime" if n < 12 else "drama"
        profile = Profile.objects.create(external_id=f"p{n}", last_seen=now)
        for item in items[taste]:
            Interaction.objects.create(profile=profile, item=item, strength=1 + n % 3, count=1, last_at=now)
    return now


def test_anime_fans_and_drama_fans_are_found_and_one_cluster_is_saved_as_a_segment(two_tastes):
    now = two_tastes
    discovery = segments.segment_discover(max_k=4, now=now)
    assert discovery.k == 2
    big, small = discovery.clusters
    assert (len(big.profile_ids), len(small.profile_ids)) == (12, 8)
    assert big.description.startswith("Anime fans") and small.description.startswith("Drama fans")
    segment = segments.segment_save_cluster(cluster=big, key="anime-fans", name="Anime fans")
    assert segment.kind == Segment.Kind.DISCOVERED and segment.size == 12
    assert SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).count() == 12


def test_the_discovery_page_runs_and_saves_a_cluster(client_as, two_tastes):
    client = client_as("marketer")
    page = client.get("/segments/discover/?run=1").content.decode()
    assert "Anime fans" in page and "Save as segment" in page
    response = client.post("/segments/discover/", {"chosen_k": 2, "cluster": 0, "name": "Anime lovers"})
    segment = Segment.objects.get(key="anime-lovers")
    assert response.status_code == 302 and segment.size in (8, 12)
