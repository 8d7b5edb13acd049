"""The one decision engine for patient authorization, course planning, dispense authorization and
infusion (ACT-7, CRS-2..4, GATE-1..5).

A requirement is a pure function of `Facts` returning a `Check`; a decision kind is a list of them.
Adding a requirement (say, the monitoring or pregnancy blocks of GATE-4) is one function here and one
entry in a list below: no view or service changes. Every requirement is evaluated, so a denial lists
*every* unmet one, and the decision is stored with all of them and the settings in force (GATE-5).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db import transaction

from registry import rules
from registry.middleware import current_request_id
from registry.models import Decision, DecisionKind, DecisionOutcome, LabTest, PatientStatus, User

from .audit import _jsonable, audit_record
from .facts import GATE_LAB_TESTS, Facts


@dataclass(frozen=True)
class Check:
    requirement: str
    met: bool
    code: str | None = None  # the reason code (API.md) when unmet
    detail: str = ""
    evaluated: bool = True

    def as_reason(self) -> dict[str, str]:
        return {"code": self.code or self.requirement, "detail": self.detail}


Requirement = Callable[[Facts], Check]

BASELINE_LABS = GATE_LAB_TESTS  # ACT-7: all seven
PRE_COURSE_LABS = (LabTest.CBC_DIFFERENTIAL, LabTest.SERUM_CREATININE, LabTest.URINALYSIS)


def _sentence(parts: list[str]) -> str:
    """Joins problem phrases into one sentence without lower-casing acronyms (HIV, TB)."""
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def _ok(name: str) -> Check:
    return Check(name, True)


def _fail(name: str, code: str, detail: str) -> Check:
    return Check(name, False, code, detail)


def _not_evaluated(name: str, code: str) -> Check:
    return Check(name, False, code, "Not evaluated: the patient was not identified.", evaluated=False)


def needs_patient(code: str) -> Callable[[Requirement], Requirement]:
    """A requirement about the patient cannot be evaluated without one; it is recorded as not evaluated
    and left out of the reasons (only `patient_not_found` is given, ID-4)."""

    def wrap(fn: Requirement) -> Requirement:
        def checked(f: Facts) -> Check:
            if f.patient is None:
                return _not_evaluated(fn.__name__, code)
            return fn(f)

        checked.__name__ = fn.__name__
        checked.__doc__ = fn.__doc__
        return checked

    return wrap


def reference_date(f: Facts) -> dt.date:
    """The day a dose would be given: the infusion date, the planned course start, else today."""
    return f.request.get("administered_on") or f.request.get("planned_start_on") or f.as_of


def first_dose_pending(f: Facts) -> bool:
    """True when the decision is about the first dose of a course: the open course has no dose yet, or
    (course planning) there is no open course yet."""
    course = f.open_course
    return course is None or course.doses_given == 0


def upcoming_course_number(f: Facts) -> int:
    course = f.open_course
    return course.number if course is not None else len(f.prior_courses) + 1


# --- Participants (ACT-1, ACT-5) ------------------------------------------------------------------


def pharmacy_certified(f: Facts) -> Check:
    """GATE-1: the dispensing pharmacy is certified (not suspended, deactivated or expired)."""
    if f.pharmacy is not None and f.pharmacy.is_certified_at(f.now):
        return _ok("pharmacy_certified")
    return _fail("pharmacy_certified", "pharmacy_not_certified", "The pharmacy is not certified.")


def facility_certified(f: Facts) -> Check:
    """GATE-1, GATE-3: the infusion site is certified."""
    if f.facility is not None and f.facility.is_certified_at(f.now):
        return _ok("facility_certified")
    detail = (
        "No registered facility has this NPI." if f.facility is None else "The facility is not certified."
    )
    return _fail("facility_certified", "facility_not_certified", detail)


def prescriber_certified(f: Facts) -> Check:
    """GATE-1: the prescriber on the prescription is certified."""
    if f.prescriber is not None and f.prescriber.is_certified_at(f.now):
        return _ok("prescriber_certified")
    detail = (
        "No registered prescriber has this NPI."
        if f.prescriber is None
        else "The prescriber is not certified."
    )
    return _fail("prescriber_certified", "prescriber_not_certified", detail)


@needs_patient("prescriber_not_of_record")
def prescriber_of_record(f: Facts) -> Check:
    """GATE-1: the prescriber on the prescription is the patient's prescriber of record."""
    assert f.patient is not None
    if f.prescriber is not None and f.prescriber.pk == f.patient.prescriber_id:
        return _ok("prescriber_of_record")
    return _fail(
        "prescriber_of_record",
        "prescriber_not_of_record",
        "The prescriber is not the patient's prescriber of record.",
    )


