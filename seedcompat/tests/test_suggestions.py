"""Contract of the seed's suggestion and suggestion-type routes under ``/seed/suggestions/``."""

from __future__ import annotations

import datetime as dt

import pytest

from seedcompat.models import Suggestion, SuggestionType

pytestmark = pytest.mark.django_db

TYPE_FIELDS = ["id", "name", "description", "created_at", "updated_at", "is_active"]
SUGGESTION_FIELDS = [
    "id",
    "user_id",
    "suggestion_type_id",
    "title",
    "description",
    "status",
    "created_at",
    "updated_at",
    "is_active",
    "user",
    "suggestion_type",
]
USER_FIELDS = {
    "id",
    "email",
    "fname",
    "lname",
    "username",
    "profile_picture_url",
    "blacklisted",
    "role_id",
    "is_active",
    "status",
}


def assert_error(response, code: int) -> None:
    assert response.status_code == code, response.content
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def utc(text: str) -> dt.datetime:
    assert text.endswith("Z")
    return dt.datetime.fromisoformat(text)


@pytest.fixture
def feature():
    return SuggestionType.objects.create(name="Feature", description="Something new")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(email="other@example.com", password="pw-other-12345")


# --- types ----------------------------------------------------------------------------------


def test_type_list_shape_and_order(user_api_client, admin_api_client, feature):
    bug = SuggestionType.objects.create(name="Bug")
    hidden = SuggestionType.objects.create(name="Old", is_active=False)
    rows = user_api_client.get("/seed/suggestions/types").json()
    assert [r["id"] for r in rows] == [bug.pk, feature.pk]
    assert list(rows[1]) == TYPE_FIELDS
    assert rows[1]["name"] == "Feature" and rows[1]["description"] == "Something new" and rows[1]["is_active"]
    assert rows[0]["description"] is None
    assert utc(rows[1]["created_at"]) <= utc(rows[1]["updated_at"])
    assert [r["id"] for r in admin_api_client.get("/seed/suggestions/types/").json()] == [bug.pk, feature.pk, hidden.pk]
    assert user_api_client.get(f"/seed/suggestions/types/{feature.pk}").json()["name"] == "Feature"
    assert_error(user_api_client.get(f"/seed/suggestions/types/{hidden.pk}"), 404)


def test_type_create_update_delete(admin_api_client):
    created = admin_api_client.post("/seed/suggestions/types", {"name": "Data", "description": "Feeds"}, format="json")
    assert created.status_code == 201 and list(created.json()) == TYPE_FIELDS
    pk = created.json()["id"]
    assert_error(admin_api_client.post("/seed/suggestions/types", {"name": " data "}, format="json"), 400)
    assert_error(admin_api_client.post("/seed/suggestions/types", {"description": "x"}, format="json"), 400)

    changed = admin_api_client.put(
        f"/seed/suggestions/types/{pk}", {"name": "Data feeds", "description": None}, format="json"
    )
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["description"]) == ("Data feeds", None)
    assert_error(admin_api_client.put("/seed/suggestions/types/999999", {"name": "X"}, format="json"), 404)

    deleted = admin_api_client.delete(f"/seed/suggestions/types/{pk}/")
    assert deleted.status_code == 200 and "message" in deleted.json()
    assert_error(admin_api_client.delete(f"/seed/suggestions/types/{pk}"), 404)


def test_type_in_use_is_a_conflict(admin_api_client, admin_user, feature):
    Suggestion.objects.create(user=admin_user, suggestion_type=feature, title="t", description="d")
    assert_error(admin_api_client.delete(f"/seed/suggestions/types/{feature.pk}"), 409)
    assert SuggestionType.objects.filter(pk=feature.pk).exists()


# --- suggestions ----------------------------------------------------------------------------


def test_user_creates_and_reads_own(user_api_client, user, feature):
    body = {"title": "Add BTC", "description": "Please add bitcoin", "suggestion_type_id": feature.pk}
    created = user_api_client.post("/seed/suggestions/", body, format="json")
    assert created.status_code == 201, created.content
    out = created.json()
    assert list(out) == SUGGESTION_FIELDS
    assert (out["user_id"], out["suggestion_type_id"], out["status"], out["is_active"]) == (
        user.pk,
        feature.pk,
        "pending",
        True,
    )
    assert set(out["user"]) == USER_FIELDS and out["user"]["id"] == user.pk
    assert list(out["suggestion_type"]) == TYPE_FIELDS and out["suggestion_type"]["name"] == "Feature"
    utc(out["created_at"])

    assert [s["id"] for s in user_api_client.get("/seed/suggestions").json()] == [out["id"]]
    assert [s["id"] for s in user_api_client.get("/seed/suggestions/my").json()] == [out["id"]]
    assert user_api_client.get(f"/seed/suggestions/{out['id']}").json()["title"] == "Add BTC"


