from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from recsite import services


def test_setup_accounts_creates_the_four_demo_users_once_with_the_configured_password(db, settings, tmp_path):
    settings.DEMO_PASSWORD = "demo-pass-123"
    call_command("setup_accounts")
    call_command("setup_accounts")
    users = get_user_model().objects.order_by("username")
    assert [u.username for u in users] == ["admin", "analyst", "editor", "marketer"]
    for user in users:
        assert user.check_password("demo-pass-123")
        assert user.groups.count() == 1
    assert users.get(username="admin").is_superuser


def test_a_generated_demo_password_is_kept_so_reruns_keep_the_same_accounts(db, settings, tmp_path):
    settings.DEMO_PASSWORD = ""
    settings.VAR_DIR = tmp_path
    first, generated = services.demo_password()
    second, generated_again = services.demo_password()
    assert generated and not generated_again
    assert first == second and len(first) >= 10


def test_roles_get_the_permissions_their_work_needs(db):
    services.roles_sync()
    editor = Group.objects.get(name="Editor").permissions.values_list("codename", flat=True)
    assert {"change_item", "add_tag", "delete_itemtag"} <= set(editor)
    assert "change_recommender" not in editor
    marketer = set(Group.objects.get(name="Marketer").permissions.values_list("codename", flat=True))
    assert {"add_trainingrun", "change_experiment", "view_item"} <= marketer
    assert "change_item" not in marketer
    analyst = set(Group.objects.get(name="Analyst").permissions.values_list("codename", flat=True))
    assert "export_data" in analyst
    assert all(code.startswith("view_") or code == "export_data" for code in analyst)
