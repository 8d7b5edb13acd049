"""The living demo (issue 12 item 4): `manage.py seed_demo` writes a coherent program dated relative to
today through the services; `--patients N` adds N treated patients set-based. The assessment report for
the demo program adds up (figures against the rows they count), and the dashboard's statements stay the
same when the program grows."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry.console.dashboard import dashboard_build
from registry.demo import demo_loaded
from registry.models import (
    Decision,
    DecisionKind,
    DecisionOutcome,
    Dispense,
    FlagStatus,
    Infusion,
    MonitoringFlag,
    Patient,
    PatientStatus,
    PregnancyReport,
)
from registry.selectors.assessment import assessment_report

from .gate_helpers import frozen, moment

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 12, 2)


def seed(**options: object) -> str:
    out = io.StringIO()
    with frozen(moment(TODAY, 20)):
        call_command("seed_demo", today=TODAY, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def demo(db: None) -> None:
    assert "Demo program written" in seed()


def figures(first: dt.date, last: dt.date) -> dict[str, object]:
    with frozen(moment(TODAY, 20)):
        report = assessment_report(first=first, last=last, now=moment(TODAY, 20))
    return {f["key"]: f["value"] for g in report["goals"] for s in g["sections"] for f in s["figures"]}


def test_every_patient_status_and_the_named_cases(demo):
    status = dict(
        Patient.objects.values_list("last_name", "status").filter(
            first_name__in=[
                "Mia",
                "Otto",
                "Paula",
                "Cole",
                "Erin",
                "Sam",
                "Dora",
                "Dean",
                "Walt",
            ]
        )
    )
    assert status == {
        "Midcourse": PatientStatus.AUTHORIZED,
        "Overdue": PatientStatus.AUTHORIZED,
        "Pregnant": PatientStatus.AUTHORIZED,
        "Complete": PatientStatus.MONITORING_COMPLETE,
        "Enrolled": PatientStatus.ENROLLED,
        "Suspended": PatientStatus.SUSPENDED,
        "Discontinued": PatientStatus.DISCONTINUED,
        "Deceased": PatientStatus.DECEASED,
        "Waiting": PatientStatus.AUTHORIZED,
    }
    assert set(Patient.objects.values_list("status", flat=True)) == set(PatientStatus.values)
    mia = Patient.objects.get(last_name="Midcourse")
    assert [i.day_in_course for i in Infusion.objects.filter(patient=mia).order_by("day_in_course")] == [1, 2]
    otto = Patient.objects.get(last_name="Overdue")
    assert MonitoringFlag.objects.filter(patient=otto, status=FlagStatus.OPEN, blocking=True).count() >= 3
    assert PregnancyReport.objects.get(patient__last_name="Pregnant").status == "open"


def test_dashboard_charts_are_not_empty(demo):
    with frozen(moment(TODAY, 20)):
        panels = {p.key: p for p in dashboard_build(now=moment(TODAY, 20))}
    shown = {f.label: f.value for p in panels.values() for f in p.figures}
    assert shown["Approved"] > 0
    assert shown["Denied"] > 0
    assert shown["Patients blocked by overdue monitoring"] >= 1
    assert shown["Exposed, open"] == 1
    assert any(f.value > 0 for f in panels["compliance"].figures)
    assert all(b"<rect" in p.chart.encode() for p in panels.values())


def test_second_run_changes_nothing(demo):
    before = Decision.objects.count()
    assert "already loaded" in seed()
    assert Decision.objects.count() == before
    assert demo_loaded()


def test_the_report_for_the_demo_adds_up(demo):
    """Several figures of the last 90 days against the rows they count."""
    first, last = TODAY - dt.timedelta(days=89), TODAY
    got = figures(first, last)
    decisions = Decision.objects.filter(kind=DecisionKind.DISPENSE_AUTHORIZATION)
    in_period = [d for d in decisions if first <= timezone.localtime(d.created_at).date() <= last]

    assert got["authorizations_denied"] == sum(d.outcome == DecisionOutcome.DENIED for d in in_period) == 7
    assert got["authorizations_approved"] == sum(d.outcome == DecisionOutcome.APPROVED for d in in_period)
    assert got["denied_pharmacy_not_certified"] == 4  # Lakeside asked four times
    assert got["denied_monitoring_overdue"] == 1  # Otto
    assert got["denied_prescriber_not_certified"] == 1  # Walt's prescriber, suspended
    assert got["infusions"] == Infusion.objects.filter(administered_on__range=(first, last)).count()
    assert got["dispenses"] == sum(
        first <= timezone.localtime(d.created_at).date() <= last for d in Dispense.objects.all()
    )
    assert got["dispenses_without_valid_authorization"] == 0
    assert got["infusions_without_valid_authorization"] == 0
    assert got["pregnancies_reported"] == 1
    assert got["pregnancies_reported_exposed"] == 1
    assert got["prescribers_suspended_at_end"] == 1
    assert got["prescribers_suspended_in_period"] == 1  # Dan, on T-20
    assert got["patients_deceased_at_end"] == 1


def test_patients_option_adds_set_based_and_the_dashboard_stays_bounded(demo):
    with CaptureQueriesContext(connection) as small, frozen(moment(TODAY, 20)):
        dashboard_build(now=moment(TODAY, 20))
    patients = Patient.objects.count()
    with CaptureQueriesContext(connection) as writing:
        assert "Added 60 generated patients" in seed(patients=60)
    with CaptureQueriesContext(connection) as larger, frozen(moment(TODAY, 20)):
        dashboard_build(now=moment(TODAY, 20))

    assert Patient.objects.count() == patients + 60
    assert Infusion.objects.filter(patient__last_name__startswith="Scale").count() == 300
    assert len(larger) == len(small)
    more = io.StringIO()
    with CaptureQueriesContext(connection) as writing_more, frozen(moment(TODAY, 20)):
        call_command("seed_demo", today=TODAY, patients=240, stdout=more)
    # Four times the patients: the statements grow with the batches, not with the patients.
    assert len(writing_more) < 2 * len(writing)
    got = figures(TODAY - dt.timedelta(days=364), TODAY)
    assert got["dispenses_without_valid_authorization"] == 0
    assert got["infusions_without_valid_authorization"] == 0
