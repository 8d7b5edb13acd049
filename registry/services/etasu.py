"""Read-only evaluation of a patient's REMS requirements (the "elements to assure safe use", ETASU) for the
standards endpoints: FHIR `$rems-etasu` and the NCPDP REMSInitiationResponse (DOMAIN.md "Standards to stay
close to").

Nothing is stored: this answers "what is still open for this patient", not a gate check. The gate checks
themselves (GATE-1, GATE-3) run and are recorded by their own services (GATE-5). The requirement functions
are the decision engine's own (registry/services/decisions.py), so this list and the gate cannot drift:

- the certification of the patient's prescriber of record (ACT-1, ACT-6);
- for a patient not yet authorized, the authorization requirements (ACT-7, ACT-9);
- then every requirement of the dispense gate (GATE-1, GATE-4, CRS-2..4) that is about the patient rather
  than about one prescription (which pharmacy, facility and prescriber it names, how many doses it asks for).
  A blocking condition added to the gate later is part of this list without a change here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from registry.errors import ReasonCode as R
from registry.localtime import local_today
from registry.models import Patient, PatientStatus, Prescriber
from registry.selectors.facts import Facts, facts_load

from .decisions import (
    DISPENSE_GATE,
    PATIENT_AUTHORIZATION_GATE,
    course_1_baseline_labs,
    course_1_pregnancy_test,
    course_1_screening,
    doses_within_remaining,
    facility_certified,
    patient_found,
    pharmacy_certified,
    prescriber_certified,
    prescriber_of_record,
    prescriber_of_record_certified,
)
from .gate import Check, Evaluation, Requirement, about_patient

# About one prescription, not the patient: the parties it names and the doses it asks for.
PRESCRIPTION_REQUIREMENTS: frozenset[Requirement] = frozenset(
    {
        pharmacy_certified,
        facility_certified,
        prescriber_certified,
        prescriber_of_record,
        patient_found,
        doses_within_remaining,
    }
)
# Course 1's repeat of the ACT-7 baseline: for a patient not yet authorized the authorization
# requirements themselves are listed instead.
_COURSE_1_REPEATS: frozenset[Requirement] = frozenset(
    {course_1_baseline_labs, course_1_screening, course_1_pregnancy_test}
)

# The unmet requirements a prescriber can meet by sending data (labs, screening, a form, a course plan);
# every other unmet requirement is a `failure` until the facts change.
DATA_REQUIRED_CODES = frozenset(
    {
        R.BASELINE_INCOMPLETE,
        R.SCREENING_INCOMPLETE,
        R.PREGNANCY_TEST_REQUIRED,
        R.PRE_COURSE_LABS_STALE,
        R.NO_OPEN_COURSE,
        R.MONITORING_OVERDUE,
        R.STATUS_FORM_OVERDUE,
    }
)

SUCCESS = "success"
DATA_REQUIRED = "data-required"
FAILURE = "failure"


def etasu_requirements(patient: Patient) -> tuple[Requirement, ...]:
    """The patient-level requirement list, in gate order, each requirement once: the gates' own lists with
    their registered extensions (`blocking_condition`), so a GATE-4 block added later is listed too."""
    listed: list[Requirement] = [prescriber_of_record_certified]
    if patient.status == PatientStatus.ENROLLED:
        listed += PATIENT_AUTHORIZATION_GATE.all_requirements()
    for requirement in DISPENSE_GATE.all_requirements():
        if requirement in PRESCRIPTION_REQUIREMENTS:
            continue
        if patient.status == PatientStatus.ENROLLED and requirement in _COURSE_1_REPEATS:
            continue
        listed.append(requirement)
    return tuple(dict.fromkeys(listed))


@dataclass(frozen=True)
class EtasuStatus:
    """One requirement's status in the HL7 US Medication REMS IG's terms."""

    check: Check
    status: str  # success, data-required or failure


@dataclass(frozen=True)
class EtasuResult:
    facts: Facts
    evaluation: Evaluation
    statuses: tuple[EtasuStatus, ...]

    @property
    def overall(self) -> str:
        """`failure` if any requirement fails, else `data-required` if any needs data, else `success`."""
        found = {s.status for s in self.statuses}
        for status in (FAILURE, DATA_REQUIRED):
            if status in found:
                return status
        return SUCCESS


def requirement_status(check: Check, patient: Patient) -> str:
    if check.met:
        return SUCCESS
    if check.code in DATA_REQUIRED_CODES:
        return DATA_REQUIRED
    # An enrolled patient becomes authorized once the baseline is in (ACT-7): data, not a refusal.
    if check.code == R.PATIENT_NOT_AUTHORIZED and patient.status == PatientStatus.ENROLLED:
        return DATA_REQUIRED
    return FAILURE


def requirements_evaluate(requirements: tuple[Requirement, ...], facts: Facts) -> Evaluation:
    """Runs each requirement (pure), marking those about the patient `private` as the gate does
    (registry/services/gate.py `Gate.evaluate`), so a pharmacy or facility is answered their neutral
    texts (registry/api/refusals.py) and never the details."""
    return Evaluation(
        tuple(replace(r(facts), private=True) if about_patient(r) else r(facts) for r in requirements)
    )


def etasu_evaluate(
    *,
    patient: Patient,
    now: dt.datetime,
    prescriber: Prescriber | None = None,
    named_prescriber: bool = False,
    annotated: bool = False,
    as_of: dt.date | None = None,
) -> EtasuResult:
    """Evaluates `etasu_requirements(patient)` as of `now`, read-only (a constant number of queries,
    nothing written). With `named_prescriber`, the caller named a prescriber (an NCPDP message's
    Prescriber; `prescriber` is it, or None when no registered prescriber has the identifier): the list
    then starts with GATE-1's checks of that prescriber (certified, and the patient's prescriber of record).
    `annotated`: the patient already carries its facts (patient_by_registry_id), saving the reload. `as_of`:
    the day the labs are judged against (the caller's local day, registry/localtime.py; default the
    registry's)."""
    facts = facts_load(
        patient=patient,
        annotated=annotated,
        now=now,
        as_of=as_of or local_today(None, now),
        prescriber=prescriber,
    )
    assert facts.patient is not None
    requirements = etasu_requirements(facts.patient)
    if named_prescriber:
        requirements = (prescriber_certified, prescriber_of_record, *requirements)
    evaluation = requirements_evaluate(requirements, facts)
    statuses = tuple(
        EtasuStatus(check, requirement_status(check, facts.patient)) for check in evaluation.checks
    )
    return EtasuResult(facts=facts, evaluation=evaluation, statuses=statuses)


__all__ = ["EtasuResult", "EtasuStatus", "etasu_evaluate", "etasu_requirements", "requirements_evaluate"]
