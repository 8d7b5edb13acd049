"""The audit trail (ACT-5 "every transition records who, when and why"; STYLE.md 5): every participant write
appends one audit event in the same transaction as the change; refused requests append none; the
database refuses UPDATE and DELETE on the audit and decision tables (migration 0002); the request id
travels from `X-Request-ID` to the event and back to the caller."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from registry.models import AuditEvent, CertificationStatus, Decision, Facility, Pharmacy, Prescriber, User
from registry.services.audit import audit_record

from .factories import FacilityFactory, PharmacyFactory, PrescriberFactory, create_body

pytestmark = pytest.mark.django_db

S = CertificationStatus
KINDS = ("prescribers", "facilities", "pharmacies")
FACTORIES: dict[str, Any] = {
    "prescribers": PrescriberFactory,
    "facilities": FacilityFactory,
    "pharmacies": PharmacyFactory,
}
MODELS: dict[str, Any] = {"prescribers": Prescriber, "facilities": Facility, "pharmacies": Pharmacy}
ROLE = {"prescribers": "prescriber", "facilities": "facility", "pharmacies": "pharmacy"}
NOW = dt.datetime(2026, 11, 4, 16, 45, tzinfo=dt.UTC)


class AuditLog:
    """The events appended since it was opened, in a stable order."""

    def __init__(self) -> None:
        self.before = set(AuditEvent.objects.values_list("id", flat=True))

    def new(self) -> list[AuditEvent]:
        events = AuditEvent.objects.exclude(pk__in=self.before).select_related("actor")
        return sorted(events, key=lambda e: (e.created_at, e.action))

    def actions(self) -> list[str]:
        return sorted(e.action for e in self.new())


def xmin(table: str, pk: Any) -> str:
    """The id of the (sub)transaction that wrote the row's current version (PostgreSQL system column)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT xmin::text FROM {table} WHERE id = %s", [pk])  # noqa: S608 - fixed names
        return cursor.fetchone()[0]


# --- every write is audited ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_register_writes_one_audit_event_with_the_registered_data(admin, kind):
    log = AuditLog()
    body = create_body(kind)
    response = admin.post(f"/api/v1/{kind}", body)
    assert response.status_code == 201
    (event,) = log.new()
    assert event.action == f"{ROLE[kind]}.register"
    assert event.subject_type == ROLE[kind]
    assert str(event.subject_id) == response.json()["id"]
    assert event.actor == admin.user
    assert event.actor_role == "admin"
    assert event.changes == body


@pytest.mark.parametrize("kind", KINDS)
def test_update_writes_one_audit_event_with_old_and_new_values(admin, kind):
    participant = FACTORIES[kind](enrollment_signed_on=dt.date(2026, 10, 1))
    log = AuditLog()
    response = admin.patch(f"/api/v1/{kind}/{participant.pk}", {"enrollment_signed_on": "2026-10-15"})
    assert response.status_code == 200
    (event,) = log.new()
    assert event.action == f"{ROLE[kind]}.update"
    assert event.subject_type == ROLE[kind]
    assert event.subject_id == participant.pk
    assert event.actor == admin.user
    assert event.changes == {"enrollment_signed_on": ["2026-10-01", "2026-10-15"]}


@pytest.mark.parametrize("kind", KINDS)
def test_update_that_changes_nothing_writes_no_audit_event(admin, kind):
    participant = FACTORIES[kind](enrollment_signed_on=dt.date(2026, 10, 1))
    log = AuditLog()
    response = admin.patch(f"/api/v1/{kind}/{participant.pk}", {"enrollment_signed_on": "2026-10-01"})
    assert response.status_code == 200
    assert log.new() == []


TRANSITIONS = [
    ("certify", S.PENDING, S.CERTIFIED),
    ("suspend", S.CERTIFIED, S.SUSPENDED),
    ("reinstate", S.SUSPENDED, S.CERTIFIED),
    ("deactivate", S.PENDING, S.DEACTIVATED),
    ("deactivate", S.CERTIFIED, S.DEACTIVATED),
    ("deactivate", S.SUSPENDED, S.DEACTIVATED),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("verb", "start", "end"), TRANSITIONS)
