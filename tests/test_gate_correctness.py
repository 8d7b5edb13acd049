"""Issue 9, gate correctness, through the public API, on the boundaries (the day before, on and after;
month ends; a site ahead of the registry's zone near midnight), with the exact answer bodies.

1. One person, one record (ACT-6, CRS-2): a normalized name and date of birth already enrolled is 409
   `possible_duplicate_patient`, naming nothing about the other patient; an administrator may confirm a
   different person (audited).
2. Facts that change after a course starts (ACT-7, ACT-9, GATE-4): a screening that withdraws an
   attestation holds every gate and revokes the outstanding numbers.
3. Every infusion is backed by a dispense (GATE-2, GATE-3): a facility's infusion needs a dispense to it
   for the open course with a vial left; administrators recording legacy history are exempt and say so.
4. Doses and states that agree (GATE-2, ACT-5, ACT-8): a lapsed number stops holding doses at once, reads
   `revoked` in the API and the admin before the sweep stores it so, and the dispense is refused with the
   code the GET shows.
5. A planning horizon that works (CRS-2, CRS-4, GATE-1): planning lists the labs as pending; they are
   judged on the authorization day and the infusion day; a pharmacy may be authorized
   `authorization_lead_days` (*setting*) before the course's earliest day, the infusion waits for it.
6. Dates that make sense (ACT-2..4, ACT-9, CRS-2): age on the enrollment date; no future attested dates;
   `course_dose_allowance_days` (*setting*) and `course_dose_window_missed`.
7. Local calendar days: a facility's or pharmacy's "today" is its own zone's; prescribers and
   administrators use the registry's (America/New_York) unless a prescriber sets one.

Every moment is 15:00 UTC (gate_helpers.frozen) unless a test says otherwise.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Sequence
from typing import Any

import pytest
from django.contrib import admin as django_admin
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers

from registry.api.refusals import PUBLIC_DETAIL
from registry.errors import RegistryError
from registry.localtime import local_today
from registry.matching import patient_match_key
from registry.models import (
    AuditEvent,
    AuthorizationStatus,
    Course,
    CourseStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    Dispense,
    DispenseAuthorization,
    Facility,
    Infusion,
    Patient,
    PatientStatus,
)
from registry.services.accounts import delegate_add
from registry.services.dispensing import dispense_record
from registry.services.enrollment import lab_result_record, patient_authorize
from registry.services.gate import PENDING_DETAIL
from registry.services.monitoring import monitoring_sweep

from .conftest import Persona, client_with_key, participant_persona
from .factories import FacilityFactory, PharmacyFactory, PrescriberFactory, create_body
from .gate_helpers import (
    DAY0,
    DISPENSE_REQUIREMENT_NAMES,
    PRE_COURSE_LABS,
    approved_number,
    authorized_patient,
    course_path,
    enroll_patient,
    frozen,
    infuse,
    infuse_days,
    infusion_body,
    moment,
    monitoring_kept_up,
    patient_after_course_1,
    plan_course,
    record_labs,
    record_screening,
    request_authorization,
)

pytestmark = pytest.mark.django_db


PATIENTS = "/api/v1/patients"
AUTHORIZATIONS = "/api/v1/dispense-authorizations"
DISPENSES = "/api/v1/dispenses"
INFUSIONS = "/api/v1/infusions"
CHECK = "/api/v1/infusions/check"
NOW = moment(DAY0)


def daily_sweep() -> int:
    """The daily sweep (MON-5) for today: it stores expired numbers as `expired` and lapsed ones as
    `revoked` (GATE-2, issue 9 item 4). Answers how many numbers it stored; 0 when today's sweep ran."""
    now = timezone.now()
    result = monitoring_sweep(as_of=timezone.localdate(now), now=now)
    return result.expired + result.lapsed


DAY = dt.timedelta(days=1)


def dispense_refusal(persona: Persona, number: str, *, caller_expired: bool) -> tuple[int, dict[str, Any]]:
    """(status, body) of a refused 5-vial dispense of `number`. ACT-5 (issue 8): a pharmacy whose own
    certification expired acts as suspended, its write refused before the number is read (403
    `participant_suspended`); the number's own refusal (GATE-2) is then the service's, behind the API."""
    body = {"authorization_number": number, "vials": 5}
    response = persona.post(DISPENSES, body)
    if not caller_expired:
        return response.status_code, response.json()
    assert (response.status_code, response.json()["code"]) == (403, "participant_suspended")
    with pytest.raises(RegistryError) as refusal:
        dispense_record(actor=persona.user, data=body, now=timezone.now())
    error = refusal.value
    return error.status_code, {"code": error.code, "detail": error.detail, **error.extra}


# The requirements each gate reports, in order (GATE-5), as their checks name them.
COURSE_REQUIREMENTS = [
    "prescriber_of_record_certified",
    "patient_authorized",
    "no_contraindication",
    "attestations_hold",
    "no_open_pregnancy",  # PRG-4
    "no_open_course",
    "course_interval_met",
    "monitoring_current",  # MON-3, GATE-4
    "status_form_current",  # MON-4, GATE-4
]
DISPENSE_REQUIREMENTS = DISPENSE_REQUIREMENT_NAMES
INFUSION_REQUIREMENTS = [
    "facility_certified",
    "patient_found",
    "prescriber_of_record_certified",
    "patient_authorized",
    "no_contraindication",
    "attestations_hold",
    "no_open_pregnancy",  # PRG-4
    "open_course",
    "course_doses_remaining",
    "course_interval_met",
    "dose_within_course_window",
    "pre_course_labs_fresh",
    "course_1_baseline_labs",
    "course_1_screening",
    "course_1_pregnancy_test",
    "one_infusion_per_day",
    "dispense_backs_infusion",
    "dose_is_standard",
    "premedication_given",
    "observation_long_enough",
]
COURSE_1_PENDING = [
    {"requirement": "pre_course_labs_fresh", "code": "pre_course_labs_stale", "detail": PENDING_DETAIL},
    {"requirement": "course_1_baseline_labs", "code": "baseline_incomplete", "detail": PENDING_DETAIL},
    {"requirement": "course_1_screening", "code": "screening_incomplete", "detail": PENDING_DETAIL},
    {"requirement": "course_1_pregnancy_test", "code": "pregnancy_test_required", "detail": PENDING_DETAIL},
]
COURSE_2_PENDING = COURSE_1_PENDING[:1]


def requirement_rows(names: Sequence[str], unmet: dict[str, tuple[str, str | None]]) -> list[dict[str, Any]]:
    """A gate's `requirements` as answered: every name met except `unmet` (name -> code and the detail
    the caller reads; None where a pharmacy or facility reads no detail for a fact about the patient)."""
    rows: list[dict[str, Any]] = []
    for name in names:
        if name not in unmet:
            rows.append({"requirement": name, "met": True})
            continue
        code, detail = unmet[name]
        rows.append(
            {"requirement": name, "met": False, "code": code, **({"detail": detail} if detail else {})}
        )
    return rows


def do_not_infuse(response: Any, unmet: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """GATE-3, GATE-5: the facility's exact 409: `do_not_infuse`, the neutral text of each patient reason,
    every requirement; the stored decision keeps the precise details (name -> code, stored detail)."""
    assert response.status_code == 409, response.json()
    body = response.json()
    assert body == {
        "code": "do_not_infuse",
        "detail": "Do not infuse: the infusion check failed.",
        "decision_id": body["decision_id"],
        "reasons": [{"code": code, "detail": PUBLIC_DETAIL[code]} for code, _ in unmet.values()],
        "requirements": requirement_rows(
            INFUSION_REQUIREMENTS, {name: (code, None) for name, (code, _) in unmet.items()}
        ),
    }
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.kind, decision.outcome) == (DecisionKind.INFUSION, DecisionOutcome.DENIED)
    assert decision.reasons == [{"code": code, "detail": detail} for code, detail in unmet.values()]
    return body


