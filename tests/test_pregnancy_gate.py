"""The gate holds while a pregnancy is open (PRG-4, GATE-4, GATE-5).

An open pregnancy report (no outcome yet), or a positive pregnancy test with no later negative test,
gives reason `pregnancy_open` in course planning, dispense authorization and the infusion check; filing
the report, or recording the positive test, revokes the patient's outstanding authorization numbers at
once. An outcome (on or after the positive test's day) or a later negative test lets treatment resume.
"""

from __future__ import annotations

import datetime as dt

import pytest

from registry.api.refusals import PUBLIC_DETAIL
from registry.errors import ReasonCode
from registry.models import (
    AuditEvent,
    AuthorizationStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    DispenseAuthorization,
    Infusion,
)
from registry.selectors.pregnancy import positive_test_holds

from .gate_helpers import (
    DAY0,
    approved_number,
    authorized_patient,
    course_path,
    frozen,
    infuse,
    infuse_days,
    infusion_body,
    moment,
    plan_course,
    reason_codes,
    record_labs,
    request_authorization,
    supply,
)
from .pregnancy_helpers import (
    LIVE_BIRTH,
    file_report,
    file_report_api,
    patch_report,
    record_pregnancy_test,
    rp_patient,
)

pytestmark = pytest.mark.django_db

D = dt.date
DAY = dt.timedelta(days=1)
CHECK = "/api/v1/infusions/check"
AUTHORIZATIONS = "/api/v1/dispense-authorizations"
HELD = {
    "code": "pregnancy_open",
    "detail": "A pregnancy report is open: treatment is held until its outcome is recorded.",
}
POSITIVE = {
    "code": "pregnancy_open",
    "detail": "A positive pregnancy test is on file with no later negative test: treatment is held.",
}
# Pharmacies and facilities read the code and a neutral text, never the clinical fact (minimum necessary
# disclosure); the stored decision keeps the full detail for the prescriber and administrators.
PUBLIC = {"code": "pregnancy_open", "detail": PUBLIC_DETAIL[ReasonCode.PREGNANCY_OPEN]}
ENDED = {"outcome": "spontaneous_abortion", "maternal_thyroid_status": "normal"}


def _requirement(decision: Decision, name: str = "no_open_pregnancy") -> dict:
    return next(r for r in decision.requirements if r["requirement"] == name)


def _held(response) -> tuple[list, str]:
    """What a pharmacy or facility was told, and the detail stored with the decision (GATE-5)."""
    body = response.json()
    decision = Decision.objects.get(pk=body.get("decision_id") or body["id"])
    return body["reasons"], _requirement(decision).get("detail", "")


def _check(facility, patient, on: dt.date, day: int):
    with frozen(on):
        return facility.post(CHECK, infusion_body(patient, on, day=day))


@pytest.fixture
def patient(prescriber):
    """Of reproductive potential, authorized 2026-03-02 (labs and a negative pregnancy test 2026-02-27)."""
    with frozen(DAY0):
        return rp_patient(prescriber)


# --- Course planning ---------------------------------------------------------------------------------------


def test_open_report_blocks_course_planning_until_the_outcome(prescriber, patient):
    """PRG-4: with a report open, course 1 is refused with exactly `pregnancy_open`; once the outcome is
    recorded the course is planned. Both decisions are stored with the requirement (GATE-5)."""
    report = file_report(prescriber, patient, on=DAY0, lmp_on=D(2026, 2, 1))
    with frozen(DAY0):
        refused = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-02"})

    assert refused.status_code == 409, refused.json()
    assert (refused.json()["code"], refused.json()["reasons"]) == ("course_not_allowed", [HELD])
    denied = Decision.objects.get(kind=DecisionKind.COURSE_PLAN, outcome=DecisionOutcome.DENIED)
    assert _requirement(denied) == {
        "requirement": "no_open_pregnancy",
        "met": False,
        "code": "pregnancy_open",
        "detail": HELD["detail"],
    }
    assert not patient.courses.exists()

    outcome = patch_report(prescriber, report.pk, on=DAY0 + DAY, outcome_on="2026-03-03", **ENDED)
    assert outcome.json()["status"] == "closed"
    with frozen(DAY0 + DAY):
        planned = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-03"})

    assert planned.status_code == 201, planned.json()
    approved = Decision.objects.get(kind=DecisionKind.COURSE_PLAN, outcome=DecisionOutcome.APPROVED)
    assert _requirement(approved) == {"requirement": "no_open_pregnancy", "met": True}


