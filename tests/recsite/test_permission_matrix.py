"""Every URL in the URL configuration x every role, with the expected status.

The URL list is read from the resolver, so a new endpoint without an entry in EXPECTED fails
``test_every_url_has_an_expectation``: decide who may use it before it ships.

Statuses: HTML pages redirect anonymous visitors to the login page and answer 403 to signed-in
users without the permission; the API answers 401/403 in JSON. Safe endpoints are fetched with
GET by every role; state-changing endpoints are POSTed only by the roles that must be refused
(so the matrix does not depend on the order in which it mutates data).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from catalog.models import ImportJob, ItemTag, Tag, TagSuggestion
from experiments.models import Experiment
from personalization import tracking
from personalization.models import (
    DiscoveryJob,
    MergeRequest,
    Placement,
    Segment,
    SegmentWebhook,
    TrainingRun,
)
from recsite.tokens import token_create
from tests import factories

ROLES = ("anonymous", "outsider", "editor", "marketer", "analyst", "admin", "writekey")
STAFF = {"admin"}
EVERYONE = {"outsider", "editor", "marketer", "analyst", "admin"}
CATALOG = {"editor", "marketer", "analyst", "admin"}
EDIT_CATALOG = {"editor", "admin"}
DOMAIN = {"marketer", "analyst", "admin"}
MARKETING = {"marketer", "admin"}
PUBLIC = {"anonymous", *EVERYONE}


@dataclass(frozen=True)
class Rule:
    allowed: frozenset[str]
    method: str = "GET"
    # Which URL kwargs to use, by fixture name (see ``world``).
    kwargs: tuple[tuple[str, str], ...] = ()


def rule(allowed, method="GET", **kwargs) -> Rule:
    return Rule(frozenset(allowed), method, tuple(sorted(kwargs.items())))


def walk(patterns, prefix="", namespace=""):
    """(route, name) of every URL pattern, recursively, with namespaced names."""
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = namespace
            if p.namespace:
                ns = f"{namespace}{p.namespace}:"
            yield from walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), f"{namespace}{p.name}" if p.name else None


def all_urls() -> dict[str, str]:
    """url name -> route, leaving out Django's own admin (checked separately below)."""
    return {
        name: route for route, name in walk(get_resolver().url_patterns) if not route.startswith("admin/")
    }


@pytest.fixture
def world(personas):
    """One real object of each kind the URLs name."""
    item, other_item = factories.items(2)
    genre = Tag.objects.add_root({"name": "Genre"})
    drama = Tag.objects.add_child(genre, {"name": "Drama"})
    ItemTag.objects.create(item=item, tag=drama)
    suggestion = TagSuggestion.objects.create(item=other_item, tag=drama, confidence=0.5)
    import_job = ImportJob.objects.create(filename="items.csv", data=b"external_id,title\nx1,X\n")
    recommender = factories.trending()
    run = TrainingRun.objects.create(recommender=recommender, version=1)
    placement = Placement.objects.create(key="home-row", name="Home row", recommender=recommender)
    profile, other_profile = factories.profiles(2)
    merge = MergeRequest.objects.create(profile=profile, into=other_profile, reason="shared device")
    write_key, key = tracking.write_key_create(source_name="web")
    experiment = Experiment.objects.create(key="new-home", name="New home")
    segment = Segment.objects.create(key="fans", name="Fans")
    webhook = SegmentWebhook.objects.create(segment=segment, url="https://example.com/hook", secret="s")
    discovery = DiscoveryJob.objects.create(status=DiscoveryJob.Status.SUCCEEDED)
    api_token, _ = token_create(user=personas["admin"], name="matrix")
    return {
        "segment": segment.pk,
        "webhook": webhook.pk,
        "discovery": discovery.pk,
        "item": item.pk,
        "external_id": item.external_id,
        "tag": genre.pk,
        "tag_pk": drama.pk,
        "tag_path": drama.slug_path,
        "suggestion": suggestion.pk,
        "decision": "accept",
        "import_job": import_job.pk,
        "recommender": recommender.pk,
        "run": run.pk,
        "placement": placement.key,
        "profile": profile.pk,
        "user_id": profile.external_id,
        "merge": merge.pk,
        "write_key": write_key.pk,
        "api_token": api_token.pk,
        "experiment": experiment.key,
        "action": "start",
        "clear_key": key,
    }


