"""Pregnancy surveillance (PRG-1..5): filing a report, classifying its exposure, recording the outcome and
the infant follow-up, the gate's hold, the reminders, and the contraception window.

Every write holds the patient lock (the lock every gate decision takes, selectors/facts.py), so no course
plan, dispense authorization or infusion decides on facts from before a report was filed or resolved, or
before a positive pregnancy test was recorded.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from registry import rules
from registry.errors import Conflict, ErrorCode, InvalidTransition, ReasonCode, ValidationFailed
from registry.localtime import local_today
from registry.middleware import current_request_id
from registry.models import (
    Course,
    Exposure,
    LabOutcome,
    LabResult,
    LabTest,
    Patient,
    PregnancyOutcome,
    PregnancyReport,
    PregnancyStatus,
    ReminderKind,
    RevokeCategory,
    User,
)
from registry.selectors.pregnancy import positive_test_holds

from .audit import audit_record, audit_record_many
from .monitoring import EXTRA_DIGEST_SOURCES, DigestLine
from .revocation import authorizations_revoke_where

PRS = PregnancyStatus

# Fields a PATCH may carry (API.md "Monitoring flags and pregnancy").
DATE_FIELDS = ("reported_on", "lmp_on", "estimated_conception_on", "estimated_due_on")
OUTCOME_FIELDS = (
    "outcome",
    "outcome_on",
    "gestational_age_weeks",
    "birth_weight_grams",
    "major_malformation",
    "maternal_thyroid_status",
    "outcome_notes",
)
FOLLOW_UP_FIELDS = ("infant_follow_up_on", "infant_follow_up_notes")
LIVE_BIRTH_ONLY = ("gestational_age_weeks", "birth_weight_grams")
MAX_GESTATION_WEEKS = 44  # a due date further from conception than this is a typing error


class NoReproductivePotential(Conflict):
    code = ErrorCode.NO_REPRODUCTIVE_POTENTIAL
    default_detail = "The patient is not of reproductive potential; no pregnancy report can be filed."


class PregnancyReportOpen(Conflict):
    code = ErrorCode.PREGNANCY_REPORT_OPEN
    default_detail = "The patient already has an open pregnancy report; record its outcome first."


# --- PRG-1: the contraception window --------------------------------------------------------------------


def contraception_required_until(
    patient: Patient, program: rules.ProgramSettings | None = None
) -> dt.date | None:
    """PRG-1: a patient of reproductive potential uses contraception during a course and for 4 months
    (*setting*) after its last infusion: the last infusion of the latest course is the patient's latest
    infusion (courses follow one another). None before any infusion and for patients without reproductive
    potential. No query: the latest infusion day is stored on the patient."""
    if not patient.reproductive_potential or patient.last_infusion_on is None:
        return None
    months = (program or rules.current()).pregnancy_exposure_months_after_course
    return patient.last_infusion_on + relativedelta(months=months)


# --- PRG-2: exposure ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExposureResult:
    exposure: str
    course: Course | None

    @property
    def course_number(self) -> int | None:
        return self.course.number if self.course is not None else None


def exposure_classify(
    *, courses: Iterable[Course], conception_on: dt.date, program: rules.ProgramSettings
) -> ExposureResult:
    """PRG-2 (pure): exposed when conception falls between the first infusion of a course and 4 months
    (*setting*, calendar months) after its last infusion, both days included; the course is named. Courses
    without an infusion expose nothing. Should windows ever overlap (a setting longer than the course
    interval), the latest course is named."""
    months = program.pregnancy_exposure_months_after_course
    exposing = [
        c
        for c in courses
        if c.first_infusion_on is not None
        and c.last_infusion_on is not None
        and c.first_infusion_on <= conception_on <= c.last_infusion_on + relativedelta(months=months)
    ]
    if not exposing:
        return ExposureResult(Exposure.NOT_EXPOSED, None)
    return ExposureResult(Exposure.EXPOSED, max(exposing, key=lambda c: (c.first_infusion_on, c.number)))


def pregnancy_exposure(
    *, patient_id: Any, conception_on: dt.date, program: rules.ProgramSettings
) -> ExposureResult:
    """PRG-2 from the patient's courses, as recorded: one query."""
    courses = Course.objects.filter(patient_id=patient_id, first_infusion_on__isnull=False)
    return exposure_classify(courses=courses, conception_on=conception_on, program=program)


