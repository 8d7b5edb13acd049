"""Access follows certification (ACT-1, ACT-5; API.md "Access, duplicates and lookups"): a deactivated
participant's keys stop at once, its delegates' too (401 `key_inactive`); a suspended one reads and keeps
recording monitoring labs, nothing else (403 `participant_suspended`); reinstatement restores access; an
Idempotency-Key replay needs the record to be visible still."""

from __future__ import annotations

import pytest

from registry.models import (
    ApiKey,
    AuditEvent,
    CertificationStatus,
    Contraindication,
    LabResult,
    Patient,
    Screening,
    User,
)
from registry.services.certification import participant_reinstate, participant_suspend

from .factories import PrescriberFactory
from .gate_helpers import DAY0, authorized_patient, frozen, moment

pytestmark = pytest.mark.django_db

NOW = moment(DAY0)
KEY_INACTIVE = {"code": "key_inactive", "detail": "This API key is inactive: its participant is deactivated."}
PARTICIPANT_SUSPENDED = {
    "code": "participant_suspended",
    "detail": (
        "The participant is suspended or its certification has expired: only reads (and, for a "
        "prescriber's care team, monitoring labs and status forms) are allowed."
    ),
}
LAB = {"test": "cbc_differential", "collected_on": DAY0.isoformat(), "result": "normal"}
SCREENING = {
    "hiv_negative": True,
    "no_active_infection": True,
    "tb_screened_on": "2026-02-01",
    "vaccinations_completed_on": "2026-01-01",
}


@pytest.fixture
def clock():
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def patient(clock, prescriber):
    return authorized_patient(prescriber)


def _counts() -> dict[str, int]:
    return {
        "patients": Patient.objects.count(),
        "labs": LabResult.objects.count(),
        "screenings": Screening.objects.count(),
        "contraindications": Contraindication.objects.count(),
        "delegates": User.objects.filter(role="delegate").count(),
    }


# --- deactivation: 401 key_inactive ----------------------------------------------------------------------


def test_act5_deactivated_prescriber_key_and_its_delegate_key_get_401_key_inactive(
    patient, prescriber, delegate, admin
):
    """ACT-5: deactivation stops every key of the prescriber and of its delegates in the same
    transaction, audited with the count; both keys answer 401 `key_inactive` on reads and writes."""
    assert prescriber.get("/api/v1/patients").status_code == 200
    assert delegate.get("/api/v1/patients").status_code == 200

    response = admin.post(
        f"/api/v1/prescribers/{prescriber.participant.pk}/deactivate", {"reason": "Retired"}
    )
    assert response.status_code == 200, response.json()

    for persona in (prescriber, delegate):
        listed = persona.get("/api/v1/patients")
        assert (listed.status_code, listed.json()) == (401, KEY_INACTIVE)
        assert listed["WWW-Authenticate"] == 'Bearer realm="api"'
        recorded = persona.post(f"/api/v1/patients/{patient.pk}/lab-results", LAB)
        assert (recorded.status_code, recorded.json()) == (401, KEY_INACTIVE)
    minted = prescriber.post(
        f"/api/v1/prescribers/{prescriber.participant.pk}/delegates",
        {"email": "new@example.org", "first_name": "N", "last_name": "Ew"},
    )
    assert (minted.status_code, minted.json()) == (401, KEY_INACTIVE)

    keys = ApiKey.objects.filter(user__in=[prescriber.user, delegate.user])
    assert sorted(k.revoked_at for k in keys) == [NOW, NOW]
    (event,) = AuditEvent.objects.filter(action="prescriber.deactivate")
    assert event.changes == {
        "status": ["certified", "deactivated"],
        "reason": "Retired",
        "api_keys_revoked": 2,
    }


def test_act5_deactivated_pharmacy_key_gets_401_key_inactive(pharmacy, admin):
    participant_user = pharmacy.user
    response = admin.post(f"/api/v1/pharmacies/{pharmacy.participant.pk}/deactivate", {"reason": "Closed"})
    assert response.status_code == 200

    answer = pharmacy.get("/api/v1/me")

    assert (answer.status_code, answer.json()) == (401, KEY_INACTIVE)
    assert not ApiKey.objects.filter(user=participant_user, revoked_at__isnull=True).exists()