def client_for(role, client, personas, world):
    client.logout()
    headers = {}
    if role == "writekey":
        token = base64.b64encode(f"{world['clear_key']}:".encode()).decode()
        headers["HTTP_AUTHORIZATION"] = f"Basic {token}"
    elif role != "anonymous":
        client.force_login(personas[role])
    return headers


PK_BY_NAME = (
    ("webhook", "webhook"),
    ("discovery", "discovery"),
    ("segment", "segment"),
    ("suggestion", "suggestion"),
    ("item", "item"),
    ("tag", "tag"),
    ("import", "import_job"),
    ("training_run", "run"),
    ("recommender", "recommender"),
    ("profile", "profile"),
    ("merge_request", "merge"),
    ("write_key", "write_key"),
    ("api_token", "api_token"),
)


def url_kwargs(name: str, route: str, world: dict) -> dict:
    kwargs = {}
    for arg in re.findall(r"<(?:\w+:)?(\w+)>", route):
        if arg == "pk":
            kwargs[arg] = next(world[key] for part, key in PK_BY_NAME if part in name)
        elif arg == "key":
            kwargs[arg] = world["placement"] if "placement" in name else world["experiment"]
        else:
            kwargs[arg] = world[arg]
    return kwargs


API_WRITE_KEY = {"writekey"}
ADMIN = {"admin"}
# Signed-in users of any role; the outsider has none.
SIGNED_IN = {"outsider", "editor", "marketer", "analyst", "admin"}
ANY = {"anonymous", "writekey", *SIGNED_IN}

