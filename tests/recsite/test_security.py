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
from recsite import tokens
from recsite.models import ApiToken, AuditEntry
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


# --- API tokens (recsite.tokens) ---------------------------------------------------------------------


def test_api_tokens_are_stored_as_hashes_only_and_authenticate_with_the_token_header(client, personas):
    token, key = tokens.token_create(user=personas["analyst"], name="nightly export")
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert key not in {str(v) for v in stored.values()}
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(stored["prefix"])
    response = client.get("/api/v1/items", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert client.get("/api/v1/items", HTTP_AUTHORIZATION=f"Token {key}x").status_code in (401, 403)
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_a_revoked_token_is_refused_on_the_next_request(client, personas):
    token, key = tokens.token_create(user=personas["analyst"], name="x")
    assert client.get("/api/v1/items", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert tokens.token_revoke(token=token, revoked_by=personas["admin"]) is True
    assert tokens.token_revoke(token=token, revoked_by=personas["admin"]) is False, (
        "revoking twice is a no-op"
    )
    response = client.get("/api/v1/items", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code in (401, 403)
    assert response.json()["error"] == "Invalid token."


def test_a_token_of_a_deactivated_user_is_refused(client, personas):
    _, key = tokens.token_create(user=personas["analyst"], name="x")
    personas["analyst"].is_active = False
    personas["analyst"].save()
    assert client.get("/api/v1/items", HTTP_AUTHORIZATION=f"Token {key}").status_code in (401, 403)


def test_the_token_page_shows_a_new_key_once_and_lists_only_your_own(client_as, personas):
    tokens.token_create(user=personas["admin"], name="admin script")
    client = client_as("marketer")
    response = client.post(reverse("api_tokens"), {"name": "web backend"}, REMOTE_ADDR="192.0.2.9")
    key = response.context["new_key"]
    assert key and key in response.content.decode()
    page = client.get(reverse("api_tokens")).content.decode()
    assert key not in page, "the key is shown once"
    assert "web backend" in page and "admin script" not in page
    token = ApiToken.objects.get(name="web backend")
    assert token.user == personas["marketer"]
    client.post(reverse("api_token_revoke", args=[token.pk]), REMOTE_ADDR="192.0.2.9")
    token.refresh_from_db()
    assert token.revoked_at is not None
    entries = list(AuditEntry.objects.order_by("pk").values_list("action", "actor_label", "target_id", "ip"))
    assert entries[-2:] == [
        ("api_token.create", "marketer", str(token.pk), "192.0.2.9"),
        ("api_token.revoke", "marketer", str(token.pk), "192.0.2.9"),
    ]


def test_the_token_page_refuses_a_missing_name_and_other_peoples_tokens(client_as, personas):
    admin_token, _ = tokens.token_create(user=personas["admin"], name="admin script")
    client = client_as("marketer")
    response = client.post(reverse("api_tokens"), {"name": ""}, follow=True)
    assert "Name what will use the token" in response.content.decode()
    assert not ApiToken.objects.filter(user=personas["marketer"]).exists()
    assert client.post(reverse("api_token_revoke", args=[admin_token.pk])).status_code == 403
    admin_token.refresh_from_db()
    assert admin_token.revoked_at is None


def test_admins_see_every_token_create_them_for_others_and_revoke_any(client_as, personas):
    marketer_token, _ = tokens.token_create(user=personas["marketer"], name="marketer script")
    client = client_as("admin")
    page = client.get(reverse("api_tokens")).content.decode()
    assert "marketer script" in page
    client.post(reverse("api_tokens"), {"name": "service", "user": "analyst"})
    assert ApiToken.objects.get(name="service").user == personas["analyst"]
    response = client.post(reverse("api_tokens"), {"name": "service", "user": "nobody"}, follow=True)
    assert "There is no user" in response.content.decode()
    client.post(reverse("api_token_revoke", args=[marketer_token.pk]))
    marketer_token.refresh_from_db()
    assert marketer_token.revoked_at is not None


def test_the_token_endpoint_creates_a_new_hashed_token_per_call(client, personas):
    first = client.post("/api/token/", {"username": "analyst", "password": "pw"}).json()["token"]
    second = client.post("/api/token/", {"username": "analyst", "password": "pw"}).json()["token"]
    assert first != second
    assert client.get("/api/v1/items", HTTP_AUTHORIZATION=f"Token {first}").status_code == 200
    bad = client.post("/api/token/", {"username": "analyst", "password": "nope"})
    assert bad.status_code == 400 and "error" in bad.json()
    assert ApiToken.objects.filter(user=personas["analyst"]).count() == 2


def test_the_management_command_prints_the_key_once_lists_and_revokes(personas):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("api_token", "create", "marketer", "--name", "cron", stdout=out)
    key = out.getvalue().strip()
    token = ApiToken.objects.get(key_hash=hashlib.sha256(key.encode()).hexdigest())
    assert token.name == "cron" and token.user == personas["marketer"]
    listing = StringIO()
    call_command("api_token", "list", "marketer", stdout=listing)
    assert token.prefix in listing.getvalue() and key not in listing.getvalue()
    call_command("api_token", "revoke", token.prefix, stdout=StringIO())
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEntry.objects.filter(action="api_token.revoke", target_id=str(token.pk)).exists()
    with pytest.raises(CommandError):
        call_command("api_token", "create", "nobody", stdout=StringIO())


def test_existing_drf_tokens_are_carried_over_hashed_by_the_migration(personas):
    """Migration 0002_api_tokens copies rest_framework.authtoken rows (clear keys) as hashes
    and deletes the clear copies, so keys scripts already use keep working."""
    import importlib

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("recsite.migrations.0002_api_tokens")
    key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token "
            '("key" varchar(40) PRIMARY KEY, "user_id" integer, "created" timestamp)'
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [key, personas["editor"].pk, "2026-01-02 03:04:05+00:00"],
        )

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection
    migration.drf_tokens_import(apps, editor)
    token = ApiToken.objects.get(user=personas["editor"])
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert token.created_at.year == 2026 and token.created_at.month == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0, "the clear keys are deleted"
    assert tokens.token_authenticate(key=key).user == personas["editor"]


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
