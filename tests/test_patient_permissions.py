"""Permission matrix for every patient endpoint (STYLE.md 3 and 9; API.md "Patients", delegates; ACT-6,
ACT-8). Roles are refused before visibility: 401 without a key, 403 when the role may never do this, 404
when the role may but the patient is not visible to the caller. Every refusal leaves the database as it
was; every success changes exactly what the endpoint is for."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from registry.models import (
    AuditEvent,
    Contraindication,
    Course,
    Decision,
    LabResult,
    Patient,
    Screening,
)
from registry.services.accounts import admin_user_ensure
from registry.services.enrollment import (
    lab_result_record,
    patient_authorize,
    patient_enroll,
    patient_status_change,
    screening_record,
)

from .factories import PrescriberFactory
from .gate_helpers import BASELINE_LABS as BASELINE

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
DAY = dt.timedelta(days=1)

ROLES = (
    "admin",
    "prescriber",
    "delegate",
    "other_prescriber",
    "other_delegate",
    "pharmacy",
    "facility",
    "anon",
)
ERROR_CODES = {400: "validation_error", 401: "not_authenticated", 403: "permission_denied", 404: "not_found"}


@pytest.fixture(autouse=True)
def _clock() -> Any:
    with time_machine.travel(NOW, tick=True):
        yield


@dataclass(frozen=True)
class Ctx:
    patient: Patient
    target_npi: str


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # "{id}" is the patient's id
    body: Callable[[Ctx], Any] | None = None
    prepare: Callable[[Patient], None] | None = None
    changes: frozenset[str] = frozenset()  # snapshot keys a success changes
    visibility_in_list: bool = False


def _authorize(patient: Patient) -> None:
    patient_authorize(patient=patient, actor=admin_user_ensure(username="rems-admin"), now=timezone.now())


def _suspend(patient: Patient) -> None:
    patient_status_change(
        patient=patient,
        actor=admin_user_ensure(username="rems-admin"),
        verb="suspend",
        reason="investigation",
        now=timezone.now(),
    )


WRITE = frozenset({"audit_events"})
REASON = {"reason": "documented reason"}

ENDPOINTS: dict[str, Endpoint] = {
    "list": Endpoint("get", "/api/v1/patients", visibility_in_list=True),
    "retrieve": Endpoint("get", "/api/v1/patients/{id}"),
    "create": Endpoint(
        "post",
        "/api/v1/patients",
        body=lambda c: {
            "first_name": "Grace",
            "last_name": "Hopper",
            "date_of_birth": "1990-05-17",
            "sex": "female",
            "reproductive_potential": True,
            "enrollment_signed_on": (TODAY - DAY).isoformat(),
        },
        changes=WRITE | {"patients"},
    ),
    "lab_results_post": Endpoint(
        "post",
        "/api/v1/patients/{id}/lab-results",
        body=lambda c: {"test": "cbc_differential", "collected_on": TODAY.isoformat(), "result": "normal"},
        changes=WRITE | {"lab_results"},
    ),
    "lab_results_get": Endpoint("get", "/api/v1/patients/{id}/lab-results"),
    "lab_results_bulk": Endpoint(
        "post",
        "/api/v1/lab-results/bulk",
        body=lambda c: {
            "results": [
                {
                    "rems_patient_id": c.patient.rems_patient_id,
                    "test": "urinalysis",
                    "collected_on": TODAY.isoformat(),
                    "result": "normal",
                }
            ]
        },
        changes=WRITE | {"lab_results"},
    ),
    "screening": Endpoint(
        "post",
        "/api/v1/patients/{id}/screening",
        body=lambda c: {
            "hiv_negative": True,
            "no_active_infection": True,
            "tb_screened_on": (TODAY - 10 * DAY).isoformat(),
            "vaccinations_completed_on": (TODAY - 60 * DAY).isoformat(),
        },
        changes=WRITE | {"screenings"},
    ),
    "contraindications": Endpoint(
        "post",
        "/api/v1/patients/{id}/contraindications",
        body=lambda c: {"kind": "hypersensitivity", "noted_on": TODAY.isoformat(), "notes": "rash"},
        changes=WRITE | {"contraindications"},
    ),
    "authorize": Endpoint("post", "/api/v1/patients/{id}/authorize", changes=WRITE | {"status", "decisions"}),
    "transfer": Endpoint(
        "post",
        "/api/v1/patients/{id}/transfer",
        body=lambda c: {"prescriber_npi": c.target_npi},
        changes=WRITE | {"prescriber"},
    ),
    "suspend": Endpoint(
        "post", "/api/v1/patients/{id}/suspend", body=lambda c: REASON, changes=WRITE | {"status"}
    ),
    "reinstate": Endpoint(
        "post",
        "/api/v1/patients/{id}/reinstate",
        body=lambda c: REASON,
        prepare=_suspend,
        changes=WRITE | {"status"},
    ),
    "discontinue": Endpoint(
        "post", "/api/v1/patients/{id}/discontinue", body=lambda c: REASON, changes=WRITE | {"status"}
    ),
    "deceased": Endpoint(
        "post", "/api/v1/patients/{id}/deceased", body=lambda c: REASON, changes=WRITE | {"status"}
    ),
    "courses_post": Endpoint(
        "post",
        "/api/v1/patients/{id}/courses",
        body=lambda c: {"planned_start_on": TODAY.isoformat()},
        prepare=_authorize,
        changes=WRITE | {"courses", "decisions"},
    ),
    "courses_get": Endpoint("get", "/api/v1/patients/{id}/courses"),
}

# Expected status per role, in ROLES order:
#          admin prescriber delegate other_prescriber other_delegate pharmacy facility anon
MATRIX: dict[str, tuple[int, ...]] = {
    "list": (200, 200, 200, 200, 200, 403, 403, 401),
    "retrieve": (200, 200, 200, 404, 404, 403, 403, 401),
    # ACT-6: only a certified prescriber enrolls (it becomes the prescriber of record); an admin may enroll
    # for a prescriber it names (issue 9: to confirm a non-duplicate), so without `prescriber_npi` it is a
    # 400; another prescriber enrolls its own patient.
    "create": (400, 201, 403, 201, 403, 403, 403, 401),
    "lab_results_post": (201, 201, 201, 404, 404, 403, 403, 401),
    "lab_results_get": (200, 200, 200, 404, 404, 403, 403, 401),
    # The bulk endpoint names patients in its body: a patient the caller cannot see is a bad row (ID-4).
    "lab_results_bulk": (201, 201, 201, 400, 400, 403, 403, 401),
    "screening": (201, 201, 201, 404, 404, 403, 403, 401),
    "contraindications": (201, 201, 403, 404, 403, 403, 403, 401),
    "authorize": (200, 200, 403, 404, 403, 403, 403, 401),
    "transfer": (200, 200, 403, 404, 403, 403, 403, 401),
    # ACT-8: suspension and reinstatement belong to the REMS administrator alone.
    "suspend": (200, 403, 403, 403, 403, 403, 403, 401),
    "reinstate": (200, 403, 403, 403, 403, 403, 403, 401),
    "discontinue": (200, 200, 403, 404, 403, 403, 403, 401),
    "deceased": (200, 200, 403, 404, 403, 403, 403, 401),
    "courses_post": (201, 201, 403, 404, 403, 403, 403, 401),
    "courses_get": (200, 200, 200, 404, 404, 403, 403, 401),
}

CASES = [
    pytest.param(endpoint, role, expected, id=f"{endpoint}-{role}-{expected}")
    for endpoint, statuses in MATRIX.items()
    for role, expected in zip(ROLES, statuses, strict=True)
]


def test_matrix_covers_every_patient_endpoint():
    assert set(MATRIX) == set(ENDPOINTS)
    assert all(len(row) == len(ROLES) for row in MATRIX.values())


@pytest.fixture
def ready_patient(prescriber) -> Patient:
    """Enrolled by the prescriber persona (ACT-6) with every ACT-7 requirement met, so an allowed
    authorize or course plan succeeds."""
    now = timezone.now()
    patient = patient_enroll(
        actor=prescriber.user,
        data={
            "first_name": "Alan",
            "last_name": "Turing",
            "date_of_birth": dt.date(1985, 6, 23),
            "sex": "male",
            "reproductive_potential": False,
            "enrollment_signed_on": TODAY - DAY,
        },
        now=now,
    )
    for test in BASELINE:
        lab_result_record(
            patient=patient,
            actor=prescriber.user,
            data={"test": test, "collected_on": TODAY - DAY, "result": "normal"},
            now=now,
        )
    screening_record(
        patient=patient,
        actor=prescriber.user,
        data={
            "hiv_negative": True,
            "no_active_infection": True,
            "tb_screened_on": TODAY - 30 * DAY,
            "vaccinations_completed_on": TODAY - 60 * DAY,
        },
        now=now,
    )
    return patient


def snapshot(patient: Patient) -> dict[str, Any]:
    row = Patient.objects.values("status", "prescriber_id").get(pk=patient.pk)
    return {
        "patients": Patient.objects.count(),
        "lab_results": LabResult.objects.count(),
        "screenings": Screening.objects.count(),
        "contraindications": Contraindication.objects.count(),
        "courses": Course.objects.count(),
        "decisions": Decision.objects.count(),
        "audit_events": AuditEvent.objects.count(),
        "status": row["status"],
        "prescriber": row["prescriber_id"],
    }


def call(persona: Any, endpoint: Endpoint, ctx: Ctx) -> Any:
    path = endpoint.path.format(id=ctx.patient.pk)
    if endpoint.method == "get":
        return persona.get(path)
    return persona.post(path, endpoint.body(ctx) if endpoint.body else None)


@pytest.mark.parametrize(("endpoint_name", "role", "expected"), CASES)
def test_patient_endpoint_permission_matrix(request, ready_patient, endpoint_name, role, expected):
    endpoint = ENDPOINTS[endpoint_name]
    persona = request.getfixturevalue(role)
    ctx = Ctx(patient=ready_patient, target_npi=PrescriberFactory(certified=True).npi)
    if endpoint.prepare:
        endpoint.prepare(ready_patient)
    before = snapshot(ready_patient)

    response = call(persona, endpoint, ctx)

    assert response.status_code == expected, response.json()
    after = snapshot(ready_patient)
    if expected >= 400:
        assert response.json()["code"] == ERROR_CODES[expected]
        assert after == before, "a refused request changed the database"
        if endpoint_name == "create" and expected == 400:  # an admin names the prescriber of record
            assert response.json()["errors"] == {
                "prescriber_npi": ["Required when an administrator enrolls a patient."]
            }
        elif expected == 400:  # the bulk endpoint: the hidden patient reads like an unknown one
            assert response.json()["errors"] == {"results.0.rems_patient_id": ["Unknown patient."]}
        return
    changed = {key for key in before if before[key] != after[key]}
    assert changed == set(endpoint.changes)
    if endpoint.visibility_in_list:
        listed = {row["id"] for row in response.json()["results"]}
        sees = role in ("admin", "prescriber", "delegate")
        assert (str(ready_patient.pk) in listed) is sees


@pytest.mark.parametrize("role", ["other_prescriber", "other_delegate"])
def test_hidden_patient_reads_exactly_like_an_unknown_one(request, ready_patient, role):
    persona = request.getfixturevalue(role)

    hidden = persona.get(f"/api/v1/patients/{ready_patient.pk}")
    unknown = persona.get("/api/v1/patients/00000000-0000-4000-8000-000000000000")

    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == unknown.json() == {"code": "not_found", "detail": "Not found."}


@pytest.mark.parametrize("role", ["other_prescriber", "other_delegate"])
def test_hidden_patient_cannot_be_found_by_registry_id_filter(request, ready_patient, role):
    persona = request.getfixturevalue(role)

    response = persona.get(f"/api/v1/patients?rems_patient_id={ready_patient.rems_patient_id}")

    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert response.json()["results"] == []
