"""PRG-4 races, with real threads on real database connections (as in test_gate_safety): filing a
pregnancy report, or recording a positive pregnancy test, at the same instant as a dispense authorization
request never leaves an active number for a patient whose gate is held. Both writers take the patient lock
the gate takes, so either the request sees the hold (denied `pregnancy_open`) or it is approved first and
the filing revokes its number."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from registry.models import AuthorizationStatus, DispenseAuthorization, PregnancyReport

from .gate_helpers import plan_course
from .pregnancy_helpers import REPORTS, rp_patient
from .test_gate_safety import JITTER, RACE_ROUNDS, _authorization_body, _codes, _race

AUTHORIZATIONS = "/api/v1/dispense-authorizations"


def _assert_held(patient, authorization: dict, reason: str) -> None:
    if authorization["decision"] == "denied":
        assert _codes(authorization) == ["pregnancy_open"], authorization
    else:
        assert authorization["decision"] == "approved", authorization
        stored = DispenseAuthorization.objects.get(number=authorization["authorization_number"])
        assert (stored.status, stored.revoke_reason) == (AuthorizationStatus.REVOKED, reason)
    assert not DispenseAuthorization.objects.filter(
        patient=patient, status=AuthorizationStatus.ACTIVE
    ).exists()


@pytest.mark.django_db(transaction=True)
def test_prg4_report_filed_racing_an_authorization_never_leaves_it_active(prescriber, facility, pharmacy):
    today = timezone.localdate()
    for _ in range(RACE_ROUNDS):
        patient = rp_patient(prescriber, on=today)
        plan_course(prescriber, patient, start=today)
        report = {
            "patient": str(patient.pk),
            "reported_on": today.isoformat(),
            "lmp_on": (today - dt.timedelta(days=40)).isoformat(),
        }

        (filed_status, filed), (authorization_status, authorization) = _race(
            (prescriber, REPORTS, report),
            (pharmacy, AUTHORIZATIONS, _authorization_body(patient, prescriber, facility, doses=5)),
            jitter=JITTER,
        )

        assert (filed_status, filed["status"]) == (201, "open"), filed
        assert authorization_status == 201, authorization
        _assert_held(patient, authorization, "Pregnancy reported (PRG-4)")
        assert PregnancyReport.objects.filter(patient=patient, status="open").count() == 1


@pytest.mark.django_db(transaction=True)
def test_prg4_positive_test_racing_an_authorization_never_leaves_it_active(prescriber, facility, pharmacy):
    today = timezone.localdate()
    for _ in range(RACE_ROUNDS):
        patient = rp_patient(prescriber, on=today)
        plan_course(prescriber, patient, start=today)
        lab = {"test": "pregnancy_test", "collected_on": today.isoformat(), "result": "positive"}

        (lab_status, _), (authorization_status, authorization) = _race(
            (prescriber, f"/api/v1/patients/{patient.pk}/lab-results", lab),
            (pharmacy, AUTHORIZATIONS, _authorization_body(patient, prescriber, facility, doses=5)),
            jitter=JITTER,
        )

        assert lab_status == 201
        assert authorization_status == 201, authorization
        if authorization["decision"] == "denied":
            # Course 1's first dose also needs a negative test not followed by a positive one (ACT-7).
            assert "pregnancy_open" in _codes(authorization), authorization
            assert set(_codes(authorization)) <= {"pregnancy_open", "pregnancy_test_required"}
        else:
            _assert_held(patient, authorization, "Positive pregnancy test (PRG-4)")
        assert not DispenseAuthorization.objects.filter(
            patient=patient, status=AuthorizationStatus.ACTIVE
        ).exists()


@pytest.mark.django_db(transaction=True)
def test_prg4_two_reports_filed_at_once_make_one(prescriber, delegate):
    """PRG-4: one open report per patient, also under concurrency: one 201, one 409."""
    today = timezone.localdate()
    patient = rp_patient(prescriber, on=today, authorize=False)
    body = {
        "patient": str(patient.pk),
        "reported_on": today.isoformat(),
        "lmp_on": (today - dt.timedelta(days=40)).isoformat(),
    }

    answers = _race((prescriber, REPORTS, body), (delegate, REPORTS, body))

    assert sorted(status for status, _ in answers) == [201, 409]
    assert [b["code"] for s, b in answers if s == 409] == ["pregnancy_report_open"]
    assert PregnancyReport.objects.filter(patient=patient).count() == 1