def test_act5_a_key_of_a_deactivated_participant_is_inactive_even_if_not_revoked(pharmacy):
    """ACT-5: authentication reads the participant's standing too, so no key of a deactivated participant
    works, however the deactivation happened (here: written directly, as an import would)."""
    type(pharmacy.participant).objects.filter(pk=pharmacy.participant.pk).update(
        status=CertificationStatus.DEACTIVATED
    )

    answer = pharmacy.get("/api/v1/me")

    assert (answer.status_code, answer.json()) == (401, KEY_INACTIVE)


def test_act5_no_new_key_for_a_deactivated_participant(pharmacy, admin):
    admin.post(f"/api/v1/pharmacies/{pharmacy.participant.pk}/deactivate", {"reason": "Closed"})

    response = admin.post(f"/api/v1/pharmacies/{pharmacy.participant.pk}/api-keys")

    assert response.status_code == 409
    assert response.json() == {
        "code": "participant_deactivated",
        "detail": "A deactivated participant cannot be given API keys.",
    }
    assert not ApiKey.objects.filter(user=pharmacy.user, revoked_at__isnull=True).exists()


def test_a_revoked_key_of_an_active_participant_still_reads_authentication_failed(prescriber, admin):
    """A key revoked on its own (not by deactivation) keeps the plain 401 `authentication_failed`."""
    key = ApiKey.objects.get(user=prescriber.user)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=NOW)

    answer = prescriber.get("/api/v1/me")

    assert answer.status_code == 401
    assert answer.json() == {
        "code": "authentication_failed",
        "detail": "Unknown, revoked or inactive API key.",
    }


# --- suspension: reads and monitoring labs only ----------------------------------------------------------


def test_act5_suspended_prescriber_reads_and_records_monitoring_labs_but_nothing_else(
    patient, prescriber, delegate, admin
):
    """ACT-5: a suspended prescriber (and its delegate) still lists and reads its patients and records
    monitoring labs, one by one and in bulk; screening, contraindications, enrollment and new delegates
    answer 403 `participant_suspended` and change nothing."""
    participant_suspend(participant=prescriber.participant, actor=admin.user, reason="Audit", now=NOW)

    listed = prescriber.get("/api/v1/patients")
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [str(patient.pk)]
    assert prescriber.get(f"/api/v1/patients/{patient.pk}").status_code == 200
    assert delegate.get(f"/api/v1/patients/{patient.pk}/lab-results").status_code == 200

    lab = prescriber.post(f"/api/v1/patients/{patient.pk}/lab-results", LAB)
    assert lab.status_code == 201, lab.json()
    stored = LabResult.objects.get(pk=lab.json()["id"])
    assert (stored.patient_id, stored.test, stored.collected_on) == (patient.pk, "cbc_differential", DAY0)
    by_delegate = delegate.post(f"/api/v1/patients/{patient.pk}/lab-results", {**LAB, "test": "urinalysis"})
    assert by_delegate.status_code == 201, by_delegate.json()
    bulk = delegate.post(
        "/api/v1/lab-results/bulk",
        {"results": [{**LAB, "test": "serum_creatinine", "rems_patient_id": patient.rems_patient_id}]},
    )
    assert (bulk.status_code, bulk.json()) == (201, {"created": 1})

    before = _counts()
    refused = [
        prescriber.post(f"/api/v1/patients/{patient.pk}/screening", SCREENING),
        delegate.post(f"/api/v1/patients/{patient.pk}/screening", SCREENING),
        prescriber.post(
            f"/api/v1/patients/{patient.pk}/contraindications",
            {"kind": "hypersensitivity", "noted_on": DAY0.isoformat(), "notes": ""},
        ),
        prescriber.post(
            "/api/v1/patients",
            {
                "first_name": "Ada",
                "last_name": "Lovelace",
                "date_of_birth": "1990-12-10",
                "sex": "female",
                "reproductive_potential": False,
                "enrollment_signed_on": DAY0.isoformat(),
            },
        ),
        prescriber.post(
            f"/api/v1/prescribers/{prescriber.participant.pk}/delegates",
            {"email": "new@example.org", "first_name": "N", "last_name": "Ew"},
        ),
        prescriber.post(f"/api/v1/patients/{patient.pk}/courses", {"planned_start_on": DAY0.isoformat()}),
    ]
    assert [(r.status_code, r.json()) for r in refused] == [(403, PARTICIPANT_SUSPENDED)] * len(refused)
    assert _counts() == before


