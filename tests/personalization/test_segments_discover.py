"""Discovered segments: clusters on tag affinity, described by their most distinctive tags."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from catalog import services as catalog_services
from catalog.models import Item, ItemTag, Tag
from personalization import segments
from personalization.models import DiscoveryJob, Interaction, Profile, Segment, SegmentMembership
from recsite.models import AuditEntry


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


def test_discovery_runs_on_the_heavy_queue_with_progress_and_a_cluster_is_saved(
    client_as, two_tastes, django_capture_on_commit_callbacks, settings
):
    assert settings.CELERY_TASK_ROUTES["personalization.tasks.segment_discovery_execute"] == {
        "queue": "heavy"
    }
    client = client_as("marketer")
    assert client.post("/segments/discover/", {"k": "99"}).status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/segments/discover/", {"k": ""})  # the worker runs it (eager in tests)
    job = DiscoveryJob.objects.get()
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert (job.status, job.progress, job.result["k"]) == ("succeeded", 100, 2)
    page = client.get(job.get_absolute_url()).content.decode()
    assert "Anime fans" in page and "Save as segment" in page and "http-equiv" not in page
    jobs_page = client.get("/jobs/").content.decode()
    assert "Segment discovery" in jobs_page
    anime = next(c for c in job.result["clusters"] if c["description"].startswith("Anime"))
    save = f"/segments/discover/{job.pk}/save/"
    assert client.post(save, {"cluster": "x"}).status_code == 400
    assert client.post(save, {"cluster": "7"}).status_code == 400
    response = client.post(save, {"cluster": anime["index"], "name": "Anime lovers"})
    segment = Segment.objects.get(key="anime-lovers")
    assert response.status_code == 302 and segment.size == 12
    assert AuditEntry.objects.filter(action="segment.save_cluster").exists()
    # Saving the same name again gets a new key, not an error.
    client.post(save, {"cluster": anime["index"], "name": "Anime lovers"})
    assert Segment.objects.filter(key="anime-lovers-2").exists()
    assert client_as("analyst").post(save, {"cluster": anime["index"]}).status_code == 403


def test_a_running_job_reports_progress_and_a_queued_one_runs_once(two_tastes):
    job = DiscoveryJob.objects.create(k=2)
    seen = []
    original = segments.segment_discover

    def spy(**kwargs):
        def progress(percent, message):
            kwargs_progress(percent, message)
            seen.append(DiscoveryJob.objects.get(pk=job.pk).progress)

        kwargs_progress = kwargs.pop("progress")
        return original(progress=progress, **kwargs)

    segments.segment_discover = spy
    try:
        done = segments.discovery_job_execute(job_id=job.pk)
    finally:
        segments.segment_discover = original
    assert done.status == "succeeded" and seen == sorted(seen) and 0 < seen[0] < 100
    finished_at = done.finished_at
    # A redelivered message finds the job finished and leaves it alone.
    assert segments.discovery_job_execute(job_id=job.pk).finished_at == finished_at


def test_a_failed_job_keeps_its_error(two_tastes, monkeypatch):
    job = DiscoveryJob.objects.create(k=2)

    def boom(**kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(segments, "segment_discover", boom)
    with pytest.raises(RuntimeError):
        segments.discovery_job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", "out of memory")