def test_a_live_birth_outcome_releases_the_hold_before_the_follow_up(prescriber, patient):
    """PRG-4: the hold lasts until an outcome is recorded, not until the infant follow-up."""
    report = file_report(prescriber, patient, on=DAY0, lmp_on=D(2026, 2, 1))
    on = D(2026, 11, 10)
    assert patch_report(prescriber, report.pk, on=on, outcome_on="2026-11-06", **LIVE_BIRTH).json()[
        "status"
    ] == ("outcome_recorded")
    record_labs(patient, prescriber.user, collected_on=on - 2 * DAY)
    record_pregnancy_test(patient, prescriber.user, on=on - 2 * DAY, result="negative")
    with frozen(on):
        planned = prescriber.post(course_path(patient), {"planned_start_on": on.isoformat()})
    assert planned.status_code == 201, planned.json()


# --- Dispense authorization ----------------------------------------------------------------------------------


def test_filing_a_report_revokes_the_outstanding_number_and_denies_new_ones_until_the_outcome(
    prescriber, delegate, facility, pharmacy, patient
):
    """PRG-4, GATE-2: a report filed (here by the delegate) revokes the active number at once, audited
    with the filer as actor; a new authorization is denied with `pregnancy_open`; after the outcome a new
    number is granted."""
    with frozen(DAY0):
        plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))

    filed = file_report_api(delegate, patient, on=DAY0, lmp_on="2026-02-01")
    assert filed.status_code == 201, filed.json()

    stored = DispenseAuthorization.objects.get(number=number)
    assert (stored.status, stored.revoked_by, stored.revoked_at, stored.revoke_reason) == (
        AuthorizationStatus.REVOKED,
        delegate.user,
        moment(DAY0),
        "Pregnancy reported (PRG-4)",
    )
    with frozen(DAY0):
        shown = pharmacy.get(f"{AUTHORIZATIONS}/{number}")
        denied = request_authorization(pharmacy, patient, prescriber, facility, doses=5)
    # The issuing pharmacy reads a category, never the reason (which names the pregnancy).
    assert (shown.json()["status"], shown.json()["revocation"]) == ("revoked", "patient_no_longer_eligible")
    assert "regnan" not in str(shown.json())
    assert AuditEvent.objects.filter(action="authorization.revoke", subject_id=stored.pk).count() == 1
    filing = AuditEvent.objects.get(action="pregnancy_report.file")
    assert (filing.actor, filing.changes["authorizations_revoked"]) == (delegate.user, 1)
    assert denied.status_code == 201
    assert (denied.json()["decision"], denied.json()["authorization_number"]) == ("denied", None)
    assert _held(denied) == ([PUBLIC], HELD["detail"])

    patch_report(prescriber, filed.json()["id"], on=DAY0, outcome_on="2026-03-02", **ENDED)
    with frozen(DAY0):
        approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    assert (
        DispenseAuthorization.objects.filter(patient=patient, status=AuthorizationStatus.ACTIVE).count() == 1
    )


def test_report_filing_leaves_other_patients_numbers_alone(prescriber, facility, pharmacy, patient):
    with frozen(DAY0):
        other = rp_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        plan_course(prescriber, other, start=DAY0)
        mine = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
        theirs = approved_number(request_authorization(pharmacy, other, prescriber, facility, doses=5))

    file_report(prescriber, patient, on=DAY0, lmp_on=D(2026, 2, 1))

    statuses = dict(DispenseAuthorization.objects.values_list("number", "status"))
    assert statuses == {mine: "revoked", theirs: "active"}


# --- Infusion check -----------------------------------------------------------------------------------------------