EXPECTED: dict[str, Rule] = {
    # Public: login, logout, health check, the API description.
    "login": rule(ANY),
    "logout": rule(ANY, "POST"),
    "healthz": rule(ANY),
    "api_schema": rule(ANY),
    "api_docs": rule(ANY),
    "api_token": rule(ANY, "POST"),
    # Pages.
    "dashboard": rule(SIGNED_IN),
    "audit_log": rule(ADMIN),
    # Everyone manages their own API tokens; only admins revoke other people's (403 otherwise).
    "api_tokens": rule(SIGNED_IN),
    "api_token_revoke": rule(ADMIN, "POST"),
    # Everyone signed in; the page lists only the jobs the user may see.
    "jobs": rule(SIGNED_IN),
    # Business impact: whoever may see the recommenders (marketers, analysts, admins).
    "impact": rule(DOMAIN),
    # A user's own settings (time zone) and the marketer's guide: everyone signed in.
    "account_settings": rule(SIGNED_IN),
    "help": rule(SIGNED_IN),
    "catalog:item_list": rule(CATALOG),
    "catalog:item_detail": rule(CATALOG),
    "catalog:queue": rule(CATALOG),
    "catalog:taxonomy": rule(CATALOG),
    "catalog:tag_detail": rule(CATALOG),
    "catalog:coverage": rule(CATALOG),
    "catalog:export": rule(CATALOG),
    "catalog:items_bulk_tag": rule(EDIT_CATALOG, "POST"),
    "catalog:item_tag_add": rule(EDIT_CATALOG, "POST"),
    "catalog:item_tag_remove": rule(EDIT_CATALOG, "POST"),
    "catalog:item_undo": rule(EDIT_CATALOG, "POST"),
    "catalog:item_suggestions_accept_all": rule(EDIT_CATALOG, "POST"),
    "catalog:suggestion_decide": rule(EDIT_CATALOG, "POST"),
    "catalog:suggestion_model_train": rule(EDIT_CATALOG, "POST"),
    "catalog:tag_create": rule(EDIT_CATALOG),
    "catalog:tag_edit": rule(EDIT_CATALOG, "POST"),
    "catalog:tag_move": rule(EDIT_CATALOG, "POST"),
    "catalog:tag_merge": rule(EDIT_CATALOG, "POST"),
    "catalog:tag_retire": rule(EDIT_CATALOG, "POST"),
    "catalog:tag_delete": rule(EDIT_CATALOG),
    "catalog:import_upload": rule(EDIT_CATALOG),
    "catalog:import_detail": rule(EDIT_CATALOG),
    "catalog:import_status": rule(EDIT_CATALOG),
    "catalog:import_apply": rule(EDIT_CATALOG, "POST"),
    "personalization:recommender_list": rule(DOMAIN),
    "personalization:recommender_detail": rule(DOMAIN),
    "personalization:recommender_create": rule(MARKETING),
    "personalization:recommender_edit": rule(MARKETING),
    "personalization:recommender_train": rule(MARKETING, "POST"),
    "personalization:training_run_detail": rule(DOMAIN),
    "personalization:training_run_activate": rule(MARKETING, "POST"),
    "personalization:placement_create": rule(MARKETING),
    "personalization:placement_edit": rule(MARKETING),
    "personalization:recommender_preview": rule(DOMAIN),
    "personalization:profile_list": rule(DOMAIN),
    "personalization:profile_detail": rule(DOMAIN),
    "personalization:profile_export": rule({"analyst", "admin"}),
    "personalization:profile_delete": rule(ADMIN, "POST"),
    "personalization:profile_quiz": rule(ADMIN),
    "personalization:write_keys": rule(ADMIN),
    "personalization:write_key_revoke": rule(ADMIN, "POST"),
    "personalization:merge_requests": rule(ADMIN),
    "personalization:merge_request_resolve": rule(ADMIN, "POST"),
    "personalization:segment_list": rule(DOMAIN),
    "personalization:segment_detail": rule(DOMAIN),
    "personalization:segment_create": rule(MARKETING),
    "personalization:segment_discover": rule(MARKETING),
    "personalization:segment_edit": rule(MARKETING),
    "personalization:segment_estimate": rule(DOMAIN, "POST"),
    "personalization:segment_refresh": rule(MARKETING, "POST"),
    "personalization:segment_members_export": rule({"analyst", "admin"}),
    "personalization:segment_webhook_create": rule(MARKETING, "POST"),
    "personalization:segment_webhook_delete": rule(MARKETING, "POST"),
    "personalization:segment_discovery_detail": rule(MARKETING),
    "personalization:segment_discovery_save": rule(MARKETING, "POST"),
    "experiments:experiment_list": rule(DOMAIN),
    "experiments:experiment_detail": rule(DOMAIN),
    "experiments:experiment_create": rule(MARKETING),
    "experiments:experiment_edit": rule(MARKETING),
    "experiments:experiment_transition": rule(MARKETING, "POST"),
    "experiments:experiment_analyze": rule(MARKETING, "POST"),
    "experiments:experiment_conclude": rule(MARKETING, "POST"),
    "experiments:experiment_export": rule({"analyst", "admin"}),
    "experiments:metric_list": rule(DOMAIN),
    "experiments:metric_create": rule(MARKETING),
    "experiments:power_calculator": rule(DOMAIN),
    # API: catalog.
    "api_item_list": rule(CATALOG),
    "api_item_detail": rule(CATALOG),
    "api_item_deactivate": rule(EDIT_CATALOG, "POST"),
    "api_item_tags": rule(EDIT_CATALOG, "POST"),
    "api_item_tag_delete": rule(EDIT_CATALOG, "DELETE"),
    "api_taxonomy": rule(CATALOG),
    "api_suggestion_list": rule(CATALOG),
    "api_suggestion_accept": rule(EDIT_CATALOG, "POST"),
    "api_suggestion_reject": rule(EDIT_CATALOG, "POST"),
    # API: serving and models.
    "api_recommendations": rule(DOMAIN),
    "api_impact": rule(DOMAIN),
    "api_home": rule(DOMAIN),
    "api_similar_items": rule(DOMAIN),
    "api_recommender_list": rule(DOMAIN),
    "api_recommender_detail": rule(DOMAIN),
    "api_recommender_train": rule(MARKETING, "POST"),
    "api_training_run_list": rule(DOMAIN),
    "api_training_run_detail": rule(DOMAIN),
    "api_training_run_activate": rule(MARKETING, "POST"),
    "api_placement_list": rule(DOMAIN),
    "api_placement_detail": rule(DOMAIN),
    # API: tracking takes a write key and nothing else.
    "api_track": rule(API_WRITE_KEY, "POST"),
    "api_identify": rule(API_WRITE_KEY, "POST"),
    "api_page": rule(API_WRITE_KEY, "POST"),
    "api_alias": rule(API_WRITE_KEY, "POST"),
    "api_batch": rule(API_WRITE_KEY, "POST"),
    # API: people.
    "api_profile_preferences": rule({"writekey", *DOMAIN}),
    "api_profile_export": rule({"analyst", "admin"}),
    "api_profile_delete": rule(ADMIN, "DELETE"),
    "api_profile_segments": rule(DOMAIN),
    "api_segment_list": rule(DOMAIN),
    "api_segment_estimate": rule(DOMAIN, "POST"),
    "api_segment_members": rule(DOMAIN),
    "api_segment_refresh": rule(MARKETING, "POST"),
    # Listing a segment's webhooks (GET) is for whoever sees segments; adding one (POST) is for
    # marketers and admins: tests/personalization/test_segments_api.py checks the POST refusals.
    "api_segment_webhooks": rule(DOMAIN),
    "api_segment_webhook": rule(MARKETING, "DELETE"),
    # API: experiments.
    "api_experiment_assignment": rule(DOMAIN),
    "api_experiment_results": rule(DOMAIN),
    "api_experiment_analyze": rule(MARKETING, "POST"),
}


