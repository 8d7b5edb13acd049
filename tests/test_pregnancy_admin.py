"""Pregnancy reports in the admin console (PRG-2..5): filters by exposure, status and overdue follow-up;
exposure read-only; edits go through the service (validated, audited, exposure recomputed); the audit
history; the CSV export for the sponsor's pregnancy registry carries only the registry ID, dates, exposure,
course and outcome; nothing is deleted."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from registry.models import AuditEvent, PregnancyReport, User
from registry.services.accounts import admin_user_ensure
from registry.services.pregnancy import pregnancy_reminders_raise

from .console import console_client, console_login
from .gate_helpers import DAY0, frozen, prior_courses_orm
from .pregnancy_helpers import LIVE_BIRTH, file_report, patch_report, rp_patient

pytestmark = pytest.mark.django_db

D = dt.date
CHANGELIST = "admin:registry_pregnancyreport_changelist"
EXPORT = "admin:registry_pregnancyreport_export"


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """As in test_admin: static names unhashed (no collectstatic under `make test`)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def operator(db: None) -> User:
    return admin_user_ensure(username="console-admin")


@pytest.fixture
def console(operator: User) -> Client:
    return console_client(operator)


@pytest.fixture
def reports(prescriber, admin, facility):
    """Three reports: `exposed` (course 1, open, due 2026-12-08), `unexposed` (open, due 2026-11-15), and
    `born` (a live birth on 2026-11-06, follow-up due 2027-11-06)."""
    with frozen(DAY0):
        treated = rp_patient(prescriber, authorize=False)
        untreated = rp_patient(prescriber, authorize=False)
        mother = rp_patient(prescriber, authorize=False)
    prior_courses_orm(treated, actor=admin.user, facility=facility.participant, first_days=[DAY0])
    exposed = file_report(
        prescriber, treated, on=D(2026, 4, 20), estimated_conception_on=D(2026, 2, 15) + dt.timedelta(days=30)
    )
    unexposed = file_report(prescriber, untreated, on=D(2026, 4, 20), lmp_on=D(2026, 2, 8))
    born = file_report(prescriber, mother, on=D(2026, 4, 20), lmp_on=D(2026, 2, 1))
    patch_report(prescriber, born.pk, on=D(2026, 11, 10), outcome_on="2026-11-06", **LIVE_BIRTH)
    return {"exposed": exposed, "unexposed": unexposed, "born": PregnancyReport.objects.get(pk=born.pk)}


def _shown(response) -> set:
    assert response.status_code == 200
    return {r.pk for r in response.context["cl"].result_list}


def test_changelist_filters_by_exposure_status_and_overdue(console, operator, reports):
    """Filters: exposure, status, and overdue (outcome: due + 30 days reached without an outcome;
    infant follow-up: 12 months after a live birth without one), as of today."""
    changelist = reverse(CHANGELIST)
    ids = {name: r.pk for name, r in reports.items()}
    assert reports["exposed"].exposure == "exposed"

    with frozen(D(2026, 12, 16)):
        # a session of that day; unexposed is overdue from 12-15, exposed from 2027-01-07
        console_login(console, operator)
        assert _shown(console.get(changelist)) == set(ids.values())
        assert _shown(console.get(changelist, {"exposure__exact": "exposed"})) == {ids["exposed"]}
        assert _shown(console.get(changelist, {"status__exact": "open"})) == {
            ids["exposed"],
            ids["unexposed"],
        }
        assert _shown(console.get(changelist, {"status__exact": "outcome_recorded"})) == {ids["born"]}
        assert _shown(console.get(changelist, {"overdue": "outcome"})) == {ids["unexposed"]}
        assert _shown(console.get(changelist, {"overdue": "infant_follow_up"})) == set()
    with frozen(D(2027, 1, 7)):
        console_login(console, operator)  # a session of that day
        assert _shown(console.get(changelist, {"overdue": "outcome"})) == {ids["exposed"], ids["unexposed"]}
    with frozen(D(2027, 11, 6)):
        console_login(console, operator)  # a session of that day
        assert _shown(console.get(changelist, {"overdue": "infant_follow_up"})) == {ids["born"]}
        assert _shown(console.get(changelist, {"overdue": "any"})) == set(ids.values())


def test_change_page_shows_exposure_read_only_with_audit_history_and_reminders(console, reports):
    report = reports["exposed"]
    pregnancy_reminders_raise(as_of=D(2027, 1, 7))
    page = console.get(reverse("admin:registry_pregnancyreport_change", args=[report.pk]))

    assert page.status_code == 200
    form_fields = set(page.context["adminform"].form.fields)
    assert {"exposure", "exposed_course", "exposure_computed_at", "status"}.isdisjoint(form_fields)
    assert {"lmp_on", "estimated_conception_on", "outcome", "infant_follow_up_on"} <= form_fields
    assert b"pregnancy_report.file" in page.content
    assert b"Exposed course" in page.content
    assert b"<tr><td>outcome_overdue</td><td>2027-01-07</td><td>2027-01-07</td></tr>" in page.content
    assert console.get(reverse("admin:registry_pregnancyreport_add")).status_code == 403
    assert console.get(reverse("admin:registry_pregnancyreport_delete", args=[report.pk])).status_code == 403


def _change_form_data(page) -> dict[str, Any]:
    form = page.context["adminform"].form
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form.initial.get(name)
        data[name] = "" if value is None else (value.isoformat() if hasattr(value, "isoformat") else value)
        if name == "major_malformation":
            data[name] = {None: "unknown", True: "true", False: "false"}[value]
    return data


