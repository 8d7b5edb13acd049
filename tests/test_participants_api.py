"""Participants over the API (API.md "Participants"): registration, certification requirements (ACT-2..4),
the certification lifecycle (ACT-5), duplicate identifiers, the permission matrix, API keys and delegates."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from registry.models import (
    ApiKey,
    AuditEvent,
    CertificationStatus,
    Facility,
    IdempotencyRecord,
    Pharmacy,
    Prescriber,
    Role,
    User,
)
from registry.services.accounts import api_key_revoke

from .conftest import client_with_key
from .factories import FacilityFactory, PharmacyFactory, PrescriberFactory, create_body

pytestmark = pytest.mark.django_db

S = CertificationStatus
KINDS = ("prescribers", "facilities", "pharmacies")
MODELS: dict[str, Any] = {"prescribers": Prescriber, "facilities": Facility, "pharmacies": Pharmacy}
FACTORIES: dict[str, Any] = {
    "prescribers": PrescriberFactory,
    "facilities": FacilityFactory,
    "pharmacies": PharmacyFactory,
}
ROLE_OF_KIND = {"prescribers": "prescriber", "facilities": "facility", "pharmacies": "pharmacy"}
KIND_OF_PERSONA = {
    "prescriber": "prescribers",
    "delegate": "prescribers",
    "facility": "facilities",
    "pharmacy": "pharmacies",
}


def db_state() -> dict[str, Any]:
    """Everything a participant endpoint could change (API key `last_used_at` aside: reading is not a
    change)."""
    state: dict[str, Any] = {
        kind: sorted(
            (str(pk), status, npi, updated_at)
            for pk, status, npi, updated_at in model.objects.values_list("id", "status", "npi", "updated_at")
        )
        for kind, model in MODELS.items()
    }
    state["users"] = sorted((str(pk), active) for pk, active in User.objects.values_list("id", "is_active"))
    state["api_keys"] = sorted((str(pk), str(r)) for pk, r in ApiKey.objects.values_list("id", "revoked_at"))
    state["audit_events"] = AuditEvent.objects.count()
    return state


class RawKeyPersona:
    """A caller holding nothing but a bearer value (unknown, revoked or made up)."""

    def __init__(self, key: str) -> None:
        self.client = client_with_key(key)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: Any = None, **kw: Any) -> Any:
        return self.client.post(path, data, format="json", **kw)

    def patch(self, path: str, data: Any = None, **kw: Any) -> Any:
        return self.client.patch(path, data, format="json", **kw)


def status_of(kind: str, pk: Any) -> str:
    return MODELS[kind].objects.get(pk=pk).status


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


# --- registration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_register_participant_answers_201_pending_with_uuid(admin, kind):
    body = create_body(kind)
    response = admin.post(f"/api/v1/{kind}", body)
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "pending"
    assert str(uuid.UUID(data["id"])) == data["id"]
    assert data["npi"] == body["npi"]
    assert data["missing_requirements"] == []
    row = MODELS[kind].objects.get(pk=data["id"])
    assert row.status == S.PENDING
    assert row.npi == body["npi"]
    assert row.certified_at is None


@pytest.mark.parametrize("kind", KINDS)
def test_register_ignores_status_in_the_body(admin, kind):
    response = admin.post(f"/api/v1/{kind}", create_body(kind, status="certified"))
    assert response.status_code == 201
    assert response.json()["status"] == "pending"
    assert status_of(kind, response.json()["id"]) == S.PENDING


@pytest.mark.parametrize("kind", KINDS)
def test_register_refuses_missing_required_fields(admin, kind):
    response = admin.post(f"/api/v1/{kind}", {})
    body = assert_error(response, 400, "validation_error")
    required = {
        "prescribers": {"npi", "first_name", "last_name", "email"},
        "facilities": {"npi", "name"},
        "pharmacies": {"npi", "name", "ncpdp_id"},
    }[kind]
    assert set(body["errors"]) == required
    assert MODELS[kind].objects.count() == 0


@pytest.mark.parametrize("score", [-1, 9, "eight"])
def test_act2_knowledge_assessment_score_outside_0_to_8_is_refused(admin, score):
    response = admin.post("/api/v1/prescribers", create_body("prescribers", knowledge_assessment_score=score))
    body = assert_error(response, 400, "validation_error")
    assert set(body["errors"]) == {"knowledge_assessment_score"}
    assert Prescriber.objects.count() == 0


# --- certification requirements (ACT-2..4) ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_act2_4_certify_answers_200_when_requirements_met(admin, kind):
    pid = admin.post(f"/api/v1/{kind}", create_body(kind)).json()["id"]
    with time_machine.travel(dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC), tick=False):
        response = admin.post(f"/api/v1/{kind}/{pid}/certify")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["status"] == "certified"
    assert dt.datetime.fromisoformat(data["certified_at"]) == dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC)
    assert data["certification_expires_at"] is None
    row = MODELS[kind].objects.get(pk=pid)
    assert row.status == S.CERTIFIED
    assert row.certified_at == dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.UTC)
    assert row.status_changed_at == row.certified_at


UNMET = [
    ("prescribers", {"knowledge_assessment_score": 7}, ["knowledge_assessment_passed"]),
    ("prescribers", {"knowledge_assessment_score": 0}, ["knowledge_assessment_passed"]),
    ("prescribers", {"knowledge_assessment_score": None}, ["knowledge_assessment_passed"]),
    ("prescribers", {"knowledge_assessment_passed_on": None}, ["knowledge_assessment_passed"]),
    ("prescribers", {"enrollment_signed_on": None}, ["enrollment_form_signed"]),
    ("prescribers", {"npi": "1234567890"}, ["valid_npi"]),
    (
        "prescribers",
        {
            "knowledge_assessment_score": None,
            "knowledge_assessment_passed_on": None,
            "enrollment_signed_on": None,
        },
        ["knowledge_assessment_passed", "enrollment_form_signed"],
    ),
    ("facilities", {"authorized_rep_name": ""}, ["authorized_representative"]),
    ("facilities", {"authorized_rep_email": ""}, ["authorized_representative"]),
    ("facilities", {"enrollment_signed_on": None}, ["enrollment_form_signed"]),
    (
        "facilities",
        {"infusion_reaction_readiness_attested_on": None},
        ["infusion_reaction_readiness_attested"],
    ),
    ("facilities", {"npi": "1558598798"}, ["valid_npi"]),
    (
        "facilities",
        {
            "authorized_rep_name": "",
            "authorized_rep_email": "",
            "enrollment_signed_on": None,
            "infusion_reaction_readiness_attested_on": None,
        },
        ["authorized_representative", "enrollment_form_signed", "infusion_reaction_readiness_attested"],
    ),
    ("pharmacies", {"ncpdp_id": "12345"}, ["valid_ncpdp_id"]),
    ("pharmacies", {"authorized_rep_name": ""}, ["authorized_representative"]),
    ("pharmacies", {"enrollment_signed_on": None}, ["enrollment_form_signed"]),
    ("pharmacies", {"staff_training_completed_on": None}, ["staff_training_completed"]),
    (
        "pharmacies",
        {
            "npi": "1558598798",
            "ncpdp_id": "12345",
            "authorized_rep_email": "",
            "enrollment_signed_on": None,
            "staff_training_completed_on": None,
        },
        [
            "valid_npi",
            "valid_ncpdp_id",
            "authorized_representative",
            "enrollment_form_signed",
            "staff_training_completed",
        ],
    ),
]


@pytest.mark.parametrize(("kind", "fields", "missing"), UNMET)
def test_act2_4_certify_refused_with_every_missing_requirement(admin, kind, fields, missing):
    """ACT-2 (prescribers), ACT-3 (facilities: NPI, representative, form, infusion-reaction readiness) and
    ACT-4 (pharmacies: NPI, NCPDP ID, representative, form, staff training): every unmet one is listed."""
    participant = FACTORIES[kind](**fields)
    before = db_state()
    response = admin.post(f"/api/v1/{kind}/{participant.pk}/certify")
    body = assert_error(response, 409, "certification_requirements_unmet")
    assert body["missing"] == missing
    assert set(body) == {"code", "detail", "missing"}
    assert status_of(kind, participant.pk) == S.PENDING
    assert db_state() == before


def test_act2_certify_refused_when_knowledge_assessment_below_8(admin):
    prescriber = PrescriberFactory(knowledge_assessment_score=7)
    response = admin.post(f"/api/v1/prescribers/{prescriber.pk}/certify")
    assert assert_error(response, 409, "certification_requirements_unmet")["missing"] == [
        "knowledge_assessment_passed"
    ]
    assert status_of("prescribers", prescriber.pk) == S.PENDING


def test_act2_knowledge_assessment_score_of_8_certifies(admin):
    prescriber = PrescriberFactory(knowledge_assessment_score=8)
    response = admin.post(f"/api/v1/prescribers/{prescriber.pk}/certify")
    assert response.status_code == 200
    assert status_of("prescribers", prescriber.pk) == S.CERTIFIED


@pytest.mark.parametrize("kind", KINDS)
def test_missing_requirements_are_shown_on_the_record(admin, kind):
    fields = {"enrollment_signed_on": None}
    participant = FACTORIES[kind](**fields)
    response = admin.get(f"/api/v1/{kind}/{participant.pk}")
    assert response.status_code == 200
    assert response.json()["missing_requirements"] == ["enrollment_form_signed"]


@pytest.mark.parametrize("kind", KINDS)
def test_act5_reinstate_refused_when_requirements_no_longer_met(admin, kind):
    participant = FACTORIES[kind](status=S.SUSPENDED, enrollment_signed_on=None)
    before = db_state()
    response = admin.post(f"/api/v1/{kind}/{participant.pk}/reinstate", {"reason": "Cleared"})
    assert assert_error(response, 409, "certification_requirements_unmet")["missing"] == [
        "enrollment_form_signed"
    ]
    assert status_of(kind, participant.pk) == S.SUSPENDED
    assert db_state() == before


# --- lifecycle (ACT-5) -----------------------------------------------------------------------------------

ALLOWED = [
    ("certify", S.PENDING, S.CERTIFIED),
    ("suspend", S.CERTIFIED, S.SUSPENDED),
    ("reinstate", S.SUSPENDED, S.CERTIFIED),
    ("deactivate", S.PENDING, S.DEACTIVATED),
    ("deactivate", S.CERTIFIED, S.DEACTIVATED),
    ("deactivate", S.SUSPENDED, S.DEACTIVATED),
]
VERBS = ("certify", "suspend", "reinstate", "deactivate")
REFUSED = [
    (verb, start)
    for verb in VERBS
    for start in (S.PENDING, S.CERTIFIED, S.SUSPENDED, S.DEACTIVATED)
    if (verb, start) not in {(v, s) for v, s, _ in ALLOWED}
]


def transition(persona: Any, kind: str, pk: Any, verb: str) -> Any:
    body = None if verb == "certify" else {"reason": f"{verb} for the test"}
    return persona.post(f"/api/v1/{kind}/{pk}/{verb}", body)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("verb", "start", "end"), ALLOWED)
def test_act5_allowed_transition(admin, kind, verb, start, end):
    participant = FACTORIES[kind](status=start)
    now = dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC)
    with time_machine.travel(now, tick=False):
        response = transition(admin, kind, participant.pk, verb)
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["status"] == end
    expected_reason = "" if verb == "certify" else f"{verb} for the test"
    assert data["status_reason"] == expected_reason
    row = MODELS[kind].objects.get(pk=participant.pk)
    assert row.status == end
    assert row.status_reason == expected_reason
    assert row.status_changed_at == now


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("verb", "start"), REFUSED)
def test_act5_refused_transition_is_409_and_changes_nothing(admin, kind, verb, start):
    participant = FACTORIES[kind](status=start)
    before = db_state()
    response = transition(admin, kind, participant.pk, verb)
    body = assert_error(response, 409, "invalid_status_transition")
    assert body["status"] == start
    assert status_of(kind, participant.pk) == start
    assert db_state() == before


@pytest.mark.parametrize("kind", KINDS)
def test_act5_full_lifecycle_round_trip(admin, kind):
    pid = admin.post(f"/api/v1/{kind}", create_body(kind)).json()["id"]
    for verb, expected in [
        ("certify", "certified"),
        ("suspend", "suspended"),
        ("reinstate", "certified"),
        ("suspend", "suspended"),
        ("deactivate", "deactivated"),
    ]:
        response = transition(admin, kind, pid, verb)
        assert response.status_code == 200, (verb, response.json())
        assert response.json()["status"] == expected
        assert status_of(kind, pid) == expected
    for verb in VERBS:
        assert transition(admin, kind, pid, verb).status_code == 409
    assert status_of(kind, pid) == S.DEACTIVATED


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("verb", "start"), [("suspend", S.CERTIFIED), ("reinstate", S.SUSPENDED)])
@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (None, {"reason": ["This field is required."]}),
        ({}, {"reason": ["This field is required."]}),
        ({"reason": ""}, {"reason": ["This field may not be blank."]}),
        ({"reason": "   "}, {"reason": ["This field may not be blank."]}),
        ({"reason": None}, {"reason": ["This field may not be null."]}),
    ],
)
def test_act5_suspend_and_reinstate_require_a_reason(admin, kind, verb, start, body, errors):
    participant = FACTORIES[kind](status=start)
    before = db_state()
    response = admin.post(f"/api/v1/{kind}/{participant.pk}/{verb}", body)
    assert assert_error(response, 400, "validation_error")["errors"] == errors
    assert db_state() == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("start", [S.PENDING, S.CERTIFIED, S.SUSPENDED])
def test_act5_deactivate_requires_a_reason(admin, kind, start):
    participant = FACTORIES[kind](status=start)
    before = db_state()
    response = admin.post(f"/api/v1/{kind}/{participant.pk}/deactivate", {})
    assert assert_error(response, 400, "validation_error")["errors"] == {
        "reason": ["This field is required."]
    }
    assert status_of(kind, participant.pk) == start
    assert db_state() == before


@pytest.mark.parametrize("kind", KINDS)
def test_status_is_read_only_on_patch(admin, kind):
    participant = FACTORIES[kind]()
    response = admin.patch(
        f"/api/v1/{kind}/{participant.pk}",
        {"status": "certified", "certified_at": "2026-01-01T00:00:00Z", "enrollment_signed_on": "2026-09-09"},
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "pending"
    assert response.json()["certified_at"] is None
    assert response.json()["enrollment_signed_on"] == "2026-09-09"
    row = MODELS[kind].objects.get(pk=participant.pk)
    assert row.status == S.PENDING
    assert row.certified_at is None
    assert row.enrollment_signed_on == dt.date(2026, 9, 9)


@pytest.mark.parametrize("kind", KINDS)
def test_patch_with_only_status_changes_nothing(admin, kind):
    participant = FACTORIES[kind](certified=True)
    response = admin.patch(f"/api/v1/{kind}/{participant.pk}", {"status": "deactivated"})
    assert response.status_code == 200
    assert response.json()["status"] == "certified"
    assert status_of(kind, participant.pk) == S.CERTIFIED


# --- duplicate identifiers -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [S.PENDING, S.CERTIFIED, S.SUSPENDED])
def test_duplicate_npi_is_409_duplicate_identifier(admin, kind, status):
    existing = FACTORIES[kind](status=status)
    before = db_state()
    response = admin.post(f"/api/v1/{kind}", create_body(kind, npi=existing.npi))
    body = assert_error(response, 409, "duplicate_identifier")
    assert set(body) == {"code", "detail"}
    assert db_state() == before


def test_duplicate_ncpdp_id_is_409_duplicate_identifier(admin):
    existing = PharmacyFactory(certified=True)
    before = db_state()
    response = admin.post("/api/v1/pharmacies", create_body("pharmacies", ncpdp_id=existing.ncpdp_id))
    body = assert_error(response, 409, "duplicate_identifier")
    assert "NCPDP" in body["detail"]
    assert db_state() == before


@pytest.mark.parametrize("kind", KINDS)
def test_patch_to_a_duplicate_npi_is_409_duplicate_identifier(admin, kind):
    first = FACTORIES[kind]()
    second = FACTORIES[kind]()
    before = db_state()
    response = admin.patch(f"/api/v1/{kind}/{second.pk}", {"npi": first.npi})
    assert_error(response, 409, "duplicate_identifier")
    assert MODELS[kind].objects.get(pk=second.pk).npi == second.npi
    assert db_state() == before


@pytest.mark.parametrize("kind", KINDS)
def test_act5_deactivated_participants_npi_can_be_registered_again(admin, kind):
    old = FACTORIES[kind](status=S.DEACTIVATED)
    response = admin.post(f"/api/v1/{kind}", create_body(kind, npi=old.npi))
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "pending"
    assert response.json()["id"] != str(old.pk)
    rows = MODELS[kind].objects.filter(npi=old.npi)
    assert sorted(rows.values_list("status", flat=True)) == ["deactivated", "pending"]
    # ... and once the new one is registered, the NPI is taken again.
    assert admin.post(f"/api/v1/{kind}", create_body(kind, npi=old.npi)).status_code == 409


def test_deactivated_pharmacys_ncpdp_id_can_be_registered_again(admin):
    old = PharmacyFactory(status=S.DEACTIVATED)
    response = admin.post("/api/v1/pharmacies", create_body("pharmacies", ncpdp_id=old.ncpdp_id))
    assert response.status_code == 201, response.json()
    assert Pharmacy.objects.filter(ncpdp_id=old.ncpdp_id).count() == 2


# --- certification expiry (ACT-5 setting) ----------------------------------------------------------------

CERTIFIED_AT = dt.datetime(2026, 11, 2, 14, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("kind", KINDS)
def test_act5_certify_sets_expiry_from_certification_validity_setting(admin, kind, settings):
    settings.REMS_SETTINGS = {"certification_validity_days": 30}
    participant = FACTORIES[kind]()
    with time_machine.travel(CERTIFIED_AT, tick=False):
        response = admin.post(f"/api/v1/{kind}/{participant.pk}/certify")
    assert response.status_code == 200
    expires = CERTIFIED_AT + dt.timedelta(days=30)
    assert dt.datetime.fromisoformat(response.json()["certification_expires_at"]) == expires
    row = MODELS[kind].objects.get(pk=participant.pk)
    assert row.certification_expires_at == expires
    assert row.is_certified_at(expires - dt.timedelta(days=1)) is True
    assert row.is_certified_at(expires - dt.timedelta(microseconds=1)) is True
    assert row.is_certified_at(expires) is False
    assert row.is_certified_at(expires + dt.timedelta(days=1)) is False


@pytest.mark.parametrize("kind", KINDS)
def test_act5_certification_does_not_expire_by_default(admin, kind, settings):
    settings.REMS_SETTINGS = {}
    participant = FACTORIES[kind]()
    response = admin.post(f"/api/v1/{kind}/{participant.pk}/certify")
    assert response.json()["certification_expires_at"] is None
    row = MODELS[kind].objects.get(pk=participant.pk)
    assert row.certification_expires_at is None
    assert row.is_certified_at(timezone.now() + dt.timedelta(days=3650)) is True


@pytest.mark.parametrize("kind", KINDS)
def test_act5_suspended_or_deactivated_is_not_certified(kind):
    for status in (S.PENDING, S.SUSPENDED, S.DEACTIVATED):
        assert FACTORIES[kind](status=status).is_certified_at(timezone.now()) is False


@pytest.mark.parametrize("kind", KINDS)
def test_act5_certify_renews_an_expired_certification(admin, kind, settings):
    settings.REMS_SETTINGS = {"certification_validity_days": 30}
    participant = FACTORIES[kind](
        certified=True, certification_expires_at=CERTIFIED_AT - dt.timedelta(seconds=1)
    )
    with time_machine.travel(CERTIFIED_AT, tick=False):
        response = admin.post(f"/api/v1/{kind}/{participant.pk}/certify")
    assert response.status_code == 200, response.json()
    row = MODELS[kind].objects.get(pk=participant.pk)
    assert row.status == S.CERTIFIED
    assert row.certified_at == CERTIFIED_AT
    assert row.certification_expires_at == CERTIFIED_AT + dt.timedelta(days=30)


@pytest.mark.parametrize("kind", KINDS)
def test_act5_certify_refused_while_certification_is_current(admin, kind, settings):
    settings.REMS_SETTINGS = {"certification_validity_days": 30}
    participant = FACTORIES[kind](
        certified=True, certification_expires_at=CERTIFIED_AT + dt.timedelta(seconds=1)
    )
    before = db_state()
    with time_machine.travel(CERTIFIED_AT, tick=False):
        response = admin.post(f"/api/v1/{kind}/{participant.pk}/certify")
    assert_error(response, 409, "invalid_status_transition")
    assert db_state() == before


# --- permission matrix -----------------------------------------------------------------------------------

ACTIONS = ("list", "create", "retrieve", "patch", "certify", "suspend", "reinstate", "deactivate", "api_keys")
ADMIN_ONLY = tuple(a for a in ACTIONS if a != "retrieve")
TARGET_STATUS = {"certify": S.PENDING, "reinstate": S.SUSPENDED}
ADMIN_EXPECTS = {"create": 201, "api_keys": 201}
PARTICIPANT_PERSONAS = ("prescriber", "delegate", "pharmacy", "facility")


def call(persona: Any, kind: str, action: str, pk: Any) -> Any:
    base = f"/api/v1/{kind}"
    if action == "list":
        return persona.get(base)
    if action == "create":
        return persona.post(base, create_body(kind))
    if action == "retrieve":
        return persona.get(f"{base}/{pk}")
    if action == "patch":
        return persona.patch(f"{base}/{pk}", {"enrollment_signed_on": "2026-09-09"})
    if action == "api_keys":
        return persona.post(f"{base}/{pk}/api-keys")
    return transition(persona, kind, pk, action)


def target_for(kind: str, action: str) -> Any:
    return FACTORIES[kind](status=TARGET_STATUS.get(action, S.CERTIFIED))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ACTIONS)
def test_permission_matrix_admin_may_do_everything(admin, kind, action):
    target = target_for(kind, action)
    response = call(admin, kind, action, target.pk)
    assert response.status_code == ADMIN_EXPECTS.get(action, 200), response.json()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ACTIONS)
def test_permission_matrix_anonymous_is_401(anon, kind, action):
    target = target_for(kind, action)
    before = db_state()
    response = call(anon, kind, action, target.pk)
    body = assert_error(response, 401, "not_authenticated")
    assert set(body) == {"code", "detail"}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert db_state() == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ACTIONS)
def test_permission_matrix_bad_key_is_401(kind, action):
    target = target_for(kind, action)
    before = db_state()
    response = call(RawKeyPersona("rems_000000000000_not-a-real-key"), kind, action, target.pk)
    assert_error(response, 401, "authentication_failed")
    assert db_state() == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ADMIN_ONLY)
@pytest.mark.parametrize("persona_name", PARTICIPANT_PERSONAS)
def test_permission_matrix_participants_are_403_on_admin_actions(request, persona_name, kind, action):
    persona = request.getfixturevalue(persona_name)
    target = target_for(kind, action)
    before = db_state()
    response = call(persona, kind, action, target.pk)
    body = assert_error(response, 403, "permission_denied")
    assert set(body) == {"code", "detail"}
    assert db_state() == before


@pytest.mark.parametrize("action", [a for a in ADMIN_ONLY if a not in ("list", "create")])
@pytest.mark.parametrize("persona_name", PARTICIPANT_PERSONAS)
def test_permission_matrix_participants_are_403_on_admin_actions_on_their_own_record(
    request, persona_name, action
):
    persona = request.getfixturevalue(persona_name)
    kind = KIND_OF_PERSONA[persona_name]
    own = persona.participant
    type(own).objects.filter(pk=own.pk).update(status=TARGET_STATUS.get(action, S.CERTIFIED))
    before = db_state()
    response = call(persona, kind, action, own.pk)
    assert_error(response, 403, "permission_denied")
    assert db_state() == before


@pytest.mark.parametrize("persona_name", PARTICIPANT_PERSONAS)
def test_permission_matrix_participant_reads_its_own_record(request, persona_name):
    persona = request.getfixturevalue(persona_name)
    kind = KIND_OF_PERSONA[persona_name]
    response = persona.get(f"/api/v1/{kind}/{persona.participant.pk}")
    assert response.status_code == 200
    assert response.json()["id"] == str(persona.participant.pk)
    assert response.json()["npi"] == persona.participant.npi
    assert response.json()["status"] == "certified"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("persona_name", PARTICIPANT_PERSONAS)
def test_permission_matrix_participant_reading_another_participant_is_404(request, persona_name, kind):
    persona = request.getfixturevalue(persona_name)
    other = FACTORIES[kind](certified=True)
    before = db_state()
    response = persona.get(f"/api/v1/{kind}/{other.pk}")
    body = assert_error(response, 404, "not_found")
    assert set(body) == {"code", "detail"}
    assert db_state() == before


def test_permission_matrix_other_prescribers_and_their_delegates_cannot_see_a_prescriber(
    prescriber, other_prescriber, other_delegate
):
    path = f"/api/v1/prescribers/{prescriber.participant.pk}"
    assert_error(other_prescriber.get(path), 404, "not_found")
    assert_error(other_delegate.get(path), 404, "not_found")


def test_admin_lists_every_participant_of_a_kind(admin, prescriber, other_prescriber):
    PrescriberFactory(status=S.DEACTIVATED)
    response = admin.get("/api/v1/prescribers")
    assert response.status_code == 200
    assert response.json()["count"] == 3
    assert {p["id"] for p in response.json()["results"]} >= {
        str(prescriber.participant.pk),
        str(other_prescriber.participant.pk),
    }


# --- API keys --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_api_key_issued_for_participant_authenticates_as_that_participant(admin, kind):
    participant = FACTORIES[kind](certified=True)
    response = admin.post(f"/api/v1/{kind}/{participant.pk}/api-keys")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert set(data) == {"id", "key"}
    assert ApiKey.objects.filter(pk=uuid.UUID(data["id"])).exists()
    me = client_with_key(data["key"]).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["role"] == ROLE_OF_KIND[kind]
    assert me.json()["participant"] == str(participant.pk)
    user = User.objects.get(pk=me.json()["user"])
    assert user.role == ROLE_OF_KIND[kind]
    assert user.participant_id == participant.pk
    own = client_with_key(data["key"]).get(f"/api/v1/{kind}/{participant.pk}")
    assert own.status_code == 200


def test_admin_me_has_no_participant(admin):
    response = admin.get("/api/v1/me")
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    assert response.json()["participant"] is None
    assert response.json()["user"] == str(admin.user.pk)


def _rows_text(model: Any) -> str:
    return repr(list(model.objects.values()))


@pytest.mark.parametrize("kind", KINDS)
def test_api_key_is_stored_only_as_a_hash(admin, kind):
    participant = FACTORIES[kind](certified=True)
    raw = admin.post(f"/api/v1/{kind}/{participant.pk}/api-keys").json()["key"]
    secret = raw.split("_", 2)[2]
    assert raw not in _rows_text(ApiKey)
    assert secret not in _rows_text(ApiKey)
    assert raw not in _rows_text(AuditEvent)
    assert secret not in _rows_text(AuditEvent)
    key = ApiKey.objects.get(user__role=ROLE_OF_KIND[kind], **{f"user__{ROLE_OF_KIND[kind]}": participant})
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()


@pytest.mark.parametrize(
    ("path", "body"),
    [("api-keys", None), ("delegates", {"email": "d@example.org", "first_name": "D", "last_name": "E"})],
)
def test_api_key_is_not_kept_in_clear_for_idempotent_replay(admin, path, body):
    """API.md: keys are stored hashed and shown once. An Idempotency-Key on a key-issuing POST must not
    leave the raw key in the idempotency table, where a replay would show it again."""
    participant = PrescriberFactory(certified=True)
    response = admin.post(
        f"/api/v1/prescribers/{participant.pk}/{path}", body, HTTP_IDEMPOTENCY_KEY="issue-1"
    )
    assert response.status_code == 201
    raw = response.json()["key"]
    assert raw.split("_", 2)[2] not in _rows_text(IdempotencyRecord)


@pytest.mark.parametrize("kind", KINDS)
def test_second_api_key_call_creates_a_second_key_for_the_same_user(admin, kind):
    participant = FACTORIES[kind](certified=True)
    first = admin.post(f"/api/v1/{kind}/{participant.pk}/api-keys").json()
    second = admin.post(f"/api/v1/{kind}/{participant.pk}/api-keys").json()
    assert first["id"] != second["id"]
    assert first["key"] != second["key"]
    users = User.objects.filter(**{ROLE_OF_KIND[kind]: participant})
    assert users.count() == 1
    assert set(ApiKey.objects.filter(user=users.get()).values_list("id", flat=True)) == {
        uuid.UUID(first["id"]),
        uuid.UUID(second["id"]),
    }
    for raw in (first["key"], second["key"]):
        assert client_with_key(raw).get("/api/v1/me").json()["user"] == str(users.get().pk)


def test_revoked_api_key_is_401(admin):
    participant = PrescriberFactory(certified=True)
    data = admin.post(f"/api/v1/prescribers/{participant.pk}/api-keys").json()
    client = client_with_key(data["key"])
    assert client.get("/api/v1/me").status_code == 200
    api_key_revoke(api_key=ApiKey.objects.get(pk=data["id"]), actor=admin.user, now=timezone.now())
    response = client.get("/api/v1/me")
    assert_error(response, 401, "authentication_failed")
    assert client.get(f"/api/v1/prescribers/{participant.pk}").status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Bearer rems_nope_nope", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "Token abc"],
)
def test_malformed_or_unknown_authorization_is_401(header):
    from rest_framework.test import APIClient

    client = APIClient()
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "authentication_failed")


def test_tampered_api_key_is_401(prescriber):
    tampered = prescriber.key[:-1] + ("A" if prescriber.key[-1] != "A" else "B")
    assert_error(client_with_key(tampered).get("/api/v1/me"), 401, "authentication_failed")


# --- delegates -------------------------------------------------------------------------------------------

DELEGATE_BODY = {"email": "desk@example.org", "first_name": "Dee", "last_name": "Desk"}


@pytest.mark.parametrize("who", ["prescriber", "admin"])
def test_delegate_added_by_prescriber_or_admin_authenticates_as_delegate(request, prescriber, who):
    persona = request.getfixturevalue(who)
    pid = prescriber.participant.pk
    response = persona.post(f"/api/v1/prescribers/{pid}/delegates", DELEGATE_BODY)
    assert response.status_code == 201, response.json()
    data = response.json()
    assert set(data) == {"id", "key"}
    user = User.objects.get(pk=data["id"])
    assert user.role == Role.DELEGATE
    assert user.prescriber_id == pid
    assert user.email == "desk@example.org"
    assert user.is_active is True
    me = client_with_key(data["key"]).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["role"] == "delegate"
    assert me.json()["participant"] == str(pid)
    assert me.json()["user"] == data["id"]


def test_delegate_reads_its_prescribers_record(delegate, prescriber):
    response = delegate.get(f"/api/v1/prescribers/{prescriber.participant.pk}")
    assert response.status_code == 200
    assert response.json()["id"] == str(prescriber.participant.pk)


def test_delegate_cannot_be_added_by_another_prescriber(prescriber, other_prescriber):
    before = db_state()
    response = other_prescriber.post(
        f"/api/v1/prescribers/{prescriber.participant.pk}/delegates", DELEGATE_BODY
    )
    assert_error(response, 404, "not_found")
    assert db_state() == before


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("delegate", 403, "permission_denied"),
        ("pharmacy", 403, "permission_denied"),
        ("facility", 403, "permission_denied"),
        ("anon", 401, "not_authenticated"),
    ],
)
def test_delegate_cannot_be_added_by_other_roles(request, prescriber, who, status, code):
    persona = request.getfixturevalue(who)
    before = db_state()
    response = persona.post(f"/api/v1/prescribers/{prescriber.participant.pk}/delegates", DELEGATE_BODY)
    assert_error(response, status, code)
    assert db_state() == before


def test_delegate_add_validates_the_body(prescriber):
    before = db_state()
    response = prescriber.post(
        f"/api/v1/prescribers/{prescriber.participant.pk}/delegates", {"email": "not-an-email"}
    )
    body = assert_error(response, 400, "validation_error")
    assert set(body["errors"]) == {"email", "first_name", "last_name"}
    assert db_state() == before


@pytest.mark.parametrize("who", ["prescriber", "admin"])
def test_delegate_removed_stops_working_at_once(request, prescriber, delegate, who):
    persona = request.getfixturevalue(who)
    pid = prescriber.participant.pk
    assert delegate.get("/api/v1/me").status_code == 200
    response = persona.delete(f"/api/v1/prescribers/{pid}/delegates/{delegate.user.pk}")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(delegate.get("/api/v1/me"), 401, "authentication_failed")
    assert_error(delegate.get(f"/api/v1/prescribers/{pid}"), 401, "authentication_failed")
    user = User.objects.get(pk=delegate.user.pk)
    assert user.is_active is False
    assert list(user.groups.all()) == []
    assert not ApiKey.objects.filter(user=user, revoked_at__isnull=True).exists()
    # The prescriber itself is unaffected.
    assert prescriber.get("/api/v1/me").status_code == 200


def test_delegate_remove_by_another_prescriber_is_404(prescriber, delegate, other_prescriber):
    before = db_state()
    response = other_prescriber.delete(
        f"/api/v1/prescribers/{prescriber.participant.pk}/delegates/{delegate.user.pk}"
    )
    assert_error(response, 404, "not_found")
    assert db_state() == before
    assert delegate.get("/api/v1/me").status_code == 200


def test_delegate_of_another_prescriber_cannot_be_removed_through_this_prescriber(
    admin, prescriber, other_delegate
):
    before = db_state()
    response = admin.delete(
        f"/api/v1/prescribers/{prescriber.participant.pk}/delegates/{other_delegate.user.pk}"
    )
    assert_error(response, 404, "not_found")
    assert db_state() == before
    assert other_delegate.get("/api/v1/me").status_code == 200


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("delegate", 403, "permission_denied"),
        ("pharmacy", 403, "permission_denied"),
        ("facility", 403, "permission_denied"),
        ("anon", 401, "not_authenticated"),
    ],
)
def test_delegate_cannot_be_removed_by_other_roles(request, prescriber, delegate, who, status, code):
    persona = request.getfixturevalue(who)
    before = db_state()
    response = persona.delete(f"/api/v1/prescribers/{prescriber.participant.pk}/delegates/{delegate.user.pk}")
    assert_error(response, status, code)
    assert db_state() == before
    assert delegate.get("/api/v1/me").status_code == 200


def test_delegate_remove_twice_or_unknown_is_404(prescriber, delegate):
    pid = prescriber.participant.pk
    assert prescriber.delete(f"/api/v1/prescribers/{pid}/delegates/{delegate.user.pk}").status_code == 204
    assert_error(
        prescriber.delete(f"/api/v1/prescribers/{pid}/delegates/{delegate.user.pk}"), 404, "not_found"
    )
    assert_error(prescriber.delete(f"/api/v1/prescribers/{pid}/delegates/{uuid.uuid4()}"), 404, "not_found")


def test_delegate_list_shows_active_delegates_to_their_prescriber(prescriber, delegate, other_prescriber):
    pid = prescriber.participant.pk
    response = prescriber.get(f"/api/v1/prescribers/{pid}/delegates")
    assert response.status_code == 200
    assert [d["id"] for d in response.json()] == [str(delegate.user.pk)]
    assert_error(other_prescriber.get(f"/api/v1/prescribers/{pid}/delegates"), 404, "not_found")
    assert_error(delegate.get(f"/api/v1/prescribers/{pid}/delegates"), 403, "permission_denied")
    prescriber.delete(f"/api/v1/prescribers/{pid}/delegates/{delegate.user.pk}")
    assert prescriber.get(f"/api/v1/prescribers/{pid}/delegates").json() == []