def test_open_report_holds_the_infusion_check_and_the_infusion_until_the_outcome(
    prescriber, facility, patient
):
    """PRG-4, GATE-3: mid-course, a report filed holds day 3: the check says `do_not_infuse` with
    `pregnancy_open` and the infusion is refused (409) and not recorded; after the outcome day 3 is given."""
    with frozen(DAY0):
        plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 2)
    day_3 = DAY0 + 2 * DAY
    report = file_report(prescriber, patient, on=day_3, estimated_conception_on=DAY0)
    assert (report.exposure, report.exposed_course.number) == ("exposed", 1)

    check = _check(facility, patient, day_3, 3)
    refused = infuse(facility, patient, day_3, day=3)

    assert check.status_code == 200
    assert check.json()["decision"] == "do_not_infuse"
    assert _held(check) == ([PUBLIC], HELD["detail"])
    stored_check = Decision.objects.get(pk=check.json()["decision_id"])
    assert (stored_check.kind, stored_check.outcome) == (DecisionKind.INFUSION_CHECK, DecisionOutcome.DENIED)
    assert refused.status_code == 409
    assert refused.json()["code"] == "do_not_infuse"
    assert _held(refused) == ([PUBLIC], HELD["detail"])
    assert Infusion.objects.filter(patient=patient).count() == 2

    patch_report(
        prescriber,
        report.pk,
        on=day_3,
        outcome="elective_termination",
        outcome_on=day_3.isoformat(),
        maternal_thyroid_status="normal",
    )

    assert _check(facility, patient, day_3, 3).json()["decision"] == "infuse"
    assert infuse(facility, patient, day_3, day=3).status_code == 201
    assert Infusion.objects.filter(patient=patient).count() == 3


# --- A positive pregnancy test ----------------------------------------------------------------------------------


def test_positive_test_after_the_course_started_holds_the_next_infusion_and_revokes_the_number(
    prescriber, facility, pharmacy, patient
):
    """PRG-4: day 1 of course 1 given, a number outstanding for the rest; a positive pregnancy test
    recorded the next day revokes the number at once and holds day 2 (infusion check and dispense
    authorization: `pregnancy_open`); a later negative test releases both."""
    with frozen(DAY0):
        plan_course(prescriber, patient, start=DAY0)
    supply(facility, patient, on=DAY0, doses=2)  # GATE-3: the vials of days 1 and 2 are at the facility
    infuse_days(facility, patient, DAY0, 1)
    day_2 = DAY0 + DAY
    with frozen(day_2):
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=3))
        recorded = prescriber.post(
            f"/api/v1/patients/{patient.pk}/lab-results",
            {"test": "pregnancy_test", "collected_on": day_2.isoformat(), "result": "positive"},
        )
    assert recorded.status_code == 201, recorded.json()

    stored = DispenseAuthorization.objects.get(number=number)
    assert (stored.status, stored.revoked_by, stored.revoke_reason) == (
        AuthorizationStatus.REVOKED,
        prescriber.user,
        "Positive pregnancy test (PRG-4)",
    )
    hold = AuditEvent.objects.get(action="pregnancy.positive_test_hold")
    assert (hold.subject_id, hold.actor, hold.changes) == (
        patient.pk,
        prescriber.user,
        {"collected_on": "2026-03-03", "gate": "pregnancy_open"},
    )
    check = _check(facility, patient, day_2, 2)
    assert check.json()["decision"] == "do_not_infuse"
    assert _held(check) == ([PUBLIC], POSITIVE["detail"])
    refused = infuse(facility, patient, day_2, day=2)
    assert refused.status_code == 409
    assert _held(refused) == ([PUBLIC], POSITIVE["detail"])
    with frozen(day_2):
        denied = request_authorization(pharmacy, patient, prescriber, facility, doses=3)
    assert (denied.json()["decision"], reason_codes(denied)) == ("denied", ["pregnancy_open"])

    day_3 = DAY0 + 2 * DAY
    record_pregnancy_test(patient, prescriber.user, on=day_3, result="negative")

    assert _check(facility, patient, day_3, 2).json()["decision"] == "infuse"
    with frozen(day_3):
        approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=3))


