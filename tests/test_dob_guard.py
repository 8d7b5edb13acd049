"""ID-4: date-of-birth guessing. After 5 mismatched dates of birth for one registry ID from one caller
within 24 hours, that caller gets `patient_not_found` for that ID for 24 hours, even with the right date;
the answer is exactly that of an unknown ID; the lock is audited, shown to administrators and lifted by
one."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client

from registry.errors import Conflict
from registry.identifiers import new_registry_id
from registry.models import AuditEvent, DobLookupGuard, LookupKind
from registry.services.dob_guard import dob_lock_lift, patient_of_record_guarded

from .conftest import participant_persona
from .console import console_client
from .factories import PharmacyFactory
from .gate_helpers import (
    DAY0,
    authorization_body,
    authorized_patient,
    frozen,
    infusion_body,
    moment,
    plan_course,
)
from .ncpdp_helpers import answer, initiation_request, send, text

pytestmark = pytest.mark.django_db

NOW = moment(DAY0)
AUTHORIZATIONS = "/api/v1/dispense-authorizations"


@pytest.fixture
def clock():
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def other_pharmacy(db):
    return participant_persona(PharmacyFactory(certified=True))


@pytest.fixture
def admin_console(admin, settings) -> Client:
    # DEBUG off serves static names through the manifest, which only `collectstatic` writes.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return console_client(admin.user)


@pytest.fixture
def patient(clock, prescriber):
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    return patient


def _ask(pharmacy, patient, prescriber, facility, **overrides: Any) -> Any:
    return pharmacy.post(
        AUTHORIZATIONS, authorization_body(patient, prescriber, facility, doses=1, **overrides)
    )


def _wrong_dob(patient, days: int = 1) -> str:
    return (patient.date_of_birth - dt.timedelta(days=days)).isoformat()


def _answer(response: Any) -> tuple[int, dict[str, Any]]:
    """Status and body, without the stored decision's own id (different for every request)."""
    body = dict(response.json())
    body.pop("id", None)
    body.pop("decision_id", None)
    return response.status_code, body


def _mismatch(times: int, pharmacy, patient, prescriber, facility) -> None:
    for attempt in range(times):
        denied = _ask(pharmacy, patient, prescriber, facility, date_of_birth=_wrong_dob(patient, attempt + 1))
        assert denied.json()["decision"] == "denied"


def test_id4_fifth_mismatch_locks_the_caller_out_even_with_the_right_date(
    patient, prescriber, facility, pharmacy
):
    """ID-4: the lock answers exactly like an unknown registry ID and exactly like a mismatch."""
    unknown = _answer(_ask(pharmacy, patient, prescriber, facility, rems_patient_id=new_registry_id()))
    mismatch = _answer(_ask(pharmacy, patient, prescriber, facility, date_of_birth=_wrong_dob(patient, 9)))
    _mismatch(4, pharmacy, patient, prescriber, facility)  # five mismatches in all

    locked = _answer(_ask(pharmacy, patient, prescriber, facility))

    assert locked == unknown == mismatch
    assert locked[0] == 201
    assert locked[1]["decision"] == "denied"
    assert [r["code"] for r in locked[1]["reasons"]] == ["patient_not_found"]
    assert locked[1]["authorization_number"] is None


def test_id4_four_mismatches_do_not_lock(patient, prescriber, facility, pharmacy):
    _mismatch(4, pharmacy, patient, prescriber, facility)

    response = _ask(pharmacy, patient, prescriber, facility)

    assert response.json()["decision"] == "approved", response.json()


def test_id4_the_lock_is_per_caller(patient, prescriber, facility, pharmacy, other_pharmacy):
    _mismatch(5, pharmacy, patient, prescriber, facility)

    assert _ask(other_pharmacy, patient, prescriber, facility).json()["decision"] == "approved"
    assert _ask(pharmacy, patient, prescriber, facility).json()["decision"] == "denied"