def test_admin_date_correction_goes_through_the_service_and_recomputes_exposure(console, operator, reports):
    """PRG-2: an administrator corrects the conception date; the exposure follows, audited with the
    administrator as actor."""
    report = reports["unexposed"]
    assert report.exposure == "not_exposed"
    change = reverse("admin:registry_pregnancyreport_change", args=[report.pk])
    with frozen(D(2026, 5, 1)):
        data = _change_form_data(console.get(change))
        data["estimated_conception_on"] = "2026-03-04"
        response = console.post(change, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    stored = PregnancyReport.objects.get(pk=report.pk)
    assert (stored.estimated_conception_on, stored.conception_derived, stored.exposure) == (
        D(2026, 3, 4),
        False,
        "not_exposed",  # the untreated patient has no infusion: still not exposed
    )
    event = AuditEvent.objects.get(action="pregnancy_report.correct", subject_id=report.pk)
    assert event.actor == operator
    assert event.changes["estimated_conception_on"] == ["2026-02-22", "2026-03-04"]


def test_admin_outcome_refused_by_the_service_rules_shows_form_errors(console, reports):
    """PRG-3 in the console: a stillbirth with a birth weight is refused with the service's message and
    nothing changes."""
    report = reports["exposed"]
    change = reverse("admin:registry_pregnancyreport_change", args=[report.pk])
    with frozen(D(2026, 9, 1)):
        data = _change_form_data(console.get(change))
        data.update(
            outcome="stillbirth",
            outcome_on="2026-08-30",
            maternal_thyroid_status="normal",
            birth_weight_grams="900",
        )
        response = console.post(change, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "birth_weight_grams": ["Only recorded for a live birth."]
    }
    assert PregnancyReport.objects.get(pk=report.pk).status == "open"


def test_recompute_exposure_action_after_history_is_imported(console, operator, prescriber, admin, facility):
    """PRG-2: infusions of the past recorded after the report: the action re-classifies and audits."""
    with frozen(DAY0):
        patient = rp_patient(prescriber, authorize=False)
    report = file_report(prescriber, patient, on=D(2026, 4, 20), estimated_conception_on=D(2026, 3, 20))
    assert report.exposure == "not_exposed"
    prior_courses_orm(patient, actor=admin.user, facility=facility.participant, first_days=[DAY0])

    response = console.post(
        reverse(CHANGELIST),
        {"action": "recompute_exposure", "_selected_action": [str(report.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert [m.message for m in response.context["messages"]] == ["Exposure re-classified: 1 of 1 changed."]
    stored = PregnancyReport.objects.select_related("exposed_course").get(pk=report.pk)
    assert (stored.exposure, stored.exposed_course.number) == ("exposed", 1)
    event = AuditEvent.objects.get(action="pregnancy_report.recompute_exposure")
    assert (event.actor, event.changes["exposure"]) == (operator, ["not_exposed", "exposed"])


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_export_of_all_reports_carries_only_what_the_sponsor_registry_needs(console, reports):
    """PRG-5: registry ID, dates, exposure, course, outcome; no name, date of birth or free text."""
    rows = _csv(console.get(reverse(EXPORT)))

    assert len(rows) == 3
    assert list(rows[0]) == [
        "report_id",
        "rems_patient_id",
        "reported_on",
        "lmp_on",
        "estimated_conception_on",
        "estimated_due_on",
        "exposure",
        "exposed_course_number",
        "exposed_course_first_infusion_on",
        "exposed_course_last_infusion_on",
        "status",
        "outcome",
        "outcome_on",
        "gestational_age_weeks",
        "birth_weight_grams",
        "major_malformation",
        "maternal_thyroid_status",
        "infant_follow_up_on",
    ]
    by_id = {row["report_id"]: row for row in rows}
    exposed = by_id[str(reports["exposed"].pk)]
    assert exposed == {
        "report_id": str(reports["exposed"].pk),
        "rems_patient_id": reports["exposed"].patient.rems_patient_id,
        "reported_on": "2026-04-20",
        "lmp_on": "",
        "estimated_conception_on": "2026-03-17",
        "estimated_due_on": "2026-12-08",
        "exposure": "exposed",
        "exposed_course_number": "1",
        "exposed_course_first_infusion_on": "2026-03-02",
        "exposed_course_last_infusion_on": "2026-03-06",
        "status": "open",
        "outcome": "",
        "outcome_on": "",
        "gestational_age_weeks": "",
        "birth_weight_grams": "",
        "major_malformation": "",
        "maternal_thyroid_status": "",
        "infant_follow_up_on": "",
    }
    born = by_id[str(reports["born"].pk)]
    assert (
        born["outcome"],
        born["gestational_age_weeks"],
        born["birth_weight_grams"],
        born["major_malformation"],
    ) == (
        "live_birth",
        "39",
        "3350",
        "no",
    )
    patient = reports["exposed"].patient
    text = "\n".join(",".join(row.values()) for row in rows)
    assert patient.last_name not in text
    assert patient.date_of_birth.isoformat() not in text


def test_csv_export_action_for_the_selected_reports(console, reports):
    response = console.post(
        reverse(CHANGELIST), {"action": "export_csv", "_selected_action": [str(reports["born"].pk)]}
    )
    assert [row["report_id"] for row in _csv(response)] == [str(reports["born"].pk)]


def test_changelist_links_the_export(console, reports):
    page = console.get(reverse(CHANGELIST))
    assert reverse(EXPORT).encode() in page.content


def test_export_needs_a_staff_login(reports):
    response = Client().get(reverse(EXPORT))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