@needs_patient("prescriber_not_certified")
def record_prescriber_certified(f: Facts) -> Check:
    """ACT-1, ACT-6: the patient's prescriber of record is certified."""
    assert f.patient is not None
    if f.patient.prescriber.is_certified_at(f.now):
        return _ok("prescriber_of_record_certified")
    return _fail(
        "prescriber_of_record_certified",
        "prescriber_not_certified",
        "The patient's prescriber of record is not certified.",
    )


# --- Patient ---------------------------------------------------------------------------------------


def patient_found(f: Facts) -> Check:
    """ID-4: identified by registry ID and date of birth; unknown ID and mismatch read the same."""
    if f.patient is not None:
        return _ok("patient_found")
    return _fail(
        "patient_found", "patient_not_found", "No patient matches this registry ID and date of birth."
    )


@needs_patient("patient_not_authorized")
def patient_authorized(f: Facts) -> Check:
    """ACT-7, ACT-8: only an authorized patient may receive the drug."""
    assert f.patient is not None
    if f.patient.status == PatientStatus.AUTHORIZED:
        return _ok("patient_authorized")
    return _fail(
        "patient_authorized", "patient_not_authorized", f"The patient is {f.patient.status}, not authorized."
    )


@needs_patient("contraindication_recorded")
def no_contraindication(f: Facts) -> Check:
    """ACT-9, GATE-4: a recorded contraindication blocks treatment."""
    if not f.contraindication_kinds:
        return _ok("no_contraindication")
    return _fail(
        "no_contraindication",
        "contraindication_recorded",
        "Contraindication recorded: " + ", ".join(f.contraindication_kinds) + ".",
    )


def _missing_or_stale(f: Facts, tests: Sequence[str], ref: dt.date, max_age_days: int) -> list[str]:
    earliest = ref - dt.timedelta(days=max_age_days)
    out = []
    for test in tests:
        on = f.latest_lab_on.get(test)
        if on is None or on < earliest or on > ref:
            out.append(test)
    return out


@needs_patient("baseline_incomplete")
def baseline_labs_complete(f: Facts) -> Check:
    """ACT-7: CBC with differential, creatinine, urinalysis, urine protein/creatinine ratio, thyroid, liver
    tests and skin exam, each collected no more than 30 days (*setting*) before the reference day."""
    missing = _missing_or_stale(f, BASELINE_LABS, reference_date(f), f.program.baseline_lab_max_age_days)
    if not missing:
        return _ok("baseline_labs_complete")
    return _fail(
        "baseline_labs_complete",
        "baseline_incomplete",
        f"Missing or older than {f.program.baseline_lab_max_age_days} days: {', '.join(missing)}.",
    )


@needs_patient("screening_incomplete")
def screening_complete(f: Facts) -> Check:
    """ACT-7: HIV negative, no active infection, TB screened, vaccinations completed at least 6 weeks
    before the reference day."""
    s = f.screening
    problems = []
    if s is None:
        problems.append("no screening recorded")
    else:
        if not s.hiv_negative:
            problems.append("HIV negative not attested")
        if not s.no_active_infection:
            problems.append("absence of active infection not attested")
        if s.tb_screened_on is None:
            problems.append("TB screening date missing")
        lead = dt.timedelta(weeks=rules.VACCINATION_LEAD_WEEKS)
        if s.vaccinations_completed_on is None:
            problems.append("vaccination completion date missing")
        elif s.vaccinations_completed_on > reference_date(f) - lead:
            problems.append(f"vaccinations completed less than {rules.VACCINATION_LEAD_WEEKS} weeks before")
    if not problems:
        return _ok("screening_complete")
    return _fail("screening_complete", "screening_incomplete", _sentence(problems))


@needs_patient("pregnancy_test_required")
def pregnancy_test_negative(f: Facts) -> Check:
    """ACT-7: a patient of reproductive potential needs a negative pregnancy test within 7 days
    (*setting*), and no positive test since."""
    assert f.patient is not None
    if not f.patient.reproductive_potential:
        return _ok("pregnancy_test_negative")
    ref = reference_date(f)
    neg, pos = f.latest_negative_pregnancy_on, f.latest_positive_pregnancy_on
    window = ref - dt.timedelta(days=f.program.pregnancy_test_max_age_days)
    if neg is not None and window <= neg <= ref and (pos is None or pos < neg):
        return _ok("pregnancy_test_negative")
    return _fail(
        "pregnancy_test_negative",
        "pregnancy_test_required",
        f"A negative pregnancy test within {f.program.pregnancy_test_max_age_days} days is required.",
    )


