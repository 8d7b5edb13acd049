"""The requirements of every gate and the gates themselves (ACT-7, CRS-2..4, GATE-1..5).

A requirement is a pure function of `Facts` returning a `Check`; a decision kind is a `Gate` listing them
(registry/services/gate.py runs it). Adding a requirement (say, a GATE-4 block) is one function here and
one entry in a list below: no view or service changes. Every requirement is evaluated, so a denial lists
*every* unmet one, and the decision is stored with all of them and the settings in force (GATE-5).

`detail` texts are for the prescriber of record and administrators and may name clinical facts;
pharmacies and facilities are answered with the reason codes and neutral texts (registry/api/refusals.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import replace

from dateutil.relativedelta import relativedelta

from registry import rules
from registry.errors import ReasonCode as R
from registry.models import DecisionKind, LabTest, MonitoringRequirement, PatientStatus
from registry.selectors.facts import GATE_LAB_TESTS, Facts
from registry.selectors.pregnancy import positive_test_holds

from .gate import Check, Gate, Requirement, about_patient, requirement_code

BASELINE_LABS = GATE_LAB_TESTS  # ACT-7: all seven
PRE_COURSE_LABS = (LabTest.CBC_DIFFERENTIAL, LabTest.SERUM_CREATININE, LabTest.URINALYSIS)


def _sentence(parts: list[str]) -> str:
    """Joins problem phrases into one sentence without lower-casing acronyms (HIV, TB)."""
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def _ok(name: str) -> Check:
    return Check(name, True)


def _fail(name: str, code: str, detail: str, *, private: bool = False) -> Check:
    return Check(name, False, code, detail, private=private)


def _not_evaluated(name: str, code: str) -> Check:
    return Check(name, False, code, "Not evaluated: the patient was not identified.", evaluated=False)


def needs_patient(code: str) -> Callable[[Requirement], Requirement]:
    """A requirement about the patient cannot be evaluated without one; it is recorded as not evaluated
    and left out of the reasons (only `patient_not_found` is given, ID-4). It is also never evaluated for
    a pharmacy or facility that is not itself certified (gate.about_patient)."""

    def wrap(fn: Requirement) -> Requirement:
        def checked(f: Facts) -> Check:
            if f.patient is None:
                return _not_evaluated(fn.__name__, code)
            return fn(f)

        checked.__name__ = fn.__name__
        checked.__doc__ = fn.__doc__
        checked.reason_code = code  # type: ignore[attr-defined]
        checked.about_patient = True  # type: ignore[attr-defined]
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
    return _fail("pharmacy_certified", R.PHARMACY_NOT_CERTIFIED, "The pharmacy is not certified.")


def facility_certified(f: Facts) -> Check:
    """GATE-1, GATE-3: the infusion site is certified."""
    if f.facility is not None and f.facility.is_certified_at(f.now):
        return _ok("facility_certified")
    detail = (
        "No registered facility has this NPI." if f.facility is None else "The facility is not certified."
    )
    return _fail("facility_certified", R.FACILITY_NOT_CERTIFIED, detail)


def prescriber_certified(f: Facts) -> Check:
    """GATE-1: the prescriber on the prescription is certified."""
    if f.prescriber is not None and f.prescriber.is_certified_at(f.now):
        return _ok("prescriber_certified")
    detail = (
        "No registered prescriber has this NPI."
        if f.prescriber is None
        else "The prescriber is not certified."
    )
    return _fail("prescriber_certified", R.PRESCRIBER_NOT_CERTIFIED, detail)


@needs_patient(R.PRESCRIBER_NOT_OF_RECORD)
def prescriber_of_record(f: Facts) -> Check:
    """GATE-1: the prescriber on the prescription is the patient's prescriber of record."""
    assert f.patient is not None
    if f.prescriber is not None and f.prescriber.pk == f.patient.prescriber_id:
        return _ok("prescriber_of_record")
    return _fail(
        "prescriber_of_record",
        R.PRESCRIBER_NOT_OF_RECORD,
        "The prescriber is not the patient's prescriber of record.",
    )