def test_a_negative_test_on_the_same_day_as_the_positive_does_not_release(prescriber, facility, patient):
    """PRG-4: only a *later* negative test lifts the hold."""
    with frozen(DAY0):
        plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 1)
    day_2 = DAY0 + DAY
    record_pregnancy_test(patient, prescriber.user, on=day_2, result="positive")
    record_pregnancy_test(patient, prescriber.user, on=day_2, result="negative")

    assert _held(_check(facility, patient, day_2, 2)) == ([PUBLIC], POSITIVE["detail"])


def test_positive_test_holds_until_a_report_is_resolved_on_or_after_it(prescriber, facility, patient):
    """PRG-4: the positive test holds; the report filed for it holds; its outcome (dated on or after the
    test) releases the hold without a negative test."""
    with frozen(DAY0):
        plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 1)
    day_2 = DAY0 + DAY
    record_pregnancy_test(patient, prescriber.user, on=day_2, result="positive")
    assert _held(_check(facility, patient, day_2, 2)) == ([PUBLIC], POSITIVE["detail"])

    report = file_report(prescriber, patient, on=day_2, estimated_conception_on=D(2026, 2, 20))
    assert _held(_check(facility, patient, day_2, 2)) == ([PUBLIC], HELD["detail"])

    patch_report(prescriber, report.pk, on=day_2, outcome_on=day_2.isoformat(), **ENDED)
    assert _check(facility, patient, day_2, 2).json()["decision"] == "infuse"

    day_3 = DAY0 + 2 * DAY
    record_pregnancy_test(patient, prescriber.user, on=day_3, result="positive")  # a test after that outcome
    assert _held(_check(facility, patient, day_3, 2)) == ([PUBLIC], POSITIVE["detail"])


def test_a_backdated_positive_before_a_negative_on_file_revokes_nothing(
    prescriber, facility, pharmacy, patient
):
    """PRG-4: a positive test older than a negative one on file (imported history) holds nothing."""
    with frozen(DAY0):
        plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=4))
    supply(facility, patient, on=DAY0, doses=1)  # GATE-3: day 1's vial is at the facility
    record_pregnancy_test(patient, prescriber.user, on=DAY0 - 10 * DAY, result="positive")

    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.ACTIVE
    assert not AuditEvent.objects.filter(action="pregnancy.positive_test_hold").exists()
    assert _check(facility, patient, DAY0, 1).json()["decision"] == "infuse"