# --- Dates (PRG-2) --------------------------------------------------------------------------------------


def _derive(values: dict[str, Any], *, conception_given: bool, due_given: bool) -> None:
    """PRG-2: conception = LMP + 14 days when only the LMP is known; the due date = LMP + 280 days, or
    conception + 266 days, when none is given. A derived date follows a corrected LMP or conception."""
    lmp = values.get("lmp_on")
    if conception_given:
        values["conception_derived"] = False
    elif values.get("conception_derived") or values.get("estimated_conception_on") is None:
        if lmp is None:
            raise ValidationFailed(
                {"lmp_on": ["Give the last menstrual period or the estimated conception date."]}
            )
        values["estimated_conception_on"] = lmp + dt.timedelta(days=rules.CONCEPTION_AFTER_LMP_DAYS)
        values["conception_derived"] = True
    if due_given:
        values["due_on_derived"] = False
    elif values.get("due_on_derived") or values.get("estimated_due_on") is None:
        if lmp is not None:
            values["estimated_due_on"] = lmp + dt.timedelta(days=rules.DUE_AFTER_LMP_DAYS)
        else:
            values["estimated_due_on"] = values["estimated_conception_on"] + dt.timedelta(
                days=rules.DUE_AFTER_CONCEPTION_DAYS
            )
        values["due_on_derived"] = True


def _future_errors(data: dict[str, Any], today: dt.date) -> None:
    """No date given may be in the future (the due date aside); checked before anything is derived from
    them."""
    errors = {
        name: ["Cannot be in the future."]
        for name in (*DATE_FIELDS, "outcome_on", "infant_follow_up_on")
        if name != "estimated_due_on" and data.get(name) is not None and data[name] > today
    }
    if errors:
        raise ValidationFailed(errors)


