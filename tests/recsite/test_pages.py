import pytest
from django.urls import reverse

from catalog.models import ItemTag, Tag
from tests import factories

PAGES = {
    # url name (and args) -> personas that may open it
    ("dashboard", ()): {"admin", "editor", "marketer", "analyst", "outsider"},
    ("catalog:item_list", ()): {"admin", "editor", "marketer", "analyst"},
    ("catalog:taxonomy", ()): {"admin", "editor", "marketer", "analyst"},
    ("personalization:profile_list", ()): {"admin", "marketer", "analyst"},
    ("personalization:recommender_list", ()): {"admin", "marketer", "analyst"},
    ("personalization:recommender_create", ()): {"admin", "marketer"},
    ("experiments:experiment_list", ()): {"admin", "marketer", "analyst"},
}


@pytest.mark.parametrize("persona", ["admin", "editor", "marketer", "analyst", "outsider"])
def test_each_role_opens_exactly_its_pages(client_as, persona):
    client = client_as(persona)
    for (name, args), allowed in PAGES.items():
        status = client.get(reverse(name, args=args)).status_code
        assert status == (200 if persona in allowed else 403), (persona, name, status)


def test_the_navigation_shows_only_the_sections_a_role_may_use(client_as):
    html = client_as("editor").get("/").content.decode()
    assert "Catalog" in html
    assert "Recommendations</a>" not in html
    assert "Experiments</a>" not in html


def test_every_page_needs_a_login(client, db):
    for (name, args), _ in PAGES.items():
        response = client.get(reverse(name, args=args))
        assert response.status_code == 302
        assert response.url.startswith("/login/")


def test_the_login_page_logs_a_demo_user_in(client, personas):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "marketer", "password": "pw"})
    assert response.status_code == 302
    assert response.url == "/"
    client.logout()
    wrong = client.post("/login/", {"username": "marketer", "password": "nope"})
    assert wrong.status_code == 200
    assert "correct username and password" in wrong.content.decode()


def test_the_dashboard_shows_events_per_day_as_a_plotly_chart(client_as):
    items = factories.items(2)
    users = factories.profiles(2)
    factories.events([(users[0], items[0], "play"), (users[1], items[1], "complete")])
    html = client_as("analyst").get("/").content.decode()
    assert 'id="events-chart-data"' in html
    assert "vendor/plotly.min.js" in html


def test_an_empty_dashboard_says_what_to_do_next(client_as):
    html = client_as("marketer").get("/").content.decode()
    assert "No events in this period" in html


def test_plotly_is_served_from_our_own_static_files(client_as):
    response = client_as("analyst").get("/static/vendor/plotly.min.js")
    assert response.status_code == 200
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()


def test_unknown_urls_get_the_friendly_404_page(client_as):
    response = client_as("analyst").get("/no/such/page/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_missing_objects_get_404_not_500(client_as):
    client = client_as("admin")
    assert client.get("/catalog/items/999999/").status_code == 404
    assert client.get("/recommendations/runs/999999/").status_code == 404
    assert client.get("/api/v1/training-runs/999999").status_code == 404
    assert client.get("/api/v1/training-runs/999999").json()["error"]


def test_the_health_check_needs_no_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_openapi_schema_and_interactive_docs_work_offline(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/recommendations" in schema.content
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs
    assert "cdn" not in docs.lower()


def test_the_taxonomy_page_shows_the_tree_with_counts(client_as):
    genre = Tag.objects.add_root({"name": "Genre"})
    anime = Tag.objects.add_child(genre, {"name": "Anime"})
    mecha = Tag.objects.add_child(anime, {"name": "Mecha"})
    assert mecha.slug_path == "genre/anime/mecha"
    item = factories.items(1)[0]
    ItemTag.objects.create(item=item, tag=mecha)
    html = client_as("editor").get("/catalog/taxonomy/").content.decode()
    assert "Genre" in html and "Anime" in html and "Mecha" in html
    item_html = client_as("editor").get(item.get_absolute_url()).content.decode()
    assert "Mecha" in item_html


def test_a_marketer_creates_a_recommender_and_gets_form_errors_for_bad_params(client_as):
    client = client_as("marketer")
    bad = client.post(
        reverse("personalization:recommender_create"), {"name": "x", "algorithm": "trending", "params": "[1]"}
    )
    assert bad.status_code == 200
    assert "Enter a JSON object" in bad.content.decode()
    ok = client.post(
        reverse("personalization:recommender_create"),
        {"name": "home", "algorithm": "trending", "params": "{}", "primary_metric": "ndcg@10"},
    )
    assert ok.status_code == 302


def test_the_train_button_queues_a_run_and_shows_its_progress_page(
    client_as, django_capture_on_commit_callbacks
):
    items = factories.items(2)
    users = factories.profiles(2)
    factories.events(
        [(users[0], items[0], "play"), (users[1], items[0], "complete"), (users[1], items[1], "view")]
    )
    recommender = factories.trending()
    client = client_as("marketer")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("personalization:recommender_train", args=[recommender.pk]), follow=True
        )
    html = response.content.decode()
    assert 'id="run-progress"' in html
    assert "queued" in html.lower()
    assert recommender.runs.get().status == "succeeded"


def test_a_finished_run_page_lists_its_metrics_data_sizes_and_timings(client_as):
    from personalization import services

    items = factories.items(2)
    users = factories.profiles(2)
    factories.events(
        [(users[0], items[0], "play"), (users[1], items[0], "complete"), (users[1], items[1], "view")]
    )
    run = services.training_run_request(recommender=factories.trending())
    services.training_run_execute(run_id=run.pk)
    html = client_as("analyst").get(run.get_absolute_url()).content.decode()
    assert "ndcg@10" in html
    assert "item_count" in html
    assert "snapshot" in html


def test_the_jobs_page_lists_long_jobs_with_progress_errors_and_a_retry_for_failed_training(client_as):
    from personalization.models import TrainingRun

    recommender = factories.trending()
    TrainingRun.objects.create(
        recommender=recommender, version=1, status="failed", error="Boom: no data\ntrace"
    )
    TrainingRun.objects.create(
        recommender=recommender, version=2, status="running", progress=40, message="Fitting"
    )
    html = client_as("marketer").get(reverse("jobs")).content.decode()
    assert "trending v1" in html and "Boom: no data" in html and "trace" not in html
    assert 'value="40"' in html
    assert html.count(">Retry</button>") == 1
    assert "trending v1" not in client_as("editor").get(reverse("jobs")).content.decode()


@pytest.mark.django_db
def test_every_model_in_the_admin_has_a_changelist_that_loads(client_as):
    from django.contrib import admin
    from django.urls import reverse

    client = client_as("admin")
    ours = {"recsite", "catalog", "personalization", "experiments"}
    for model in [m for m in admin.site._registry if m._meta.app_label in ours]:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert client.get(url).status_code == 200, url
