"""The one renderer of gate decisions (GATE-5) and of what each party may read of them.

A decision kind answered as an error (patient authorization, course planning, the infusion) is refused with
its code from `REFUSALS`; the dispense authorization (always 201) and the infusion check (200) carry the
same reasons in their own bodies. Every body names the stored decision (`decision_id`).

Minimum necessary disclosure: the prescriber of record, its delegates and administrators read every
requirement's detail as stored. Pharmacies and facilities read reason codes and the neutral texts below,
which name no clinical fact (no contraindication kind, patient status, treatment date or lab); when the
caller itself is not certified the gate evaluated nothing about the patient (registry/services/gate.py).
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.response import Response

from registry.errors import ErrorCode, ReasonCode
from registry.models import DecisionKind, DispenseAuthorization, User
from registry.permissions import GATE_PARTIES
from registry.services.gate import Check, Outcome

from .exceptions import error_body

_HOLD = "Treatment is on hold for this patient; the prescriber of record has the details."
_PENDING = "A pre-treatment requirement is not met; the prescriber of record has the details."
PUBLIC_DETAIL: dict[str, str] = {
    ReasonCode.PHARMACY_NOT_CERTIFIED: "The pharmacy is not certified.",
    ReasonCode.FACILITY_NOT_CERTIFIED: "The facility is not certified.",
    ReasonCode.PRESCRIBER_NOT_CERTIFIED: "The prescriber is not certified.",
    ReasonCode.PRESCRIBER_NOT_OF_RECORD: "The prescriber is not the patient's prescriber of record.",
    ReasonCode.PATIENT_NOT_FOUND: "No patient matches this registry ID and date of birth.",
    ReasonCode.PATIENT_NOT_AUTHORIZED: "The patient is not authorized to receive the drug.",
    ReasonCode.CONTRAINDICATION_RECORDED: _HOLD,
    ReasonCode.ATTESTATION_WITHDRAWN: _HOLD,  # issue 9: a withdrawn screening holds like a contraindication
    ReasonCode.PREGNANCY_OPEN: _HOLD,
    ReasonCode.MONITORING_OVERDUE: _HOLD,
    ReasonCode.STATUS_FORM_OVERDUE: _HOLD,
    ReasonCode.NO_OPEN_COURSE: "The patient has no course open for dosing.",
    ReasonCode.OPEN_COURSE_EXISTS: "Another course is open.",
    ReasonCode.COURSE_DOSES_EXHAUSTED: "The course has no doses left.",
    ReasonCode.DOSES_EXCEED_REMAINING: "More doses were requested than the course has left.",
    ReasonCode.COURSE_INTERVAL_NOT_MET: "The course may not start yet.",
    ReasonCode.COURSE_DOSE_WINDOW_MISSED: "The course's dosing window has passed.",
    ReasonCode.PRE_COURSE_LABS_STALE: _PENDING,
    ReasonCode.BASELINE_INCOMPLETE: _PENDING,
    ReasonCode.SCREENING_INCOMPLETE: _PENDING,
    ReasonCode.PREGNANCY_TEST_REQUIRED: _PENDING,
    ReasonCode.DUPLICATE_INFUSION_DAY: "An infusion is already recorded for this day.",
    ReasonCode.INVALID_DOSE: "Each dose is 12 mg IV.",
    ReasonCode.OBSERVATION_TOO_SHORT: "Post-infusion observation must be at least 120 minutes.",
    ReasonCode.PREMEDICATION_MISSING: "Required premedication is not recorded.",
    ReasonCode.NO_DISPENSE_FOR_FACILITY: (
        "No dispense to this facility for the patient's open course has a vial left."
    ),
}

# Decision kinds whose refusal is an error answer: code and detail.
REFUSALS: dict[str, tuple[ErrorCode, str]] = {
    DecisionKind.PATIENT_AUTHORIZATION: (
        ErrorCode.AUTHORIZATION_REQUIREMENTS_UNMET,
        "The patient does not meet the authorization requirements.",
    ),
    DecisionKind.COURSE_PLAN: (
        ErrorCode.COURSE_NOT_ALLOWED,
        "A course cannot be planned for this patient now.",
    ),
    DecisionKind.INFUSION: (ErrorCode.DO_NOT_INFUSE, "Do not infuse: the infusion check failed."),
}


def limited(viewer: User) -> bool:
    return viewer.role in GATE_PARTIES


def _public_reason(check: Check) -> dict[str, str]:
    """A requirement about a party or the request keeps its detail; one about the patient gets the code's
    neutral text."""
    if not check.private:
        return check.as_reason()
    code = check.code or check.requirement
    return {"code": code, "detail": PUBLIC_DETAIL.get(code, "A requirement is not met.")}


def reasons_for(outcome: Outcome[Any], viewer: User) -> list[dict[str, str]]:
    failed = outcome.evaluation.failed
    return [_public_reason(c) for c in failed] if limited(viewer) else [c.as_reason() for c in failed]


def requirements_for(outcome: Outcome[Any], viewer: User) -> list[dict[str, Any]]:
    full = outcome.evaluation.requirements()
    if not limited(viewer):
        return full
    return [
        {k: v for k, v in row.items() if k != "detail" or not check.private}
        for row, check in zip(full, outcome.evaluation.checks, strict=True)
    ]


def decision_parts(outcome: Outcome[Any], viewer: User) -> dict[str, Any]:
    return {
        "decision_id": str(outcome.decision.pk) if outcome.decision else None,
        "reasons": reasons_for(outcome, viewer),
        "requirements": requirements_for(outcome, viewer),
    }


def refusal_response(outcome: Outcome[Any], viewer: User) -> Response:
    """409 for a refused decision of a kind in `REFUSALS`: every reason and the stored decision's id."""
    assert outcome.decision is not None
    code, detail = REFUSALS[outcome.decision.kind]
    return Response(error_body(code, detail, **decision_parts(outcome, viewer)), status=code.http_status)


def authorization_decision_body(outcome: Outcome[DispenseAuthorization], viewer: User) -> dict[str, Any]:
    """GATE-1/2: the dispense authorization's 201 body, approved or denied."""
    assert outcome.decision is not None
    assert outcome.facts is not None
    authorization = outcome.created
    course = outcome.facts.open_course
    when = serializers.DateTimeField().to_representation
    parts = decision_parts(outcome, viewer)
    return {
        "id": outcome.decision.pk,
        "decision": outcome.decision.outcome,
        "authorization_number": authorization.number if authorization else None,
        "effective_at": when(authorization.issued_at) if authorization else None,
        "expires_at": when(authorization.expires_at) if authorization else None,
        "course_number": course.number if authorization and course else None,
        "doses_authorized": authorization.doses_authorized if authorization else None,
        "reasons": parts["reasons"],
        "requirements": parts["requirements"],
    }