def denied(response: Any, unmet: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """GATE-1, GATE-5: the pharmacy's exact 201 denial (name -> code, stored detail)."""
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body == {
        "id": body["id"],
        "decision": "denied",
        "authorization_number": None,
        "effective_at": None,
        "expires_at": None,
        "course_number": None,
        "doses_authorized": None,
        "reasons": [{"code": code, "detail": PUBLIC_DETAIL[code]} for code, _ in unmet.values()],
        "requirements": requirement_rows(
            DISPENSE_REQUIREMENTS, {name: (code, None) for name, (code, _) in unmet.items()}
        ),
    }
    stored = Decision.objects.get(pk=body["id"])
    assert stored.reasons == [{"code": code, "detail": detail} for code, detail in unmet.values()]
    return body


def dispensed(pharmacy: Persona, patient: Patient, prescriber: Persona, facility: Persona, vials: int) -> str:
    """GATE-1, GATE-2: `vials` doses authorized and dispensed to `facility` now; the dispense's id."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=vials))
    response = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": vials})
    assert response.status_code == 201, response.json()
    return response.json()["id"]


@pytest.fixture
def clock():
    """2026-03-02 at 15:00 UTC unless a test travels on."""
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def patient(clock, prescriber):
    """Authorized on 2026-03-02 (labs of 2026-02-27), course 1 (5 doses) planned to start that day; nothing
    dispensed yet."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    return patient


# --- 1. One person, one record (ACT-6, CRS-2) -------------------------------------------------------------

BODY = {
    "first_name": "José",
    "last_name": "O'Brien-Smith",
    "date_of_birth": "1980-01-31",
    "sex": "male",
    "reproductive_potential": False,
    "enrollment_signed_on": "2026-01-05",
}
DUPLICATE = {
    "code": "possible_duplicate_patient",
    "detail": "A patient with this name and date of birth is already enrolled. If this is the same "
    "person, ask for a transfer of care; the REMS administrator can confirm a different person.",
}


def full_width(text: str) -> str:
    """The full-width forms of ASCII letters (as East Asian input methods type them)."""
    return "".join(chr(ord(ch) + 0xFEE0) for ch in text)


def test_match_key_normalizes_case_accents_whitespace_and_punctuation_ACT_6():
    assert patient_match_key("  JOSE ", "obrien smith") == patient_match_key("José", "O'Brien-Smith")
    assert patient_match_key("Ann", "Marie") != patient_match_key("Annm", "Arie")


def test_match_key_folds_latin_letters_without_decomposition_ACT_6():
    """ø, ł, æ, œ, đ, þ and ß have no accent to strip: systems that keep names in ASCII write them as
    these letters' usual transliterations, and the key reads both the same."""
    assert patient_match_key("Søren", "Łukasz-Æbelø") == patient_match_key("SOREN", "lukasz aebelo")
    assert patient_match_key("Œdipe", "Đorđević") == patient_match_key("oedipe", "dordevic")
    assert patient_match_key("Þóra", "Straße") == patient_match_key("thora", "strasse")
    # dotless i (Turkish)
    assert patient_match_key("Y\u0131ld\u0131z", "Ægir") == patient_match_key("yildiz", "aegir")


def test_migration_rekeys_only_the_patients_whose_key_changed_ACT_6(prescriber):
    """Migration 0014 writes the new key for names holding a folded letter (and rows never keyed); other
    rows are untouched; its reverse writes the old keys back, so older code finds its own keys."""
    from django.apps import apps

    migration = importlib.import_module("registry.migrations.0014_match_key_latin_folds")
    folded = enroll_patient(prescriber, first_name="Søren", last_name="Ødegård")
    plain = enroll_patient(prescriber, first_name="Anna", last_name="Berg")
    Patient.objects.filter(pk=folded.pk).update(
        match_key="søren|ødegard"
    )  # the key before 0014 (accents gone, ø kept)
    plain_updated = Patient.objects.get(pk=plain.pk).updated_at

    migration.forward(apps, None)

    assert Patient.objects.get(pk=folded.pk).match_key == "soren|odegard"
    assert Patient.objects.get(pk=plain.pk).match_key == "anna|berg"
    assert Patient.objects.get(pk=plain.pk).updated_at == plain_updated
    migration.backward(apps, None)
    assert Patient.objects.get(pk=folded.pk).match_key == "søren|ødegard"
    assert Patient.objects.get(pk=plain.pk).match_key == "anna|berg"


def test_migration_key_is_the_live_key_ACT_6():
    """The migration's frozen normalization is the one registry/matching.py applies today."""
    migration = importlib.import_module("registry.migrations.0014_match_key_latin_folds")
    names = [
        ("Søren", "Łukasz-Æbelø"),
        ("  JOSE ", "O'Brien-Smith"),
        ("Þóra", "Straße"),
        ("Œdipe", "Đorđević"),
    ]
    names.append(("Y\u0131ld\u0131z", "Ħal-Ŧom"))  # dotless i
    for first, last in names:
        assert migration._key(first, last, migration._FOLDS) == patient_match_key(first, last)


def test_fixture_patients_get_their_match_key_ACT_6():
    """`loaddata` saves raw (no `Patient.save`): the key is still written, so the demo fixture's patients
    are found by the duplicate check and the NCPDP demographics match."""
    from django.core.management import call_command

    from registry.selectors.patients import patient_of_record_by_demographics

    call_command("loaddata", "fixtures/demo.json", verbosity=0)
    patients = list(Patient.objects.select_related("prescriber"))
    assert patients
    for patient in patients:
        assert patient.match_key == patient_match_key(patient.first_name, patient.last_name)
        found = patient_of_record_by_demographics(
            patient.prescriber,
            first_name=patient.first_name.upper(),
            last_name=patient.last_name,
            date_of_birth=patient.date_of_birth,
        )
        assert found == patient


def test_second_enrollment_of_one_person_is_a_possible_duplicate_ACT_6(prescriber, other_prescriber, admin):
    """ACT-6, CRS-2: any prescriber, normalized names: 409 naming nothing about the other patient; an
    administrator may confirm a different person (audited)."""
    assert prescriber.post("/api/v1/patients", BODY).status_code == 201
    again = other_prescriber.post(
        "/api/v1/patients", {**BODY, "first_name": "jose", "last_name": "OBrien Smith"}
    )

    assert again.status_code == 409
    assert again.json() == DUPLICATE
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


@pytest.mark.parametrize(
    ("first_name", "last_name"),
    [
        ("JOSÉ", "O'BRIEN-SMITH"),
        ("Jose\u0301", "O\u2019Brien Smith"),  # a combining accent; a typographic apostrophe
        ("  josé\t", " o'brien  - smith "),
        (f"{full_width('Jos')}é", f"{full_width('OBrien')}-{full_width('Smith')}"),
    ],
    ids=["upper-case", "decomposed-accent", "whitespace", "full-width"],
)
def test_spellings_of_one_name_are_one_person_ACT_6(prescriber, other_prescriber, first_name, last_name):
    """ACT-6, CRS-2: case, accents (composed or not), whitespace, punctuation and full-width forms do not
    make a second person: 409 `possible_duplicate_patient`, nothing created, nothing audited."""
    assert prescriber.post(PATIENTS, BODY).status_code == 201

    again = other_prescriber.post(PATIENTS, {**BODY, "first_name": first_name, "last_name": last_name})

    assert again.status_code == 409, again.json()
    assert again.json() == DUPLICATE
    assert Patient.objects.count() == 1
    assert AuditEvent.objects.filter(action="patient.enroll").count() == 1


@pytest.mark.parametrize(
    "status",
    [
        PatientStatus.AUTHORIZED,
        PatientStatus.SUSPENDED,
        PatientStatus.DISCONTINUED,
        PatientStatus.MONITORING_COMPLETE,
        PatientStatus.DECEASED,
    ],
)
def test_a_patient_in_any_status_is_matched_ACT_6_CRS_2(prescriber, other_prescriber, status):
    """ACT-6, CRS-2: whatever the existing record's status (a discontinued patient coming back is the
    case that would reset the 12-month interval), the same person is refused, and the body names neither
    the other record, its registry ID nor its prescriber."""
    first = prescriber.post(PATIENTS, BODY)
    assert first.status_code == 201, first.json()
    Patient.objects.filter(pk=first.json()["id"]).update(status=status)  # an imported record's status

    again = other_prescriber.post(PATIENTS, BODY)

    assert again.status_code == 409
    assert again.json() == DUPLICATE
    assert Patient.objects.count() == 1
    assert other_prescriber.get(f"{PATIENTS}/{first.json()['id']}").status_code == 404


@pytest.mark.parametrize(
    "overrides",
    [
        {"date_of_birth": "1980-01-30"},
        {"date_of_birth": "1980-02-01"},
        {"first_name": "Josefa"},
        {"last_name": "O'Brien"},
    ],
    ids=["born-the-day-before", "born-the-day-after", "another-first-name", "another-last-name"],
)
def test_a_day_or_a_name_apart_is_another_person_ACT_6(prescriber, other_prescriber, overrides):
    """ACT-6: the match is exact on the date of birth (the day before and the day after are other people)
    and on both normalized names."""
    assert prescriber.post(PATIENTS, BODY).status_code == 201

    response = other_prescriber.post(PATIENTS, {**BODY, **overrides})

    assert response.status_code == 201, response.json()
    assert Patient.objects.count() == 2


def test_the_name_boundary_is_kept_ACT_6(prescriber):
    """ACT-6: "Ann Marie" and "Annm Arie" run together the same letters; they are two people."""
    first = prescriber.post(PATIENTS, {**BODY, "first_name": "Ann", "last_name": "Marie"})
    second = prescriber.post(PATIENTS, {**BODY, "first_name": "Annm", "last_name": "Arie"})

    assert (first.status_code, second.status_code) == (201, 201)


def test_administrator_confirms_a_different_person_audited_with_the_match_ACT_6(
    prescriber, other_prescriber, admin
):
    """ACT-6: an administrator enrolling the same name and date of birth for a named prescriber is refused
    like anyone else until it confirms a different person; the confirmation is audited with the record it
    was matched to, and the new patient's prescriber of record is the one named."""
    first = prescriber.post(PATIENTS, BODY).json()
    body = {**BODY, "prescriber_npi": other_prescriber.participant.npi}

    unconfirmed = admin.post(PATIENTS, body)
    confirmed = admin.post(PATIENTS, {**body, "confirm_not_duplicate": True})

    assert unconfirmed.status_code == 409
    assert unconfirmed.json() == DUPLICATE
    assert confirmed.status_code == 201, confirmed.json()
    assert (confirmed.json()["prescriber"], confirmed.json()["status"]) == (
        str(other_prescriber.participant.pk),
        "enrolled",
    )
    event = AuditEvent.objects.get(action="patient.enroll", subject_id=confirmed.json()["id"])
    assert event.actor == admin.user
    assert (event.changes["confirmed_not_duplicate"], event.changes["possible_duplicates"]) == (
        True,
        [first["id"]],
    )


def test_a_confirmation_without_a_match_records_no_confirmation_ACT_6(other_prescriber, admin):
    """ACT-6: `confirm_not_duplicate` with nothing to confirm enrolls and audits no confirmation."""
    response = admin.post(
        PATIENTS,
        {**BODY, "prescriber_npi": other_prescriber.participant.npi, "confirm_not_duplicate": True},
    )

    assert response.status_code == 201, response.json()
    changes = AuditEvent.objects.get(action="patient.enroll", subject_id=response.json()["id"]).changes
    assert "confirmed_not_duplicate" not in changes
    assert "possible_duplicates" not in changes


def test_only_an_administrator_confirms_a_different_person_ACT_6(prescriber, other_prescriber):
    """ACT-6: a prescriber's `confirm_not_duplicate` is 403, whether or not there is a match."""
    assert prescriber.post(PATIENTS, BODY).status_code == 201

    matched = other_prescriber.post(PATIENTS, {**BODY, "confirm_not_duplicate": True})
    unmatched = other_prescriber.post(PATIENTS, {**BODY, "first_name": "Ana", "confirm_not_duplicate": True})

    expected = {
        "code": "permission_denied",
        "detail": "Only the REMS administrator can confirm that a patient is not a duplicate.",
    }
    assert (matched.status_code, matched.json()) == (403, expected)
    assert (unmatched.status_code, unmatched.json()) == (403, expected)
    assert Patient.objects.count() == 1


def test_enrolling_for_another_prescriber_is_for_administrators_ACT_6(prescriber, other_prescriber, admin):
    """ACT-6: a prescriber enrolls its own patients (naming another is 400); an administrator names a
    certified prescriber (an unknown or suspended one is 409 `prescriber_not_certified`)."""
    suspended = PrescriberFactory(status="suspended")

    own = prescriber.post(PATIENTS, {**BODY, "prescriber_npi": other_prescriber.participant.npi})
    unknown = admin.post(PATIENTS, {**BODY, "prescriber_npi": "1993999998"})
    not_certified = admin.post(PATIENTS, {**BODY, "prescriber_npi": suspended.npi})

    assert (own.status_code, own.json()) == (
        400,
        {
            "code": "validation_error",
            "detail": "Invalid input.",
            "errors": {
                "prescriber_npi": ["A prescriber enrolls its own patients; only administrators name another."]
            },
        },
    )
    assert (unknown.status_code, unknown.json()) == (
        409,
        {"code": "prescriber_not_certified", "detail": "No certified prescriber has this NPI."},
    )
    assert (not_certified.status_code, not_certified.json()) == (
        409,
        {
            "code": "prescriber_not_certified",
            "detail": "Only a certified prescriber may enroll patients (ACT-6).",
        },
    )
    assert not Patient.objects.exists()


@pytest.mark.postgres_only  # threads racing on the advisory lock
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_enrollments_of_one_person_make_one_record_ACT_6(prescriber, other_prescriber):
    """ACT-6, CRS-2: two prescribers enrolling one person at the same instant: exactly one 201 and one
    409 `possible_duplicate_patient`, never two records (the duplicate check and the insert are
    serialized per name and date of birth)."""
    from .test_gate_safety import _race

    for round_ in range(4):
        body = {**BODY, "first_name": f"José {round_}"}
        results = _race((prescriber, PATIENTS, body), (other_prescriber, PATIENTS, body))

        assert sorted(status for status, _ in results) == [201, 409], results
        assert next(answer for status, answer in results if status == 409) == DUPLICATE
        assert Patient.objects.filter(first_name=f"José {round_}").count() == 1


# --- 2. Withdrawn attestations (ACT-7, ACT-9, GATE-4) -------------------------------------------------------


def screening_body(**withdrawn: bool) -> dict[str, Any]:
    return {
        "hiv_negative": True,
        "no_active_infection": True,
        "tb_screened_on": "2026-01-31",
        "vaccinations_completed_on": "2026-01-01",
        **withdrawn,
    }


WITHDRAWALS = {
    "hiv": ({"hiv_negative": False}, "HIV negative"),
    "infection": ({"no_active_infection": False}, "no active infection"),
    "both": ({"hiv_negative": False, "no_active_infection": False}, "HIV negative, no active infection"),
}
LATER = moment(DAY0, 16)  # an hour after the patient's first screening: the withdrawal is the newest


@pytest.mark.parametrize("withdrawal", list(WITHDRAWALS))
def test_a_withdrawn_attestation_revokes_the_outstanding_numbers_ACT_9(
    clock, patient, prescriber, other_prescriber, facility, pharmacy, admin, withdrawal
):
    """ACT-7, ACT-9, GATE-2: a screening recorded after the number was issued that withdraws HIV negative
    or no active infection revokes the patient's outstanding numbers in the same request, like a
    contraindication: the dispense is refused `authorization_revoked`, the pharmacy reads the category,
    the administrator the reason; another patient's number is untouched."""
    attested, withdrawn = WITHDRAWALS[withdrawal]
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    other = authorized_patient(prescriber)
    plan_course(prescriber, other, start=DAY0)
    others_number = approved_number(request_authorization(pharmacy, other, prescriber, facility, doses=5))
    clock.move_to(LATER)

    recorded = prescriber.post(f"{PATIENTS}/{patient.pk}/screening", screening_body(**attested))
    refused = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})

    assert recorded.status_code == 201, recorded.json()
    assert refused.status_code == 409
    assert refused.json() == {
        "code": "authorization_revoked",
        "detail": "This authorization number was revoked.",
        "status": "revoked",
        "revocation": "patient_no_longer_eligible",
    }
    reason = f"Screening attestation withdrawn: {withdrawn}"
    shown = admin.get(f"{AUTHORIZATIONS}/{number}").json()
    assert (shown["status"], shown["revocation"], shown["revoke_reason"]) == (
        "revoked",
        "patient_no_longer_eligible",
        reason,
    )
    assert dt.datetime.fromisoformat(shown["revoked_at"]) == LATER
    stored = DispenseAuthorization.objects.get(number=number)
    assert (stored.status, stored.revoked_by, stored.revoke_category) == (
        AuthorizationStatus.REVOKED,
        prescriber.user,
        "patient_no_longer_eligible",
    )
    assert list(
        AuditEvent.objects.filter(action="authorization.revoke", subject_id=stored.pk).values_list(
            "changes", flat=True
        )
    ) == [{"status": ["active", "revoked"], "reason": reason, "category": "patient_no_longer_eligible"}]
    screening_event = AuditEvent.objects.filter(action="screening.record", subject_id=patient.pk).latest(
        "created_at"
    )
    assert screening_event.changes["authorizations_revoked"] == 1
    assert DispenseAuthorization.objects.get(number=others_number).status == AuthorizationStatus.ACTIVE
    assert not Dispense.objects.exists()


