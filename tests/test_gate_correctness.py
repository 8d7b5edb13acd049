"""Issue 9: one person, one record (ACT-6, CRS-2) and local calendar days."""

from __future__ import annotations

import datetime as dt

import pytest

from registry.localtime import local_today
from registry.matching import patient_match_key
from registry.models import AuditEvent, Patient

from .factories import FacilityFactory

pytestmark = pytest.mark.django_db

BODY = {
    "first_name": "José",
    "last_name": "O'Brien-Smith",
    "date_of_birth": "1980-01-31",
    "sex": "male",
    "reproductive_potential": False,
    "enrollment_signed_on": "2026-01-05",
}


def test_match_key_normalizes_case_accents_whitespace_and_punctuation_ACT_6():
    assert patient_match_key("  JOSE ", "obrien smith") == patient_match_key("José", "O'Brien-Smith")
    assert patient_match_key("Ann", "Marie") != patient_match_key("Annm", "Arie")


def test_second_enrollment_of_one_person_is_a_possible_duplicate_ACT_6(prescriber, other_prescriber, admin):
    """ACT-6, CRS-2: any prescriber, normalized names: 409 naming nothing about the other patient; an
    administrator may confirm a different person (audited)."""
    assert prescriber.post("/api/v1/patients", BODY).status_code == 201
    again = other_prescriber.post(
        "/api/v1/patients", {**BODY, "first_name": "jose", "last_name": "OBrien Smith"}
    )

    assert again.status_code == 409
    assert again.json() == {
        "code": "possible_duplicate_patient",
        "detail": "A patient with this name and date of birth is already enrolled. If this is the same "
        "person, ask for a transfer of care; the REMS administrator can confirm a different person.",
    }
    assert Patient.objects.count() == 1
    confirmed = admin.post(
        "/api/v1/patients",
        {**BODY, "prescriber_npi": other_prescriber.participant.npi, "confirm_not_duplicate": True},
    )
    assert confirmed.status_code == 201, confirmed.json()
    event = AuditEvent.objects.get(action="patient.enroll", subject_id=confirmed.json()["id"])
    assert event.changes["confirmed_not_duplicate"] is True
    assert (
        other_prescriber.post("/api/v1/patients", {**BODY, "confirm_not_duplicate": True}).status_code == 403
    )


def test_a_guam_site_is_a_day_ahead_of_the_registry_near_midnight():
    """Issue 9 item 7: 15:00 UTC on 2026-03-31 is 2026-04-01 01:00 in Guam, 11:00 in New York."""
    now = dt.datetime(2026, 3, 31, 15, tzinfo=dt.UTC)
    guam = FacilityFactory(state="GU")
    boston = FacilityFactory(state="MA")
    assert (guam.time_zone, boston.time_zone) == ("Pacific/Guam", "America/New_York")
    assert local_today(guam, now) == dt.date(2026, 4, 1)
    assert local_today(boston, now) == dt.date(2026, 3, 31)