@needs_patient(R.PRESCRIBER_NOT_CERTIFIED)
def prescriber_of_record_certified(f: Facts) -> Check:
    """ACT-1, ACT-6: the patient's prescriber of record is certified."""
    assert f.patient is not None
    if f.patient.prescriber.is_certified_at(f.now):
        return _ok("prescriber_of_record_certified")
    return _fail(
        "prescriber_of_record_certified",
        R.PRESCRIBER_NOT_CERTIFIED,
        "The patient's prescriber of record is not certified.",
    )


# --- Patient ---------------------------------------------------------------------------------------


def patient_found(f: Facts) -> Check:
    """ID-4: identified by registry ID and date of birth; unknown ID and mismatch read the same."""
    if f.patient is not None:
        return _ok("patient_found")
    return _fail(
        "patient_found", R.PATIENT_NOT_FOUND, "No patient matches this registry ID and date of birth."
    )


@needs_patient(R.PATIENT_NOT_AUTHORIZED)
def patient_authorized(f: Facts) -> Check:
    """ACT-7, ACT-8: only an authorized patient may receive the drug."""
    assert f.patient is not None
    if f.patient.status == PatientStatus.AUTHORIZED:
        return _ok("patient_authorized")
    return _fail(
        "patient_authorized", R.PATIENT_NOT_AUTHORIZED, f"The patient is {f.patient.status}, not authorized."
    )


@needs_patient(R.CONTRAINDICATION_RECORDED)
def no_contraindication(f: Facts) -> Check:
    """ACT-9, GATE-4: a recorded contraindication blocks treatment."""
    if not f.contraindication_kinds:
        return _ok("no_contraindication")
    return _fail(
        "no_contraindication",
        R.CONTRAINDICATION_RECORDED,
        "Contraindication recorded: " + ", ".join(f.contraindication_kinds) + ".",
    )


@needs_patient(R.ATTESTATION_WITHDRAWN)
def attestations_hold(f: Facts) -> Check:
    """ACT-7, ACT-9, GATE-4: the newest screening still attests HIV negative and no active infection. A
    later screening that withdraws either holds course planning, dispense authorization and infusion
    (and revoked the outstanding numbers when it was recorded, like a contraindication)."""
    s = f.screening
    withdrawn = []
    if s is not None and not s.hiv_negative:
        withdrawn.append("HIV negative")
    if s is not None and not s.no_active_infection:
        withdrawn.append("no active infection")
    if not withdrawn:
        return _ok("attestations_hold")
    return _fail(
        "attestations_hold",
        R.ATTESTATION_WITHDRAWN,
        "The newest screening withdraws: " + ", ".join(withdrawn) + ".",
    )


def _missing_or_stale(f: Facts, tests: Sequence[str], ref: dt.date, max_age_days: int) -> list[str]:
    earliest = ref - dt.timedelta(days=max_age_days)
    out = []
    for test in tests:
        on = f.latest_lab_on.get(test)
        if on is None or on < earliest or on > ref:
            out.append(test)
    return out


@needs_patient(R.BASELINE_INCOMPLETE)
def baseline_labs_complete(f: Facts) -> Check:
    """ACT-7: CBC with differential, creatinine, urinalysis, urine protein/creatinine ratio, thyroid, liver
    tests and skin exam, each collected no more than 30 days (*setting*) before the reference day."""
    missing = _missing_or_stale(f, BASELINE_LABS, reference_date(f), f.program.baseline_lab_max_age_days)
    if not missing:
        return _ok("baseline_labs_complete")
    return _fail(
        "baseline_labs_complete",
        R.BASELINE_INCOMPLETE,
        f"Missing or older than {f.program.baseline_lab_max_age_days} days: {', '.join(missing)}.",
    )


