"""Assignment: GrowthBook-compatible buckets, sticky, namespaces, holdouts, exposures, merges."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments import hashing, services
from experiments.models import Assignment, Exposure, Variant
from personalization.models import AnonymousId, Profile
from tests.experiments import builders

pytestmark = pytest.mark.django_db
URL = "/api/v1/experiments/{}/assignment"


def test_the_api_returns_the_growthbook_variant_and_records_an_exposure(client_as):
    exp = builders.experiment(start=True)
    response = client_as("marketer").get(URL.format(exp.key), {"user_id": "u1"})
    assert response.status_code == 200, response.content
    body = response.json()
    expected = hashing.choose_variation(hashing.bucket_hash(exp.key, "u1", 2), hashing.bucket_ranges(2))
    assert body["variant"] == ["control", "v1"][expected]
    assert body["in_experiment"] and body["exposure_recorded"]
    assert body["payload"] == {"arm": expected}
    profile = Profile.objects.get(external_id="u1")
    assert Assignment.objects.get(profile=profile).first_exposed_at is not None
    assert Exposure.objects.filter(profile=profile).count() == 1


def test_record_false_assigns_without_an_exposure(client_as):
    exp = builders.experiment(start=True)
    body = client_as("marketer").get(URL.format(exp.key), {"anonymous_id": "a-1", "record": "false"}).json()
    assert not body["exposure_recorded"]
    profile = AnonymousId.objects.get(anonymous_id="a-1").profile
    assert Assignment.objects.get(profile=profile).first_exposed_at is None
    assert not Exposure.objects.exists()


def test_it_needs_an_id_and_says_which_field(client_as):
    exp = builders.experiment(start=True)
    response = client_as("marketer").get(URL.format(exp.key))
    assert response.status_code == 400
    assert response.json()["field"] == "user_id"
    assert client_as("marketer").get(URL.format("nope"), {"user_id": "u"}).status_code == 404


def test_an_outsider_cannot_fetch_assignments(client_as):
    exp = builders.experiment(start=True)
    assert client_as("outsider").get(URL.format(exp.key), {"user_id": "u1"}).status_code == 403


def test_the_first_assignment_sticks_when_weights_change():
    exp = builders.experiment(start=True)
    first = {u: services.experiment_assign(key=exp.key, user_id=u).variant.key for u in map(str, range(40))}
    # Bypass the service's guard to simulate weights changed under running traffic.
    Variant.objects.filter(experiment=exp, position=0).update(weight=0.01)
    Variant.objects.filter(experiment=exp, position=1).update(weight=0.99)
    again = {u: services.experiment_assign(key=exp.key, user_id=u).variant.key for u in first}
    assert again == first


def test_a_draft_experiment_serves_the_control_without_assigning():
    exp = builders.experiment()
    result = services.experiment_assign(key=exp.key, user_id="u1")
    assert (result.in_experiment, result.variant.key) == (False, "control")
    assert not Assignment.objects.exists()


def test_traffic_below_100_percent_leaves_some_users_out_and_does_not_persist_them():
    exp = builders.experiment(start=True, traffic_percent=30)
    results = [services.experiment_assign(key=exp.key, user_id=f"t{i}") for i in range(200)]
    inside = sum(r.in_experiment for r in results)
    assert 30 < inside < 90
    assert Assignment.objects.count() == inside


def test_experiments_in_one_namespace_with_disjoint_ranges_share_no_user():
    a = builders.experiment("a", start=True, namespace="home", namespace_start=0, namespace_end=0.5)
    b = builders.experiment("b", start=True, namespace="home", namespace_start=0.5, namespace_end=1)
    for i in range(100):
        in_a = services.experiment_assign(key=a.key, user_id=f"n{i}").in_experiment
        in_b = services.experiment_assign(key=b.key, user_id=f"n{i}").in_experiment
        assert in_a != in_b


def test_holdout_profiles_see_the_control_and_stay_out_of_the_analysis():
    exp = builders.experiment(start=True, holdout_percent=20)
    results = [services.experiment_assign(key=exp.key, user_id=f"h{i}") for i in range(200)]
    held = [r for r in results if r.reason == "holdout"]
    assert 15 < len(held) < 70
    assert all(r.variant.key == "control" and not r.exposure_recorded for r in held)
    assert Assignment.objects.filter(holdout=True).count() == len(held)


def test_segment_targeting_without_a_resolver_matches_nobody(settings):
    exp = builders.experiment(start=True, segment_ids=[3])
    assert services.experiment_assign(key=exp.key, user_id="u1").reason == "not in the targeted segments"
    settings.EXPERIMENTS_SEGMENT_RESOLVER = "tests.experiments.test_assignment.everyone_in_segment"
    assert services.experiment_assign(key=exp.key, user_id="u1").in_experiment


def everyone_in_segment(profile_id, segment_ids):
    return True


def test_a_repeat_assignment_costs_a_fixed_number_of_queries():
    exp = builders.experiment(start=True)
    services.experiment_assign(key=exp.key, user_id="q1")
    with CaptureQueriesContext(connection) as queries:
        services.experiment_assign(key=exp.key, user_id="q1")
    # experiment, variants, profile, assignment (+variant), exposure insert, two conditional
    # updates (first exposure, last exposure).
    assert len(queries) == 7, [q["sql"] for q in queries]


def test_a_merge_moves_assignments_and_keeps_the_targets_variant_on_conflict():
    exp = builders.experiment(start=True)
    other = builders.experiment("other", start=True)
    anon = services.experiment_assign(key=exp.key, anonymous_id="device-1").profile
    services.experiment_assign(key=other.key, anonymous_id="device-1")
    known = services.experiment_assign(key=exp.key, user_id="known-1").profile
    kept = Assignment.objects.get(profile=known, experiment=exp).variant_id
    moved = services.assignments_merge(source=anon, target=known)
    assert moved == 1
    assert Assignment.objects.get(profile=known, experiment=exp).variant_id == kept
    assert Assignment.objects.filter(profile=known, experiment=other).exists()
    assert not Assignment.objects.filter(profile=anon).exists()
    assert Exposure.objects.filter(profile=known).count() == 3