def test_a_screening_that_withdraws_nothing_revokes_nothing_ACT_7(
    clock, patient, prescriber, facility, pharmacy
):
    """ACT-7: a newer screening that still attests both leaves the number active (and says nothing about
    revocations in its audit event)."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    clock.move_to(LATER)

    recorded = prescriber.post(f"{PATIENTS}/{patient.pk}/screening", screening_body())

    assert recorded.status_code == 201, recorded.json()
    assert pharmacy.get(f"{AUTHORIZATIONS}/{number}").json()["status"] == "active"
    event = AuditEvent.objects.filter(action="screening.record", subject_id=patient.pk).latest("created_at")
    assert "authorizations_revoked" not in event.changes


def test_a_withdrawn_attestation_holds_planning_authorization_and_the_next_dose_ACT_9_GATE_4(
    clock, prescriber, facility, pharmacy
):
    """ACT-9, GATE-4, issue 9 item 2: course 1 is under way (day 1 given, four vials at the site) when a
    screening withdraws no active infection. The next dose is `do_not_infuse` though the vials are there;
    a dispense authorization is denied; once course 1 is cancelled, planning the next is refused for the
    withdrawal too. Facilities and pharmacies read the neutral hold text; the prescriber reads what was
    withdrawn."""
    patient = authorized_patient(prescriber)
    course = plan_course(prescriber, patient, start=DAY0)
    assert infuse(facility, patient, DAY0, day=1).status_code == 201  # ships all 5 doses, infuses one
    with frozen(moment(DAY0, 16)):
        assert (
            prescriber.post(
                f"{PATIENTS}/{patient.pk}/screening", screening_body(no_active_infection=False)
            ).status_code
            == 201
        )
    stored = "The newest screening withdraws: no active infection."

    with frozen(DAY0 + DAY):
        infusion = facility.post(INFUSIONS, infusion_body(patient, DAY0 + DAY, day=2))
        authorization = request_authorization(pharmacy, patient, prescriber, facility, doses=1)
        cancelled = prescriber.post(f"/api/v1/courses/{course.pk}/cancel", {"reason": "Infection"})
        planned = prescriber.post(course_path(patient), {"planned_start_on": (DAY0 + DAY).isoformat()})

    body = do_not_infuse(infusion, {"attestations_hold": ("attestation_withdrawn", stored)})
    assert body["reasons"] == [
        {
            "code": "attestation_withdrawn",
            "detail": "Treatment is on hold for this patient; the prescriber of record has the details.",
        }
    ]
    denied(
        authorization,
        {
            "attestations_hold": ("attestation_withdrawn", stored),
            "course_doses_remaining": ("course_doses_exhausted", "Course 1 has no doses left to authorize."),
        },
    )
    assert cancelled.status_code == 200, cancelled.json()
    assert planned.status_code == 409
    body = planned.json()
    interval = "Course 2 may not start before 2027-03-02."  # the cancelled course 1 had its day 1 (CRS-2)
    assert body == {
        "code": "course_not_allowed",
        "detail": "A course cannot be planned for this patient now.",
        "decision_id": body["decision_id"],
        "reasons": [
            {"code": "attestation_withdrawn", "detail": stored},
            {"code": "course_interval_not_met", "detail": interval},
        ],
        "requirements": requirement_rows(
            COURSE_REQUIREMENTS,
            {
                "attestations_hold": ("attestation_withdrawn", stored),
                "course_interval_met": ("course_interval_not_met", interval),
            },
        ),
    }
    assert Course.objects.get(pk=course.pk).doses_given == 1
    assert Infusion.objects.filter(patient=patient).count() == 1


def test_a_newer_screening_lifts_the_hold_but_revives_no_number_ACT_7(
    clock, patient, prescriber, facility, pharmacy
):
    """ACT-7: the newest screening counts. Attested again an hour after the withdrawal, the patient may be
    authorized anew (a new number for the course's 5 doses); the revoked number stays revoked."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    clock.move_to(LATER)
    prescriber.post(f"{PATIENTS}/{patient.pk}/screening", screening_body(hiv_negative=False))
    clock.move_to(moment(DAY0, 17))

    again = prescriber.post(f"{PATIENTS}/{patient.pk}/screening", screening_body())
    renewed = request_authorization(pharmacy, patient, prescriber, facility, doses=5)

    assert again.status_code == 201, again.json()
    assert renewed.json()["decision"] == "approved", renewed.json()
    assert renewed.json()["authorization_number"] != number
    assert pharmacy.get(f"{AUTHORIZATIONS}/{number}").json()["status"] == "revoked"
    assert pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5}).json()["code"] == (
        "authorization_revoked"
    )


# --- 3. Every infusion is backed by a dispense (GATE-2, GATE-3) ----------------------------------------------

NO_VIAL_LEFT = "No dispense to this facility for course 1 has a vial left."
TWO_CANDIDATES = (
    "More than one dispense to this facility for course 1 has vials left; name one with dispense_id."
)


def test_an_infusion_without_a_dispense_is_do_not_infuse_GATE_3(patient, facility):
    """GATE-3, issue 9 item 3: a certified facility that knows the registry ID and date of birth cannot
    record an infusion (or be told to infuse) when no dose was dispensed to it: the course does not move."""
    checked = facility.post(CHECK, infusion_body(patient, DAY0))
    recorded = facility.post(INFUSIONS, infusion_body(patient, DAY0))

    assert checked.status_code == 200, checked.json()
    assert checked.json() == {
        "decision": "do_not_infuse",
        "day_in_course": None,
        "decision_id": checked.json()["decision_id"],
        "reasons": [
            {"code": "no_dispense_for_facility", "detail": PUBLIC_DETAIL["no_dispense_for_facility"]}
        ],
        "requirements": requirement_rows(
            INFUSION_REQUIREMENTS, {"dispense_backs_infusion": ("no_dispense_for_facility", None)}
        ),
    }
    do_not_infuse(recorded, {"dispense_backs_infusion": ("no_dispense_for_facility", NO_VIAL_LEFT)})
    assert Course.objects.get(patient=patient).doses_given == 0
    assert not Infusion.objects.exists()