def test_every_url_has_an_expectation():
    urls = all_urls()
    missing = sorted(set(urls) - set(EXPECTED))
    assert not missing, (
        f"New URLs without an entry in EXPECTED ({__file__}): {missing}. "
        "Decide which roles may use them and add them."
    )
    unnamed = [
        route
        for route, name in walk(get_resolver().url_patterns)
        if name is None and not route.startswith("admin/")
    ]
    assert not unnamed, f"Name these URLs so the permission matrix can cover them: {unnamed}"
    stale = sorted(set(EXPECTED) - set(urls))
    assert not stale, f"EXPECTED names URLs that no longer exist: {stale}"


def fetch(client, world, personas, name, role, method):
    """One request in a savepoint that is rolled back, so requests do not affect each other."""
    from django.db import transaction

    route = all_urls()[name]
    headers = client_for(role, client, personas, world)
    url = reverse(name, kwargs=url_kwargs(name, route, world))
    with transaction.atomic():
        response = getattr(client, method.lower())(url, **headers)
        transaction.set_rollback(True)
    return response


def _refused(response, *, api: bool, role: str) -> bool:
    if api:
        return response.status_code in (401, 403)
    if role in ("anonymous", "writekey"):
        return response.status_code == 302 and response["Location"].startswith(reverse("login"))
    return response.status_code == 403


def _shut_out(response, *, role: str, public: bool) -> bool:
    """An allowed role may get any answer (200, 302 after a POST, 400 for an empty form, 405...)
    except a refusal."""
    if response.status_code in (401, 403):
        return True
    signed_in = role not in ("anonymous", "writekey")
    # Public pages may send anyone to the login page (logging out does).
    return (
        not public
        and signed_in
        and response.status_code == 302
        and response["Location"].startswith(reverse("login"))
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_url_lets_in_exactly_the_roles_it_should(client, personas, world, name):
    if name not in all_urls():
        pytest.skip("the URL no longer exists (test_every_url_has_an_expectation reports it)")
    expected = EXPECTED[name]
    api = all_urls()[name].startswith("api/v1/")
    problems = []
    for role in ROLES:
        response = fetch(client, world, personas, name, role, expected.method)
        allowed = role in expected.allowed
        if response.status_code >= 500:
            problems.append(f"{role}: {response.status_code}")
        elif allowed and _shut_out(response, role=role, public="anonymous" in expected.allowed):
            problems.append(f"{role} should get in but got {response.status_code}")
        elif not allowed and not _refused(response, api=api, role=role):
            problems.append(f"{role} should be refused but got {response.status_code}")
    assert not problems, f"{expected.method} {name}: " + "; ".join(problems)


def test_the_django_admin_is_for_staff_only(client, personas):
    for role in ("editor", "marketer", "analyst", "outsider"):
        client.force_login(personas[role])
        response = client.get(reverse("admin:index"))
        assert response.status_code == 302 and "/admin/login/" in response["Location"], role
    client.force_login(personas["admin"])
    assert client.get(reverse("admin:index")).status_code == 200