def test_act5_expired_prescriber_certification_behaves_like_suspension(patient, prescriber):
    type(prescriber.participant).objects.filter(pk=prescriber.participant.pk).update(
        certification_expires_at=NOW
    )

    lab = prescriber.post(f"/api/v1/patients/{patient.pk}/lab-results", LAB)
    screening = prescriber.post(f"/api/v1/patients/{patient.pk}/screening", SCREENING)

    assert lab.status_code == 201
    assert (screening.status_code, screening.json()) == (403, PARTICIPANT_SUSPENDED)


def test_act5_reinstatement_restores_access(patient, prescriber, admin):
    participant_suspend(participant=prescriber.participant, actor=admin.user, reason="Audit", now=NOW)
    assert prescriber.post(f"/api/v1/patients/{patient.pk}/screening", SCREENING).status_code == 403

    participant_reinstate(participant=prescriber.participant, actor=admin.user, reason="Cleared", now=NOW)
    response = prescriber.post(f"/api/v1/patients/{patient.pk}/screening", SCREENING)

    assert response.status_code == 201, response.json()


def test_act5_suspended_pharmacy_reads_but_cannot_request_authorizations(
    patient, prescriber, facility, pharmacy, admin
):
    participant_suspend(participant=pharmacy.participant, actor=admin.user, reason="Audit", now=NOW)

    me = pharmacy.get("/api/v1/me")
    request = pharmacy.post(
        "/api/v1/dispense-authorizations",
        {
            "rems_patient_id": patient.rems_patient_id,
            "date_of_birth": patient.date_of_birth.isoformat(),
            "prescriber_npi": prescriber.participant.npi,
            "facility_npi": facility.participant.npi,
            "doses_requested": 1,
        },
    )

    assert me.status_code == 200
    assert (request.status_code, request.json()) == (403, PARTICIPANT_SUSPENDED)


# --- Idempotency-Key replays need visibility -----------------------------------------------------------------


def test_idempotent_replay_is_refused_once_the_patient_moved_to_another_prescriber(
    patient, prescriber, admin
):
    """ACT-8 transfer of care moves access; a replay of a lab recorded before the move would show the
    patient's data to the old prescriber: 404 `not_found` instead."""
    headers = {"HTTP_IDEMPOTENCY_KEY": "lab-1"}
    first = prescriber.post(f"/api/v1/patients/{patient.pk}/lab-results", LAB, **headers)
    assert first.status_code == 201
    again = prescriber.post(f"/api/v1/patients/{patient.pk}/lab-results", LAB, **headers)
    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (201, first.json(), "true")

    target = PrescriberFactory(certified=True)
    moved = admin.post(f"/api/v1/patients/{patient.pk}/transfer", {"prescriber_npi": target.npi})
    assert moved.status_code == 200, moved.json()
    replay = prescriber.post(f"/api/v1/patients/{patient.pk}/lab-results", LAB, **headers)

    assert (replay.status_code, replay.json()) == (404, {"code": "not_found", "detail": "Not found."})
    assert LabResult.objects.filter(patient=patient, test="cbc_differential", collected_on=DAY0).count() == 1


def test_idempotent_replay_of_an_enrollment_is_refused_once_the_patient_is_not_visible(
    clock, prescriber, admin
):
    headers = {"HTTP_IDEMPOTENCY_KEY": "enroll-1"}
    body = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "date_of_birth": "1990-12-10",
        "sex": "female",
        "reproductive_potential": False,
        "enrollment_signed_on": DAY0.isoformat(),
    }
    first = prescriber.post("/api/v1/patients", body, **headers)
    assert first.status_code == 201, first.json()
    target = PrescriberFactory(certified=True)
    assert (
        admin.post(
            f"/api/v1/patients/{first.json()['id']}/transfer", {"prescriber_npi": target.npi}
        ).status_code
        == 200
    )

    replay = prescriber.post("/api/v1/patients", body, **headers)

    assert (replay.status_code, replay.json()) == (404, {"code": "not_found", "detail": "Not found."})
    assert Patient.objects.count() == 1


def test_idempotent_replay_by_a_suspended_prescriber_of_a_refused_write_is_refused(
    patient, prescriber, admin
):
    headers = {"HTTP_IDEMPOTENCY_KEY": "screening-1"}
    assert (
        prescriber.post(f"/api/v1/patients/{patient.pk}/screening", SCREENING, **headers).status_code == 201
    )
    participant_suspend(participant=prescriber.participant, actor=admin.user, reason="Audit", now=NOW)

    replay = prescriber.post(f"/api/v1/patients/{patient.pk}/screening", SCREENING, **headers)

    assert (replay.status_code, replay.json()) == (403, PARTICIPANT_SUSPENDED)