def test_the_one_dispense_with_a_vial_left_backs_the_infusion_until_its_vials_are_used_GATE_2(
    patient, prescriber, facility, pharmacy
):
    """GATE-2, GATE-3: with exactly one dispense to the facility (2 vials), an infusion naming none is
    backed by it; the first and second dose use its two vials; the third has none left."""
    dispense_id = dispensed(pharmacy, patient, prescriber, facility, vials=2)

    first = infuse(facility, patient, DAY0, day=1)
    second = infuse(facility, patient, DAY0 + DAY, day=2)
    with frozen(DAY0 + 2 * DAY):
        third = facility.post(INFUSIONS, infusion_body(patient, DAY0 + 2 * DAY, day=3))

    infusion = Infusion.objects.get(pk=first.json()["id"])
    assert first.status_code == 201, first.json()
    assert first.json() == {
        "id": str(infusion.pk),
        "patient": str(patient.pk),
        "course": str(infusion.course_id),
        "course_number": 1,
        "day_in_course": 1,
        "administered_on": "2026-03-02",
        "dose_mg": 12,
        "corticosteroid_premedication": True,
        "antiviral_prophylaxis": True,
        "observation_minutes": 120,
        "facility": str(facility.participant.pk),
        "dispense_id": dispense_id,
        "legacy_history": False,
        "decision_id": str(infusion.decision_id),
        "monitoring_ends_on": "2030-03-02",
        "created_at": first.json()["created_at"],
    }
    assert (second.status_code, second.json()["dispense_id"]) == (201, dispense_id)
    do_not_infuse(third, {"dispense_backs_infusion": ("no_dispense_for_facility", NO_VIAL_LEFT)})
    assert Course.objects.get(patient=patient).doses_given == 2


def test_two_dispenses_with_vials_left_must_be_named_GATE_2(patient, prescriber, facility, pharmacy):
    """GATE-2, GATE-3: with two dispenses to the facility holding vials, the infusion must say which one;
    once one is used up, the other is the only one and is found."""
    first_id = dispensed(pharmacy, patient, prescriber, facility, vials=1)
    second_id = dispensed(pharmacy, patient, prescriber, facility, vials=1)

    unnamed = facility.post(INFUSIONS, infusion_body(patient, DAY0))
    named = facility.post(INFUSIONS, infusion_body(patient, DAY0, dispense_id=second_id))
    with frozen(DAY0 + DAY):
        found = facility.post(INFUSIONS, infusion_body(patient, DAY0 + DAY, day=2))

    do_not_infuse(unnamed, {"dispense_backs_infusion": ("no_dispense_for_facility", TWO_CANDIDATES)})
    assert (named.status_code, named.json()["dispense_id"]) == (201, second_id)
    assert (found.status_code, found.json()["dispense_id"]) == (201, first_id)


def test_a_dispense_to_another_facility_or_for_a_cancelled_course_backs_nothing_here_GATE_2(
    patient, prescriber, facility, pharmacy
):
    """GATE-2, CRS-3: the vials are where they were dispensed, for the course they were dispensed for. A
    dispense to facility B backs no infusion at facility A; a dispense for a cancelled course backs no
    dose of the next one."""
    elsewhere = participant_persona(FacilityFactory(certified=True))
    dispensed(pharmacy, patient, prescriber, elsewhere, vials=5)

    here = facility.post(INFUSIONS, infusion_body(patient, DAY0))

    do_not_infuse(here, {"dispense_backs_infusion": ("no_dispense_for_facility", NO_VIAL_LEFT)})
    old = Course.objects.get(patient=patient)
    assert prescriber.post(f"/api/v1/courses/{old.pk}/cancel", {"reason": "Moved"}).status_code == 200
    assert prescriber.post(course_path(patient), {"planned_start_on": "2026-03-02"}).status_code == 201
    there = elsewhere.post(INFUSIONS, infusion_body(patient, DAY0))
    do_not_infuse(there, {"dispense_backs_infusion": ("no_dispense_for_facility", NO_VIAL_LEFT)})


def test_a_facility_cannot_claim_legacy_history_GATE_3(patient, facility):
    """GATE-3: only administrators record legacy history; a facility's `legacy_history: true` is not an
    input and changes nothing."""
    response = facility.post(INFUSIONS, infusion_body(patient, DAY0, legacy_history=True))

    do_not_infuse(response, {"dispense_backs_infusion": ("no_dispense_for_facility", NO_VIAL_LEFT)})


def test_an_administrator_records_legacy_history_without_a_dispense_and_says_so_GATE_3(
    patient, prescriber, facility, pharmacy, admin
):
    """GATE-3, issue 9 item 3: an administrator who names no dispense records legacy history: 201 with
    `legacy_history: true`, audited so; naming a dispense it is an ordinary, backed infusion."""
    with frozen(DAY0 + 3 * DAY):
        legacy = admin.post(INFUSIONS, infusion_body(patient, DAY0, facility_npi=facility.participant.npi))
    dispense_id = dispensed(pharmacy, patient, prescriber, facility, vials=1)
    with frozen(DAY0 + 3 * DAY):
        backed = admin.post(
            INFUSIONS,
            infusion_body(
                patient, DAY0 + DAY, day=2, facility_npi=facility.participant.npi, dispense_id=dispense_id
            ),
        )

    assert legacy.status_code == 201, legacy.json()
    assert (legacy.json()["legacy_history"], legacy.json()["dispense_id"]) == (True, None)
    assert backed.status_code == 201, backed.json()
    assert (backed.json()["legacy_history"], backed.json()["dispense_id"]) == (False, dispense_id)
    audits = {
        str(e.subject_id): e.changes
        for e in AuditEvent.objects.filter(action="infusion.record", actor=admin.user)
    }
    assert (audits[legacy.json()["id"]]["legacy_history"], audits[legacy.json()["id"]]["dispense"]) == (
        True,
        None,
    )
    assert (audits[backed.json()["id"]]["legacy_history"], audits[backed.json()["id"]]["dispense"]) == (
        False,
        dispense_id,
    )


def test_the_database_refuses_an_infusion_neither_backed_nor_legacy_GATE_3(patient, facility, admin):
    """GATE-3, STYLE.md 7: the invariant is a check constraint, not only the gate."""
    course = Course.objects.get(patient=patient)
    with pytest.raises(IntegrityError), transaction.atomic():
        Infusion.objects.create(
            patient=patient,
            course=course,
            facility=facility.participant,
            administered_on=DAY0,
            day_in_course=1,
            dose_mg=12,
            corticosteroid_premedication=True,
            antiviral_prophylaxis=True,
            observation_minutes=120,
            recorded_by=admin.user,
            decision=Decision.objects.filter(patient=patient).first(),
        )


# --- 4. Lapsed numbers: doses and states that agree (GATE-2, ACT-5, ACT-8) -----------------------------------

EXPIRES = moment(DAY0 + 3 * DAY)  # 2026-03-05 15:00 UTC; the numbers issued on DAY0 run to 2026-03-09
SECOND = dt.timedelta(seconds=1)
NOT_CERTIFIED = "a participant is no longer certified"


def admin_status(authorization: DispenseAuthorization) -> str:
    """The status column of the REMS administrator's authorization list (registry/admin.py)."""
    return django_admin.site._registry[DispenseAuthorization].current_status(authorization)


def authorization_read(persona: Persona, number: str, **extra: Any) -> dict[str, Any]:
    """GET /dispense-authorizations/{number}, checked whole against the stored row (`extra` overrides)."""
    response = persona.get(f"{AUTHORIZATIONS}/{number}")
    assert response.status_code == 200, response.json()
    stored = DispenseAuthorization.objects.select_related("course", "patient").get(number=number)
    when = serializers.DateTimeField().to_representation  # the registry's zone, as the API renders
    expected = {
        "id": str(stored.pk),
        "authorization_number": number,
        "issued_at": when(stored.issued_at),
        "expires_at": when(stored.expires_at),
        "used_at": when(stored.used_at) if stored.used_at else None,
        "revoked_at": when(stored.revoked_at) if stored.revoked_at else None,
        "doses_authorized": stored.doses_authorized,
        "course_number": stored.course.number,
        "rems_patient_id": stored.patient.rems_patient_id,
        "pharmacy": str(stored.pharmacy_id),
        "facility": str(stored.facility_id),
        "prescriber": str(stored.prescriber_id),
        **extra,
    }
    assert response.json() == expected
    return response.json()


@pytest.mark.parametrize(
    ("offset", "holds"),
    [(-SECOND, True), (dt.timedelta(0), False), (DAY, False)],
    ids=["a-second-before", "at-the-expiry", "a-day-after"],
)
def test_a_number_stops_holding_doses_the_moment_its_pharmacy_expires_ACT_5_GATE_2(
    patient, prescriber, facility, pharmacy, offset, holds
):
    """ACT-5, GATE-2, issue 9 item 4: a pharmacy certified until 2026-03-05 15:00 UTC holds all 5 doses of
    course 1 with a number issued on 2026-03-02. A second before the expiry the number is active and no
    other pharmacy can be authorized; from the expiry on, it reads `revoked` (participant_not_certified)
    and its doses are free at once: another pharmacy is approved, and the lapsed number is stored as
    revoked (audited) before the new one is issued, so it can never come back."""
    expiring = participant_persona(PharmacyFactory(certified=True, certification_expires_at=EXPIRES))
    number = approved_number(request_authorization(expiring, patient, prescriber, facility, doses=5))

    with frozen(EXPIRES + offset):
        if holds:
            authorization_read(expiring, number, status="active", revocation="")
        else:
            authorization_read(expiring, number, status="revoked", revocation="participant_not_certified")
        other = request_authorization(pharmacy, patient, prescriber, facility, doses=5)

    stored = DispenseAuthorization.objects.get(number=number)
    if holds:
        denied(
            other,
            {
                "course_doses_remaining": (
                    "course_doses_exhausted",
                    "Course 1 has no doses left to authorize.",
                )
            },
        )
        assert stored.status == AuthorizationStatus.ACTIVE
        return
    assert other.json()["decision"] == "approved", other.json()
    assert (other.json()["course_number"], other.json()["doses_authorized"]) == (1, 5)
    assert (stored.status, stored.revoke_category, stored.revoke_reason, stored.revoked_at) == (
        AuthorizationStatus.REVOKED,
        "participant_not_certified",
        f"Lapsed: {NOT_CERTIFIED}",
        EXPIRES + offset,
    )
    assert list(
        AuditEvent.objects.filter(action="authorization.lapse", subject_id=stored.pk).values_list(
            "actor", "changes"
        )
    ) == [
        (
            None,
            {
                "status": ["active", "revoked"],
                "reason": f"Lapsed: {NOT_CERTIFIED}",
                "category": "participant_not_certified",
            },
        )
    ]


