"""Who read what (issue 8 item 6): every read of patient data through the API and the admin is logged
(who, when, which patient, which endpoint), a list read logs each patient returned in one insert, the log
is append-only in the database, shown per patient in the admin and exportable as CSV."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from registry.models import AccessLogEntry

from .console import console_client
from .gate_helpers import (
    DAY0,
    DOB,
    approved_number,
    authorized_patient,
    enroll_patient,
    frozen,
    moment,
    plan_course,
    request_authorization,
)

pytestmark = pytest.mark.django_db

NOW = moment(DAY0)


@pytest.fixture
def clock():
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def patients(clock, prescriber):
    # distinct dates of birth: three identical enrollments would read as possible duplicates
    return [enroll_patient(prescriber, date_of_birth=DOB - dt.timedelta(days=i)) for i in range(3)]


def _entries() -> list[tuple]:
    return list(
        AccessLogEntry.objects.order_by("patient_id").values_list(
            "user_id", "user_role", "patient_id", "endpoint", "created_at"
        )
    )


def test_a_patient_read_is_logged_with_who_when_which_and_where(patients, delegate):
    patient = patients[0]

    response = delegate.get(f"/api/v1/patients/{patient.pk}", HTTP_X_REQUEST_ID="req-42")

    assert response.status_code == 200
    (entry,) = AccessLogEntry.objects.all()
    assert (
        entry.user,
        entry.user_role,
        entry.patient_id,
        entry.endpoint,
        entry.created_at,
        entry.request_id,
    ) == (
        delegate.user,
        "delegate",
        patient.pk,
        "GET /api/v1/patients/{pk}",
        NOW,
        "req-42",
    )


def test_a_list_read_logs_each_patient_returned_in_one_insert(patients, prescriber):
    with CaptureQueriesContext(connection) as queries:
        response = prescriber.get("/api/v1/patients")

    assert response.status_code == 200
    assert response.json()["count"] == 3
    inserts = [q for q in queries if q["sql"].startswith('INSERT INTO "registry_accesslogentry"')]
    assert len(inserts) == 1
    assert _entries() == sorted(
        (prescriber.user.pk, "prescriber", p.pk, "GET /api/v1/patients", NOW) for p in patients
    )


def test_a_page_of_150_patients_is_still_one_insert(clock, prescriber):
    """More rows than SQLite's 999 parameters allow in one bulk insert (7 per row): still one statement,
    on both databases, and every row readable as usual."""
    many = [enroll_patient(prescriber, date_of_birth=DOB - dt.timedelta(days=i)) for i in range(150)]

    with CaptureQueriesContext(connection) as queries:
        response = prescriber.get("/api/v1/patients?limit=500")

    assert len(response.json()["results"]) == 150
    inserts = [q for q in queries if q["sql"].startswith('INSERT INTO "registry_accesslogentry"')]
    assert len(inserts) == 1
    assert _entries() == sorted(
        (prescriber.user.pk, "prescriber", p.pk, "GET /api/v1/patients", NOW) for p in many
    )


def test_lab_and_course_reads_are_logged_for_their_patient(patients, prescriber):
    patient = patients[0]
    assert prescriber.get(f"/api/v1/patients/{patient.pk}/lab-results").status_code == 200
    assert prescriber.get(f"/api/v1/patients/{patient.pk}/courses").status_code == 200

    assert sorted(e[3] for e in _entries()) == [
        "GET /api/v1/patients/{pk}/courses",
        "GET /api/v1/patients/{pk}/lab-results",
    ]
    assert {e[2] for e in _entries()} == {patient.pk}


def test_refused_reads_and_writes_are_not_logged_as_reads(patients, other_prescriber, pharmacy, prescriber):
    patient = patients[0]
    assert other_prescriber.get(f"/api/v1/patients/{patient.pk}").status_code == 404
    assert pharmacy.get(f"/api/v1/patients/{patient.pk}").status_code == 403
    assert (
        prescriber.post(
            f"/api/v1/patients/{patient.pk}/lab-results",
            {"test": "urinalysis", "collected_on": DAY0.isoformat(), "result": "normal"},
        ).status_code
        == 201
    )

    assert AccessLogEntry.objects.count() == 0


def test_the_access_log_is_append_only_in_the_database(patients, prescriber):
    prescriber.get(f"/api/v1/patients/{patients[0].pk}")
    entry = AccessLogEntry.objects.get()

    for statement in (
        lambda: AccessLogEntry.objects.filter(pk=entry.pk).update(endpoint="forged"),
        lambda: AccessLogEntry.objects.filter(pk=entry.pk).delete(),
    ):
        with pytest.raises(DatabaseError), transaction.atomic():
            statement()
    assert AccessLogEntry.objects.get().endpoint == "GET /api/v1/patients/{pk}"


@pytest.fixture
def console(admin, settings) -> Client:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return console_client(admin.user)


def test_admin_reads_are_logged_and_shown_per_patient_and_exported_as_csv(
    patients, prescriber, admin, console
):
    patient = patients[0]
    prescriber.get(f"/api/v1/patients/{patient.pk}")

    listing = console.get("/admin/registry/patient/")
    page = console.get(f"/admin/registry/patient/{patient.pk}/change/")

    assert (listing.status_code, page.status_code) == (200, 200)
    html = page.content.decode()
    assert "Access history" in html
    assert "GET /api/v1/patients/{pk}" in html
    logged = AccessLogEntry.objects.filter(user=admin.user)
    assert sorted(
        logged.filter(endpoint="ADMIN patient list").values_list("patient_id", flat=True)
    ) == sorted(p.pk for p in patients)
    assert list(logged.filter(endpoint="ADMIN patient change page").values_list("patient_id", flat=True)) == [
        patient.pk
    ]

    per_patient = console.get(f"/admin/registry/accesslogentry/?patient__id__exact={patient.pk}")
    assert per_patient.status_code == 200
    ids = [str(pk) for pk in AccessLogEntry.objects.filter(patient=patient).values_list("pk", flat=True)]
    export = console.post(
        "/admin/registry/accesslogentry/", {"action": "export_csv", "_selected_action": ids}
    )
    assert export.status_code == 200
    assert export["Content-Type"] == "text/csv"
    lines = export.content.decode().splitlines()
    assert lines[0] == "when,user,role,patient,rems_patient_id,endpoint,request_id"
    assert len(lines) == 1 + len(ids)
    assert all(f",{patient.pk},{patient.rems_patient_id}," in line for line in lines[1:])


def test_a_pharmacy_reading_its_authorization_is_logged_for_the_patient(
    clock, prescriber, facility, pharmacy
):
    """The authorization names the patient (registry ID): the issuing pharmacy's read is logged."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))

    assert pharmacy.get(f"/api/v1/dispense-authorizations/{number}").status_code == 200

    assert _entries() == [
        (pharmacy.user.pk, "pharmacy", patient.pk, "GET /api/v1/dispense-authorizations/{number}", NOW)
    ]