def test_act5_transition_records_who_when_and_why(admin, kind, verb, start, end):
    participant = FACTORIES[kind](status=start)
    log = AuditLog()
    body = None if verb == "certify" else {"reason": "Site inspection 2026-11"}
    with time_machine.travel(NOW, tick=False):
        response = admin.post(f"/api/v1/{kind}/{participant.pk}/{verb}", body)
    assert response.status_code == 200, response.json()
    (event,) = log.new()
    assert event.action == f"{ROLE[kind]}.{verb}"
    assert event.subject_type == ROLE[kind]
    assert event.subject_id == participant.pk
    assert event.actor == admin.user
    assert event.actor_role == "admin"
    assert event.created_at == NOW
    if verb == "certify":
        assert event.changes == {
            "status": ["pending", "certified"],
            "reason": "",
            "certified_at": NOW.isoformat(),
            "certification_expires_at": None,
        }
    else:
        assert event.changes == {"status": [start, end], "reason": "Site inspection 2026-11"}


@pytest.mark.parametrize("kind", KINDS)
def test_api_key_issue_audits_user_creation_and_key_issue(admin, kind):
    participant = FACTORIES[kind](certified=True)
    log = AuditLog()
    response = admin.post(f"/api/v1/{kind}/{participant.pk}/api-keys")
    assert response.status_code == 201
    events = {e.action: e for e in log.new()}
    assert sorted(events) == ["api_key.issue", "user.create"]
    user = User.objects.get(**{ROLE[kind]: participant})
    created = events["user.create"]
    assert created.subject_type == "user"
    assert created.subject_id == user.pk
    assert created.actor == admin.user
    assert created.changes == {"role": ROLE[kind], ROLE[kind]: str(participant.pk)}
    issued = events["api_key.issue"]
    assert issued.subject_type == "apikey"
    assert str(issued.subject_id) == response.json()["id"]
    assert issued.actor == admin.user
    assert issued.changes == {"user": str(user.pk), "name": f"{ROLE[kind]} key"}

    log = AuditLog()
    assert admin.post(f"/api/v1/{kind}/{participant.pk}/api-keys").status_code == 201
    assert log.actions() == ["api_key.issue"]


def test_delegate_add_is_audited_with_the_prescriber_as_actor(prescriber):
    log = AuditLog()
    pid = prescriber.participant.pk
    response = prescriber.post(
        f"/api/v1/prescribers/{pid}/delegates",
        {"email": "desk@example.org", "first_name": "Dee", "last_name": "Desk"},
    )
    assert response.status_code == 201
    events = {e.action: e for e in log.new()}
    assert sorted(events) == ["api_key.issue", "delegate.add"]
    added = events["delegate.add"]
    assert added.subject_type == "user"
    assert str(added.subject_id) == response.json()["id"]
    assert added.actor == prescriber.user
    assert added.actor_role == "prescriber"
    assert added.changes == {"prescriber": str(pid), "email": "desk@example.org"}
    issued = events["api_key.issue"]
    assert issued.actor == prescriber.user
    assert issued.changes == {"user": response.json()["id"], "name": "delegate"}


@pytest.mark.parametrize("who", ["prescriber", "admin"])
def test_delegate_remove_is_audited(request, prescriber, delegate, who):
    persona = request.getfixturevalue(who)
    log = AuditLog()
    pid = prescriber.participant.pk
    response = persona.delete(f"/api/v1/prescribers/{pid}/delegates/{delegate.user.pk}")
    assert response.status_code == 204
    (event,) = log.new()
    assert event.action == "delegate.remove"
    assert event.subject_type == "user"
    assert event.subject_id == delegate.user.pk
    assert event.actor == persona.user
    assert event.actor_role == who
    assert event.changes == {"prescriber": str(pid), "keys_revoked": 1}