@pytest.mark.parametrize("party", ["pharmacy", "facility", "prescriber"])
def test_a_lapsed_number_reads_the_same_in_the_api_the_admin_and_the_database_after_the_sweep_GATE_2(
    clock, admin, party
):
    """GATE-2, ACT-5, issue 9 item 4: the pharmacy's, the facility's or the prescriber's certification
    expires while a number is outstanding. Before the sweep the API and the admin read `revoked` with the
    category while the row is still `active`; the dispense is refused `authorization_revoked`, the code the
    GET shows. The sweep (the expiry task) stores it as revoked, audited; afterwards the API, the admin
    and the database agree, the dispense gets the same code, and a second sweep changes nothing."""
    expiry = {"certified": True, "certification_expires_at": EXPIRES}
    factories = {"pharmacy": PharmacyFactory, "facility": FacilityFactory, "prescriber": PrescriberFactory}
    personas = {
        name: participant_persona(factory(**(expiry if name == party else {"certified": True})))
        for name, factory in factories.items()
    }
    pharmacy, facility, prescriber = personas["pharmacy"], personas["facility"], personas["prescriber"]
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    later = EXPIRES + dt.timedelta(hours=1)
    clock.move_to(later)
    lapsed = {"status": "revoked", "revocation": "participant_not_certified"}

    authorization_read(pharmacy, number, **lapsed)
    authorization_read(admin, number, **lapsed, revoke_reason="")
    before = DispenseAuthorization.objects.get(number=number)
    assert (before.status, admin_status(before)) == (AuthorizationStatus.ACTIVE, f"revoked ({NOT_CERTIFIED})")
    refused_before = dispense_refusal(pharmacy, number, caller_expired=party == "pharmacy")

    assert daily_sweep() == 1

    after = DispenseAuthorization.objects.get(number=number)
    assert (after.status, after.revoke_category, after.revoked_at, after.revoked_by) == (
        AuthorizationStatus.REVOKED,
        "participant_not_certified",
        later,
        None,
    )
    assert admin_status(after) == f"revoked ({NOT_CERTIFIED})"
    authorization_read(pharmacy, number, **lapsed)
    authorization_read(admin, number, **lapsed, revoke_reason=f"Lapsed: {NOT_CERTIFIED}")
    refused_after = dispense_refusal(pharmacy, number, caller_expired=party == "pharmacy")
    assert (refused_before[0], refused_after[0]) == (409, 409)
    assert refused_before[1] == {
        "code": "authorization_revoked",
        "detail": f"This authorization number no longer holds: {NOT_CERTIFIED}.",
        **lapsed,
    }
    assert refused_after[1] == {
        "code": "authorization_revoked",
        "detail": "This authorization number was revoked.",
        **lapsed,
    }
    assert AuditEvent.objects.filter(action="authorization.lapse", subject_id=after.pk).count() == 1
    assert daily_sweep() == 0
    assert not Dispense.objects.exists()


def test_a_renewed_certification_does_not_revive_a_lapsed_number_ACT_5_GATE_2(
    patient, prescriber, facility, admin
):
    """ACT-5, GATE-2: a number that read `revoked` when its pharmacy's certification expired stays revoked
    when the administrator renews the certification, whether or not the sweep ran in between: a number
    never outlives the facts it was granted on, and no state reads `revoked` and then `active` again."""
    expiring = participant_persona(PharmacyFactory(certified=True, certification_expires_at=EXPIRES))
    number = approved_number(request_authorization(expiring, patient, prescriber, facility, doses=5))
    with frozen(EXPIRES + dt.timedelta(hours=1)):
        assert expiring.get(f"{AUTHORIZATIONS}/{number}").json()["status"] == "revoked"
    with frozen(EXPIRES + dt.timedelta(hours=2)):
        renewed = admin.post(f"/api/v1/pharmacies/{expiring.participant.pk}/certify")

    with frozen(EXPIRES + dt.timedelta(hours=3)):
        shown = expiring.get(f"{AUTHORIZATIONS}/{number}")
        refused = expiring.post(DISPENSES, {"authorization_number": number, "vials": 5})

    assert renewed.status_code == 200, renewed.json()
    assert (shown.json()["status"], shown.json()["revocation"]) == ("revoked", "participant_not_certified")
    assert refused.status_code == 409, refused.json()
    assert refused.json()["code"] == "authorization_revoked"
    assert not Dispense.objects.exists()
    stored = DispenseAuthorization.objects.get(number=number)
    assert (stored.status, stored.revoke_category) == (
        AuthorizationStatus.REVOKED,
        "participant_not_certified",
    )
    renewal = AuditEvent.objects.get(action="pharmacy.certify", subject_id=expiring.participant.pk)
    assert renewal.changes["authorizations_lapsed"] == 1


def test_a_course_completed_under_an_outstanding_number_lapses_it_GATE_2_CRS_3(
    patient, prescriber, facility, pharmacy, admin
):
    """GATE-2, CRS-3: a pharmacy holds a number for course 1's 5 doses when an administrator records the
    course's 5 doses as legacy history: the course is completed, so the number lapses (`course_closed`)
    without any event revoking it; its dispense is refused and the sweep stores it so."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    with frozen(DAY0 + 4 * DAY):
        for day in range(1, 6):
            body = infusion_body(
                patient, DAY0 + (day - 1) * DAY, day=day, facility_npi=facility.participant.npi
            )
            assert admin.post(INFUSIONS, body).status_code == 201
        closed = {"status": "revoked", "revocation": "course_closed"}
        authorization_read(pharmacy, number, **closed)
        refused = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})
        swept = daily_sweep()

    assert Course.objects.get(patient=patient).status == CourseStatus.COMPLETED
    assert refused.json() == {
        "code": "authorization_revoked",
        "detail": "This authorization number no longer holds: the course is closed.",
        **closed,
    }
    assert swept == 1
    stored = DispenseAuthorization.objects.get(number=number)
    assert (stored.status, stored.revoke_category, stored.revoke_reason) == (
        AuthorizationStatus.REVOKED,
        "course_closed",
        "Lapsed: the course is closed",
    )


def test_a_patient_changed_outside_the_services_lapses_its_numbers_ACT_8_GATE_2(
    patient, prescriber, other_prescriber, facility, pharmacy
):
    """ACT-8, GATE-2: a data fix that moves the patient to another prescriber of record (no transfer
    event revokes anything) makes the number lapse at once (`patient_no_longer_eligible`): it reads
    revoked, its doses are free for the new prescriber's prescription."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    Patient.objects.filter(pk=patient.pk).update(prescriber=other_prescriber.participant)

    authorization_read(pharmacy, number, status="revoked", revocation="patient_no_longer_eligible")
    again = request_authorization(pharmacy, patient, other_prescriber, facility, doses=5)

    assert again.json()["decision"] == "approved", again.json()
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.REVOKED


@pytest.mark.parametrize(
    ("at", "status", "code"),
    [
        (NOW + 7 * DAY - SECOND, "revoked", "authorization_revoked"),
        (NOW + 7 * DAY, "expired", "authorization_expired"),
    ],
    ids=["a-second-before-its-expiry", "at-its-expiry"],
)
def test_an_expired_number_reads_expired_even_if_it_had_lapsed_GATE_2(
    patient, prescriber, facility, at, status, code
):
    """GATE-2: a number past its own 7 days is `expired`, whatever else happened; before that, a number
    whose pharmacy's certification expired reads `revoked`. The sweep stores each as read."""
    expiring = participant_persona(PharmacyFactory(certified=True, certification_expires_at=EXPIRES))
    number = approved_number(request_authorization(expiring, patient, prescriber, facility, doses=5))

    with frozen(at):
        shown = expiring.get(f"{AUTHORIZATIONS}/{number}").json()
        _, refused = dispense_refusal(expiring, number, caller_expired=True)
        daily_sweep()

    assert (shown["status"], refused["code"], refused["status"]) == (status, code, status)
    assert DispenseAuthorization.objects.get(number=number).status == status


# --- 5. A planning horizon that works (CRS-2, CRS-4, GATE-1) --------------------------------------------------


@pytest.mark.parametrize(("ahead", "planned"), [(365, True), (366, True), (367, False)])
def test_a_course_may_be_planned_up_to_366_days_ahead_with_its_labs_pending_CRS_4(
    clock, prescriber, ahead, planned
):
    """CRS-4, issue 9 item 5: course 1 is planned up to 366 days (a leap year) ahead, its labs listed as
    pending in the 201 and the stored decision, since they cannot exist yet; 367 days is refused."""
    patient = authorized_patient(prescriber)
    start = DAY0 + ahead * DAY

    response = prescriber.post(course_path(patient), {"planned_start_on": start.isoformat()})

    if not planned:
        assert (response.status_code, response.json()) == (
            400,
            {
                "code": "validation_error",
                "detail": "Invalid input.",
                "errors": {"planned_start_on": ["Plan a course at most a year ahead."]},
            },
        )
        assert not Course.objects.exists()
        return
    assert response.status_code == 201, response.json()
    course = Course.objects.get(patient=patient)
    assert response.json() == {
        "id": str(course.pk),
        "patient": str(patient.pk),
        "number": 1,
        "status": "planned",
        "planned_doses": 5,
        "doses_given": 0,
        "planned_start_on": start.isoformat(),
        "first_infusion_on": None,
        "last_infusion_on": None,
        "cancelled_reason": "",
        "cancelled_at": None,
        "created_at": "2026-03-02T10:00:00-05:00",
        "decision_id": response.json()["decision_id"],
        "pending": COURSE_1_PENDING,
    }
    decision = Decision.objects.get(pk=response.json()["decision_id"])
    assert (decision.kind, decision.outcome, decision.pending) == (
        "course_plan",
        "approved",
        COURSE_1_PENDING,
    )
    assert [r["requirement"] for r in decision.requirements] == COURSE_REQUIREMENTS


