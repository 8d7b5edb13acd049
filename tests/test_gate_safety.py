"""Gate safety regressions (GATE-1..5, ACT-5, ACT-8, ACT-9, CRS-2, CRS-3), all through the API.

1. Races, with real threads on real database connections: the patient lock serializes every writer of a
   gate's facts, so concurrent requests never decide on facts a concurrent commit has already changed.
2. GATE-1/GATE-2 with ACT-5, ACT-8, ACT-9: every event that would fail the gate revokes the outstanding
   authorization numbers it affects, with an audit event per number.
3. ACT-5: a certification that lapses without an event (its expiry) is re-checked at dispense time.
4. GATE-2: a dispense backs at most `vials` infusions, of its own patient, facility and course.
5. ACT-5: identifiers and certification requirements of a certified participant are guarded.
6. GATE-3: an ancient infusion date is a 400, never a 500.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from registry.api.refusals import PUBLIC_DETAIL
from registry.errors import RegistryError
from registry.models import (
    AuditEvent,
    AuthorizationStatus,
    Course,
    CourseStatus,
    Decision,
    Dispense,
    DispenseAuthorization,
    Infusion,
    Patient,
    Pharmacy,
    Prescriber,
)
from registry.services.dispensing import dispense_record

from .conftest import Persona, client_with_key, participant_persona
from .factories import FacilityFactory, PharmacyFactory, PrescriberFactory, make_npi
from .gate_helpers import (
    DAY0,
    approved_number,
    authorized_patient,
    frozen,
    infuse,
    infusion_body,
    moment,
    plan_course,
    request_authorization,
    supply,
)

pytestmark = pytest.mark.django_db

AUTHORIZATIONS = "/api/v1/dispense-authorizations"
DISPENSES = "/api/v1/dispenses"
NOW = moment(DAY0)
RACE_ROUNDS = 8
JITTER = 0.02  # seconds: a cancel and a gate request differ in cost; both orders must occur


def _codes(body: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in body["reasons"]]


# --- 1. Races (real threads) ------------------------------------------------------------------------------


def _race(
    *calls: tuple[Persona, str, dict[str, Any]], jitter: float = 0.0
) -> list[tuple[int, dict[str, Any]]]:
    """POSTs every (persona, path, body) at once, one thread and one APIClient (so one database
    connection) per call, released together by a barrier. With `jitter`, the last call waits a random
    0..jitter seconds after the barrier: the requests differ in cost, and the rounds must explore both
    orders. Answers (status, body) in call order."""
    barrier = threading.Barrier(len(calls), timeout=30)
    results: list[tuple[int, dict[str, Any]] | None] = [None] * len(calls)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(index: int, persona: Persona, path: str, body: dict[str, Any]) -> None:
        client = client_with_key(persona.key)
        try:
            barrier.wait()
            if jitter and index == len(calls) - 1:
                time.sleep(random.uniform(0, jitter))
            response = client.post(path, body, format="json")
            results[index] = (response.status_code, response.json())
        except BaseException as exc:  # reported below: a thread must not swallow a failure
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(index, *call), name=f"race-{index}")
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a racing request did not finish"
    assert errors == []
    assert None not in results
    return [result for result in results if result is not None]


def _authorization_body(
    patient: Patient, prescriber: Persona, facility: Persona, doses: int
) -> dict[str, Any]:
    return {
        "rems_patient_id": patient.rems_patient_id,
        "date_of_birth": patient.date_of_birth.isoformat(),
        "prescriber_npi": prescriber.participant.npi,
        "facility_npi": facility.participant.npi,
        "doses_requested": doses,
    }


@pytest.mark.postgres_only  # threads racing on row locks
@pytest.mark.django_db(transaction=True)
def test_gate1_gate2_concurrent_authorizations_for_all_doses_grant_exactly_one(
    clock, prescriber, facility, pharmacy
):
    """GATE-1, GATE-2, CRS-2: two pharmacies ask at the same instant for all 5 doses of one 5-dose course.
    Exactly one is approved; the other is denied `course_doses_exhausted`, never a second approval."""
    other_pharmacy = participant_persona(PharmacyFactory(certified=True))
    today = DAY0  # frozen: the threads' requests and the set-up share one calendar day
    for _ in range(RACE_ROUNDS):
        patient = authorized_patient(prescriber, on=today)
        course = plan_course(prescriber, patient, start=today)
        body = _authorization_body(patient, prescriber, facility, doses=5)

        results = _race((pharmacy, AUTHORIZATIONS, body), (other_pharmacy, AUTHORIZATIONS, body))

        assert [status for status, _ in results] == [201, 201]
        decisions = sorted(answer["decision"] for _, answer in results)
        assert decisions == ["approved", "denied"], results
        denied = next(answer for _, answer in results if answer["decision"] == "denied")
        assert _codes(denied) == ["course_doses_exhausted"]
        assert denied["authorization_number"] is None
        approved = next(answer for _, answer in results if answer["decision"] == "approved")
        active = DispenseAuthorization.objects.filter(course=course, status=AuthorizationStatus.ACTIVE)
        assert list(active.values_list("number", "doses_authorized")) == [
            (approved["authorization_number"], 5)
        ]


def _raw_connection(autocommit: bool) -> Any:
    """A connection of its own to the test database, outside Django (a second participant's session)."""
    import psycopg

    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"],
        dbname=db["NAME"],
        autocommit=autocommit,
    )