def test_positive_test_holds_a_patient_recorded_without_reproductive_potential(
    prescriber, facility, pharmacy
):
    """PRG-4: a positive test is a fact whatever the recorded reproductive potential."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber, sex="female", reproductive_potential=False)
        plan_course(prescriber, patient, start=DAY0)
    supply(facility, patient, on=DAY0, doses=1)  # GATE-3: day 1's vial is at the facility
    with frozen(DAY0):
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=4))
    record_pregnancy_test(patient, prescriber.user, on=DAY0, result="positive")

    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.REVOKED
    assert _held(_check(facility, patient, DAY0, 1)) == ([PUBLIC], POSITIVE["detail"])


def test_bulk_positive_test_revokes_at_once_unless_a_later_negative_comes_with_it(
    prescriber, facility, pharmacy, patient
):
    """PRG-4 through POST /lab-results/bulk: a positive row revokes the patient's number in the same
    transaction; a positive followed by a later negative in the same batch revokes nothing."""
    with frozen(DAY0):
        other = rp_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        plan_course(prescriber, other, start=DAY0)
        mine = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
        theirs = approved_number(request_authorization(pharmacy, other, prescriber, facility, doses=5))

        def row(p, on, result):
            return {
                "rems_patient_id": p.rems_patient_id,
                "test": "pregnancy_test",
                "collected_on": on,
                "result": result,
            }

        response = prescriber.post(
            "/api/v1/lab-results/bulk",
            {
                "results": [
                    row(patient, "2026-03-01", "positive"),
                    row(other, "2026-02-28", "positive"),
                    row(other, "2026-03-01", "negative"),
                    {
                        "rems_patient_id": other.rems_patient_id,
                        "test": "cbc_differential",
                        "collected_on": "2026-03-01",
                        "result": "normal",
                    },
                ]
            },
        )

    assert response.status_code == 201, response.json()
    statuses = dict(DispenseAuthorization.objects.values_list("number", "status"))
    assert statuses == {mine: "revoked", theirs: "active"}
    holds = AuditEvent.objects.filter(action="pregnancy.positive_test_hold")
    assert list(holds.values_list("subject_id", flat=True)) == [patient.pk]


def test_a_refused_bulk_batch_revokes_nothing(prescriber, facility, pharmacy, patient):
    """All or nothing: a bad row elsewhere in the batch leaves the number active."""
    with frozen(DAY0):
        plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
        response = prescriber.post(
            "/api/v1/lab-results/bulk",
            {
                "results": [
                    {
                        "rems_patient_id": patient.rems_patient_id,
                        "test": "pregnancy_test",
                        "collected_on": "2026-03-01",
                        "result": "positive",
                    },
                    {
                        "rems_patient_id": patient.rems_patient_id,
                        "test": "pregnancy_test",
                        "collected_on": "2026-03-01",
                        "result": "normal",
                    },
                ]
            },
        )
    assert response.status_code == 400
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.ACTIVE


@pytest.mark.parametrize(
    ("positive", "negative", "outcome", "holds"),
    [
        (None, None, None, False),
        (None, D(2026, 3, 1), None, False),
        (D(2026, 3, 2), None, None, True),
        (D(2026, 3, 2), D(2026, 3, 1), None, True),  # negative before
        (D(2026, 3, 2), D(2026, 3, 2), None, True),  # negative the same day
        (D(2026, 3, 2), D(2026, 3, 3), None, False),  # negative the day after
        (D(2026, 3, 2), None, D(2026, 3, 1), True),  # outcome the day before
        (D(2026, 3, 2), None, D(2026, 3, 2), False),  # outcome the same day
        (D(2026, 3, 2), None, D(2026, 3, 3), False),
    ],
)
def test_positive_test_hold_rule(positive, negative, outcome, holds):
    """PRG-4, the rule on its boundaries."""
    assert positive_test_holds(positive_on=positive, negative_on=negative, latest_outcome_on=outcome) is holds


def test_a_patient_without_reports_or_tests_passes_the_pregnancy_requirement(prescriber, facility):
    """GATE-5: the requirement is evaluated and met for every patient, and stored with the decision."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
    assert infuse(facility, patient, DAY0).status_code == 201
    decision = Decision.objects.get(kind=DecisionKind.INFUSION, patient=patient)
    assert _requirement(decision) == {"requirement": "no_open_pregnancy", "met": True}


def test_no_open_pregnancy_is_on_every_treatment_gate_and_private():
    """PRG-4, GATE-4: one requirement on course planning, dispense authorization, the infusion and its
    check (not on patient authorization, which ACT-7's pregnancy test covers); about the patient, so its
    detail is private and pharmacies and facilities read the neutral text."""
    from registry.services import decisions

    treatment = (
        decisions.COURSE_PLAN_GATE,
        decisions.DISPENSE_GATE,
        decisions.INFUSION_GATE,
        decisions.INFUSION_CHECK_GATE,
    )
    for gate in treatment:
        assert decisions.no_open_pregnancy in gate.all_requirements(), gate.kind
    assert decisions.no_open_pregnancy not in decisions.PATIENT_AUTHORIZATION_GATE.all_requirements()
    assert decisions.no_open_pregnancy.reason_code == ReasonCode.PREGNANCY_OPEN  # type: ignore[attr-defined]
    assert decisions.no_open_pregnancy.about_patient  # type: ignore[attr-defined]
    assert "regnan" not in PUBLIC_DETAIL[ReasonCode.PREGNANCY_OPEN]