@needs_patient(R.SCREENING_INCOMPLETE)
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
    return _fail("screening_complete", R.SCREENING_INCOMPLETE, _sentence(problems))


@needs_patient(R.PREGNANCY_TEST_REQUIRED)
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
        R.PREGNANCY_TEST_REQUIRED,
        f"A negative pregnancy test within {f.program.pregnancy_test_max_age_days} days is required.",
    )


# --- Courses (CRS-2..4) ----------------------------------------------------------------------------


def earliest_next_course_on(f: Facts) -> dt.date | None:
    """CRS-2: 12 calendar months (*setting*) after the last infusion of any prior course."""
    last = max((c.last_infusion_on for c in f.prior_courses if c.last_infusion_on), default=None)
    if last is None:
        return None
    return last + relativedelta(months=f.program.course_interval_months)


def is_dispense_authorization(f: Facts) -> bool:
    return bool(f.request.get("doses_requested"))


@needs_patient(R.COURSE_INTERVAL_NOT_MET)
def course_interval_met(f: Facts) -> Check:
    """CRS-2: course 2 and later start no earlier than 12 months after the last infusion of a prior
    course. Checked for the first dose of a course only: at planning against the planned start, at the
    infusion against the infusion day. A pharmacy may be authorized up to `authorization_lead_days`
    (*setting*, default 7) before that earliest day, so the drug can ship ahead (the infusion still
    waits for the day)."""
    if not first_dose_pending(f):
        return _ok("course_interval_met")
    earliest = earliest_next_course_on(f)
    if earliest is None:
        return _ok("course_interval_met")
    lead = f.program.authorization_lead_days if is_dispense_authorization(f) else 0
    if reference_date(f) >= earliest - dt.timedelta(days=lead):
        return _ok("course_interval_met")
    detail = f"Course {upcoming_course_number(f)} may not start before {earliest.isoformat()}."
    if lead:
        opens = earliest - dt.timedelta(days=lead)
        detail += f" A dispense may be authorized from {opens.isoformat()}."
    return _fail("course_interval_met", R.COURSE_INTERVAL_NOT_MET, detail)


@needs_patient(R.COURSE_DOSE_WINDOW_MISSED)
def dose_within_course_window(f: Facts) -> Check:
    """CRS-2: the doses of a course are given on consecutive days: each after the one before, and all
    within planned doses - 1 + `course_dose_allowance_days` (*setting*) from the first; a missed day
    beyond that is `course_dose_window_missed`. A course cannot be
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
            R.COURSE_DOSE_WINDOW_MISSED,
            f"Dose {course.doses_given + 1} of course {course.number} must come after the dose of "
            f"{course.last_infusion_on.isoformat()}.",
        )
    last_day = course.first_infusion_on + dt.timedelta(
        days=course.planned_doses - 1 + f.program.course_dose_allowance_days
    )
    if ref > last_day:
        return _fail(
            "dose_within_course_window",
            R.COURSE_DOSE_WINDOW_MISSED,
            f"Course {course.number} began {course.first_infusion_on.isoformat()}; its doses are given by "
            f"{last_day.isoformat()}. Cancel it and plan a new course.",
        )
    return _ok("dose_within_course_window")


@needs_patient(R.PRE_COURSE_LABS_STALE)
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
        R.PRE_COURSE_LABS_STALE,
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
    wrapped.reason_code = requirement_code(check)  # type: ignore[attr-defined]
    wrapped.about_patient = about_patient(check)  # type: ignore[attr-defined]
    # Listed as pending at course planning only when the course planned is course 1.
    wrapped.applies_to = lambda f: upcoming_course_number(f) == 1  # type: ignore[attr-defined]
    return wrapped


course_1_baseline_labs = _course_1_first_dose(baseline_labs_complete, "course_1_baseline_labs")
course_1_screening = _course_1_first_dose(screening_complete, "course_1_screening")
course_1_pregnancy_test = _course_1_first_dose(pregnancy_test_negative, "course_1_pregnancy_test")


@needs_patient(R.OPEN_COURSE_EXISTS)
def no_open_course(f: Facts) -> Check:
    """CRS-3: at most one open course per patient."""
    course = f.open_course
    if course is None:
        return _ok("no_open_course")
    return _fail("no_open_course", R.OPEN_COURSE_EXISTS, f"Course {course.number} is still {course.status}.")


@needs_patient(R.NO_OPEN_COURSE)
def open_course(f: Facts) -> Check:
    """GATE-1, GATE-3: a dose belongs to the patient's open course."""
    if f.open_course is not None:
        return _ok("open_course")
    return _fail("open_course", R.NO_OPEN_COURSE, "The patient has no planned or in-progress course.")