def test_admin_pages_of_records_naming_a_patient_are_logged(
    clock, prescriber, facility, pharmacy, admin, console
):
    """Courses, decisions, authorizations: a list logs each patient shown, a record page its patient."""
    patient = authorized_patient(prescriber)
    course = plan_course(prescriber, patient, start=DAY0)
    request_authorization(pharmacy, patient, prescriber, facility, doses=5)

    pages = [
        "/admin/registry/course/",
        f"/admin/registry/course/{course.pk}/change/",
        "/admin/registry/decision/",
        "/admin/registry/dispenseauthorization/",
    ]
    assert [console.get(page).status_code for page in pages] == [200] * 4

    logged = AccessLogEntry.objects.filter(user=admin.user).values_list("endpoint", "patient_id")
    assert sorted(logged) == sorted(
        [
            ("ADMIN course list", patient.pk),
            ("ADMIN course change page", patient.pk),
            ("ADMIN decision list", patient.pk),  # one per patient, however many decisions it has
            ("ADMIN dispenseauthorization list", patient.pk),
        ]
    )


def test_monitoring_reads_are_logged_for_their_patient(patients, prescriber):
    """MON-1..4 reads (the schedule, status forms, flags) show the patient's data: each is logged."""
    patient = patients[0]
    reads = [
        f"/api/v1/patients/{patient.pk}/monitoring",
        f"/api/v1/patients/{patient.pk}/status-forms",
        "/api/v1/monitoring-flags",
    ]
    form = prescriber.post(
        f"/api/v1/patients/{patient.pk}/status-forms",
        {"completed_on": DAY0.isoformat(), "labs_reviewed": True, "adverse_events": [], "notes": ""},
    )
    assert form.status_code == 201, form.json()

    assert [prescriber.get(path).status_code for path in reads] == [200, 200, 200]

    assert sorted(e[3] for e in _entries()) == [
        "GET /api/v1/patients/{patient_pk}/monitoring",
        "GET /api/v1/patients/{patient_pk}/status-forms",
    ]  # no flag is open: the flag list named no patient
    assert {e[2] for e in _entries()} == {patient.pk}
