"""Segment detail: tag affinity against everyone and overlap with other segments, checked against
brute-force counts, and the page that shows them with the members table and where it is used."""

from __future__ import annotations

import pytest
from django.utils import timezone

from catalog import services as catalog_services
from catalog.models import Item, ItemTag, Tag
from personalization import segment_charts, segments
from personalization.models import Interaction, Placement, Profile, Segment, SegmentMembership
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def audience(db):
    """Six people: ann, bob and cat like anime; dan, eve and fay like drama; bob also drama."""
    genre = Tag.objects.add_root({"name": "Genre"})
    anime = catalog_services.tag_create(name="Anime", parent=genre)
    drama = catalog_services.tag_create(name="Drama", parent=Tag.objects.get(pk=genre.pk))
    robot, weepie = Item.objects.create(external_id="robot"), Item.objects.create(external_id="weepie")
    ItemTag.objects.create(item=robot, tag=anime)
    ItemTag.objects.create(item=weepie, tag=drama)
    now = timezone.now()
    people = {
        name: Profile.objects.create(external_id=name) for name in ("ann", "bob", "cat", "dan", "eve", "fay")
    }
    strengths = {
        ("ann", robot): 3,
        ("bob", robot): 2,
        ("bob", weepie): 2,
        ("cat", robot): 1,
        ("dan", weepie): 4,
        ("eve", weepie): 1,
        ("fay", weepie): 1,
    }
    for (name, item), strength in strengths.items():
        Interaction.objects.create(profile=people[name], item=item, strength=strength, count=1, last_at=now)

    def segment(key, names):
        seg = Segment.objects.create(key=key, name=key.title(), size=len(names))
        for name in names:
            SegmentMembership.objects.create(segment=seg, profile=people[name], entered_at=now)
        return seg

    fans = segment("fans", ["ann", "bob", "cat"])
    segment("drama", ["bob", "dan", "eve", "fay"])
    segment("ann-only", ["ann"])
    segment("empty", [])
    left = segment("left", ["cat"])
    SegmentMembership.objects.filter(segment=left).update(exited_at=now)  # a closed stay does not count
    return {"fans": fans, "strengths": strengths}


def test_tag_affinity_compares_the_members_share_with_everyones(audience):
    rows = segments.segment_tag_affinity(segment=audience["fans"])
    strengths = audience["strengths"]
    # Brute force: members' strength per tag over their total, and the same over everyone.
    members = {"ann", "bob", "cat"}
    mine_anime = sum(s for (n, i), s in strengths.items() if n in members and i.external_id == "robot")
    mine_all = sum(s for (n, _), s in strengths.items() if n in members)
    all_anime = sum(s for (_, i), s in strengths.items() if i.external_id == "robot")
    all_all = sum(strengths.values())
    assert rows[0] == ("Anime", pytest.approx(mine_anime / mine_all), pytest.approx(all_anime / all_all))
    assert [name for name, _, _ in rows] == ["Anime", "Drama"]


def test_overlap_counts_shared_current_members_with_jaccard(audience):
    rows = segments.segment_overlap(segment=audience["fans"])
    assert rows == [("Drama", 1, 4, pytest.approx(1 / 6)), ("Ann-Only", 1, 1, pytest.approx(1 / 3))]


def test_the_chart_builders_return_plotly_figures(audience):
    affinity = segment_charts.tag_affinity_profile([("Anime", 0.75, 0.36), ("Drama", 0.25, 0.64)])
    assert [trace["name"] for trace in affinity["data"]] == ["segment", "everyone"]
    assert list(affinity["data"][0]["y"]) == ["Drama", "Anime"]  # the top tag is drawn on top
    overlap = segment_charts.overlap_with_segments([("Drama", 1, 4, 1 / 6)], size=3)
    assert list(overlap["data"][0]["x"]) == [pytest.approx(1 / 3)]
    assert segment_charts.overlap_with_segments([], size=0)["data"][0]["y"] in ([], None, ())


def test_the_detail_page_shows_affinity_overlap_members_and_usage(client_as, audience):
    fans = audience["fans"]
    Placement.objects.create(
        key="home", name="Home row", recommender=factories.trending(), segment_overrides={"fans": {}}
    )
    member_of = {"kind": "member_of", "segment": fans.pk}
    Segment.objects.create(
        key="loyal-fans",
        name="Loyal fans",
        rule={"version": 1, "root": {"op": "and", "conditions": [{"op": "or", "conditions": [member_of]}]}},
    )
    page = client_as("analyst").get(f"/segments/{fans.pk}/").content.decode()
    for part in ("affinity-chart-data", "overlap-chart-data", "Export CSV", "Home row", "Loyal fans", "ann"):
        assert part in page, part
    csv = b"".join(client_as("analyst").get(f"/segments/{fans.pk}/members.csv").streaming_content).decode()
    assert csv.splitlines()[0] == "profile_id,user_id,entered_at" and len(csv.splitlines()) == 4
    empty = Segment.objects.get(key="empty")
    page = client_as("analyst").get(f"/segments/{empty.pk}/").content.decode()
    assert "No affinities yet" in page and "No overlap" in page