@needs_patient(R.COURSE_DOSES_EXHAUSTED)
def course_doses_remaining(f: Facts) -> Check:
    """GATE-1, GATE-3: the open course still has a dose to give (GATE-1 also counts doses already
    committed to active authorizations and dispenses)."""
    course = f.open_course
    if course is None:
        return _ok("course_doses_remaining")  # reported by open_course
    remaining = (
        course.available_doses if f.request.get("doses_requested") else course.doses_remaining_to_infuse
    )
    if remaining > 0:
        return _ok("course_doses_remaining")
    return _fail(
        "course_doses_remaining",
        R.COURSE_DOSES_EXHAUSTED,
        f"Course {course.number} has no doses left to {'authorize' if f.request.get('doses_requested') else 'give'}.",
    )


@needs_patient(R.DOSES_EXCEED_REMAINING)
def doses_within_remaining(f: Facts) -> Check:
    """GATE-1: the doses requested fit in what the open course has left."""
    course = f.open_course
    requested = int(f.request.get("doses_requested") or 0)
    if course is None or course.available_doses == 0 or requested <= course.available_doses:
        return _ok("doses_within_remaining")
    return _fail(
        "doses_within_remaining",
        R.DOSES_EXCEED_REMAINING,
        f"{requested} doses requested; course {course.number} has {course.available_doses} left to authorize.",
    )


# --- The infusion itself (GATE-3, CRS-1) -----------------------------------------------------------


def dose_is_standard(f: Facts) -> Check:
    """CRS-1: every dose is 12 mg."""
    if f.request.get("dose_mg") == rules.DOSE_MG:
        return _ok("dose_is_standard")
    return _fail("dose_is_standard", R.INVALID_DOSE, f"Each dose is {rules.DOSE_MG} mg IV.")


@needs_patient(R.DUPLICATE_INFUSION_DAY)
def one_infusion_per_day(f: Facts) -> Check:
    """CRS-1: at most one infusion per calendar day."""
    if not f.infused_on_date:
        return _ok("one_infusion_per_day")
    return _fail(
        "one_infusion_per_day", R.DUPLICATE_INFUSION_DAY, "An infusion is already recorded for this day."
    )


@needs_patient(R.NO_DISPENSE_FOR_FACILITY)
def dispense_backs_infusion(f: Facts) -> Check:
    """GATE-2, GATE-3: every infusion is backed by a dispense: one to this facility, of this patient, for
    the open course, with a vial left (one dispense backs at most `vials` infusions). The infusion names it
    (`dispense_id`), or it is found when exactly one such dispense exists. Only an administrator recording
    legacy history is exempt (the infusion record says so)."""
    if f.request.get("legacy_history"):
        return _ok("dispense_backs_infusion")
    course, patient = f.open_course, f.patient
    assert patient is not None
    if course is None:
        return _ok("dispense_backs_infusion")  # reported by open_course
    d = f.dispense
    if not f.request.get("dispense_id"):
        if d is not None:
            return _ok("dispense_backs_infusion")
        detail = (
            f"More than one dispense to this facility for course {course.number} has vials left; name one"
            " with dispense_id."
            if f.dispense_candidates > 1
            else f"No dispense to this facility for course {course.number} has a vial left."
        )
        return _fail("dispense_backs_infusion", R.NO_DISPENSE_FOR_FACILITY, detail)
    if (
        d is None
        or d.patient_id != patient.pk
        or (f.facility is not None and d.facility_id != f.facility.pk)
        or d.course_id != course.id
    ):
        return _fail(
            "dispense_backs_infusion",
            R.NO_DISPENSE_FOR_FACILITY,
            "No dispense of this patient to this facility for the open course has this id.",
        )
    if d.vials_infused >= d.vials:
        return _fail(
            "dispense_backs_infusion",
            R.NO_DISPENSE_FOR_FACILITY,
            f"All {d.vials} vial(s) of this dispense are infused.",
        )
    return _ok("dispense_backs_infusion")


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
    return _fail("premedication_given", R.PREMEDICATION_MISSING, _sentence(missing))