@pytest.mark.postgres_only  # a real second session holding a row lock
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("party", "code"), [("pharmacy", "pharmacy_not_certified"), ("facility", "facility_not_certified")]
)
def test_gate1_act5_a_suspension_in_flight_is_waited_for_and_seen(
    clock, prescriber, facility, pharmacy, party, code
):
    """GATE-1, ACT-5: the authorization share-locks its parties (in the facts statement, after the patient
    lock). A suspension written but not yet committed when the request reads them makes the request wait;
    once it commits, the request decides on the suspended party: denied, no number."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    participant = pharmacy.participant if party == "pharmacy" else facility.participant
    suspender = _raw_connection(autocommit=False)
    watcher = _raw_connection(autocommit=True)
    result: list[tuple[int, dict[str, Any]]] = []
    try:
        suspender.execute(
            f"UPDATE registry_{party} SET status = 'suspended' WHERE id = %s",  # noqa: S608 - fixed names
            [participant.pk],
        )

        def ask() -> None:
            try:
                response = client_with_key(pharmacy.key).post(
                    AUTHORIZATIONS, _authorization_body(patient, prescriber, facility, doses=1), format="json"
                )
                result.append((response.status_code, response.json()))
            finally:
                connection.close()

        thread = threading.Thread(target=ask, name="authorization")
        thread.start()
        deadline = time.monotonic() + 20
        waiting = False
        while time.monotonic() < deadline and not waiting:
            # the gate's facts statement (it reads the parties) waits for the suspender's row lock
            waiting = watcher.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                " AND %s = ANY (pg_blocking_pids(pid)) AND query LIKE 'SELECT p.id, p.created_at, %%')",
                [suspender.info.backend_pid],
            ).fetchone()[0]
            time.sleep(0.02)
        assert waiting, "the authorization did not wait for the uncommitted suspension"
        assert thread.is_alive()
        suspender.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        suspender.close()
        watcher.close()

    [(status, body)] = result
    assert status == 201
    assert body["decision"] == "denied", body
    assert code in _codes(body)
    assert body["authorization_number"] is None
    assert not DispenseAuthorization.objects.filter(patient=patient).exists()


@pytest.mark.postgres_only  # threads racing on row locks
@pytest.mark.django_db(transaction=True)
def test_crs3_gate1_course_cancel_racing_an_authorization_never_leaves_it_active(
    clock, prescriber, facility, pharmacy
):
    """CRS-3, GATE-1, GATE-2: a course cancel and an authorization request at the same instant. Either the
    request sees the cancelled course (denied `no_open_course`) or it is approved first and the cancel
    revokes it; no active authorization on a cancelled course survives."""
    today = DAY0  # frozen: the threads' requests and the set-up share one calendar day
    for _ in range(RACE_ROUNDS):
        patient = authorized_patient(prescriber, on=today)
        course = plan_course(prescriber, patient, start=today)

        (cancel_status, cancel), (authorization_status, authorization) = _race(
            (prescriber, f"/api/v1/courses/{course.pk}/cancel", {"reason": "Race"}),
            (pharmacy, AUTHORIZATIONS, _authorization_body(patient, prescriber, facility, doses=5)),
            jitter=JITTER,
        )

        assert (cancel_status, cancel["status"]) == (200, "cancelled"), cancel
        assert authorization_status == 201, authorization
        if authorization["decision"] == "denied":
            assert _codes(authorization) == ["no_open_course"]
            assert not DispenseAuthorization.objects.filter(course=course).exists()
        else:
            assert authorization["decision"] == "approved", authorization
            stored = DispenseAuthorization.objects.get(number=authorization["authorization_number"])
            assert (stored.status, stored.revoke_reason) == (
                AuthorizationStatus.REVOKED,
                "Course cancelled: Race",
            )
            refused = client_with_key(pharmacy.key).post(
                DISPENSES, {"authorization_number": stored.number, "vials": 5}, format="json"
            )
            assert (refused.status_code, refused.json()["code"]) == (409, "authorization_revoked")
        assert Course.objects.get(pk=course.pk).status == CourseStatus.CANCELLED
        assert not DispenseAuthorization.objects.filter(
            status=AuthorizationStatus.ACTIVE, course__status=CourseStatus.CANCELLED
        ).exists()


@pytest.mark.postgres_only  # threads racing on row locks
@pytest.mark.django_db(transaction=True)
def test_crs3_gate3_course_cancel_racing_an_infusion_keeps_the_course_consistent(clock, prescriber, facility):
    """CRS-3, GATE-3: a course cancel and an infusion at the same instant. Either the infusion lands first
    (201, then the in-progress course is cancelled) or it is refused `do_not_infuse` / `no_open_course`;
    a cancelled course's doses_given always equals its infusions."""
    today = DAY0  # frozen: the threads' requests and the set-up share one calendar day
    for _ in range(RACE_ROUNDS):
        patient = authorized_patient(prescriber, on=today)
        course = plan_course(prescriber, patient, start=today)
        assert supply(facility, patient, on=today) is not None  # GATE-3: the doses reached the site

        (cancel_status, cancel), (infusion_status, infusion) = _race(
            (prescriber, f"/api/v1/courses/{course.pk}/cancel", {"reason": "Race"}),
            (facility, "/api/v1/infusions", infusion_body(patient, today, day=1)),
            jitter=JITTER,
        )

        assert (cancel_status, cancel["status"]) == (200, "cancelled"), cancel
        assert infusion_status in (201, 409), infusion
        if infusion_status == 409:
            assert infusion["code"] == "do_not_infuse"
            assert _codes(infusion) == ["no_open_course"]
        else:
            assert (infusion["course"], infusion["day_in_course"]) == (str(course.pk), 1)
        course.refresh_from_db()
        infusions = Infusion.objects.filter(course=course).count()
        assert course.status == CourseStatus.CANCELLED
        assert infusions == (1 if infusion_status == 201 else 0)
        assert course.doses_given == infusions
        for cancelled in Course.objects.filter(status=CourseStatus.CANCELLED):
            assert cancelled.doses_given == Infusion.objects.filter(course=cancelled).count()


