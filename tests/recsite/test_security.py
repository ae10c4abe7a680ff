"""Security headers, CSRF, throttling and the audit log (docs/security.md)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from experiments.models import Experiment
from personalization import services as personalization_services
from personalization import tracking
from personalization.models import Profile, WriteKey
from recsite.models import AuditEntry
from tests import factories


def test_pages_and_the_api_send_a_strict_content_security_policy(client_as):
    client = client_as("admin")
    for url in ("/", "/api/v1/items", "/api/docs/"):
        policy = client.get(url)["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self';" in policy, "no inline or third-party scripts"
        assert "frame-ancestors 'none'" in policy


def test_the_api_docs_load_their_script_from_a_file_not_inline(client, db):
    html = client.get("/api/docs/").content.decode()
    assert '<script src="' in html
    assert "<script>" not in html.replace(" ", "")


# --- CSRF ---------------------------------------------------------------------------------------

CSRF_SAMPLE = [
    ("catalog:tag_create", {}),
    ("personalization:write_keys", {}),
    ("personalization:recommender_create", {}),
    ("experiments:experiment_create", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), CSRF_SAMPLE)
def test_a_form_posted_without_its_csrf_token_is_refused(personas, name, kwargs):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["admin"])
    assert client.get(reverse(name, kwargs=kwargs)).status_code == 200
    response = client.post(reverse(name, kwargs=kwargs), {"name": "x", "source": "x"})
    assert response.status_code == 403


def test_state_changing_posts_with_object_urls_need_the_csrf_token_too(personas):
    write_key, _ = tracking.write_key_create(source_name="web")
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["admin"])
    response = client.post(reverse("personalization:write_key_revoke", args=[write_key.pk]))
    assert response.status_code == 403
    write_key.refresh_from_db()
    assert write_key.revoked_at is None


def test_the_login_form_needs_the_csrf_token(personas):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "admin", "password": "pw"})
    assert response.status_code == 403


def test_the_api_with_a_session_needs_the_csrf_token_for_writes(personas):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["editor"])
    response = client.post(
        "/api/v1/items", {"external_id": "x1", "title": "X"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.content.decode()


# --- Login throttling ------------------------------------------------------------------------


def _login(client, username, password, ip="10.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_five_failed_logins_lock_that_user_name_from_that_ip(client, personas, settings):
    settings.LOGIN_FAILURE_LIMIT = 5
    for _ in range(5):
        assert "Please enter a correct username" in _login(client, "editor", "wrong").content.decode()
    # Even the right password is refused now, with a clear message.
    response = _login(client, "editor", "pw")
    assert response.status_code == 200
    assert "Too many failed sign-in attempts" in response.content.decode()
    # Another IP, and another user from the same IP, are not affected.
    assert _login(Client(), "editor", "pw", ip="10.0.0.2").status_code == 302
    assert _login(Client(), "marketer", "pw").status_code == 302


def test_a_successful_login_clears_the_failure_count(client, personas, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    _login(client, "analyst", "wrong")
    _login(client, "analyst", "wrong")
    assert _login(client, "analyst", "pw").status_code == 302
    client.logout()
    _login(client, "analyst", "wrong")
    _login(client, "analyst", "wrong")
    assert _login(client, "analyst", "pw").status_code == 302


def test_the_admin_login_is_throttled_too(client, personas, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    url = reverse("admin:login")
    for _ in range(2):
        client.post(url, {"username": "admin", "password": "wrong"})
    response = client.post(url, {"username": "admin", "password": "pw"})
    assert "Too many failed sign-in attempts" in response.content.decode()


# --- API throttling --------------------------------------------------------------------------


def test_anonymous_api_clients_are_throttled(client, db, monkeypatch):
    from recsite.security import AnonRateThrottle

    monkeypatch.setattr(AnonRateThrottle, "rate", "3/minute", raising=False)
    # The token endpoint is open to anonymous clients: throttling also slows password guessing.
    statuses = [client.post("/api/token/", {"username": "x", "password": "y"}).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


def test_signed_in_api_users_are_throttled_per_user(client_as, monkeypatch):
    from rest_framework.throttling import UserRateThrottle

    monkeypatch.setattr(UserRateThrottle, "rate", "2/minute", raising=False)
    client = client_as("editor")
    assert [client.get("/api/v1/items").status_code for _ in range(3)] == [200, 200, 429]


def test_tracking_with_a_write_key_is_not_limited_by_the_anonymous_rate(client, db, monkeypatch):
    from recsite.security import AnonRateThrottle

    monkeypatch.setattr(AnonRateThrottle, "rate", "1/minute", raising=False)
    _, key = tracking.write_key_create(source_name="web")

    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    body = {"type": "track", "event": "Product Viewed", "userId": "u1", "properties": {"item_id": "m1"}}
    for _ in range(3):
        response = client.post(
            "/api/v1/track", body, content_type="application/json", HTTP_AUTHORIZATION=auth
        )
        assert response.status_code == 200, response.content


# --- Secrets at rest ---------------------------------------------------------------------------


def test_write_keys_are_stored_as_hashes_only(db):
    write_key, key = tracking.write_key_create(source_name="web")
    stored = WriteKey.objects.filter(pk=write_key.pk).values().get()
    assert key not in {str(v) for v in stored.values()}
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()


# --- Audit log ------------------------------------------------------------------------------------


def test_creating_and_revoking_a_write_key_is_audited_with_who_and_from_where(client_as):
    client = client_as("admin")
    client.post(reverse("personalization:write_keys"), {"source": "web"}, REMOTE_ADDR="192.0.2.7")
    write_key = WriteKey.objects.get()
    client.post(reverse("personalization:write_key_revoke", args=[write_key.pk]), REMOTE_ADDR="192.0.2.7")
    entries = list(AuditEntry.objects.order_by("pk").values_list("action", "actor_label", "target_id", "ip"))
    assert entries == [
        ("write_key.create", "admin", str(write_key.pk), "192.0.2.7"),
        ("write_key.revoke", "admin", str(write_key.pk), "192.0.2.7"),
    ]


def test_deleting_a_profile_is_audited_without_personal_data(client_as):
    profile = Profile.objects.create(external_id="jane@example.com")
    client_as("admin").post(reverse("personalization:profile_delete", args=[profile.pk]))
    entry = AuditEntry.objects.get(action="profile.delete")
    assert entry.actor_label == "admin"
    assert "jane" not in f"{entry.target_label} {entry.detail}"


def test_experiment_pause_and_stop_are_audited(client_as):
    Experiment.objects.create(key="home", name="Home", status=Experiment.Status.RUNNING)
    client = client_as("marketer")
    client.post(reverse("experiments:experiment_transition", args=["home", "pause"]))
    client.post(reverse("experiments:experiment_transition", args=["home", "stop"]))
    assert list(AuditEntry.objects.order_by("pk").values_list("action", "actor_label")) == [
        ("experiment.pause", "marketer"),
        ("experiment.stop", "marketer"),
    ]


def test_model_activation_is_audited_both_automatic_and_manual(personas):
    items = factories.items(2)
    users = factories.profiles(2)
    factories.events([(users[0], items[0], "play"), (users[1], items[1], "view")])
    recommender = factories.trending()
    run = personalization_services.training_run_request(recommender=recommender)
    personalization_services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    personalization_services.recommender_activate(run=run, user=personas["marketer"])
    entries = list(AuditEntry.objects.filter(action="model.activate").order_by("pk"))
    assert [(e.actor_label, e.detail["automatic"]) for e in entries][-1] == ("marketer", False)
    assert all(e.target_id == str(run.pk) for e in entries)


def test_role_changes_in_the_django_admin_are_audited(client_as, personas):
    client = client_as("admin")
    personas["admin"].is_superuser = True
    personas["admin"].save(update_fields=["is_superuser"])
    editor = personas["editor"]
    url = reverse("admin:auth_user_change", args=[editor.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k not in ("password", "last_login")}
    data.update(
        username="editor",
        groups=[Group.objects.get(name="Marketer").pk],
        user_permissions=[],
        date_joined_0=editor.date_joined.strftime("%Y-%m-%d"),
        date_joined_1=editor.date_joined.strftime("%H:%M:%S"),
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = AuditEntry.objects.get(action="user.change")
    assert entry.actor_label == "admin"
    assert "Groups" in entry.detail["fields"]


def test_the_audit_log_page_is_for_admins_and_lists_entries(client_as, personas):
    tracking.write_key_create(source_name="web", created_by=personas["admin"])
    assert client_as("marketer").get(reverse("audit_log")).status_code == 403
    html = client_as("admin").get(reverse("audit_log") + "?action=write_key.create").content.decode()
    assert "write_key.create" in html


def test_audit_entries_cannot_be_changed_or_deleted_in_the_admin(client_as, personas):
    entry = tracking.write_key_create(source_name="web", created_by=personas["admin"])[0]
    audit = AuditEntry.objects.get()
    client = client_as("admin")
    assert client.get(reverse("admin:recsite_auditentry_changelist")).status_code == 200
    assert client.post(reverse("admin:recsite_auditentry_delete", args=[audit.pk])).status_code == 403
    assert client.get(reverse("admin:recsite_auditentry_add")).status_code == 403
    assert entry.pk