def observation_long_enough(f: Facts) -> Check:
    """GATE-3: at least 120 minutes of post-infusion observation."""
    minutes = f.request.get("observation_minutes")
    if minutes is not None and minutes >= rules.MIN_OBSERVATION_MINUTES:
        return _ok("observation_long_enough")
    return _fail(
        "observation_long_enough",
        R.OBSERVATION_TOO_SHORT,
        f"Post-infusion observation must be at least {rules.MIN_OBSERVATION_MINUTES} minutes.",
    )


# --- Pregnancy (PRG-4, GATE-4) --------------------------------------------------------------------


@needs_patient(R.PREGNANCY_OPEN)
def no_open_pregnancy(f: Facts) -> Check:
    """PRG-4, GATE-4: an open pregnancy report (no outcome yet) holds course planning, dispense
    authorization and the infusion check; so does a positive pregnancy test on file with no later negative
    test, until a report resolves it (an outcome on or after the test's day) or a later negative test is
    recorded. Applies whatever the patient's recorded reproductive potential: a positive test is a fact.
    Private: pharmacies and facilities read only the code and the neutral hold text (api/refusals.py)."""
    if f.pregnancy_report_open:
        return _fail(
            "no_open_pregnancy",
            R.PREGNANCY_OPEN,
            "A pregnancy report is open: treatment is held until its outcome is recorded.",
            private=True,
        )
    if positive_test_holds(
        positive_on=f.latest_positive_pregnancy_on,
        negative_on=f.latest_negative_pregnancy_on,
        latest_outcome_on=f.pregnancy_latest_outcome_on,
    ):
        return _fail(
            "no_open_pregnancy",
            R.PREGNANCY_OPEN,
            "A positive pregnancy test is on file with no later negative test: treatment is held.",
            private=True,
        )
    return _ok("no_open_pregnancy")


# --- Monitoring (MON-3, MON-4, GATE-4; issue 10) ---------------------------------------------------
# The facts come from the stored schedule at the moment of the check (selectors/monitoring.py), never from
# flags or from when the sweep last ran. Pharmacies read the neutral text of registry/api/refusals.py.


def _requirement_names(requirements: Sequence[str]) -> str:
    return ", ".join(r.replace("_", " ") for r in requirements)


@needs_patient(R.MONITORING_OVERDUE)
def monitoring_current(f: Facts) -> Check:
    """MON-1..3, GATE-4: no monitoring lab overdue for more than 30 days (*setting*) counted from its due
    date plus the 7-day grace (*setting*). Blocks course planning and dispense authorization."""
    overdue = [r for r in f.monitoring_blocking if r != MonitoringRequirement.STATUS_FORM]
    if not overdue:
        return _ok("monitoring_current")
    return _fail(
        "monitoring_current",
        R.MONITORING_OVERDUE,
        f"Monitoring overdue beyond the grace and blocking period: {_requirement_names(overdue)}.",
    )