# --- Set-up shared by the single-threaded tests --------------------------------------------------------------


@pytest.fixture
def clock():
    """2026-03-02 at 15:00 UTC unless a test travels on."""
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def patient(clock, prescriber):
    """Authorized on 2026-03-02, course 1 (5 doses) planned to start that day."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    return patient


# --- 2. Events revoke outstanding numbers (GATE-1, GATE-2, ACT-5, ACT-8, ACT-9) ------------------------------

# event -> (who acts, path, body, revoke reason)
REVOKING_EVENTS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "act5_pharmacy_suspended": (
        "admin",
        "/api/v1/pharmacies/{pharmacy}/suspend",
        {"reason": "Audit finding"},
        "Pharmacy suspended: Audit finding",
    ),
    "act5_facility_suspended": (
        "admin",
        "/api/v1/facilities/{facility}/suspend",
        {"reason": "Audit finding"},
        "Facility suspended: Audit finding",
    ),
    "act5_prescriber_suspended": (
        "admin",
        "/api/v1/prescribers/{prescriber}/suspend",
        {"reason": "Audit finding"},
        "Prescriber suspended: Audit finding",
    ),
    "act5_pharmacy_deactivated": (
        "admin",
        "/api/v1/pharmacies/{pharmacy}/deactivate",
        {"reason": "Closed"},
        "Pharmacy deactivated: Closed",
    ),
    "act8_patient_suspended": (
        "admin",
        "/api/v1/patients/{patient}/suspend",
        {"reason": "Under review"},
        "Patient suspended: Under review",
    ),
    "act8_patient_discontinued": (
        "prescriber",
        "/api/v1/patients/{patient}/discontinue",
        {"reason": "Treatment stopped"},
        "Patient discontinued: Treatment stopped",
    ),
    "act8_patient_deceased": (
        "prescriber",
        "/api/v1/patients/{patient}/deceased",
        {"reason": "Reported by family"},
        "Patient deceased: Reported by family",
    ),
    "act8_patient_transferred": (
        "prescriber",
        "/api/v1/patients/{patient}/transfer",
        {"prescriber_npi": "{other_prescriber_npi}"},
        "Transfer of care",
    ),
    "act9_contraindication_recorded": (
        "prescriber",
        "/api/v1/patients/{patient}/contraindications",
        {"kind": "hiv", "noted_on": DAY0.isoformat(), "notes": ""},
        "Contraindication recorded: hiv",
    ),
}


PHARMACY_EVENT_REFUSALS = {
    "act5_pharmacy_suspended": (403, "participant_suspended"),
    "act5_pharmacy_deactivated": (401, "key_inactive"),
}


@pytest.mark.parametrize("event", list(REVOKING_EVENTS))
def test_gate1_event_revokes_outstanding_authorization(
    request, event, patient, prescriber, other_prescriber, facility, pharmacy, admin
):
    """GATE-1, GATE-2 with ACT-5 (party suspended or deactivated), ACT-8 (patient suspended,
    discontinued, deceased or transferred) and ACT-9 (contraindication): the event revokes the approved
    number at once; the dispense is refused 409 `authorization_revoked`, the number reads `revoked`, and
    the revocation is audited once."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    authorization = DispenseAuthorization.objects.get(number=number)
    actor_name, path_template, body_template, reason = REVOKING_EVENTS[event]
    ids = {
        "pharmacy": pharmacy.participant.pk,
        "facility": facility.participant.pk,
        "prescriber": prescriber.participant.pk,
        "patient": patient.pk,
        "other_prescriber_npi": other_prescriber.participant.npi,
    }
    actor: Persona = request.getfixturevalue(actor_name)
    body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body_template.items()}

    event_response = actor.post(path_template.format(**ids), body)
    assert event_response.status_code in (200, 201), event_response.json()

    refused = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})
    # ACT-5: a suspended pharmacy's writes are refused before the number is read (403), a deactivated
    # pharmacy's key no longer works at all (401); for every other event the number itself is revoked.
    category = "participant_not_certified" if event.startswith("act5") else "patient_no_longer_eligible"
    status, code = PHARMACY_EVENT_REFUSALS.get(event, (409, "authorization_revoked"))
    assert (refused.status_code, refused.json()["code"]) == (status, code), refused.json()
    if code == "authorization_revoked":
        assert refused.json() == {
            "code": "authorization_revoked",
            "detail": "This authorization number was revoked.",
            "status": "revoked",
            "revocation": category,
        }
    assert not Dispense.objects.exists()

    if event == "act5_pharmacy_deactivated":  # ACT-5: the pharmacy's key reads nothing any more
        assert pharmacy.get(f"{AUTHORIZATIONS}/{number}").json()["code"] == "key_inactive"
        shown = admin.get(f"{AUTHORIZATIONS}/{number}")
    else:
        shown = pharmacy.get(f"{AUTHORIZATIONS}/{number}")
        # Minimum necessary disclosure: the pharmacy reads the category, never the reason text.
        assert "revoke_reason" not in shown.json()
    assert shown.status_code == 200
    assert (shown.json()["status"], shown.json()["revocation"]) == ("revoked", category)
    assert admin.get(f"{AUTHORIZATIONS}/{number}").json()["revoke_reason"] == reason
    assert dt.datetime.fromisoformat(shown.json()["revoked_at"]) == NOW

    stored = DispenseAuthorization.objects.get(pk=authorization.pk)
    assert (stored.status, stored.revoked_by, stored.revoked_at, stored.revoke_reason) == (
        AuthorizationStatus.REVOKED,
        actor.user,
        NOW,
        reason,
    )
    audits = AuditEvent.objects.filter(action="authorization.revoke", subject_id=authorization.pk)
    assert list(audits.values_list("actor", "subject_type", "changes")) == [
        (
            actor.user.pk,
            "dispenseauthorization",
            {"status": ["active", "revoked"], "reason": reason, "category": category},
        )
    ]