def test_id4_mismatches_older_than_24_hours_do_not_count(patient, prescriber, facility, pharmacy, clock):
    _mismatch(4, pharmacy, patient, prescriber, facility)
    clock.move_to(NOW + dt.timedelta(hours=24, seconds=1))
    _mismatch(1, pharmacy, patient, prescriber, facility)

    assert _ask(pharmacy, patient, prescriber, facility).json()["decision"] == "approved"


def test_id4_the_lock_lasts_24_hours(patient, prescriber, facility, pharmacy, clock):
    _mismatch(5, pharmacy, patient, prescriber, facility)
    clock.move_to(NOW + dt.timedelta(hours=23, minutes=59))
    assert _ask(pharmacy, patient, prescriber, facility).json()["decision"] == "denied"

    clock.move_to(NOW + dt.timedelta(hours=24))
    assert _ask(pharmacy, patient, prescriber, facility).json()["decision"] == "approved"


def test_id4_asking_while_locked_neither_counts_nor_extends_the_lock(
    patient, prescriber, facility, pharmacy, clock
):
    """ID-4: the lock runs 24 hours from the fifth mismatch, however often the caller asks meanwhile (with
    the right date or a wrong one); one lock, audited once."""
    _mismatch(5, pharmacy, patient, prescriber, facility)
    clock.move_to(NOW + dt.timedelta(hours=12))
    _mismatch(5, pharmacy, patient, prescriber, facility)
    assert _ask(pharmacy, patient, prescriber, facility).json()["decision"] == "denied"

    clock.move_to(NOW + dt.timedelta(hours=24))
    assert _ask(pharmacy, patient, prescriber, facility).json()["decision"] == "approved"
    assert AuditEvent.objects.filter(action="dob_lookup.lock").count() == 1


def test_id4_lock_is_audited(patient, prescriber, facility, pharmacy):
    _mismatch(5, pharmacy, patient, prescriber, facility)

    guard = DobLookupGuard.objects.get(user=pharmacy.user, rems_patient_id=patient.rems_patient_id)
    assert (guard.locked_at, guard.locked_until) == (NOW, NOW + dt.timedelta(hours=24))
    (event,) = AuditEvent.objects.filter(action="dob_lookup.lock")
    assert (event.actor, event.subject_id, event.created_at) == (pharmacy.user, guard.pk, NOW)
    assert event.changes == {
        "rems_patient_id": patient.rems_patient_id,
        "mismatches": 5,
        "locked_until": (NOW + dt.timedelta(hours=24)).isoformat(),
    }


def test_id4_guessing_an_unknown_id_locks_it_too(patient, prescriber, facility, pharmacy):
    """The guard counts any well-formed ID that matches nothing, so it cannot tell which IDs exist."""
    unknown = new_registry_id()
    for _ in range(5):
        _ask(pharmacy, patient, prescriber, facility, rems_patient_id=unknown)

    guard = DobLookupGuard.objects.get(user=pharmacy.user, rems_patient_id=unknown)
    assert guard.locked_until == NOW + dt.timedelta(hours=24)


def test_id4_an_admin_lifts_the_lock_audited(patient, prescriber, facility, pharmacy, admin):
    _mismatch(5, pharmacy, patient, prescriber, facility)
    guard = DobLookupGuard.objects.get(user=pharmacy.user)

    dob_lock_lift(guard=guard, actor=admin.user, reason="Pharmacist called the REMS center", now=NOW)

    assert _ask(pharmacy, patient, prescriber, facility).json()["decision"] == "approved"
    (event,) = AuditEvent.objects.filter(action="dob_lookup.lift")
    assert (event.actor, event.subject_id) == (admin.user, guard.pk)
    assert event.changes == {
        "rems_patient_id": patient.rems_patient_id,
        "locked_until": (NOW + dt.timedelta(hours=24)).isoformat(),
        "reason": "Pharmacist called the REMS center",
    }
    guard.refresh_from_db()
    assert (guard.locked_until, guard.lifted_at, guard.lifted_by, guard.failures) == (
        None,
        NOW,
        admin.user,
        [],
    )