@needs_patient(R.STATUS_FORM_OVERDUE)
def status_form_current(f: Facts) -> Check:
    """MON-4, GATE-4: the patient status form is not overdue beyond the blocking period (counted like
    MON-3). Blocks course planning and dispense authorization."""
    if MonitoringRequirement.STATUS_FORM not in f.monitoring_blocking:
        return _ok("status_form_current")
    return _fail(
        "status_form_current",
        R.STATUS_FORM_OVERDUE,
        "The patient status form is overdue beyond the grace and blocking period.",
    )


# --- Decision kinds ---------------------------------------------------------------------------------

AUTHORIZATION_REQUIREMENTS: tuple[Requirement, ...] = (
    prescriber_of_record_certified,
    baseline_labs_complete,
    screening_complete,
    pregnancy_test_negative,
    no_contraindication,
)
COURSE_REQUIREMENTS: tuple[Requirement, ...] = (
    prescriber_of_record_certified,
    patient_authorized,
    no_contraindication,
    attestations_hold,
    no_open_pregnancy,  # PRG-4
    no_open_course,
    course_interval_met,
    monitoring_current,
    status_form_current,
)
# Issue 9 item 5: what depends on the day of the first dose (the labs' age, the pregnancy test's, the
# vaccinations' lead) cannot be known when a course is planned up to a year ahead. Planning lists these as
# pending; they are checked at the dispense authorization (against its day) and at the first dose (against
# the infusion day), where they are in DISPENSE_REQUIREMENTS and INFUSION_REQUIREMENTS.
COURSE_PENDING: tuple[Requirement, ...] = (
    pre_course_labs_fresh,
    course_1_baseline_labs,
    course_1_screening,
    course_1_pregnancy_test,
)
DISPENSE_REQUIREMENTS: tuple[Requirement, ...] = (
    pharmacy_certified,
    facility_certified,
    prescriber_certified,
    patient_found,
    prescriber_of_record,
    patient_authorized,
    no_contraindication,
    attestations_hold,
    no_open_pregnancy,  # PRG-4
    open_course,
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
    prescriber_of_record_certified,
    patient_authorized,
    no_contraindication,
    attestations_hold,
    no_open_pregnancy,  # PRG-4
    open_course,
    course_doses_remaining,
    course_interval_met,
    dose_within_course_window,
    pre_course_labs_fresh,
    course_1_baseline_labs,
    course_1_screening,
    course_1_pregnancy_test,
    one_infusion_per_day,
    dispense_backs_infusion,
    dose_is_standard,
    premedication_given,
    observation_long_enough,
)


patient_found.reason_code = R.PATIENT_NOT_FOUND  # type: ignore[attr-defined]
patient_found.about_patient = True  # type: ignore[attr-defined]

# The gates (GATE-1..5). The infusion and its check share one requirement list.
PATIENT_AUTHORIZATION_GATE = Gate(DecisionKind.PATIENT_AUTHORIZATION, list(AUTHORIZATION_REQUIREMENTS))
COURSE_PLAN_GATE = Gate(DecisionKind.COURSE_PLAN, list(COURSE_REQUIREMENTS), pending=list(COURSE_PENDING))
DISPENSE_GATE = Gate(
    DecisionKind.DISPENSE_AUTHORIZATION,
    list(DISPENSE_REQUIREMENTS),
    caller="pharmacy_certified",
    audit_approval=False,
    # services/dispensing.py: the number, its audit event and the decision are one all-or-nothing statement.
    one_statement_approval=True,
)
INFUSION_GATE = Gate(DecisionKind.INFUSION, list(INFUSION_REQUIREMENTS), caller="facility_certified")
INFUSION_CHECK_GATE = Gate(
    DecisionKind.INFUSION_CHECK,
    INFUSION_GATE.requirements,
    caller="facility_certified",
    extensions=INFUSION_GATE.extensions,
)
GATES = (PATIENT_AUTHORIZATION_GATE, COURSE_PLAN_GATE, DISPENSE_GATE, INFUSION_GATE, INFUSION_CHECK_GATE)