# --- 3. A certification lapses without an event (ACT-5, GATE-1, GATE-2) ------------------------------------


def test_act5_expired_pharmacy_certification_refuses_an_outstanding_number(
    clock, settings, prescriber, facility, admin
):
    """ACT-5, GATE-1, GATE-2: with a 30-day certification validity (*setting*), a pharmacy certified on
    2026-03-02 expires on 2026-04-01; its number issued on 2026-03-29 (valid to 2026-04-05) no longer holds
    on 2026-04-02: 409 `authorization_revoked` naming the pharmacy, nothing dispensed."""
    settings.REMS_SETTINGS = {"certification_validity_days": 30}
    pharmacy = participant_persona(PharmacyFactory())
    certified = admin.post(f"/api/v1/pharmacies/{pharmacy.participant.pk}/certify")
    assert certified.status_code == 200, certified.json()
    expires = NOW + dt.timedelta(days=30)
    assert dt.datetime.fromisoformat(certified.json()["certification_expires_at"]) == expires

    issued_on = DAY0 + dt.timedelta(days=27)
    with frozen(issued_on):
        patient = authorized_patient(prescriber, on=issued_on)
        plan_course(prescriber, patient, start=issued_on)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    assert DispenseAuthorization.objects.get(number=number).expires_at == moment(issued_on) + dt.timedelta(
        days=7
    )

    with frozen(expires + dt.timedelta(days=1)):
        refused = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})
        shown = pharmacy.get(f"/api/v1/dispense-authorizations/{number}")

    # ACT-5: an expired certification behaves like a suspension: the write is refused (403) before the
    # number is read; the pharmacy may still read the number, which reads as revoked.
    assert refused.status_code == 403, refused.json()
    assert refused.json()["code"] == "participant_suspended"
    assert not Dispense.objects.exists()
    assert (shown.json()["status"], shown.json()["revocation"]) == ("revoked", "participant_not_certified")
    # GATE-2: the service refuses it too, behind the API.
    with frozen(expires + dt.timedelta(days=1)), pytest.raises(RegistryError) as refusal:
        dispense_record(
            actor=pharmacy.user, data={"authorization_number": number, "vials": 5}, now=timezone.now()
        )
    assert (refusal.value.code, refusal.value.detail, refusal.value.extra) == (
        "authorization_revoked",
        "This authorization number no longer holds: a participant is no longer certified.",
        {"status": "revoked", "revocation": "participant_not_certified"},
    )
    assert not Dispense.objects.exists()


