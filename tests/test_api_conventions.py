"""API.md "Conventions" and "Bootstrap": the one error contract, JSON everywhere, optional trailing slashes,
health, Idempotency-Key on creating POSTs, throttling per API key, and `issue_api_key`."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from registry.api.throttling import ApiKeyRateThrottle
from registry.errors import Conflict
from registry.models import ApiKey, AuditEvent, IdempotencyRecord, Prescriber, Role, User
from registry.services.accounts import admin_user_ensure

from .conftest import client_with_key, persona_for
from .factories import PrescriberFactory, make_npi

pytestmark = pytest.mark.django_db


def prescriber_body(**overrides: Any) -> dict[str, Any]:
    return {
        "npi": make_npi(),
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.org",
        "knowledge_assessment_score": 8,
        "knowledge_assessment_passed_on": "2026-10-01",
        "enrollment_signed_on": "2026-10-02",
        **overrides,
    }


def assert_error(response: Any, status: int, code: str, keys: set[str] | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content)
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if keys is not None:
        assert set(body) == keys
    return body


# --- the error contract ----------------------------------------------------------------------------------


def test_400_validation_error_has_code_detail_and_errors_by_field(admin):
    response = admin.post("/api/v1/prescribers", {"npi": "1558598798", "email": "nope"})
    body = assert_error(response, 400, "validation_error", {"code", "detail", "errors"})
    assert body["detail"] == "Invalid input."
    assert set(body["errors"]) == {"npi", "email", "first_name", "last_name"}
    assert body["errors"]["first_name"] == ["This field is required."]
    for messages in body["errors"].values():
        assert isinstance(messages, list)
        assert all(isinstance(m, str) and m for m in messages)


def test_401_has_code_and_detail_only(anon):
    assert_error(anon.get("/api/v1/prescribers"), 401, "not_authenticated", {"code", "detail"})


def test_401_for_an_unknown_key_has_code_and_detail_only():
    response = client_with_key("rems_abcdefabcdef_unknown").get("/api/v1/me")
    assert_error(response, 401, "authentication_failed", {"code", "detail"})


def test_403_has_code_and_detail_only(prescriber):
    assert_error(prescriber.get("/api/v1/prescribers"), 403, "permission_denied", {"code", "detail"})


def test_404_has_code_and_detail_only(admin):
    response = admin.get(f"/api/v1/prescribers/{uuid.uuid4()}")
    assert_error(response, 404, "not_found", {"code", "detail"})


def test_405_has_code_and_detail_only(admin):
    response = admin.post("/api/v1/health")
    assert_error(response, 405, "method_not_allowed", {"code", "detail"})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/prescribers/{pid}"),
        ("delete", "/api/v1/prescribers/{pid}"),
        ("post", "/api/v1/me"),
    ],
)
def test_405_for_a_method_the_endpoint_does_not_have_even_for_admin(admin, method, path):
    """403 means "your role may not do this"; a method no role may use is 405 (API.md conventions)."""
    participant = PrescriberFactory()
    response = getattr(admin.client, method)(path.format(pid=participant.pk), {}, format="json")
    assert_error(response, 405, "method_not_allowed", {"code", "detail"})
    assert Prescriber.objects.filter(pk=participant.pk).exists()


def test_409_has_code_detail_and_no_errors(admin):
    participant = PrescriberFactory(certified=True)
    body = assert_error(
        admin.post(f"/api/v1/prescribers/{participant.pk}/certify"), 409, "invalid_status_transition"
    )
    assert "errors" not in body


def test_unsupported_media_type_is_415_json(admin):
    response = admin.client.post(
        "/api/v1/prescribers", "npi=1558598797", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "unsupported_media_type", {"code", "detail"})
    assert Prescriber.objects.count() == 0


@pytest.mark.parametrize(
    "raw",
    ["{bad", '{"npi": "1558598797",}', b"\xff\xfe{}", '{"knowledge_assessment_score": NaN}'],
)
def test_malformed_json_is_400_parse_error(admin, raw):
    count = Prescriber.objects.count()
    response = admin.client.post("/api/v1/prescribers", data=raw, content_type="application/json")
    assert_error(response, 400, "parse_error", {"code", "detail"})
    assert Prescriber.objects.count() == count


def test_malformed_json_on_a_lifecycle_action_is_400_parse_error(admin):
    participant = PrescriberFactory(certified=True)
    response = admin.client.post(
        f"/api/v1/prescribers/{participant.pk}/suspend", data='{"reason": ', content_type="application/json"
    )
    assert_error(response, 400, "parse_error", {"code", "detail"})
    assert Prescriber.objects.get(pk=participant.pk).status == "certified"


def test_deeply_nested_json_is_a_parse_error_not_a_server_error(admin):
    """A client never gets a 500 for bad input (API.md)."""
    admin.client.raise_request_exception = False
    response = admin.client.post(
        "/api/v1/prescribers", data="[" * 100_000 + "]" * 100_000, content_type="application/json"
    )
    assert_error(response, 400, "parse_error", {"code", "detail"})


@pytest.mark.parametrize(
    "body",
    [
        [],
        "just a string",
        None,
        {"npi": {"nested": 1}},
        {"npi": ["1558598797"]},
        prescriber_body(first_name="nul\x00byte"),
        prescriber_body(knowledge_assessment_score=10**40),
        prescriber_body(knowledge_assessment_score=1.5),
        prescriber_body(enrollment_signed_on="2026-02-30"),
        prescriber_body(enrollment_signed_on="yesterday"),
        prescriber_body(email="x" * 300 + "@example.org"),
        prescriber_body(first_name="x" * 101),
        prescriber_body(dea_number="AP58367271234"),
    ],
)
def test_bad_input_is_400_validation_error_never_500(admin, body):
    admin.client.raise_request_exception = False
    count = Prescriber.objects.count()
    response = admin.client.post("/api/v1/prescribers", body, format="json")
    assert_error(response, 400, "validation_error", {"code", "detail", "errors"})
    assert Prescriber.objects.count() == count


@pytest.mark.parametrize("query", ["?status=bogus", "?npi=%00"])
def test_bad_filters_are_400_validation_error(admin, query):
    assert_error(admin.get(f"/api/v1/prescribers{query}"), 400, "validation_error")


# --- URLs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/api/v1/nope/", "/api/v1/prescribers/not-a-uuid", "/api/v1/v2/prescribers"]
)
def test_unknown_url_under_api_is_404_json(admin, method, path):
    response = getattr(admin.client, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": "not_found", "detail": "Not found."}


def test_unknown_url_is_404_json_without_a_key(anon):
    response = anon.get("/api/v1/nope")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "Not found."}


def test_trailing_slash_is_optional_on_get(admin):
    """Both forms answer the same resource: 200 with the same body, no redirect."""
    participant = PrescriberFactory()
    for path in (
        "/api/v1/prescribers",
        f"/api/v1/prescribers/{participant.pk}",
        "/api/v1/me",
        "/api/v1/health",
    ):
        bare, slashed = admin.get(path), admin.get(path + "/")
        assert (bare.status_code, slashed.status_code) == (200, 200), path
        assert slashed.json() == bare.json(), path
    assert admin.get(f"/api/v1/prescribers/{participant.pk}/").json()["id"] == str(participant.pk)


@pytest.mark.parametrize("slash", ["", "/"])
def test_trailing_slash_is_optional_on_post_without_redirect(admin, slash):
    response = admin.post("/api/v1/prescribers" + slash, prescriber_body())
    assert response.status_code == 201
    pid = response.json()["id"]
    response = admin.post(f"/api/v1/prescribers/{pid}/certify" + slash)
    assert response.status_code == 200
    assert response.json()["status"] == "certified"
    response = admin.post(f"/api/v1/prescribers/{pid}/suspend" + slash, {"reason": "x"})
    assert response.status_code == 200
    response = admin.patch(f"/api/v1/prescribers/{pid}" + slash, {"phone": "555"})
    assert response.status_code == 200
    response = admin.post(f"/api/v1/prescribers/{pid}/api-keys" + slash)
    assert response.status_code == 201


# --- health ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/health/"])
def test_health_answers_ok_without_auth(anon, path):
    response = anon.get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_ignores_a_bad_key():
    response = client_with_key("rems_bad_bad").get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- Idempotency-Key -------------------------------------------------------------------------------------


def register_events() -> int:
    return AuditEvent.objects.filter(action="prescriber.register").count()


def test_idempotency_same_key_and_body_replays_the_first_response(admin):
    body = prescriber_body()
    first = admin.post("/api/v1/prescribers", body, HTTP_IDEMPOTENCY_KEY="create-ada-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    second = admin.post("/api/v1/prescribers", body, HTTP_IDEMPOTENCY_KEY="create-ada-1")
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Prescriber.objects.count() == 1
    assert register_events() == 1


def test_idempotency_replay_does_not_depend_on_key_order(admin):
    body = prescriber_body()
    first = admin.post("/api/v1/prescribers", body, HTTP_IDEMPOTENCY_KEY="order")
    second = admin.post("/api/v1/prescribers", dict(reversed(body.items())), HTTP_IDEMPOTENCY_KEY="order")
    assert second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert Prescriber.objects.count() == 1


def test_idempotency_replay_on_slash_and_no_slash(admin):
    body = prescriber_body()
    first = admin.post("/api/v1/prescribers", body, HTTP_IDEMPOTENCY_KEY="slash")
    second = admin.post("/api/v1/prescribers/", body, HTTP_IDEMPOTENCY_KEY="slash")
    assert second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert Prescriber.objects.count() == 1


def test_idempotency_same_key_different_body_is_409(admin):
    first = admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="reuse")
    assert first.status_code == 201
    response = admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="reuse")
    assert_error(response, 409, "idempotency_key_reused", {"code", "detail"})
    assert Prescriber.objects.count() == 1
    assert register_events() == 1


def test_idempotency_same_key_on_another_endpoint_is_409(admin):
    body = prescriber_body()
    assert admin.post("/api/v1/prescribers", body, HTTP_IDEMPOTENCY_KEY="cross").status_code == 201
    response = admin.post("/api/v1/facilities", body, HTTP_IDEMPOTENCY_KEY="cross")
    assert_error(response, 409, "idempotency_key_reused")


def test_idempotency_failed_request_does_not_consume_the_key(admin):
    bad = admin.post("/api/v1/prescribers", prescriber_body(npi="1558598798"), HTTP_IDEMPOTENCY_KEY="retry")
    assert_error(bad, 400, "validation_error")
    assert IdempotencyRecord.objects.count() == 0
    fixed = admin.post("/api/v1/prescribers", prescriber_body(npi="1558598797"), HTTP_IDEMPOTENCY_KEY="retry")
    assert fixed.status_code == 201, fixed.json()
    again = admin.post("/api/v1/prescribers", prescriber_body(npi="1558598797"), HTTP_IDEMPOTENCY_KEY="retry")
    assert again["Idempotent-Replayed"] == "true"
    assert Prescriber.objects.count() == 1


def test_idempotency_conflict_does_not_consume_the_key(admin):
    existing = PrescriberFactory()
    dup = admin.post("/api/v1/prescribers", prescriber_body(npi=existing.npi), HTTP_IDEMPOTENCY_KEY="dup")
    assert_error(dup, 409, "duplicate_identifier")
    fixed = admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="dup")
    assert fixed.status_code == 201
    assert Prescriber.objects.count() == 2


def test_idempotency_keys_belong_to_the_caller(admin):
    other_admin = persona_for(admin_user_ensure(username="second-admin"))
    mine = admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="shared")
    theirs = other_admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="shared")
    assert mine.status_code == 201
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert mine.json()["id"] != theirs.json()["id"]
    assert Prescriber.objects.count() == 2


def test_idempotency_window_is_24_hours(admin):
    start = dt.datetime(2026, 11, 5, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        assert (
            admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="day").status_code
            == 201
        )
    with time_machine.travel(start + dt.timedelta(hours=23, minutes=59), tick=False):
        response = admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="day")
        assert_error(response, 409, "idempotency_key_reused")
    with time_machine.travel(start + dt.timedelta(hours=24, seconds=1), tick=False):
        response = admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="day")
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response
    assert Prescriber.objects.count() == 2


def test_idempotency_key_longer_than_255_characters_is_400(admin):
    response = admin.post("/api/v1/prescribers", prescriber_body(), HTTP_IDEMPOTENCY_KEY="k" * 256)
    body = assert_error(response, 400, "validation_error")
    assert set(body["errors"]) == {"Idempotency-Key"}
    assert Prescriber.objects.count() == 0


def test_without_idempotency_key_each_post_creates(admin):
    assert admin.post("/api/v1/prescribers", prescriber_body()).status_code == 201
    assert admin.post("/api/v1/prescribers", prescriber_body()).status_code == 201
    assert Prescriber.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


# --- throttling ------------------------------------------------------------------------------------------


@pytest.fixture
def three_per_minute(monkeypatch):
    # DRF copies DEFAULT_THROTTLE_RATES onto the class when it is defined, so settings cannot lower it.
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/min"})


def test_fourth_call_in_a_minute_is_429_with_retry_after(admin, three_per_minute):
    for _ in range(3):
        assert admin.get("/api/v1/me").status_code == 200
    response = admin.get("/api/v1/me")
    assert_error(response, 429, "throttled", {"code", "detail"})
    assert 1 <= int(response["Retry-After"]) <= 60


def test_throttle_is_per_api_key(admin, prescriber, three_per_minute):
    for _ in range(3):
        admin.get("/api/v1/me")
    assert admin.get("/api/v1/me").status_code == 429
    assert prescriber.get("/api/v1/me").status_code == 200
    second_admin_key = persona_for(admin.user)
    assert second_admin_key.get("/api/v1/me").status_code == 200


def test_throttled_write_changes_nothing(admin, three_per_minute):
    for _ in range(3):
        admin.get("/api/v1/me")
    response = admin.post("/api/v1/prescribers", prescriber_body())
    assert_error(response, 429, "throttled")
    assert Prescriber.objects.count() == 0


def test_throttle_resets_after_the_window(admin, three_per_minute):
    start = dt.datetime(2026, 11, 5, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        for _ in range(3):
            admin.get("/api/v1/me")
        assert admin.get("/api/v1/me").status_code == 429
    with time_machine.travel(start + dt.timedelta(seconds=61), tick=False):
        assert admin.get("/api/v1/me").status_code == 200


def test_health_is_not_throttled(anon, three_per_minute):
    for _ in range(6):
        assert anon.get("/api/v1/health").status_code == 200


def test_unauthenticated_requests_are_throttled_per_address(three_per_minute):
    """The throttle promises a per-address budget for callers without a valid key (key guessing)."""
    client = client_with_key("rems_000000000000_guess")
    statuses = [client.get("/api/v1/me").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


# --- bootstrap -------------------------------------------------------------------------------------------


def run_issue_api_key(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_api_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_issue_api_key_creates_the_admin_and_prints_a_working_key_last():
    out, _ = run_issue_api_key("--admin", "someone")
    key = out.strip().splitlines()[-1]
    user = User.objects.get(username="someone")
    assert user.role == Role.ADMIN
    assert user.is_staff is True
    assert user.is_superuser is True
    assert user.has_usable_password() is False
    me = client_with_key(key).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json() == {"role": "admin", "participant": None, "user": str(user.pk), "username": "someone"}
    assert client_with_key(key).get("/api/v1/prescribers").status_code == 200


def test_issue_api_key_again_keeps_the_user_and_adds_a_key():
    first = run_issue_api_key("--admin", "someone")[0].strip().splitlines()[-1]
    second = run_issue_api_key("--admin", "someone", "--name", "ci")[0].strip().splitlines()[-1]
    assert first != second
    assert User.objects.filter(username="someone").count() == 1
    assert ApiKey.objects.filter(user__username="someone").count() == 2
    assert set(ApiKey.objects.filter(user__username="someone").values_list("name", flat=True)) == {
        "bootstrap",
        "ci",
    }
    for key in (first, second):
        assert client_with_key(key).get("/api/v1/me").json()["role"] == "admin"


def test_issue_api_key_refuses_a_username_held_by_a_participant(prescriber):
    keys = ApiKey.objects.count()
    with pytest.raises((CommandError, Conflict)):
        run_issue_api_key("--admin", prescriber.user.username)
    assert ApiKey.objects.count() == keys
    assert User.objects.get(pk=prescriber.user.pk).role == Role.PRESCRIBER