def test_planning_gets_no_lead_days_CRS_2(prescriber, facility):
    """CRS-2: the lead is for shipping the drug only: a course planned to start the day before the
    12-month interval ends is refused (the detail names no authorization day)."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 2, 27)):
        response = prescriber.post(course_path(patient), {"planned_start_on": "2027-03-05"})

    assert response.status_code == 409, response.json()
    detail = "Course 2 may not start before 2027-03-06."
    assert response.json() == {
        "code": "course_not_allowed",
        "detail": "A course cannot be planned for this patient now.",
        "decision_id": response.json()["decision_id"],
        "reasons": [{"code": "course_interval_not_met", "detail": detail}],
        "requirements": requirement_rows(
            COURSE_REQUIREMENTS, {"course_interval_met": ("course_interval_not_met", detail)}
        ),
    }


@pytest.mark.parametrize(
    ("lead", "on", "approved"),
    [
        (0, dt.date(2027, 3, 5), False),
        (0, dt.date(2027, 3, 6), True),
        (10, dt.date(2027, 2, 23), False),
        (10, dt.date(2027, 2, 24), True),
    ],
    ids=["no-lead-day-before", "no-lead-due-day", "10-days-day-before", "10-days-lead-day"],
)
def test_authorization_lead_days_is_a_setting_GATE_1_CRS_2(
    settings, prescriber, facility, pharmacy, lead, on, approved
):
    """GATE-1, CRS-2, issue 9 item 5: `authorization_lead_days` (*setting*, default 7) moves the first day
    a course 2 dose may be authorized: with 0 it is the 12-month day itself (2027-03-06), with 10 it is
    2027-02-24; the settings in force are stored with the decision (GATE-5)."""
    settings.REMS_SETTINGS = {"authorization_lead_days": lead}
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 2, 20)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 2, 20), tests=PRE_COURSE_LABS)
        plan_course(prescriber, patient, start=dt.date(2027, 3, 6), on=dt.date(2027, 2, 20))

    with frozen(on):
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=3)

    if approved:
        assert response.json()["decision"] == "approved", response.json()
    else:
        detail = "Course 2 may not start before 2027-03-06."
        if lead:
            detail += " A dispense may be authorized from 2027-02-24."
        denied(response, {"course_interval_met": ("course_interval_not_met", detail)})
    decision = Decision.objects.get(pk=response.json()["id"])
    assert decision.program_settings["authorization_lead_days"] == lead


@pytest.mark.parametrize(
    ("course_1_from", "earliest"),
    [
        (DAY0, dt.date(2027, 3, 6)),
        (dt.date(2026, 3, 27), dt.date(2027, 3, 31)),
        (dt.date(2028, 2, 25), dt.date(2029, 2, 28)),
    ],
    ids=["mid-month", "month-end", "leap-day"],
)
def test_the_drug_ships_in_the_lead_and_the_infusion_waits_for_the_day_CRS_2_GATE_3(
    prescriber, facility, pharmacy, course_1_from, earliest
):
    """CRS-2, GATE-1, GATE-3, issue 9 item 5: 12 calendar months after course 1's last infusion (a
    course ending 2026-03-31 allows 2027-03-31; one ending on the leap day 2028-02-29 allows 2029-02-28),
    a pharmacy is authorized from 7 days before (not 8) and dispenses to the facility; the facility's
    first dose is still `do_not_infuse` the day before and is given, backed by that dispense, on the day."""
    patient = authorized_patient(prescriber, on=course_1_from)
    plan_course(prescriber, patient, start=course_1_from)
    infuse_days(facility, patient, course_1_from, 5)
    labs_on = earliest - 10 * DAY
    with frozen(labs_on):
        record_labs(patient, prescriber.user, collected_on=labs_on, tests=PRE_COURSE_LABS)
        monitoring_kept_up(patient, prescriber, on=labs_on)  # MON-1..4: no monitoring block (GATE-4)
        plan_course(prescriber, patient, start=earliest, on=labs_on)
    not_before = f"Course 2 may not start before {earliest.isoformat()}."

    with frozen(earliest - 8 * DAY):
        early = request_authorization(pharmacy, patient, prescriber, facility, doses=3)
    with frozen(earliest - 7 * DAY):
        dispense_id = dispensed(pharmacy, patient, prescriber, facility, vials=3)
    with frozen(earliest - DAY):
        waiting = facility.post(INFUSIONS, infusion_body(patient, earliest - DAY))
    with frozen(earliest):
        given = facility.post(INFUSIONS, infusion_body(patient, earliest))

    opens = (earliest - 7 * DAY).isoformat()
    denied(
        early,
        {
            "course_interval_met": (
                "course_interval_not_met",
                f"{not_before} A dispense may be authorized from {opens}.",
            )
        },
    )
    do_not_infuse(waiting, {"course_interval_met": ("course_interval_not_met", not_before)})
    assert given.status_code == 201, given.json()
    assert (given.json()["course_number"], given.json()["day_in_course"], given.json()["dispense_id"]) == (
        2,
        1,
        dispense_id,
    )


def _reproductive_patient(prescriber: Persona) -> Patient:
    """ACT-7: a patient of reproductive potential, baseline labs of 2026-02-27 and a negative pregnancy
    test of 2026-03-01, authorized on 2026-03-02."""
    with frozen(DAY0):
        patient = enroll_patient(prescriber, sex="female", reproductive_potential=True)
        record_labs(patient, prescriber.user, collected_on=DAY0 - 3 * DAY)
        record_screening(patient, prescriber.user, on=DAY0)
        pregnancy_test(patient, prescriber, DAY0 - DAY)
        assert patient_authorize(patient=patient, actor=prescriber.user, now=NOW).approved
    return patient


def pregnancy_test(patient: Patient, prescriber: Persona, on: dt.date) -> None:
    lab_result_record(
        patient=patient,
        actor=prescriber.user,
        data={"test": "pregnancy_test", "collected_on": on, "result": "negative"},
        now=moment(on),
    )


PREGNANCY = "A negative pregnancy test within 7 days is required."


@pytest.mark.parametrize(
    ("on", "approved"),
    [(dt.date(2026, 3, 22), True), (dt.date(2026, 3, 23), True), (dt.date(2026, 3, 24), False)],
    ids=["6-days", "7-days", "8-days"],
)
def test_the_pregnancy_test_is_judged_on_the_authorization_day_ACT_7_CRS_4(
    prescriber, facility, pharmacy, on, approved
):
    """ACT-7, CRS-4, issue 9 item 5: course 1 planned three weeks ahead lists the pregnancy test as
    pending; at the dispense authorization a negative test of 2026-03-16 holds 7 days (to 2026-03-23)
    and not 8."""
    patient = _reproductive_patient(prescriber)
    with frozen(DAY0):
        planned = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-23"})
    pregnancy_test(patient, prescriber, dt.date(2026, 3, 16))

    with frozen(on):
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=5)

    assert (planned.status_code, planned.json()["pending"]) == (201, COURSE_1_PENDING)
    if approved:
        assert response.json()["decision"] == "approved", response.json()
    else:
        denied(response, {"course_1_pregnancy_test": ("pregnancy_test_required", PREGNANCY)})


@pytest.mark.parametrize(
    ("on", "unmet"),
    [
        (dt.date(2026, 3, 23), {}),
        (dt.date(2026, 3, 24), {"course_1_pregnancy_test": ("pregnancy_test_required", PREGNANCY)}),
        (
            dt.date(2026, 3, 30),
            {
                "pre_course_labs_fresh": (
                    "pre_course_labs_stale",
                    "Missing or older than 30 days: cbc_differential, serum_creatinine, urinalysis.",
                ),
                "course_1_baseline_labs": (
                    "baseline_incomplete",
                    "Missing or older than 30 days: cbc_differential, serum_creatinine, urinalysis, "
                    "urine_protein_creatinine_ratio, thyroid_function, liver_function, skin_exam.",
                ),
                "course_1_pregnancy_test": ("pregnancy_test_required", PREGNANCY),
            },
        ),
    ],
    ids=["on-the-authorization-day", "the-day-after", "labs-31-days-old"],
)
def test_the_first_dose_is_judged_on_the_infusion_day_ACT_7_CRS_4(prescriber, facility, pharmacy, on, unmet):
    """ACT-7, CRS-4, GATE-3, issue 9 item 5: the authorization of 2026-03-23 was approved on a pregnancy
    test of 2026-03-16, and the vials are at the facility; the first dose is judged again on its own day:
    given that day, refused the next (the test is 8 days old), and on 2026-03-30 the baseline of
    2026-02-27 is 31 days old as well."""
    patient = _reproductive_patient(prescriber)
    plan_course(prescriber, patient, start=dt.date(2026, 3, 23), on=DAY0)
    pregnancy_test(patient, prescriber, dt.date(2026, 3, 16))
    with frozen(dt.date(2026, 3, 23)):
        dispensed(pharmacy, patient, prescriber, facility, vials=5)

    with frozen(on):
        response = facility.post(INFUSIONS, infusion_body(patient, on))

    if unmet:
        do_not_infuse(response, unmet)
    else:
        assert (response.status_code, response.json()["day_in_course"]) == (201, 1), response.json()


# --- 6. Dates that make sense (ACT-2..4, ACT-9, CRS-2) -------------------------------------------------------

UNDER_17 = {
    "code": "patient_under_minimum_age",
    "detail": "The patient is below the minimum enrollment age (ACT-9).",
    "errors": {"date_of_birth": ["Patients under 17 cannot be enrolled."]},
}


def invalid(**errors: list[str]) -> dict[str, Any]:
    return {"code": "validation_error", "detail": "Invalid input.", "errors": errors}


@pytest.mark.parametrize(
    ("born", "signed", "enrolled"),
    [
        ("2009-03-02", "2026-03-01", False),
        ("2009-03-02", "2026-03-02", True),
        ("2009-03-02", "2026-03-03", True),
        ("2008-02-29", "2025-02-27", False),
        ("2008-02-29", "2025-02-28", True),
        ("2008-02-29", "2025-03-01", True),
    ],
    ids=[
        "signed-the-day-before-the-17th-birthday",
        "signed-on-it",
        "signed-the-day-after",
        "leap-day-born-signed-27-feb",
        "leap-day-born-signed-28-feb",
        "leap-day-born-signed-1-mar",
    ],
)
def test_age_is_judged_on_the_signed_enrollment_date_ACT_9(prescriber, born, signed, enrolled):
    """ACT-9, issue 9 item 6: "under 17 at enrollment" is judged on the signed form's date, not on the
    day the form reaches the registry (here days later, when the patient is 17 in every case). Someone
    born on 29 February turns 17 on 28 February of a common year (calendar months, as dateutil counts)."""
    received = dt.date.fromisoformat(signed) + 5 * DAY
    with frozen(received):
        response = prescriber.post(PATIENTS, {**BODY, "date_of_birth": born, "enrollment_signed_on": signed})

    if enrolled:
        assert response.status_code == 201, response.json()
        assert Patient.objects.get().enrollment_signed_on.isoformat() == signed
    else:
        assert (response.status_code, response.json()) == (400, UNDER_17)
        assert not Patient.objects.exists()


@pytest.mark.parametrize(
    ("born", "signed", "errors"),
    [
        ("2000-01-01", "1999-12-31", {"enrollment_signed_on": ["Cannot precede the date of birth."]}),
        ("2026-03-03", "2026-03-02", {"date_of_birth": ["Cannot be in the future."]}),
        ("2000-01-01", "2026-03-03", {"enrollment_signed_on": ["Cannot be in the future."]}),
    ],
    ids=["signed-the-day-before-birth", "born-tomorrow", "signed-tomorrow"],
)
def test_enrollment_dates_may_not_precede_birth_or_lie_in_the_future_ACT_6_ACT_9(
    clock, prescriber, born, signed, errors
):
    """ACT-6, ACT-9, issue 9 item 6: the enrollment date may not precede the date of birth, and neither
    may lie in the future (today is 2026-03-02)."""
    response = prescriber.post(PATIENTS, {**BODY, "date_of_birth": born, "enrollment_signed_on": signed})

    assert (response.status_code, response.json()) == (400, invalid(**errors))
    assert not Patient.objects.exists()


ATTESTED = {
    "prescribers": ("knowledge_assessment_passed_on", "enrollment_signed_on"),
    "facilities": ("enrollment_signed_on", "infusion_reaction_readiness_attested_on"),
    "pharmacies": ("enrollment_signed_on", "staff_training_completed_on"),
}


def registration(kind: str, **overrides: Any) -> dict[str, Any]:
    """A complete registration body whose attested dates are all 2026-02-01 unless overridden."""
    return create_body(kind, **{**{name: "2026-02-01" for name in ATTESTED[kind]}, **overrides})


@pytest.mark.parametrize(
    ("kind", "field"), [(kind, field) for kind, fields in ATTESTED.items() for field in fields]
)
@pytest.mark.parametrize(
    ("day", "accepted"), [("2026-03-02", True), ("2026-03-03", False)], ids=["today", "tomorrow"]
)
def test_attested_participant_dates_may_not_lie_in_the_future_ACT_2_ACT_3_ACT_4(
    clock, admin, kind, field, day, accepted
):
    """ACT-2..4, issue 9 item 6: an assessment, training or signature dated today registers; dated
    tomorrow it is 400 on that field, nothing registered."""
    response = admin.post(f"/api/v1/{kind}", registration(kind, **{field: day}))

    if accepted:
        assert response.status_code == 201, response.json()
        assert response.json()[field] == day
    else:
        assert (response.status_code, response.json()) == (
            400,
            invalid(**{field: ["Cannot be in the future."]}),
        )
        assert admin.get(f"/api/v1/{kind}").json()["count"] == 0


def test_an_edit_may_not_move_an_attested_date_into_the_future_ACT_3(clock, admin):
    """ACT-3, issue 9 item 6: PATCH applies the same rule; every future date is listed; nothing changes."""
    created = admin.post("/api/v1/facilities", registration("facilities")).json()

    response = admin.patch(
        f"/api/v1/facilities/{created['id']}",
        {"enrollment_signed_on": "2026-03-03", "infusion_reaction_readiness_attested_on": "2026-03-04"},
    )

    assert (response.status_code, response.json()) == (
        400,
        invalid(
            enrollment_signed_on=["Cannot be in the future."],
            infusion_reaction_readiness_attested_on=["Cannot be in the future."],
        ),
    )
    shown = admin.get(f"/api/v1/facilities/{created['id']}").json()
    assert (shown["enrollment_signed_on"], shown["infusion_reaction_readiness_attested_on"]) == (
        "2026-02-01",
        "2026-02-01",
    )


@pytest.mark.parametrize(
    ("allowance", "offset", "given"),
    [(0, 4, True), (0, 5, False), (2, 6, True), (2, 7, False)],
    ids=["none-last-day", "none-a-day-late", "2-days-last-day", "2-days-a-day-late"],
)
def test_course_dose_allowance_days_is_a_setting_with_its_own_code_CRS_2(
    settings, patient, facility, allowance, offset, given
):
    """CRS-2, issue 9 item 6: a 5-dose course begun on 2026-03-02 is given by 2026-03-06 plus
    `course_dose_allowance_days` (*setting*, default 2): dose 2 on that last day is given, a day later it
    is `do_not_infuse` with `course_dose_window_missed` (the facility reads the neutral text)."""
    settings.REMS_SETTINGS = {"course_dose_allowance_days": allowance}
    assert infuse(facility, patient, DAY0, day=1).status_code == 201
    on = DAY0 + offset * DAY

    response = infuse(facility, patient, on, day=2)

    if given:
        assert (response.status_code, response.json()["day_in_course"]) == (201, 2), response.json()
        return
    last = (DAY0 + (4 + allowance) * DAY).isoformat()
    detail = f"Course 1 began 2026-03-02; its doses are given by {last}. Cancel it and plan a new course."
    body = do_not_infuse(response, {"dose_within_course_window": ("course_dose_window_missed", detail)})
    assert body["reasons"] == [
        {"code": "course_dose_window_missed", "detail": "The course's dosing window has passed."}
    ]
    assert (
        Decision.objects.get(pk=body["decision_id"]).program_settings["course_dose_allowance_days"]
        == allowance
    )


@pytest.mark.parametrize(("offset", "approved"), [(6, True), (7, False)], ids=["last-day", "a-day-late"])
def test_no_dose_is_authorized_for_a_course_past_its_window_CRS_2_GATE_1(
    patient, prescriber, facility, pharmacy, offset, approved
):
    """CRS-2, GATE-1: day 1 was given from a one-vial dispense; the remaining 4 doses may be authorized
    up to the window's last day (2026-03-08), not after."""
    dispensed(pharmacy, patient, prescriber, facility, vials=1)
    assert infuse(facility, patient, DAY0, day=1).status_code == 201

    with frozen(DAY0 + offset * DAY):
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=4)

    if approved:
        assert response.json()["decision"] == "approved", response.json()
    else:
        detail = (
            "Course 1 began 2026-03-02; its doses are given by 2026-03-08. Cancel it and plan a new course."
        )
        denied(response, {"dose_within_course_window": ("course_dose_window_missed", detail)})