def test_act5_pharmacy_expiry_set_in_the_past_refuses_an_outstanding_number(
    patient, prescriber, facility, pharmacy
):
    """ACT-5, GATE-2: an expiry that passes after the number was issued (set directly, as an import or a
    data fix would) is caught at dispense time: 409 `authorization_revoked` naming the pharmacy."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    Pharmacy.objects.filter(pk=pharmacy.participant.pk).update(
        certification_expires_at=NOW - dt.timedelta(seconds=1)
    )

    refused = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})

    assert refused.status_code == 403, refused.json()  # ACT-5: expired behaves like suspended
    assert refused.json()["code"] == "participant_suspended"
    assert not Dispense.objects.exists()
    with pytest.raises(RegistryError) as refusal:  # GATE-2: the service refuses it too, behind the API
        dispense_record(
            actor=pharmacy.user, data={"authorization_number": number, "vials": 5}, now=timezone.now()
        )
    assert (refusal.value.code, refusal.value.detail, refusal.value.extra) == (
        "authorization_revoked",
        "This authorization number no longer holds: a participant is no longer certified.",
        {"status": "revoked", "revocation": "participant_not_certified"},
    )
    assert not Dispense.objects.exists()
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.ACTIVE
    # GATE-2: the status a pharmacy reads agrees with the dispense answer.
    assert pharmacy.get(f"/api/v1/dispense-authorizations/{number}").json()["status"] == "revoked"


# --- 4. Dispense vial accounting (GATE-2, GATE-3) ---------------------------------------------------------


def _dispense(pharmacy: Persona, patient: Patient, prescriber: Persona, facility: Persona, vials: int) -> str:
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=vials))
    response = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": vials})
    assert response.status_code == 201, response.json()
    return response.json()["id"]


FOREIGN_DISPENSE = "No dispense of this patient to this facility for the open course has this id."


def _no_dispense(response, stored_detail: str) -> None:
    """GATE-2, GATE-3, GATE-5: a dispense that cannot back the infusion is `do_not_infuse` with
    `no_dispense_for_facility`, stored as a decision like every other check; the facility reads the neutral
    text, the stored decision the precise one."""
    assert response.status_code == 409, response.json()
    body = response.json()
    assert body["code"] == "do_not_infuse"
    assert body["reasons"] == [
        {"code": "no_dispense_for_facility", "detail": PUBLIC_DETAIL["no_dispense_for_facility"]}
    ]
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.kind, decision.outcome) == ("infusion", "denied")
    assert decision.reasons == [{"code": "no_dispense_for_facility", "detail": stored_detail}]


def test_gate2_one_vial_dispense_backs_exactly_one_infusion(patient, prescriber, facility, pharmacy):
    """GATE-2, GATE-3: a 1-vial dispense is cited by one infusion; the second infusion citing it is
    `do_not_infuse` (`no_dispense_for_facility`) and records nothing but its decision."""
    dispense_id = _dispense(pharmacy, patient, prescriber, facility, vials=1)

    first = infuse(facility, patient, DAY0, day=1, dispense_id=dispense_id)
    assert first.status_code == 201, first.json()
    assert first.json()["dispense_id"] == dispense_id

    second = infuse(facility, patient, DAY0 + dt.timedelta(days=1), day=2, dispense_id=dispense_id)
    _no_dispense(second, "All 1 vial(s) of this dispense are infused.")
    assert Infusion.objects.filter(patient=patient).count() == 1
    assert Course.objects.get(patient=patient).doses_given == 1


def test_gate2_two_vial_dispense_backs_two_infusions_not_three(patient, prescriber, facility, pharmacy):
    """GATE-2: a dispense backs at most `vials` infusions."""
    dispense_id = _dispense(pharmacy, patient, prescriber, facility, vials=2)
    for day in (1, 2):
        response = infuse(
            facility, patient, DAY0 + dt.timedelta(days=day - 1), day=day, dispense_id=dispense_id
        )
        assert response.status_code == 201, response.json()

    third = infuse(facility, patient, DAY0 + dt.timedelta(days=2), day=3, dispense_id=dispense_id)
    _no_dispense(third, "All 2 vial(s) of this dispense are infused.")
    assert Infusion.objects.filter(dispense_id=dispense_id).count() == 2


def test_gate2_dispense_of_another_patient_is_refused(patient, prescriber, facility, pharmacy):
    """GATE-2, GATE-3: a vial dispensed for another patient cannot back this patient's infusion."""
    other = authorized_patient(prescriber)
    plan_course(prescriber, other, start=DAY0)
    dispense_id = _dispense(pharmacy, other, prescriber, facility, vials=1)

    response = infuse(facility, patient, DAY0, day=1, dispense_id=dispense_id)

    _no_dispense(response, FOREIGN_DISPENSE)
    assert not Infusion.objects.exists()