def _date_errors(values: dict[str, Any], today: dt.date) -> dict[str, list[str]]:
    """PRG-2: no date in the future; conception (entered or derived) on or before the report date and
    not before the LMP; the due date after conception. An error on a derived date names the field it was
    derived from."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    reported, lmp, conception = values["reported_on"], values.get("lmp_on"), values["estimated_conception_on"]
    for name in ("reported_on", "lmp_on", "outcome_on", "infant_follow_up_on"):
        if values.get(name) is not None and values[name] > today:
            add(name, "Cannot be in the future.")
    conception_field = "lmp_on" if values.get("conception_derived") else "estimated_conception_on"
    if conception > today:
        add(conception_field, "The estimated conception date cannot be in the future.")
    elif conception > reported:
        add(conception_field, "The estimated conception date cannot be after the report date.")
    if lmp is not None and lmp > conception:
        add("estimated_conception_on", "Cannot be before the last menstrual period.")
    if values["estimated_due_on"] <= conception:
        add("estimated_due_on", "Must be after the estimated conception date.")
    elif values["estimated_due_on"] > conception + dt.timedelta(weeks=MAX_GESTATION_WEEKS):
        # A typo here (the wrong year) would postpone the outcome-overdue reminder (PRG-4) by a year.
        add(
            "estimated_due_on",
            f"Must be within {MAX_GESTATION_WEEKS} weeks of the estimated conception date.",
        )
    return errors


# --- PRG-3: outcome -------------------------------------------------------------------------------------


def _outcome_errors(values: dict[str, Any]) -> dict[str, list[str]]:
    """PRG-3: gestational age and birth weight only for live births (and required there, with major
    malformation yes/no); the maternal thyroid status is recorded with any outcome; the outcome date is not
    before conception (and not in the future: _date_errors); follow-up only after a live birth, not before
    its outcome."""
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    outcome = values.get("outcome") or ""
    live = outcome == PregnancyOutcome.LIVE_BIRTH
    if not outcome:
        for name in ("outcome_on", "major_malformation", "maternal_thyroid_status", *LIVE_BIRTH_ONLY):
            if values.get(name) not in (None, ""):
                add(name, "Record the outcome with it.")
        if values.get("infant_follow_up_on") is not None:
            add("infant_follow_up_on", "Infant follow-up follows a live birth outcome.")
        return errors
    if values.get("outcome_on") is None:
        add("outcome_on", "Required with the outcome.")
    elif values["outcome_on"] < values["estimated_conception_on"]:
        add("outcome_on", "Cannot be before the estimated conception date.")
    if not values.get("maternal_thyroid_status"):
        add("maternal_thyroid_status", "Required with the outcome (PRG-3).")
    for name in LIVE_BIRTH_ONLY:
        if live and values.get(name) is None:
            add(name, "Required for a live birth.")
        if not live and values.get(name) is not None:
            add(name, "Only recorded for a live birth.")
    if live and values.get("major_malformation") is None:
        add("major_malformation", "Required for a live birth (yes or no).")
    follow_up = values.get("infant_follow_up_on")
    if follow_up is not None:
        if not live:
            add("infant_follow_up_on", "Infant follow-up follows a live birth only.")
        elif values.get("outcome_on") is not None and follow_up < values["outcome_on"]:
            add("infant_follow_up_on", "Cannot be before the outcome date.")
    return errors


def _status_for(values: dict[str, Any]) -> str:
    if not values.get("outcome"):
        return PRS.OPEN
    if values["outcome"] == PregnancyOutcome.LIVE_BIRTH and values.get("infant_follow_up_on") is None:
        return PRS.OUTCOME_RECORDED
    return PRS.CLOSED


def _reminder_dates(values: dict[str, Any]) -> None:
    """PRG-4, STYLE.md 6: the reminder due dates are stored with the report, so the sweep compares."""
    values["outcome_overdue_on"] = values["estimated_due_on"] + dt.timedelta(
        days=rules.PREGNANCY_OUTCOME_OVERDUE_DAYS
    )
    live = values.get("outcome") == PregnancyOutcome.LIVE_BIRTH and values.get("outcome_on") is not None
    values["infant_follow_up_due_on"] = (
        values["outcome_on"] + relativedelta(months=rules.INFANT_FOLLOW_UP_MONTHS) if live else None
    )


# --- Filing and updating (PRG-2..4) ----------------------------------------------------------------------


def _lock_patient(patient_id: Any) -> Patient:
    """The patient row, locked as the gates lock it (selectors/facts.py)."""
    return Patient.objects.select_for_update(of=("self",)).get(pk=patient_id)


def pregnancy_report_file(
    *, patient: Patient, actor: User, data: dict[str, Any], now: dt.datetime
) -> PregnancyReport:
    """PRG-2, PRG-4: the prescriber of record, its delegate or an administrator reports a pregnancy of a
    patient of reproductive potential, with the LMP or the estimated conception date (conception derived
    as LMP + 14 days when only the LMP is given) and optionally the due date (derived otherwise). The
    registry classifies the exposure from the patient's infusions and names the course. Filing holds the
    gate (`pregnancy_open`) and revokes the patient's outstanding authorization numbers, in the same
    transaction.

    Raises ValidationFailed (neither date, a date in the future, inconsistent dates),
    NoReproductivePotential (409) and PregnancyReportOpen (409: a second open report; also a database
    constraint)."""
    today = local_today(actor, now)
    if data.get("lmp_on") is None and data.get("estimated_conception_on") is None:
        raise ValidationFailed(
            {"lmp_on": ["Give the last menstrual period or the estimated conception date."]},
            "One of lmp_on or estimated_conception_on is required.",
        )
    _future_errors(data, today)
    values: dict[str, Any] = {name: data[name] for name in DATE_FIELDS if data.get(name) is not None}
    _derive(
        values,
        conception_given=data.get("estimated_conception_on") is not None,
        due_given=data.get("estimated_due_on") is not None,
    )
    errors = _date_errors(values, today)
    if errors:
        raise ValidationFailed(errors)
    _reminder_dates(values)
    program = rules.current()
    with transaction.atomic():
        locked = _lock_patient(patient.pk)
        if not locked.reproductive_potential:
            raise NoReproductivePotential()
        if PregnancyReport.objects.filter(patient=locked, status=PRS.OPEN).exists():
            raise PregnancyReportOpen()
        exposure = pregnancy_exposure(
            patient_id=locked.pk, conception_on=values["estimated_conception_on"], program=program
        )
        try:
            with transaction.atomic():
                report = PregnancyReport.objects.create(
                    patient=locked,
                    reported_by=actor,
                    exposure=exposure.exposure,
                    exposed_course=exposure.course,
                    exposure_computed_at=now,
                    status=PRS.OPEN,
                    **values,
                )
        except IntegrityError as exc:  # the partial unique index: a concurrent filing won
            raise PregnancyReportOpen() from exc
        revoked = authorizations_revoke_where(
            actor=actor,
            now=now,
            reason="Pregnancy reported (PRG-4)",
            category=RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE,
            patient=locked,
        )
        audit_record(
            actor=actor,
            action="pregnancy_report.file",
            subject=report,
            at=now,
            changes={
                "patient": locked.pk,
                **values,
                "exposure": exposure.exposure,
                "exposed_course": exposure.course.pk if exposure.course else None,
                "exposed_course_number": exposure.course_number,
                "status": PRS.OPEN,
                "authorizations_revoked": revoked,
            },
        )
    return report


def _current_values(report: PregnancyReport) -> dict[str, Any]:
    names = (
        *DATE_FIELDS,
        "conception_derived",
        "due_on_derived",
        *OUTCOME_FIELDS,
        *FOLLOW_UP_FIELDS,
        "outcome_overdue_on",
        "infant_follow_up_due_on",
    )
    return {name: getattr(report, name) for name in names}


def _exposure_changes(report: PregnancyReport, exposure: ExposureResult) -> dict[str, list[Any]]:
    old = report.exposed_course
    if exposure.exposure == report.exposure and exposure.course == old:
        return {}
    return {
        "exposure": [report.exposure, exposure.exposure],
        "exposed_course": [old.pk if old else None, exposure.course.pk if exposure.course else None],
        "exposed_course_number": [old.number if old else None, exposure.course_number],
    }


def pregnancy_report_changes(
    *, report: PregnancyReport, data: dict[str, Any], today: dt.date
) -> tuple[dict[str, Any], str]:
    """The report's values and status as they would be after `data` (pure: PRG-2 derivations, PRG-3
    validation; no query). Raises ValidationFailed, or InvalidTransition for a change to a closed report's
    outcome or follow-up, or for withdrawing a recorded outcome. The admin form runs it to show errors
    before saving; pregnancy_report_update runs it under the lock."""
    before = _current_values(report)
    final = (*OUTCOME_FIELDS, *FOLLOW_UP_FIELDS)
    if report.status == PRS.CLOSED and any(n in data and data[n] != before[n] for n in final):
        raise InvalidTransition(
            "The report is closed: its outcome and infant follow-up are final.", status=report.status
        )
    if report.outcome and "outcome" in data and not data["outcome"]:
        raise InvalidTransition("A recorded outcome cannot be withdrawn.", status=report.status)
    _future_errors(data, today)
    values = dict(before)
    values.update({name: data[name] for name in (*DATE_FIELDS, *final) if name in data})
    if before["outcome"] == PregnancyOutcome.LIVE_BIRTH and values["outcome"] != PregnancyOutcome.LIVE_BIRTH:
        # A live birth corrected to another outcome (PRG-3: a report not yet closed): the values only a
        # live birth has go with it, unless the correction sends them (then they are refused below).
        for name in LIVE_BIRTH_ONLY:
            if name not in data:
                values[name] = None
        if "infant_follow_up_notes" not in data:  # there is no infant to follow up
            values["infant_follow_up_notes"] = ""
    for name in ("outcome", "maternal_thyroid_status", "outcome_notes", "infant_follow_up_notes"):
        values[name] = values[name] or ""
    _derive(
        values,
        conception_given="estimated_conception_on" in data or not before["conception_derived"],
        due_given="estimated_due_on" in data or not before["due_on_derived"],
    )
    errors = _date_errors(values, today)
    for name, messages in _outcome_errors(values).items():
        errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationFailed(errors)
    _reminder_dates(values)
    return values, _status_for(values)


def pregnancy_report_update(
    *, report: PregnancyReport, actor: User, data: dict[str, Any], now: dt.datetime
) -> PregnancyReport:
    """PRG-2, PRG-3: corrects dates, records the outcome, or records the infant follow-up, validated on
    the report as it would be after the change.

    - A date correction re-derives the dates that were derived (an entered date stands) and recomputes the
      exposure (PRG-2); a changed exposure is part of the audited change.
    - The outcome moves `open -> outcome_recorded` (a live birth) or `open -> closed` (any other outcome);
      either releases the gate (PRG-4).
    - `infant_follow_up_on` closes a live birth's report (`outcome_recorded -> closed`).
    - A closed report's outcome and follow-up are final: 409 `invalid_status_transition` (its dates may
      still be corrected). A recorded outcome cannot be withdrawn (the serializer takes no empty outcome).

    Lock order: patient, then report (the gates' patient lock comes first)."""
    today = local_today(actor, now)
    with transaction.atomic():
        _lock_patient(report.patient_id)
        locked = (
            PregnancyReport.objects.select_for_update(of=("self",))
            .select_related("exposed_course")
            .get(pk=report.pk)
        )
        before = _current_values(locked)
        values, status = pregnancy_report_changes(report=locked, data=data, today=today)
        changes: dict[str, Any] = {n: [before[n], v] for n, v in values.items() if before[n] != v}
        if status != locked.status:
            changes["status"] = [locked.status, status]
        if values["estimated_conception_on"] != before["estimated_conception_on"]:
            exposure = pregnancy_exposure(
                patient_id=locked.patient_id,
                conception_on=values["estimated_conception_on"],
                program=rules.current(),
            )
            changes.update(_exposure_changes(locked, exposure))
            locked.exposure, locked.exposed_course = exposure.exposure, exposure.course
            locked.exposure_computed_at = now
        if not changes:
            return locked
        action = "pregnancy_report.correct"
        if locked.status == PRS.OPEN and status != PRS.OPEN:
            action = "pregnancy_report.record_outcome"
        elif locked.status == PRS.OUTCOME_RECORDED and status == PRS.CLOSED and values["infant_follow_up_on"]:
            action = "pregnancy_report.record_infant_follow_up"
        for name, value in values.items():
            setattr(locked, name, value)
        locked.status = status
        locked.save()
        audit_record(actor=actor, action=action, subject=locked, changes=changes, at=now)
    return locked


def pregnancy_exposure_recompute(*, report: PregnancyReport, actor: User, now: dt.datetime) -> bool:
    """PRG-2: classifies the exposure again from the patient's courses as now recorded (after infusions of
    the past were imported, say). Audited when it changes; returns whether it changed."""
    with transaction.atomic():
        _lock_patient(report.patient_id)
        locked = (
            PregnancyReport.objects.select_for_update(of=("self",))
            .select_related("exposed_course")
            .get(pk=report.pk)
        )
        exposure = pregnancy_exposure(
            patient_id=locked.patient_id,
            conception_on=locked.estimated_conception_on,
            program=rules.current(),
        )
        changes = _exposure_changes(locked, exposure)
        if not changes:
            return False
        locked.exposure, locked.exposed_course, locked.exposure_computed_at = (
            exposure.exposure,
            exposure.course,
            now,
        )
        locked.save(update_fields=["exposure", "exposed_course", "exposure_computed_at", "updated_at"])
        audit_record(
            actor=actor, action="pregnancy_report.recompute_exposure", subject=locked, changes=changes, at=now
        )
    return True


# --- PRG-4: the gate's hold -------------------------------------------------------------------------------


def pregnancy_tests_hold(*, actor: User, labs: Sequence[LabResult], now: dt.datetime) -> int:
    """PRG-4: recording a positive pregnancy test holds the gate at once: the outstanding authorization
    numbers of each patient whose new positive test is not superseded (by a later negative test, on file or
    among `labs`, or by a report resolved on or after it) are revoked, set-based. Call it inside the lab
    transaction *before* inserting `labs` (unsaved results; other tests are ignored): it takes the patient
    locks first, in primary-key order, as the gates do. At most four queries whatever the batch size.
    Returns the number of authorization numbers revoked."""
    positive: dict[Any, dt.date] = {}
    negative: dict[Any, dt.date] = {}
    for lab in labs:
        if lab.test != LabTest.PREGNANCY_TEST:
            continue
        bucket = positive if lab.result == LabOutcome.POSITIVE else negative
        if lab.result in (LabOutcome.POSITIVE, LabOutcome.NEGATIVE):
            bucket[lab.patient_id] = max(lab.collected_on, bucket.get(lab.patient_id, lab.collected_on))
    if not positive:
        return 0
    list(Patient.objects.select_for_update().filter(pk__in=list(positive)).order_by("pk").values_list("pk"))
    on_file = (
        LabResult.objects.filter(
            patient_id__in=list(positive), test=LabTest.PREGNANCY_TEST, result=LabOutcome.NEGATIVE
        )
        .values_list("patient_id")
        .annotate(last=Max("collected_on"))
    )
    for patient_id, last in on_file:
        negative[patient_id] = max(last, negative.get(patient_id, last))
    outcomes = dict(
        PregnancyReport.objects.filter(patient_id__in=list(positive), outcome_on__isnull=False)
        .values_list("patient_id")
        .annotate(last=Max("outcome_on"))
    )
    held = {
        patient_id: on
        for patient_id, on in positive.items()
        if positive_test_holds(
            positive_on=on, negative_on=negative.get(patient_id), latest_outcome_on=outcomes.get(patient_id)
        )
    }
    if not held:
        return 0
    revoked = authorizations_revoke_where(
        actor=actor,
        now=now,
        reason="Positive pregnancy test (PRG-4)",
        category=RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE,
        patient_id__in=list(held),
    )
    audit_record_many(
        actor=actor,
        action="pregnancy.positive_test_hold",
        subject_type="patient",
        changes_by_id={
            patient_id: {"collected_on": on.isoformat(), "gate": ReasonCode.PREGNANCY_OPEN}
            for patient_id, on in held.items()
        },
        at=now,
    )
    return revoked


def pregnancy_test_hold(*, patient: Patient, actor: User, data: dict[str, Any], now: dt.datetime) -> int:
    """PRG-4 for one lab result about to be recorded (`data` as given to lab_result_record): no query
    unless it is a positive pregnancy test."""
    if data.get("test") != LabTest.PREGNANCY_TEST or data.get("result") != LabOutcome.POSITIVE:
        return 0
    return pregnancy_tests_hold(
        actor=actor,
        labs=[
            LabResult(
                patient_id=patient.pk,
                test=data["test"],
                result=data["result"],
                collected_on=data["collected_on"],
            )
        ],
        now=now,
    )


# --- PRG-4: reminders ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaisedReminder:
    """A reminder raised by this run, with what the prescriber's digest needs (and no more)."""

    reminder_id: uuid.UUID
    report_id: uuid.UUID
    prescriber_id: uuid.UUID
    rems_patient_id: str
    kind: str
    due_on: dt.date


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def pregnancy_reminders_raise(
    *, as_of: dt.date, patient_id_range: tuple[Any, Any] | None = None
) -> list[RaisedReminder]:
    """PRG-4: raises the reminders that became due by `as_of`, once per report and kind, set-based:

    - `outcome_overdue`: no outcome recorded by the estimated due date + 30 days (due on that day);
    - `infant_follow_up_due`: a live birth with no infant follow-up recorded 12 months after its outcome
      date (due on that day).

    The due reports are found by the stored, indexed due dates; what was raised before is skipped (and the
    unique (report, kind) constraint makes concurrent runs harmless). On PostgreSQL one statement inserts the
    reminders and their audit events and returns what the digest needs; elsewhere three (insert, read,
    audit). The number of queries does not depend on the number of reports. Returns only the reminders
    this call created; a second call for the same day returns [].

    `patient_id_range` is `(low, high)`: patient ids with low <= id < high (either end None: open), so a
    sweep can work in slices."""
    postgres = connection.vendor == "postgresql"
    db_date = connection.ops.adapt_datefield_value
    now = timezone.now()
    db_now = connection.ops.adapt_datetimefield_value(now)
    scope, scope_params = "", []
    if patient_id_range is not None:
        low, high = patient_id_range
        pk = Patient._meta.pk
        assert pk is not None
        if low is not None:
            scope += " AND r.patient_id >= %s"
            scope_params.append(pk.get_db_prep_value(_uuid(low), connection))
        if high is not None:
            scope += " AND r.patient_id < %s"
            scope_params.append(pk.get_db_prep_value(_uuid(high), connection))
    selects, due_params = [], []
    for kind, status, due_column in (
        (ReminderKind.OUTCOME_OVERDUE, PRS.OPEN, "outcome_overdue_on"),
        (ReminderKind.INFANT_FOLLOW_UP_DUE, PRS.OUTCOME_RECORDED, "infant_follow_up_due_on"),
    ):
        # Only this module's constants are interpolated (column names); every value is bound.
        selects.append(
            f"SELECT r.id AS report_id, %s AS kind, r.{due_column} AS due_on FROM registry_pregnancyreport r"  # noqa: S608
            f" WHERE r.status = %s AND r.{due_column} <= %s{scope}"
            " AND NOT EXISTS (SELECT 1 FROM registry_pregnancyreminder m WHERE m.report_id = r.id AND m.kind = %s)"
        )
        due_params += [str(kind), str(status), db_date(as_of), *scope_params, str(kind)]
    due = " UNION ALL ".join(selects)
    request_id = current_request_id()
    # Inside the daily sweep this joins the sweep's transaction (no savepoint: the sweep's statement count
    # stays fixed); called on its own it is its own transaction.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if postgres:
            # One statement: the reminders, their audit events and what the digest needs.
            cursor.execute(
                _RAISE_SQL_POSTGRES.format(due=due),
                [*due_params, db_now, db_date(as_of), db_now, as_of.isoformat(), request_id],
            )
            rows = cursor.fetchall()
        else:
            rows = _raise_generic(cursor, due, due_params, now=now, as_of=as_of)
    raised = [
        RaisedReminder(
            reminder_id=_uuid(reminder_id),
            report_id=_uuid(report_id),
            prescriber_id=_uuid(prescriber_id),
            rems_patient_id=rems_patient_id,
            kind=str(kind),
            due_on=due_on if isinstance(due_on, dt.date) else dt.date.fromisoformat(str(due_on)),
        )
        for reminder_id, report_id, kind, due_on, prescriber_id, rems_patient_id in rows
    ]
    raised.sort(key=lambda r: (str(r.prescriber_id), r.rems_patient_id, r.kind))
    return raised


_RAISE_SQL_POSTGRES = """
WITH due AS ({due}),
ins AS (
    INSERT INTO registry_pregnancyreminder (id, created_at, report_id, kind, due_on, raised_on)
    SELECT gen_random_uuid(), %s, due.report_id, due.kind, due.due_on, %s FROM due
    ON CONFLICT (report_id, kind) DO NOTHING
    RETURNING id, report_id, kind, due_on
),
audit AS (
    INSERT INTO registry_auditevent
        (id, created_at, actor_id, actor_role, action, subject_type, subject_id, changes, request_id)
    SELECT gen_random_uuid(), %s, NULL, 'system', 'pregnancy_reminder.raise', 'pregnancyreport', ins.report_id,
        jsonb_build_object(
            'reminder', ins.id::text, 'kind', ins.kind, 'due_on', to_char(ins.due_on, 'YYYY-MM-DD'),
            'raised_on', %s::text
        ),
        %s
    FROM ins
)
SELECT ins.id, ins.report_id, ins.kind, ins.due_on, p.prescriber_id, p.rems_patient_id
FROM ins
JOIN registry_pregnancyreport r ON r.id = ins.report_id
JOIN registry_patient p ON p.id = r.patient_id
"""


def _raise_generic(
    cursor: Any, due: str, due_params: list[Any], *, now: dt.datetime, as_of: dt.date
) -> list[tuple[Any, ...]]:
    """The same in three statements, for SQLite (no data-modifying WITH): insert, read, audit."""
    db_date = connection.ops.adapt_datefield_value
    cursor.execute(
        "INSERT INTO registry_pregnancyreminder (id, created_at, report_id, kind, due_on, raised_on)"  # noqa: S608
        f" SELECT lower(hex(randomblob(16))), %s, due.report_id, due.kind, due.due_on, %s FROM ({due}) due"
        " WHERE true ON CONFLICT (report_id, kind) DO NOTHING RETURNING id, report_id, kind, due_on",
        [connection.ops.adapt_datetimefield_value(now), db_date(as_of), *due_params],
    )
    inserted = cursor.fetchall()
    if not inserted:
        return []
    patients = dict(
        (report_id, (prescriber_id, rems_patient_id))
        for report_id, prescriber_id, rems_patient_id in PregnancyReport.objects.filter(
            pk__in={_uuid(row[1]) for row in inserted}
        ).values_list("pk", "patient__prescriber_id", "patient__rems_patient_id")
    )
    # One reminder per report in a run: a report is either open (outcome overdue) or awaiting its infant
    # follow-up, never both, so the report id keys one event each.
    audit_record_many(
        actor=None,
        action="pregnancy_reminder.raise",
        subject_type="pregnancyreport",
        changes_by_id={
            _uuid(report_id): {
                "reminder": str(_uuid(reminder_id)),
                "kind": kind,
                "due_on": str(due_on)[:10],
                "raised_on": as_of.isoformat(),
            }
            for reminder_id, report_id, kind, due_on in inserted
        },
        at=now,
    )
    return [(*row, *patients[_uuid(row[1])]) for row in inserted]


# --- PRG-4, MON-5: the reminders in the prescribers' daily digest ----------------------------------------

# What the digest calls each reminder (no patient data in these).
REMINDER_LABELS: dict[str, str] = {
    ReminderKind.OUTCOME_OVERDUE: "Pregnancy outcome overdue (PRG-4)",
    ReminderKind.INFANT_FOLLOW_UP_DUE: "Infant follow-up due (PRG-4)",
}


def pregnancy_reminder_digest_lines(
    *, as_of: dt.date, patient_id_range: tuple[Any, Any] | None = None
) -> list[DigestLine]:
    """PRG-4, MON-5: the daily sweep's digest source for pregnancy reminders. Raises the reminders due by
    `as_of` (`pregnancy_reminders_raise`, once per report and kind) inside the sweep's transaction and
    answers one digest line each for the prescriber of record: the registry ID, the reminder, the day it
    fell due. An overdue outcome is marked blocking: its report is still open, and an open report holds
    new courses and dispense authorizations (`no_open_pregnancy`) until the outcome is recorded. An
    infant follow-up blocks nothing."""
    return [
        DigestLine(
            prescriber_id=reminder.prescriber_id,
            rems_patient_id=reminder.rems_patient_id,
            kind=f"pregnancy_{reminder.kind}",
            label=REMINDER_LABELS[reminder.kind],
            due_on=reminder.due_on,
            blocking=reminder.kind == ReminderKind.OUTCOME_OVERDUE,
        )
        for reminder in pregnancy_reminders_raise(as_of=as_of, patient_id_range=patient_id_range)
    ]


def pregnancy_digest_source_register() -> None:
    """PRG-4, MON-5: puts `pregnancy_reminder_digest_lines` on the monitoring sweep's
    `EXTRA_DIGEST_SOURCES` (once, however often it is called), so monitoring needs no import of this
    module. `RegistryConfig.ready` calls it, so every process that runs the sweep (worker, command) has
    it."""
    if pregnancy_reminder_digest_lines not in EXTRA_DIGEST_SOURCES:
        EXTRA_DIGEST_SOURCES.append(pregnancy_reminder_digest_lines)