# --- 7. Local calendar days ------------------------------------------------------------------------------------

GUAM_DAWN = dt.datetime(2026, 3, 31, 15, tzinfo=dt.UTC)  # Guam 2026-04-01 01:00; New York 2026-03-31 11:00
HAWAII_EVENING = dt.datetime(2026, 4, 1, 5, tzinfo=dt.UTC)  # Honolulu 2026-03-31 19:00; New York 04-01 01:00
NEW_YORK_LATE = dt.datetime(2026, 4, 1, 3, tzinfo=dt.UTC)  # New York 2026-03-31 23:00; Guam 04-01 13:00
FUTURE = ["Cannot be in the future."]


def test_a_guam_site_is_a_day_ahead_of_the_registry_near_midnight():
    """Issue 9 item 7: 15:00 UTC on 2026-03-31 is 2026-04-01 01:00 in Guam, 11:00 in New York."""
    guam = FacilityFactory(state="GU")
    boston = FacilityFactory(state="MA")
    assert (guam.time_zone, boston.time_zone) == ("Pacific/Guam", "America/New_York")
    assert local_today(guam, GUAM_DAWN) == dt.date(2026, 4, 1)
    assert local_today(boston, GUAM_DAWN) == dt.date(2026, 3, 31)


@pytest.mark.parametrize(
    ("state", "at", "administered_on", "errors"),
    [
        ("GU", GUAM_DAWN, "2026-04-01", None),
        ("MA", GUAM_DAWN, "2026-04-01", {"administered_on": FUTURE}),
        ("HI", HAWAII_EVENING, "2026-04-01", {"administered_on": FUTURE}),
        ("MA", HAWAII_EVENING, "2026-04-01", None),
        ("GU", GUAM_DAWN, "2026-03-29", None),
        (
            "GU",
            GUAM_DAWN,
            "2026-03-28",
            {"administered_on": ["Facilities may record infusions at most 3 days back."]},
        ),
        ("MA", GUAM_DAWN, "2026-03-28", None),
    ],
    ids=[
        "guam-its-today",
        "boston-tomorrow",
        "honolulu-tomorrow",
        "boston-its-today",
        "guam-3-days-back",
        "guam-4-days-back",
        "boston-3-days-back",
    ],
)
def test_future_and_backdating_are_judged_on_the_facilitys_own_calendar_GATE_3(
    prescriber, pharmacy, state, at, administered_on, errors
):
    """GATE-3, API.md, issue 9 item 7: "no future infusion" and "backdate at most 3 days (*setting*)" are
    judged in the facility's zone (from its state): near midnight UTC, 2026-04-01 is today in Guam but
    tomorrow in New York; in Honolulu it is still 2026-03-31 when New York has reached 04-01; 2026-03-28 is
    4 days back in Guam and 3 in Boston."""
    site = participant_persona(FacilityFactory(certified=True, state=state))
    start = dt.date(2026, 3, 28)
    patient = authorized_patient(prescriber, on=start)
    plan_course(prescriber, patient, start=start)
    with frozen(start):
        dispensed(pharmacy, patient, prescriber, site, vials=5)
    on = dt.date.fromisoformat(administered_on)

    with frozen(at):
        response = site.post(INFUSIONS, infusion_body(patient, on))

    if errors is None:
        assert response.status_code == 201, response.json()
        assert response.json()["administered_on"] == administered_on
    else:
        assert (response.status_code, response.json()) == (400, invalid(**errors))
        assert not Infusion.objects.exists()


def test_an_administrator_uses_the_registrys_calendar_GATE_3(prescriber, pharmacy, admin):
    """GATE-3, issue 9 item 7: at 23:00 in New York, 13:00 the next day in Guam, the Guam facility records
    its own day's infusion; an administrator recording the same day for it (legacy history) is judged
    in the registry's zone, where that day is tomorrow."""
    site = participant_persona(FacilityFactory(certified=True, state="GU"))
    start = dt.date(2026, 3, 31)
    patient = authorized_patient(prescriber, on=start)
    plan_course(prescriber, patient, start=start)
    with frozen(start):
        dispensed(pharmacy, patient, prescriber, site, vials=5)

    with frozen(NEW_YORK_LATE):
        by_admin = admin.post(
            INFUSIONS, infusion_body(patient, dt.date(2026, 4, 1), facility_npi=site.participant.npi)
        )
        by_site = site.post(INFUSIONS, infusion_body(patient, dt.date(2026, 4, 1)))

    assert (by_admin.status_code, by_admin.json()) == (400, invalid(administered_on=FUTURE))
    assert by_site.status_code == 201, by_site.json()