def test_gate2_dispense_of_another_course_is_refused(patient, prescriber, facility, pharmacy):
    """GATE-2, CRS-3: a vial dispensed for a course since cancelled cannot back the new course's
    infusion."""
    dispense_id = _dispense(pharmacy, patient, prescriber, facility, vials=1)
    old_course = Course.objects.get(patient=patient)
    cancelled = prescriber.post(f"/api/v1/courses/{old_course.pk}/cancel", {"reason": "Rescheduled"})
    assert cancelled.status_code == 200, cancelled.json()
    planned = prescriber.post(
        f"/api/v1/patients/{patient.pk}/courses", {"planned_start_on": DAY0.isoformat()}
    )
    assert planned.status_code == 201, planned.json()

    response = infuse(facility, patient, DAY0, day=1, dispense_id=dispense_id)

    _no_dispense(response, FOREIGN_DISPENSE)
    assert not Infusion.objects.exists()
    assert Course.objects.get(pk=planned.json()["id"]).doses_given == 0


def test_gate2_dispense_to_another_facility_is_refused(patient, prescriber, facility, pharmacy):
    """GATE-2: the authorization is bound to its receiving facility; another facility cannot infuse its
    vial."""
    dispense_id = _dispense(pharmacy, patient, prescriber, facility, vials=1)
    elsewhere = participant_persona(FacilityFactory(certified=True))

    response = infuse(elsewhere, patient, DAY0, day=1, dispense_id=dispense_id)

    _no_dispense(response, FOREIGN_DISPENSE)
    assert not Infusion.objects.exists()