# --- Courses (CRS-2..4) ----------------------------------------------------------------------------


def earliest_next_course_on(f: Facts) -> dt.date | None:
    """CRS-2: 12 calendar months (*setting*) after the last infusion of any prior course."""
    last = max((c.last_infusion_on for c in f.prior_courses if c.last_infusion_on), default=None)
    if last is None:
        return None
    return last + relativedelta(months=f.program.course_interval_months)


@needs_patient("course_interval_not_met")
def course_interval_met(f: Facts) -> Check:
    """CRS-2: course 2 and later start no earlier than 12 months after the last infusion of a prior
    course. Checked for the first dose of a course only."""
    if not first_dose_pending(f):
        return _ok("course_interval_met")
    earliest = earliest_next_course_on(f)
    if earliest is None or reference_date(f) >= earliest:
        return _ok("course_interval_met")
    return _fail(
        "course_interval_met",
        "course_interval_not_met",
        f"Course {upcoming_course_number(f)} may not start before {earliest.isoformat()}.",
    )


@needs_patient("course_interval_not_met")
def dose_within_course_window(f: Facts) -> Check:
    """CRS-2: the doses of a course are given on consecutive days: each after the one before, and all
    within planned doses - 1 + an allowance (*setting*) of days from the first. A course cannot be
    stretched (or back-dated) around the 12-month interval or the pre-course labs."""
    course = f.open_course
    if course is None or course.doses_given == 0 or course.first_infusion_on is None:
        return _ok("dose_within_course_window")
    ref = reference_date(f)
    administered_on = f.request.get("administered_on")
    # The same day is one_infusion_per_day's to report.
    if administered_on is not None and course.last_infusion_on is not None and ref < course.last_infusion_on:
        return _fail(
            "dose_within_course_window",
            "course_interval_not_met",
            f"Dose {course.doses_given + 1} of course {course.number} must come after the dose of "
            f"{course.last_infusion_on.isoformat()}.",
        )
    last_day = course.first_infusion_on + dt.timedelta(
        days=course.planned_doses - 1 + f.program.course_dose_allowance_days
    )
    if ref > last_day:
        return _fail(
            "dose_within_course_window",
            "course_interval_not_met",
            f"Course {course.number} began {course.first_infusion_on.isoformat()}; its doses are given by "
            f"{last_day.isoformat()}. Cancel it and plan a new course.",
        )
    return _ok("dose_within_course_window")


@needs_patient("pre_course_labs_stale")
def pre_course_labs_fresh(f: Facts) -> Check:
    """CRS-4: before the first dose of any course, CBC with differential, creatinine and urinalysis no
    older than 30 days (*setting*). Checked for the first dose of a course only."""
    if not first_dose_pending(f):
        return _ok("pre_course_labs_fresh")
    missing = _missing_or_stale(f, PRE_COURSE_LABS, reference_date(f), f.program.pre_course_lab_max_age_days)
    if not missing:
        return _ok("pre_course_labs_fresh")
    return _fail(
        "pre_course_labs_fresh",
        "pre_course_labs_stale",
        f"Missing or older than {f.program.pre_course_lab_max_age_days} days: {', '.join(missing)}.",
    )


def _course_1_first_dose(check: Requirement, name: str) -> Requirement:
    """CRS-4: for course 1 the full ACT-7 baseline applies again before the first dose."""

    def wrapped(f: Facts) -> Check:
        if f.patient is not None and not (first_dose_pending(f) and upcoming_course_number(f) == 1):
            return _ok(name)
        return replace(check(f), requirement=name)

    wrapped.__name__ = name
    wrapped.__doc__ = check.__doc__
    return wrapped


course_1_baseline_labs = _course_1_first_dose(baseline_labs_complete, "course_1_baseline_labs")
course_1_screening = _course_1_first_dose(screening_complete, "course_1_screening")
course_1_pregnancy_test = _course_1_first_dose(pregnancy_test_negative, "course_1_pregnancy_test")


@needs_patient("open_course_exists")
def no_open_course(f: Facts) -> Check:
    """CRS-3: at most one open course per patient."""
    course = f.open_course
    if course is None:
        return _ok("no_open_course")
    return _fail("no_open_course", "open_course_exists", f"Course {course.number} is still {course.status}.")