# --- same transaction ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_register_and_its_audit_event_are_written_by_one_transaction(admin, kind):
    table = MODELS[kind]._meta.db_table
    first = admin.post(f"/api/v1/{kind}", create_body(kind))
    second = admin.post(f"/api/v1/{kind}", create_body(kind))
    ids = [first.json()["id"], second.json()["id"]]
    events = [AuditEvent.objects.get(subject_id=pk, action=f"{ROLE[kind]}.register") for pk in ids]
    assert xmin(table, ids[0]) == xmin("registry_auditevent", events[0].pk)
    assert xmin(table, ids[1]) == xmin("registry_auditevent", events[1].pk)
    # The check discriminates: separate requests are separate transactions.
    assert xmin(table, ids[0]) != xmin(table, ids[1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("verb", ["certify", "suspend", "deactivate"])
def test_transition_and_its_audit_event_are_written_by_one_transaction(admin, kind, verb):
    start = S.PENDING if verb == "certify" else S.CERTIFIED
    participant = FACTORIES[kind](status=start)
    body = None if verb == "certify" else {"reason": "why"}
    assert admin.post(f"/api/v1/{kind}/{participant.pk}/{verb}", body).status_code == 200
    event = AuditEvent.objects.get(subject_id=participant.pk, action=f"{ROLE[kind]}.{verb}")
    assert xmin(MODELS[kind]._meta.db_table, participant.pk) == xmin("registry_auditevent", event.pk)


def test_api_key_and_its_audit_event_are_written_by_one_transaction(admin):
    participant = PrescriberFactory(certified=True)
    key_id = admin.post(f"/api/v1/prescribers/{participant.pk}/api-keys").json()["id"]
    event = AuditEvent.objects.get(subject_id=key_id, action="api_key.issue")
    assert xmin("registry_apikey", key_id) == xmin("registry_auditevent", event.pk)


@pytest.mark.postgres_only  # threads racing on row locks
@pytest.mark.django_db(transaction=True)
def test_audit_record_refuses_to_run_outside_a_transaction():
    participant = PrescriberFactory()
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_record(actor=None, action="prescriber.update", subject=participant)
    assert AuditEvent.objects.count() == 0


# --- refused requests write nothing ----------------------------------------------------------------------


def _refusals() -> list[Any]:
    return [
        pytest.param(
            "admin",
            lambda: PrescriberFactory(knowledge_assessment_score=7),
            lambda p: ("post", f"/api/v1/prescribers/{p.pk}/certify", None),
            409,
            id="certify-requirements-unmet",
        ),
        pytest.param(
            "admin",
            lambda: FacilityFactory(status=S.PENDING),
            lambda p: ("post", f"/api/v1/facilities/{p.pk}/suspend", {"reason": "x"}),
            409,
            id="invalid-transition",
        ),
        pytest.param(
            "admin",
            lambda: PharmacyFactory(status=S.DEACTIVATED),
            lambda p: ("post", f"/api/v1/pharmacies/{p.pk}/reinstate", {"reason": "x"}),
            409,
            id="terminal-status",
        ),
        pytest.param(
            "admin",
            lambda: PharmacyFactory(status=S.CERTIFIED),
            lambda p: ("post", f"/api/v1/pharmacies/{p.pk}/suspend", {}),
            400,
            id="missing-reason",
        ),
        pytest.param(
            "admin",
            lambda: PrescriberFactory(),
            lambda p: ("post", "/api/v1/prescribers", create_body("prescribers", npi=p.npi)),
            409,
            id="duplicate-npi",
        ),
        pytest.param(
            "admin",
            lambda: None,
            lambda p: ("post", "/api/v1/facilities", create_body("facilities", npi="1558598798")),
            400,
            id="invalid-npi",
        ),
        pytest.param(
            "admin",
            lambda: PrescriberFactory(),
            lambda p: ("patch", f"/api/v1/prescribers/{p.pk}", {"npi": "123"}),
            400,
            id="invalid-patch",
        ),
        pytest.param(
            "prescriber",
            lambda: PrescriberFactory(),
            lambda p: ("post", f"/api/v1/prescribers/{p.pk}/certify", None),
            403,
            id="wrong-role-certify",
        ),
        pytest.param(
            "facility",
            lambda: None,
            lambda p: ("post", "/api/v1/facilities", create_body("facilities")),
            403,
            id="wrong-role-register",
        ),
        pytest.param(
            "pharmacy",
            lambda: PharmacyFactory(certified=True),
            lambda p: ("post", f"/api/v1/pharmacies/{p.pk}/api-keys", None),
            403,
            id="wrong-role-api-key",
        ),
        pytest.param(
            "anon",
            lambda: None,
            lambda p: ("post", "/api/v1/prescribers", create_body("prescribers")),
            401,
            id="anonymous-register",
        ),
        pytest.param(
            "other_prescriber",
            lambda: None,
            lambda p: ("post", "OWN_DELEGATES", {"email": "a@b.org", "first_name": "A", "last_name": "B"}),
            404,
            id="delegate-add-for-another-prescriber",
        ),
        pytest.param(
            "delegate",
            lambda: None,
            lambda p: ("post", "OWN_DELEGATES", {"email": "a@b.org", "first_name": "A", "last_name": "B"}),
            403,
            id="delegate-adds-delegate",
        ),
    ]


@pytest.mark.parametrize(("who", "make", "request_for", "status"), _refusals())
def test_refused_request_writes_no_audit_event(request, prescriber, who, make, request_for, status):
    persona = request.getfixturevalue(who)
    subject = make()
    method, path, body = request_for(subject)
    path = path.replace("OWN_DELEGATES", f"/api/v1/prescribers/{prescriber.participant.pk}/delegates")
    log = AuditLog()
    response = getattr(persona, method)(path, body) if body is not None else getattr(persona, method)(path)
    assert response.status_code == status, response.json()
    assert log.new() == []


# --- append-only in the database -------------------------------------------------------------------------


@pytest.fixture
def audit_event(admin):
    participant = PrescriberFactory()
    admin.patch(f"/api/v1/prescribers/{participant.pk}", {"phone": "555-0100"})
    return AuditEvent.objects.get(subject_id=participant.pk, action="prescriber.update")


@pytest.fixture
def decision(admin):
    return Decision.objects.create(
        kind="infusion_check", outcome="denied", actor=admin.user, reasons=[{"code": "no_open_course"}]
    )


def _raw(sql: str, params: list[Any]) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.parametrize(
    ("table", "fixture", "column", "value"),
    [
        ("registry_auditevent", "audit_event", "action", "prescriber.forged"),
        ("registry_decision", "decision", "outcome", "approved"),
    ],
)
def test_append_only_tables_refuse_raw_sql_update(request, table, fixture, column, value):
    row = request.getfixturevalue(fixture)
    before = type(row).objects.filter(pk=row.pk).values().get()
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"UPDATE {table} SET {column} = %s WHERE id = %s", [value, row.pk])  # noqa: S608
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"UPDATE {table} SET {column} = %s", [value])  # noqa: S608
    assert type(row).objects.filter(pk=row.pk).values().get() == before