@pytest.mark.parametrize(("state", "approved"), [("GU", True), ("MA", False)], ids=["guam", "boston"])
def test_the_lead_day_is_the_pharmacys_own_GATE_1_CRS_2(prescriber, facility, state, approved):
    """GATE-1, CRS-2, issue 9 item 7: at 15:00 UTC on 2027-02-26 a Guam pharmacy is on 2027-02-27, the
    first day course 2 may be authorized (2027-03-06 less 7 days); a Boston pharmacy is still on 02-26."""
    site = participant_persona(PharmacyFactory(certified=True, state=state))
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 2, 26)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 2, 26), tests=PRE_COURSE_LABS)
        plan_course(prescriber, patient, start=dt.date(2027, 3, 6), on=dt.date(2027, 2, 26))
        response = request_authorization(site, patient, prescriber, facility, doses=3)

    if approved:
        assert response.json()["decision"] == "approved", response.json()
    else:
        detail = "Course 2 may not start before 2027-03-06. A dispense may be authorized from 2027-02-27."
        denied(response, {"course_interval_met": ("course_interval_not_met", detail)})


@pytest.mark.parametrize(("state", "approved"), [("MA", True), ("GU", False)], ids=["boston", "guam"])
def test_the_labs_age_is_counted_on_the_pharmacys_own_day_CRS_4(prescriber, facility, state, approved):
    """CRS-4, issue 9 item 7: a serum creatinine of 2027-02-04 is 30 days old on 2027-03-06 in Boston and
    31 days old in Guam, where 15:00 UTC is already 2027-03-07."""
    site = participant_persona(PharmacyFactory(certified=True, state=state))
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 3, 1)):
        record_labs(
            patient,
            prescriber.user,
            collected_on=dt.date(2027, 3, 1),
            tests=["cbc_differential", "urinalysis"],
        )
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 2, 4), tests=["serum_creatinine"])
        plan_course(prescriber, patient, start=dt.date(2027, 3, 6), on=dt.date(2027, 3, 1))
    with frozen(dt.date(2027, 3, 6)):
        response = request_authorization(site, patient, prescriber, facility, doses=3)

    if approved:
        assert response.json()["decision"] == "approved", response.json()
    else:
        stale = "Missing or older than 30 days: serum_creatinine."
        denied(response, {"pre_course_labs_fresh": ("pre_course_labs_stale", stale)})


def test_a_prescriber_who_sets_a_zone_and_its_delegate_live_in_it(prescriber):
    """Issue 9 item 7: a prescriber in Guam (its `time_zone` set) is on 2026-04-01 at 15:00 UTC on
    2026-03-31: planning a course to start 2026-03-31 is in the past, a lab collected on 04-01 (by its
    delegate) is not in the future. A prescriber who set no zone lives in the registry's."""
    guam = participant_persona(PrescriberFactory(certified=True, time_zone="Pacific/Guam"))
    user, _, key = delegate_add(
        prescriber=guam.participant,
        actor=guam.user,
        email="guam-office@example.org",
        first_name="G",
        last_name="O",
    )
    office = Persona(user=user, key=key, client=client_with_key(key), participant=guam.participant)
    theirs = authorized_patient(guam, on=dt.date(2026, 3, 30))
    ours = authorized_patient(prescriber, on=dt.date(2026, 3, 30))
    lab = {"test": "cbc_differential", "collected_on": "2026-04-01", "result": "normal"}

    with frozen(GUAM_DAWN):
        guam_plan = guam.post(course_path(theirs), {"planned_start_on": "2026-03-31"})
        our_plan = prescriber.post(course_path(ours), {"planned_start_on": "2026-03-31"})
        guam_lab = office.post(f"{PATIENTS}/{theirs.pk}/lab-results", lab)
        our_lab = prescriber.post(f"{PATIENTS}/{ours.pk}/lab-results", lab)

    assert (guam_plan.status_code, guam_plan.json()) == (
        400,
        invalid(planned_start_on=["Cannot be in the past."]),
    )
    assert our_plan.status_code == 201, our_plan.json()
    assert guam_lab.status_code == 201, guam_lab.json()
    assert (our_lab.status_code, our_lab.json()) == (400, invalid(collected_on=FUTURE))


@pytest.mark.parametrize(
    ("overrides", "zone"),
    [
        ({"state": "HI"}, "Pacific/Honolulu"),
        ({"state": "GU"}, "Pacific/Guam"),
        ({"state": "TX", "time_zone": "America/Denver"}, "America/Denver"),  # El Paso
        ({"state": ""}, "America/New_York"),
    ],
    ids=["hawaii", "guam", "set-explicitly", "no-state"],
)
def test_a_sites_zone_defaults_to_its_states_and_may_be_set(clock, admin, overrides, zone):
    """Issue 9 item 7: a facility's or pharmacy's `time_zone` defaults to its state's (the registry's
    when it has none) and may be set to another IANA zone."""
    for kind in ("facilities", "pharmacies"):
        response = admin.post(f"/api/v1/{kind}", registration(kind, **overrides))
        assert response.status_code == 201, response.json()
        assert response.json()["time_zone"] == zone


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "America/Springfield"])
def test_a_zone_must_be_an_iana_zone(clock, admin, zone):
    """Issue 9 item 7: a `time_zone` zoneinfo does not know (or a path) is 400 on that field."""
    response = admin.post("/api/v1/facilities", registration("facilities", time_zone=zone))

    assert (response.status_code, response.json()) == (
        400,
        invalid(time_zone=[f"{zone!r} is not an IANA time zone (e.g. America/Chicago)."]),
    )


def test_an_edited_zone_moves_the_sites_calendar_GATE_3(prescriber, pharmacy, admin):
    """Issue 9 item 7: a Boston facility whose zone the administrator sets to Pacific/Guam records an
    infusion on Guam's 2026-04-01 at 15:00 UTC on 2026-03-31, which it could not before."""
    with frozen(dt.date(2026, 3, 2)):  # registered and certified through the API, its dates all past
        registered = admin.post("/api/v1/facilities", registration("facilities", state="MA")).json()
        assert admin.post(f"/api/v1/facilities/{registered['id']}/certify").status_code == 200
    site = participant_persona(Facility.objects.get(pk=registered["id"]))
    start = dt.date(2026, 3, 31)
    patient = authorized_patient(prescriber, on=start)
    plan_course(prescriber, patient, start=start)
    with frozen(start):
        dispensed(pharmacy, patient, prescriber, site, vials=5)

    with frozen(GUAM_DAWN):
        before = site.post(INFUSIONS, infusion_body(patient, dt.date(2026, 4, 1)))
        edited = admin.patch(f"/api/v1/facilities/{site.participant.pk}", {"time_zone": "Pacific/Guam"})
        after = site.post(INFUSIONS, infusion_body(patient, dt.date(2026, 4, 1)))

    assert (before.status_code, before.json()) == (400, invalid(administered_on=FUTURE))
    assert (edited.status_code, edited.json()["time_zone"]) == (200, "Pacific/Guam")
    assert after.status_code == 201, after.json()


@pytest.mark.parametrize(
    ("kind", "where", "at", "accepted"),
    [
        ("facilities", {"state": "GU"}, GUAM_DAWN, True),
        ("facilities", {"state": "MA"}, GUAM_DAWN, False),
        ("pharmacies", {"state": "HI"}, HAWAII_EVENING, False),
        ("pharmacies", {"state": "MA"}, HAWAII_EVENING, True),
        ("prescribers", {}, NEW_YORK_LATE, False),
        ("prescribers", {"time_zone": "Pacific/Guam"}, NEW_YORK_LATE, True),
    ],
    ids=[
        "guam-site",
        "boston-site",
        "honolulu-pharmacy",
        "boston-pharmacy",
        "prescriber-registry-zone",
        "prescriber-in-guam",
    ],
)
def test_a_participants_signature_of_its_own_today_is_not_in_the_future_ACT_2_ACT_3_ACT_4(
    admin, kind, where, at, accepted
):
    """ACT-2..4, issue 9 items 6-7: a form signed on 2026-04-01 registers where it is already 2026-04-01
    for the participant (a Guam site at 15:00 UTC on 03-31; a Boston pharmacy at 05:00 UTC on 04-01; a
    prescriber whose zone is Guam's at 23:00 New York time) and is in the future where it is not (Boston
    at 15:00 UTC; Honolulu at 05:00 UTC; a prescriber in the registry's zone at 23:00 New York time)."""
    body = registration(kind, enrollment_signed_on="2026-04-01", **where)
    with frozen(at):
        response = admin.post(f"/api/v1/{kind}", body)

    if accepted:
        assert response.status_code == 201, response.json()
        assert response.json()["enrollment_signed_on"] == "2026-04-01"
    else:
        assert (response.status_code, response.json()) == (400, invalid(enrollment_signed_on=FUTURE))


@pytest.mark.parametrize(
    ("registered", "corrected", "zone"),
    [
        ({"state": "MA"}, {"state": "HI"}, "Pacific/Honolulu"),
        ({"state": "TX", "time_zone": "America/Denver"}, {"state": "OK"}, "America/Denver"),
        ({"state": "MA"}, {"state": "HI", "time_zone": "America/Adak"}, "America/Adak"),
    ],
    ids=["derived-zone-follows", "set-zone-kept", "both-edited"],
)
def test_a_corrected_state_moves_a_derived_zone_not_a_set_one(clock, admin, registered, corrected, zone):
    """Issue 9 item 7: a site registered in the wrong state and corrected follows its new state's zone
    when its zone was the old state's default (else a Honolulu site left on New York's calendar could
    record an infusion dated its tomorrow); a zone that was set on purpose, or is set in the same edit,
    is kept. The change of zone is audited with the edit."""
    created = admin.post("/api/v1/facilities", registration("facilities", **registered)).json()

    edited = admin.patch(f"/api/v1/facilities/{created['id']}", corrected)

    assert edited.status_code == 200, edited.json()
    assert (edited.json()["state"], edited.json()["time_zone"]) == (corrected["state"], zone)
    event = AuditEvent.objects.get(action="facility.update", subject_id=created["id"])
    if zone != created["time_zone"]:
        assert event.changes["time_zone"] == [created["time_zone"], zone]
    else:
        assert "time_zone" not in event.changes