@needs_patient("no_open_course")
def has_open_course(f: Facts) -> Check:
    """GATE-1, GATE-3: a dose belongs to the patient's open course."""
    if f.open_course is not None:
        return _ok("open_course")
    return _fail("open_course", "no_open_course", "The patient has no planned or in-progress course.")


@needs_patient("course_doses_exhausted")
def course_doses_remaining(f: Facts) -> Check:
    """GATE-1, GATE-3: the open course still has a dose to give (GATE-1 also counts doses already
    committed to active authorizations and dispenses)."""
    course = f.open_course
    if course is None:
        return _ok("course_doses_remaining")  # reported by has_open_course
    remaining = (
        course.available_doses if f.request.get("doses_requested") else course.doses_remaining_to_infuse
    )
    if remaining > 0:
        return _ok("course_doses_remaining")
    return _fail(
        "course_doses_remaining",
        "course_doses_exhausted",
        f"Course {course.number} has no doses left to {'authorize' if f.request.get('doses_requested') else 'give'}.",
    )


@needs_patient("doses_exceed_remaining")
def doses_within_remaining(f: Facts) -> Check:
    """GATE-1: the doses requested fit in what the open course has left."""
    course = f.open_course
    requested = int(f.request.get("doses_requested") or 0)
    if course is None or course.available_doses == 0 or requested <= course.available_doses:
        return _ok("doses_within_remaining")
    return _fail(
        "doses_within_remaining",
        "doses_exceed_remaining",
        f"{requested} doses requested; course {course.number} has {course.available_doses} left to authorize.",
    )


# --- The infusion itself (GATE-3, CRS-1) -----------------------------------------------------------


def dose_is_standard(f: Facts) -> Check:
    """CRS-1: every dose is 12 mg."""
    if f.request.get("dose_mg") == rules.DOSE_MG:
        return _ok("dose_is_standard")
    return _fail("dose_is_standard", "invalid_dose", f"Each dose is {rules.DOSE_MG} mg IV.")


@needs_patient("duplicate_infusion_day")
def one_infusion_per_day(f: Facts) -> Check:
    """CRS-1: at most one infusion per calendar day."""
    if not f.infused_on_date:
        return _ok("one_infusion_per_day")
    return _fail(
        "one_infusion_per_day", "duplicate_infusion_day", "An infusion is already recorded for this day."
    )


def next_day_in_course(f: Facts) -> int:
    course = f.open_course
    return (course.doses_given if course else 0) + 1


def premedication_given(f: Facts) -> Check:
    """GATE-3: corticosteroid premedication on days 1-3; antiviral prophylaxis started on day 1."""
    day = next_day_in_course(f)
    missing = []
    if day <= rules.CORTICOSTEROID_PREMEDICATION_DAYS and not f.request.get("corticosteroid_premedication"):
        missing.append(
            f"corticosteroid premedication is required on days 1-{rules.CORTICOSTEROID_PREMEDICATION_DAYS}"
        )
    if day == 1 and not f.request.get("antiviral_prophylaxis"):
        missing.append("antiviral prophylaxis must start on day 1")
    if not missing:
        return _ok("premedication_given")
    return _fail("premedication_given", "premedication_missing", _sentence(missing))


def observation_long_enough(f: Facts) -> Check:
    """GATE-3: at least 120 minutes of post-infusion observation."""
    minutes = f.request.get("observation_minutes")
    if minutes is not None and minutes >= rules.MIN_OBSERVATION_MINUTES:
        return _ok("observation_long_enough")
    return _fail(
        "observation_long_enough",
        "observation_too_short",
        f"Post-infusion observation must be at least {rules.MIN_OBSERVATION_MINUTES} minutes.",
    )


# --- Monitoring (MON-3, MON-4, GATE-4; issue 10) ---------------------------------------------------
# The facts come from the stored schedule at the moment of the check (services/monitoring.py), never
# from flags or from when the sweep last ran. Details name no date or test: pharmacies read them too.


@needs_patient("monitoring_overdue")
def monitoring_current(f: Facts) -> Check:
    """MON-3, GATE-4: no monitoring lab overdue for more than 30 days (*setting*) past due date + grace."""
    overdue = [r for r in f.monitoring_blocking if r != "status_form"]
    if not overdue:
        return _ok("monitoring_current")
    return _fail(
        "monitoring_current",
        "monitoring_overdue",
        "Required monitoring is overdue beyond the grace and blocking period.",
    )


