import pytest

from personalization import services
from personalization.models import TrainingRun
from tests import factories


@pytest.fixture
def trained(db):
    items = factories.items(4)
    users = factories.profiles(3)
    factories.events(
        [(users[0], items[0], "complete"), (users[1], items[0], "complete"), (users[1], items[1], "play"),
         (users[2], items[2], "view")]
    )  # fmt: skip
    recommender = factories.trending()
    run = services.training_run_request(recommender=recommender)
    services.training_run_execute(run_id=run.pk)
    return items, users, recommender


def test_recommendations_exclude_what_the_user_consumed_and_explain_each_pick(client_as, trained):
    items, _, _ = trained
    response = client_as("marketer").get("/api/v1/recommendations", {"user_id": "u000", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["recommender"] == "trending"
    assert body["known_profile"] is True
    external_ids = [r["item"] for r in body["results"]]
    assert external_ids == [items[1].external_id, items[2].external_id]
    first = body["results"][0]
    assert first["rank"] == 1
    assert first["reason_data"] == {"type": "trending"}
    assert len(first["recommendation_id"]) == 32


def test_unknown_users_get_trending_items(client_as, trained):
    body = client_as("analyst").get("/api/v1/recommendations", {"user_id": "nobody"}).json()
    assert body["known_profile"] is False
    assert body["results"][0]["item"] == trained[0][0].external_id


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [({"k": 0}, 400, "k"), ({"k": "ten"}, 400, "k"), ({"recommender": "nope"}, 404, "recommender")],
)
def test_bad_recommendation_requests_get_a_json_error_naming_the_field(
    client_as, trained, params, status, field
):
    response = client_as("marketer").get("/api/v1/recommendations", params)
    assert response.status_code == status
    assert response.json()["field"] == field
    assert response.json()["error"]


def test_an_untrained_recommender_answers_409(client_as, db):
    factories.trending()
    response = client_as("marketer").get("/api/v1/recommendations", {"user_id": "u1"})
    assert response.status_code == 409
    assert "train it first" in response.json()["error"]


def test_the_api_answers_401_in_json_without_credentials_and_403_without_the_role(client, client_as, trained):
    response = client.get("/api/v1/recommendations")
    assert response.status_code in (401, 403)
    assert "error" in response.json()
    assert client_as("editor").get("/api/v1/recommendations").status_code == 403


def test_a_token_authenticates_scripts(client, personas, trained):
    from recsite.tokens import token_create

    _, key = token_create(user=personas["marketer"], name="tests")
    response = client.get("/api/v1/recommendations", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200


def test_training_through_the_api_queues_a_run_and_reports_it(
    client_as, trained, django_capture_on_commit_callbacks
):
    _, _, recommender = trained
    client = client_as("marketer")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/recommenders/{recommender.pk}/train")
    assert response.status_code == 202
    run_id = response.json()["id"]
    detail = client.get(f"/api/v1/training-runs/{run_id}").json()
    assert detail["status"] == TrainingRun.Status.SUCCEEDED
    assert detail["version"] == 2
    assert "ndcg@10" in detail["metrics"]


def test_a_second_train_request_while_one_is_queued_gets_409(
    client_as, trained, django_capture_on_commit_callbacks
):
    _, _, recommender = trained
    client = client_as("marketer")
    with django_capture_on_commit_callbacks(execute=False):
        assert client.post(f"/api/v1/recommenders/{recommender.pk}/train").status_code == 202
        second = client.post(f"/api/v1/recommenders/{recommender.pk}/train")
    assert second.status_code == 409
    assert second.json()["field"] == "recommender"


def test_analysts_cannot_start_training(client_as, trained):
    _, _, recommender = trained
    assert client_as("analyst").post(f"/api/v1/recommenders/{recommender.pk}/train").status_code == 403


def test_recommenders_can_be_created_through_the_api_with_validated_params(client_as, db):
    client = client_as("marketer")
    ok = client.post(
        "/api/v1/recommenders", {"name": "fast", "params": {"half_life_days": 3}}, "application/json"
    )
    assert ok.status_code == 201
    bad = client.post("/api/v1/recommenders", {"name": "bad", "params": {"alpha": 1}}, "application/json")
    assert bad.status_code == 400
    assert bad.json()["field"] == "params"