def test_id4_lifting_a_lock_that_is_not_active_is_409(patient, pharmacy, prescriber, facility, admin):
    _mismatch(1, pharmacy, patient, prescriber, facility)
    guard = DobLookupGuard.objects.get(user=pharmacy.user)

    with pytest.raises(Conflict) as refusal:
        dob_lock_lift(guard=guard, actor=admin.user, reason="x", now=NOW)
    assert refusal.value.code == "dob_lock_not_active"


def test_id4_infusion_check_is_locked_the_same_way(patient, facility):
    """The facility's lookup (GATE-3) is guarded too: after 5 mismatches the right date reads like an
    unknown ID."""
    for days in range(1, 6):
        body = infusion_body(patient, DAY0, date_of_birth=_wrong_dob(patient, days))
        assert facility.post("/api/v1/infusions/check", body).json()["decision"] == "do_not_infuse"
    unknown = facility.post(
        "/api/v1/infusions/check", infusion_body(patient, DAY0, rems_patient_id=new_registry_id())
    )

    locked = facility.post("/api/v1/infusions/check", infusion_body(patient, DAY0))

    assert _answer(locked) == _answer(unknown)
    assert [r["code"] for r in locked.json()["reasons"]] == ["patient_not_found"]


def test_id4_admin_sees_and_lifts_locks_in_the_admin(patient, prescriber, facility, pharmacy, admin_console):
    _mismatch(5, pharmacy, patient, prescriber, facility)
    guard = DobLookupGuard.objects.get(user=pharmacy.user)

    listing = admin_console.get("/admin/registry/doblookupguard/")
    assert listing.status_code == 200
    assert patient.rems_patient_id in listing.content.decode()

    confirm = admin_console.post(
        "/admin/registry/doblookupguard/",
        {"action": "lift_locks", "_selected_action": [str(guard.pk)]},
    )
    assert confirm.status_code == 200  # the reason form
    done = admin_console.post(
        "/admin/registry/doblookupguard/",
        {"action": "lift_locks", "_selected_action": [str(guard.pk)], "apply": "1", "reason": "Verified"},
    )
    assert done.status_code == 302
    guard.refresh_from_db()
    assert guard.locked_until is None
    assert AuditEvent.objects.filter(action="dob_lookup.lift", subject_id=guard.pk).count() == 1


# --- ID-4 for the NCPDP initiation by name (no registry ID) ------------------------------------------------


def _initiation_by_name(
    pharmacy, prescriber, *, dob: dt.date | str, message_id: str, first: str = "Pat"
) -> Any:
    """The patient named by name, date of birth and sex among the prescriber's patients; answers the
    REMSPatientID found (None when none)."""
    body = initiation_request(
        pharmacy=pharmacy.participant,
        prescriber_npi=prescriber.participant.npi,
        first=first,
        last="Ient",
        dob=dob,
        message_id=message_id,
    )
    root = answer(send(pharmacy, body))
    return text(root, "Body/REMSInitiationResponse/Patient/HumanPatient/Identification/REMSPatientID")


def test_id4_a_name_lookup_is_locked_after_five_misses_even_with_the_right_date(
    clock, prescriber, pharmacy, other_pharmacy
):
    """ID-4: a caller holding a name cannot try dates of birth until one answers (and learn that the person
    is a patient of this prescriber): five misses for one name lock that caller out of that name; another
    caller, and the registry-ID lookup, are not locked. The guard stores a digest, never the name."""
    patient = authorized_patient(prescriber, first_name="Pat")
    for attempt in range(5):
        wrong = patient.date_of_birth - dt.timedelta(days=attempt + 1)
        assert _initiation_by_name(pharmacy, prescriber, dob=wrong, message_id=f"G-{attempt}") is None

    assert _initiation_by_name(pharmacy, prescriber, dob=patient.date_of_birth, message_id="G-right") is None
    assert (
        _initiation_by_name(other_pharmacy, prescriber, dob=patient.date_of_birth, message_id="G-other")
        == patient.rems_patient_id
    )
    by_id = initiation_request(
        pharmacy=pharmacy.participant,
        prescriber_npi=prescriber.participant.npi,
        rems_patient_id=patient.rems_patient_id,
        dob=patient.date_of_birth,
        message_id="G-id",
    )
    assert (
        text(
            answer(send(pharmacy, by_id)),
            "Body/REMSInitiationResponse/Patient/HumanPatient/Identification/REMSPatientID",
        )
        == patient.rems_patient_id
    )
    [guard] = DobLookupGuard.objects.filter(lookup=LookupKind.DEMOGRAPHICS)
    assert guard.user == pharmacy.user
    assert guard.prescriber == prescriber.participant  # which of its name locks an admin is lifting
    assert guard.locked_until is not None
    assert len(guard.rems_patient_id) == 16
    assert "pat" not in guard.rems_patient_id.lower()
    assert "ient" not in guard.rems_patient_id.lower()
    event = AuditEvent.objects.get(action="dob_lookup.lock", subject_id=guard.pk)
    assert event.changes["lookup"] == "demographics"
    assert "Ient" not in str(event.changes)