@needs_patient("status_form_overdue")
def status_form_current(f: Facts) -> Check:
    """MON-4, GATE-4: the patient status form is not overdue beyond the blocking period."""
    if "status_form" not in f.monitoring_blocking:
        return _ok("status_form_current")
    return _fail(
        "status_form_current",
        "status_form_overdue",
        "The patient status form is overdue beyond the grace and blocking period.",
    )


# --- Decision kinds ---------------------------------------------------------------------------------

AUTHORIZATION_REQUIREMENTS: tuple[Requirement, ...] = (
    record_prescriber_certified,
    baseline_labs_complete,
    screening_complete,
    pregnancy_test_negative,
    no_contraindication,
)
COURSE_REQUIREMENTS: tuple[Requirement, ...] = (
    record_prescriber_certified,
    patient_authorized,
    no_contraindication,
    no_open_course,
    course_interval_met,
    pre_course_labs_fresh,
    course_1_baseline_labs,
    course_1_screening,
    course_1_pregnancy_test,
    monitoring_current,
    status_form_current,
)
DISPENSE_REQUIREMENTS: tuple[Requirement, ...] = (
    pharmacy_certified,
    facility_certified,
    prescriber_certified,
    patient_found,
    prescriber_of_record,
    patient_authorized,
    no_contraindication,
    has_open_course,
    course_doses_remaining,
    doses_within_remaining,
    course_interval_met,
    dose_within_course_window,
    pre_course_labs_fresh,
    course_1_baseline_labs,
    course_1_screening,
    course_1_pregnancy_test,
    monitoring_current,
    status_form_current,
)
INFUSION_REQUIREMENTS: tuple[Requirement, ...] = (
    facility_certified,
    patient_found,
    record_prescriber_certified,
    patient_authorized,
    no_contraindication,
    has_open_course,
    course_doses_remaining,
    course_interval_met,
    dose_within_course_window,
    pre_course_labs_fresh,
    course_1_baseline_labs,
    course_1_screening,
    course_1_pregnancy_test,
    one_infusion_per_day,
    dose_is_standard,
    premedication_given,
    observation_long_enough,
)


@dataclass(frozen=True)
class Evaluation:
    checks: tuple[Check, ...]

    @property
    def approved(self) -> bool:
        return all(c.met for c in self.checks)

    @property
    def reasons(self) -> list[dict[str, str]]:
        """Every unmet requirement, once per reason code, in requirement order."""
        seen: set[str] = set()
        out = []
        for c in self.checks:
            if not c.met and c.evaluated and (c.code or c.requirement) not in seen:
                seen.add(c.code or c.requirement)
                out.append(c.as_reason())
        return out

    def requirements(self) -> list[dict[str, Any]]:
        return [
            {
                "requirement": c.requirement,
                "met": c.met,
                **({"code": c.code} if not c.met else {}),
                **({"detail": c.detail} if c.detail else {}),
                **({} if c.evaluated else {"evaluated": False}),
            }
            for c in self.checks
        ]


@dataclass(frozen=True)
class Outcome:
    """What a gated service returns: the stored decision, its evaluation, and what it created when approved.
    Gated services return refusals instead of raising them, so that no enclosing transaction (an
    Idempotency-Key claim, say) can roll the stored decision back (GATE-5)."""

    decision: Decision | None
    evaluation: Evaluation
    created: Any = None

    @property
    def approved(self) -> bool:
        return self.evaluation.approved


def evaluate(requirements: Sequence[Requirement], facts: Facts) -> Evaluation:
    """Runs every requirement: pure, no database access."""
    return Evaluation(tuple(req(facts) for req in requirements))


def decision_record(
    *,
    kind: DecisionKind,
    evaluation: Evaluation,
    facts: Facts,
    actor: User,
    inputs: dict[str, Any],
    audit: bool = True,
) -> Decision:
    """GATE-5: stores the decision with every requirement, the settings in force, inputs and actor, and
    audits it (unless the caller writes one audit event for the whole request). Runs inside the caller's
    transaction (or its own)."""
    with transaction.atomic(savepoint=False):
        decision = Decision.objects.create(
            kind=kind,
            outcome=DecisionOutcome.APPROVED if evaluation.approved else DecisionOutcome.DENIED,
            patient=facts.patient,
            actor=actor,
            inputs=_jsonable(inputs),
            requirements=evaluation.requirements(),
            reasons=evaluation.reasons,
            program_settings=asdict(facts.program),
            request_id=current_request_id(),
        )
        if audit:
            audit_record(
                actor=actor,
                action=f"decision.{kind}",
                subject=decision,
                changes={"outcome": decision.outcome, "reasons": [r["code"] for r in evaluation.reasons]},
            )
    return decision