# --- 5. Guarded participant edits (ACT-2, ACT-5) --------------------------------------------------------------


def _row(prescriber_id: Any) -> dict[str, Any]:
    return dict(Prescriber.objects.filter(pk=prescriber_id).values().get())


def test_act5_certified_prescriber_npi_is_locked(admin, prescriber):
    """ACT-5: a certified participant keeps its identifiers: 409 `identifier_locked`, nothing changed."""
    before = _row(prescriber.participant.pk)

    response = admin.patch(f"/api/v1/prescribers/{prescriber.participant.pk}", {"npi": make_npi()})

    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "identifier_locked"
    assert _row(prescriber.participant.pk) == before


def test_act2_act5_certified_prescriber_cannot_undo_knowledge_assessment(admin, prescriber):
    """ACT-2, ACT-5: an edit that would fail a requirement the certification rests on is 409
    `certification_requirements_unmet` listing exactly what would be missing; nothing changed."""
    before = _row(prescriber.participant.pk)

    response = admin.patch(
        f"/api/v1/prescribers/{prescriber.participant.pk}", {"knowledge_assessment_score": 0}
    )

    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "certification_requirements_unmet"
    assert response.json()["missing"] == ["knowledge_assessment_passed"]
    assert _row(prescriber.participant.pk) == before