def test_id4_a_name_lock_is_one_name_of_one_prescriber_and_lifts(clock, prescriber, pharmacy, admin):
    """Misses for one name do not lock another; an administrator's lift lets the caller find the patient
    again (audited, as for a registry ID)."""
    patient = authorized_patient(prescriber, first_name="Pat")
    other = authorized_patient(prescriber, first_name="Robin")
    for attempt in range(5):
        wrong = patient.date_of_birth - dt.timedelta(days=attempt + 1)
        _initiation_by_name(pharmacy, prescriber, dob=wrong, message_id=f"L-{attempt}")
    assert (
        _initiation_by_name(pharmacy, prescriber, dob=other.date_of_birth, message_id="L-o", first="Robin")
        == other.rems_patient_id
    )
    guard = DobLookupGuard.objects.get(lookup=LookupKind.DEMOGRAPHICS, locked_until__isnull=False)

    dob_lock_lift(guard=guard, actor=admin.user, reason="pharmacy called; typo in the date", now=NOW)

    assert (
        _initiation_by_name(pharmacy, prescriber, dob=patient.date_of_birth, message_id="L-after")
        == patient.rems_patient_id
    )
    assert AuditEvent.objects.filter(action="dob_lookup.lift", subject_id=guard.pk).exists()


@pytest.mark.postgres_only  # a real second session
@pytest.mark.django_db(transaction=True)
def test_id4_guesses_in_flight_together_cannot_pass_the_fifth_miss(prescriber, pharmacy):
    """One caller's lookups of one name run one at a time: while the fifth miss is being counted (its
    transaction still open), a guess with the right date of birth waits for it, then finds the lock."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber, first_name="Pat")
    named = {"first_name": "Pat", "last_name": "Ient", "sex": None, "caller": pharmacy.user, "now": NOW}
    for attempt in range(4):
        wrong = patient.date_of_birth - dt.timedelta(days=attempt + 1)
        assert patient_of_record_guarded(prescriber.participant, date_of_birth=wrong, **named) is None
    fifth_counted, release = threading.Event(), threading.Event()
    found: list[Any] = []

    def fifth_miss() -> None:
        try:
            with transaction.atomic():
                wrong = patient.date_of_birth - dt.timedelta(days=9)
                assert patient_of_record_guarded(prescriber.participant, date_of_birth=wrong, **named) is None
                fifth_counted.set()
                release.wait(timeout=20)
        finally:
            connection.close()

    def right_guess() -> None:
        try:
            found.append(
                patient_of_record_guarded(
                    prescriber.participant, date_of_birth=patient.date_of_birth, **named
                )
            )
        finally:
            connection.close()

    first = threading.Thread(target=fifth_miss)
    first.start()
    assert fifth_counted.wait(timeout=20)
    second = threading.Thread(target=right_guess)
    second.start()
    second.join(timeout=1)
    assert second.is_alive(), "the guess did not wait for the miss in flight"
    release.set()
    first.join(timeout=20)
    second.join(timeout=20)
    assert found == [None]
    assert DobLookupGuard.objects.get(lookup=LookupKind.DEMOGRAPHICS).locked_until is not None