def test_admin_lists_all_newest_first_and_sets_status(admin_api_client, user_api_client, user, other_user, feature):
    first = Suggestion.objects.create(user=user, suggestion_type=feature, title="one", description="d")
    second = Suggestion.objects.create(user=other_user, suggestion_type=feature, title="two", description="d")
    assert [s["id"] for s in admin_api_client.get("/seed/suggestions/").json()] == [second.pk, first.pk]
    assert [s["id"] for s in user_api_client.get("/seed/suggestions/").json()] == [first.pk]
    assert admin_api_client.get("/seed/suggestions/my").json() == []

    approved = admin_api_client.put(f"/seed/suggestions/{first.pk}", {"status": "Approved"}, format="json")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert_error(admin_api_client.put(f"/seed/suggestions/{first.pk}", {"status": "maybe"}, format="json"), 400)
    assert_error(user_api_client.put(f"/seed/suggestions/{first.pk}", {"status": "implemented"}, format="json"), 403)
    edited = user_api_client.put(f"/seed/suggestions/{first.pk}", {"title": "one, edited"}, format="json")
    assert edited.status_code == 200 and edited.json()["title"] == "one, edited"
    assert edited.json()["status"] == "approved"


def test_others_suggestions_are_forbidden_and_delete(user_api_client, admin_api_client, user, other_user, feature):
    mine = Suggestion.objects.create(user=user, suggestion_type=feature, title="mine", description="d")
    theirs = Suggestion.objects.create(user=other_user, suggestion_type=feature, title="theirs", description="d")
    assert_error(user_api_client.get(f"/seed/suggestions/{theirs.pk}"), 403)
    assert_error(user_api_client.put(f"/seed/suggestions/{theirs.pk}", {"title": "x"}, format="json"), 403)
    assert_error(user_api_client.delete(f"/seed/suggestions/{theirs.pk}"), 403)
    assert_error(user_api_client.get("/seed/suggestions/999999"), 404)

    deleted = user_api_client.delete(f"/seed/suggestions/{mine.pk}")
    assert deleted.status_code == 200 and "message" in deleted.json()
    by_admin = admin_api_client.delete(f"/seed/suggestions/{theirs.pk}/")
    assert by_admin.status_code == 200 and "message" in by_admin.json()
    assert not Suggestion.objects.exists()


def test_create_bad_input(user_api_client, feature):
    inactive = SuggestionType.objects.create(name="Closed", is_active=False)
    good = {"title": "t", "description": "d", "suggestion_type_id": feature.pk}
    for bad in (
        {},
        {**good, "title": ""},
        {**good, "suggestion_type_id": 999999},
        {**good, "suggestion_type_id": inactive.pk},
        {**good, "suggestion_type_id": "abc"},
        {**good, "status": "nope"},
    ):
        assert_error(user_api_client.post("/seed/suggestions/", bad, format="json"), 400)
    assert_error(user_api_client.post("/seed/suggestions/", {**good, "status": "approved"}, format="json"), 403)
    assert_error(user_api_client.post("/seed/suggestions/", "[]", content_type="application/json"), 400)


def test_permission_matrix(api_client, user_api_client, feature):
    for url in (
        "/seed/suggestions/types",
        "/seed/suggestions/",
        "/seed/suggestions/my",
        f"/seed/suggestions/types/{feature.pk}",
    ):
        assert_error(api_client.get(url), 401)
        assert user_api_client.get(url).status_code == 200
    assert_error(api_client.post("/seed/suggestions/", {}, format="json"), 401)
    for method, url in (
        ("post", "/seed/suggestions/types"),
        ("put", f"/seed/suggestions/types/{feature.pk}"),
        ("delete", f"/seed/suggestions/types/{feature.pk}"),
    ):
        assert_error(getattr(api_client, method)(url, {"name": "x"}, format="json"), 401)
        assert_error(getattr(user_api_client, method)(url, {"name": "x"}, format="json"), 403)