@pytest.mark.parametrize(
    ("table", "fixture"), [("registry_auditevent", "audit_event"), ("registry_decision", "decision")]
)
def test_append_only_tables_refuse_raw_sql_delete(request, table, fixture):
    row = request.getfixturevalue(fixture)
    count = type(row).objects.count()
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"DELETE FROM {table} WHERE id = %s", [row.pk])  # noqa: S608
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(f"DELETE FROM {table}", [])  # noqa: S608
    assert type(row).objects.count() == count
    assert type(row).objects.filter(pk=row.pk).exists()


def test_append_only_audit_table_refuses_orm_update_and_delete(audit_event):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=audit_event.pk).update(changes={})
    with pytest.raises(DatabaseError), transaction.atomic():
        audit_event.delete()
    audit_event.action = "prescriber.forged"
    with pytest.raises(DatabaseError), transaction.atomic():
        audit_event.save()
    stored = AuditEvent.objects.get(pk=audit_event.pk)
    assert stored.action == "prescriber.update"
    assert stored.changes == {"phone": ["", "555-0100"]}


def test_append_only_tables_still_accept_inserts(admin, audit_event, decision):
    assert AuditEvent.objects.filter(pk=audit_event.pk).exists()
    assert Decision.objects.filter(pk=decision.pk).exists()


# --- request ids -----------------------------------------------------------------------------------------


def test_request_id_from_header_lands_on_the_audit_event_and_is_echoed(admin):
    log = AuditLog()
    response = admin.post(
        "/api/v1/prescribers", create_body("prescribers"), HTTP_X_REQUEST_ID="ehr-7f3a.42_B"
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == "ehr-7f3a.42_B"
    (event,) = log.new()
    assert event.request_id == "ehr-7f3a.42_B"


def test_request_id_is_generated_when_absent_and_matches_the_audit_event(admin):
    log = AuditLog()
    response = admin.post("/api/v1/prescribers", create_body("prescribers"))
    generated = response["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    (event,) = log.new()
    assert event.request_id == generated
    assert admin.get("/api/v1/me")["X-Request-ID"] != generated


@pytest.mark.parametrize("header", ["has spaces in it", "x" * 65, "semi;colon", "new\u00e9line"])
def test_unsafe_request_id_is_replaced(admin, header):
    log = AuditLog()
    response = admin.post("/api/v1/prescribers", create_body("prescribers"), HTTP_X_REQUEST_ID=header)
    assert response.status_code == 201
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    (event,) = log.new()
    assert event.request_id == response["X-Request-ID"]


def test_request_id_is_echoed_on_errors_too(anon):
    response = anon.get("/api/v1/prescribers", HTTP_X_REQUEST_ID="trace-401")
    assert response.status_code == 401
    assert response["X-Request-ID"] == "trace-401"


def test_bootstrap_command_audits_as_system():
    log = AuditLog()
    call_command("issue_api_key", "--admin", "ops-bootstrap", stdout=io.StringIO(), stderr=io.StringIO())
    events = {e.action: e for e in log.new()}
    assert sorted(events) == ["api_key.issue", "user.create"]
    for event in events.values():
        assert event.actor is None
        assert event.actor_role == "system"
        assert event.request_id == ""
    assert events["user.create"].changes == {"role": "admin"}