def test_act5_pending_prescriber_identifiers_and_requirements_are_editable(admin):
    """ACT-5: nothing is certified yet, so a pending prescriber's NPI and assessment may change."""
    pending = PrescriberFactory()
    new_npi = make_npi()

    npi = admin.patch(f"/api/v1/prescribers/{pending.pk}", {"npi": new_npi})
    score = admin.patch(f"/api/v1/prescribers/{pending.pk}", {"knowledge_assessment_score": 0})

    assert npi.status_code == 200, npi.json()
    assert score.status_code == 200, score.json()
    assert (npi.json()["npi"], score.json()["knowledge_assessment_score"]) == (new_npi, 0)
    row = _row(pending.pk)
    assert (row["npi"], row["knowledge_assessment_score"], row["status"]) == (new_npi, 0, "pending")


# --- 6. Ancient infusion dates (GATE-3) ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/infusions", "/api/v1/infusions/check"])
def test_gate3_ancient_legacy_infusion_date_is_400_not_500(patient, admin, facility, path):
    """GATE-3: an administrator's legacy infusion dated 0001-01-03 is a typing error: 400
    `validation_error` on `administered_on`, no decision, no infusion (never a 500 from date arithmetic)."""
    body = infusion_body(patient, dt.date(1, 1, 3), facility_npi=facility.participant.npi)
    assert body["administered_on"] == "0001-01-03"

    response = admin.post(path, body)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"] == {"administered_on": ["Cannot be before 2010-01-01."]}
    assert not Infusion.objects.exists()
    assert not Decision.objects.filter(kind__in=["infusion", "infusion_check"]).exists()


# --- 7. Second review -------------------------------------------------------------------------------------


def test_crs4_a_later_lab_does_not_hide_one_valid_on_a_backdated_first_dose(patient, prescriber, facility):
    """CRS-4, API.md backdating: labs of DAY0-3 hold for a first dose given on DAY0; a CBC drawn on DAY0+1
    (after that dose) must not make the DAY0 dose look as if it had no pre-course labs when the facility
    records it on DAY0+2."""
    from registry.services.enrollment import lab_result_record

    assert supply(facility, patient, on=DAY0) is not None  # GATE-3: the doses reached the site
    lab_result_record(
        patient=patient,
        actor=prescriber.user,
        now=moment(DAY0 + dt.timedelta(days=1)),
        data={"test": "cbc_differential", "collected_on": DAY0 + dt.timedelta(days=1), "result": "normal"},
    )
    with frozen(DAY0 + dt.timedelta(days=2)):
        response = facility.post("/api/v1/infusions", infusion_body(patient, DAY0))
    assert response.status_code == 201, response.json()
    assert response.json()["day_in_course"] == 1


def test_gate2_more_vials_than_authorized_is_a_409_not_a_400(patient, prescriber, facility, pharmacy):
    """API.md: `vials_exceed_authorization` is the answer for vials beyond the authorization's doses."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    response = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 6})
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "vials_exceed_authorization"
    assert not Dispense.objects.exists()


def test_malformed_delegate_id_is_not_found(admin, prescriber):
    """A delegate id that is no UUID names no delegate: 404, not a validation error."""
    response = admin.delete(
        f"/api/v1/prescribers/{prescriber.participant.pk}/delegates/0123456789abcdef0123456789abcdef0123"
    )
    assert response.status_code == 404, response.json()
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("raw", ["seven", "none", "-1"])
def test_malformed_program_setting_is_refused_by_the_rules(settings, raw):
    """rules.py: `current()` refuses a bad REMS_* value (start-up itself: tests/test_program_settings.py)."""
    from django.core.exceptions import ImproperlyConfigured

    from registry import rules

    settings.REMS_SETTINGS = {"authorization_validity_days": raw}
    with pytest.raises(ImproperlyConfigured):
        rules.current()
