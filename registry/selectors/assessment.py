"""The REMS assessment report (issue 12): for a period, the figures FDA asks a sponsor to report, grouped
by the program's goals, rebuilt from the stored decisions (GATE-5), the audit trail and the gate's own
records (authorizations, dispenses, infusions): nothing is read from a counter. Each figure carries the
method that computes it, so the report says how it knows.

The report is a list of sections (`ASSESSMENT_SECTIONS`, or `@assessment_section`); each names its goal
and builds its figures from the period. Monitoring compliance and status forms (MON-1..4) and pregnancy
surveillance (PRG-1..5) are one section builder each, registered by their modules; a section that is not
registered is not in the report (nothing is reported as "not available").

Periods are local calendar days of the registry's time zone, `from` and `to` inclusive.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, Count, Exists, F, IntegerField, OuterRef, Q, Value, When
from django.utils import timezone

from registry import rules
from registry.models import (
    PLURAL,
    AuditEvent,
    AuthorizationStatus,
    CertificationStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    Dispense,
    DispenseAuthorization,
    Infusion,
    ParticipantKind,
    PatientStatus,
    PregnancyOutcome,
    PregnancyReport,
    Role,
)
from registry.selectors.program import dispense_denial_reason_counts, dispense_outcome_counts


@dataclass(frozen=True)
class Period:
    first: dt.date
    last: dt.date

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), tzinfo=timezone.get_current_timezone())

    @property
    def end(self) -> dt.datetime:
        """Exclusive: midnight after the last day."""
        return dt.datetime.combine(
            self.last + dt.timedelta(days=1), dt.time(), tzinfo=timezone.get_current_timezone()
        )


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: int | float | None
    method: str
    target: int | None = None  # where the program states a target (0 for unauthorized dispenses)


@dataclass(frozen=True)
class Goal:
    key: str
    title: str


@dataclass(frozen=True)
class ReportSection:
    goal: Goal
    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)


# The program's goals (the LEMTRADA REMS goal: mitigate the risks of serious autoimmune conditions,
# infusion reactions, stroke and malignancies, through these elements).
GOAL_CERTIFIED_PARTIES = Goal(
    "certified_participants",
    "Only certified prescribers, healthcare facilities and pharmacies prescribe, dispense and infuse (ACT-1..5)",
)
GOAL_INFORMED_PATIENTS = Goal(
    "enrolled_patients",
    "Patients are enrolled and authorized, with the baseline complete, before they are treated (ACT-6..9)",
)
GOAL_SAFE_USE = Goal(
    "authorized_treatment",
    "Every dispense and every infusion is authorized at the moment it happens (GATE-1..5)",
)
GOAL_MONITORING = Goal(
    "monitoring",
    "Patients are monitored for autoimmune conditions until 48 months after their last infusion (MON-1..5)",
)
GOAL_PREGNANCY = Goal(
    "pregnancy_surveillance",
    "Pregnancies are reported and followed to outcome (PRG-1..5)",
)
GOALS = (GOAL_CERTIFIED_PARTIES, GOAL_INFORMED_PATIENTS, GOAL_SAFE_USE, GOAL_MONITORING, GOAL_PREGNANCY)

SectionBuilder = Callable[[Period], ReportSection]
ASSESSMENT_SECTIONS: list[SectionBuilder] = []


def assessment_section(builder: SectionBuilder) -> SectionBuilder:
    ASSESSMENT_SECTIONS.append(builder)
    return builder


# --- Goal 1: participants -----------------------------------------------------------------------------------


def _first_if(action: str) -> Case:
    """An ordering term that puts `action` (the event that creates the record) before any other event
    stamped with the same moment: a registration and its certification, or an enrollment and its
    authorization, may share one `now`."""
    return Case(When(action=action, then=Value(0)), default=Value(1), output_field=IntegerField())


_PARTICIPANT_VERBS = ("register", "certify", "suspend", "reinstate", "deactivate")


def participant_states_at(kind: str, at: dt.datetime) -> Counter[str]:
    """ACT-5 rebuilt from the audit trail: each participant's state at `at` is the one its last lifecycle
    event before `at` left it in (`register` leaves it pending; the others record `status: [from, to]`),
    `lapsed` when certified with a recorded expiry that has passed by `at`."""
    events = (
        AuditEvent.objects.filter(
            subject_type=kind,
            action__in=[f"{kind}.{verb}" for verb in _PARTICIPANT_VERBS],
            created_at__lt=at,
        )
        .order_by("subject_id", "created_at", _first_if(f"{kind}.register"), "action")
        .values_list("subject_id", "action", "changes")
    )
    state: dict[Any, tuple[str, str | None]] = {}
    for subject_id, action, changes in events.iterator(chunk_size=2000):
        if action.endswith(".register"):
            state[subject_id] = (CertificationStatus.PENDING, None)
            continue
        to = (changes.get("status") or [None, None])[1]
        if to is None:
            continue
        expires = state.get(subject_id, ("", None))[1]
        if action.endswith(".certify"):
            expires = changes.get("certification_expires_at")
        state[subject_id] = (to, expires)
    counts: Counter[str] = Counter()
    for status, expires in state.values():
        if status == CertificationStatus.CERTIFIED and expires and dt.datetime.fromisoformat(expires) <= at:
            counts["lapsed"] += 1
        else:
            counts[status] += 1
    return counts


def participant_transitions_in(kind: str, period: Period) -> Counter[str]:
    rows = (
        AuditEvent.objects.filter(
            subject_type=kind,
            action__in=[f"{kind}.{verb}" for verb in _PARTICIPANT_VERBS],
            created_at__gte=period.start,
            created_at__lt=period.end,
        )
        .order_by()
        .values_list("action")
        .annotate(n=Count("pk"))
    )
    return Counter({action.split(".", 1)[1]: n for action, n in rows})


@assessment_section
def participants_section(period: Period) -> ReportSection:
    figures = []
    for kind in ParticipantKind:
        at_end = participant_states_at(kind.value, period.end)
        moved = participant_transitions_in(kind.value, period)
        method_state = (
            f"{kind.value} lifecycle audit events ({kind.value}.register/certify/suspend/reinstate/deactivate) "
            "before the end of the period; the last one per participant gives its state"
        )
        for state in ("certified", "pending", "suspended", "lapsed", "deactivated"):
            figures.append(
                Figure(
                    f"{PLURAL[kind].lower()}_{state}_at_end",
                    f"{PLURAL[kind]} {state} at the end of the period",
                    at_end.get(state, 0),
                    method_state
                    + (
                        "; lapsed = certified with a recorded certification expiry before the end"
                        if state in ("certified", "lapsed")
                        else ""
                    ),
                )
            )
        for verb, past in (("register", "registered"), ("certify", "certified"), ("suspend", "suspended")):
            figures.append(
                Figure(
                    f"{PLURAL[kind].lower()}_{past}_in_period",
                    f"{PLURAL[kind]} {past} during the period",
                    moved.get(verb, 0),
                    f"audit events {kind.value}.{verb} in the period",
                )
            )
    return ReportSection(GOAL_CERTIFIED_PARTIES, "participants", "Certified participants", figures)


# --- Goal 2: patients -----------------------------------------------------------------------------------


def _patient_events(period: Period, action: str) -> int:
    return (
        AuditEvent.objects.filter(
            subject_type="patient", action=action, created_at__gte=period.start, created_at__lt=period.end
        )
        .values("subject_id")
        .distinct()
        .count()
    )


def patient_states_at(at: dt.datetime) -> Counter[str]:
    """ACT-8 rebuilt from the audit trail: a patient's status at `at` is what its last status event before
    `at` left it in (`patient.enroll` leaves it enrolled; every other status event records
    `status: [from, to]`)."""
    rows = (
        AuditEvent.objects.filter(subject_type="patient", created_at__lt=at)
        .filter(Q(action="patient.enroll") | Q(changes__has_key="status"))
        .order_by("subject_id", "created_at", _first_if("patient.enroll"), "action")
        .values_list("subject_id", "action", "changes")
    )
    state: dict[Any, str] = {}
    for subject_id, action, changes in rows.iterator(chunk_size=2000):
        if action == "patient.enroll":
            state[subject_id] = PatientStatus.ENROLLED
        elif isinstance(changes.get("status"), list) and len(changes["status"]) == 2:
            state[subject_id] = changes["status"][1]
    return Counter(state.values())


@assessment_section
def patients_section(period: Period) -> ReportSection:
    infusions = Infusion.objects.filter(
        administered_on__gte=period.first,
        administered_on__lte=period.last,
        decision__outcome=DecisionOutcome.APPROVED,
    )
    treated = infusions.values("patient_id").distinct().count()
    authorized = (
        Decision.objects.filter(
            kind=DecisionKind.PATIENT_AUTHORIZATION,
            outcome=DecisionOutcome.APPROVED,
            created_at__gte=period.start,
            created_at__lt=period.end,
        )
        .values("patient_id")
        .distinct()
        .count()
    )
    at_end = patient_states_at(period.end)
    figures = [
        Figure(
            "patients_enrolled",
            "Patients enrolled during the period",
            _patient_events(period, "patient.enroll"),
            "distinct patients with a patient.enroll audit event in the period",
        ),
        Figure(
            "patients_authorized",
            "Patients authorized during the period",
            authorized,
            "distinct patients with an approved patient_authorization decision in the period (ACT-7)",
        ),
        Figure(
            "patients_treated",
            "Patients treated (at least one infusion) during the period",
            treated,
            "distinct patients with an infusion administered in the period whose GATE-3 decision is approved",
        ),
        Figure(
            "infusions",
            "Infusions administered during the period",
            infusions.count(),
            "infusions administered in the period whose GATE-3 decision is approved",
        ),
        Figure(
            "courses_started",
            "Courses started during the period",
            infusions.filter(day_in_course=1).count(),
            "day-1 infusions administered in the period",
        ),
        Figure(
            "patients_discontinued",
            "Patients discontinued during the period",
            _patient_events(period, "patient.discontinue"),
            "distinct patients with a patient.discontinue audit event in the period",
        ),
        Figure(
            "patients_suspended",
            "Patients suspended during the period",
            _patient_events(period, "patient.suspend"),
            "distinct patients with a patient.suspend audit event in the period",
        ),
        *(
            Figure(
                f"patients_{status.value}_at_end",
                f"Patients {status.label.lower()} at the end of the period",
                at_end.get(status.value, 0),
                "the last status audit event of each patient before the end of the period",
            )
            for status in PatientStatus
        ),
    ]
    return ReportSection(
        GOAL_INFORMED_PATIENTS, "patients", "Enrolled, authorized and treated patients", figures
    )


# --- Goal 3: authorized dispensing and infusion -------------------------------------------------------------------


@assessment_section
def authorizations_section(period: Period) -> ReportSection:
    outcomes = dispense_outcome_counts(since=period.start, until=period.end)
    reasons = dispense_denial_reason_counts(since=period.start, until=period.end)
    issued = DispenseAuthorization.objects.filter(
        decision__created_at__gte=period.start, decision__created_at__lt=period.end
    )
    fates = dict(issued.order_by().values_list("status").annotate(n=Count("pk")))
    method = "dispense_authorization decisions (GATE-5) stored in the period"
    figures = [
        Figure(
            "authorizations_requested",
            "Dispense authorizations requested",
            outcomes["approved"] + outcomes["denied"],
            method,
        ),
        Figure(
            "authorizations_approved",
            "Dispense authorizations approved",
            outcomes["approved"],
            method + ", approved",
        ),
        Figure(
            "authorizations_denied", "Dispense authorizations denied", outcomes["denied"], method + ", denied"
        ),
        *(
            Figure(
                f"denied_{code}",
                f"Denials citing {code}",
                n,
                method
                + f", denied, whose stored reasons include {code} (a denial lists every failed requirement)",
            )
            for code, n in reasons.items()
        ),
        *(
            Figure(
                f"approved_then_{status.value}",
                f"Numbers issued in the period now {status.value}",
                fates.get(status.value, 0),
                "authorization numbers granted by the period's approvals, by their stored status",
            )
            for status in AuthorizationStatus
        ),
    ]
    return ReportSection(GOAL_SAFE_USE, "dispense_authorizations", "Dispense authorizations", figures)


def unauthorized_dispenses(period: Period) -> Any:
    """GATE-1/2: dispenses in the period that do not join an approved dispense-authorization decision whose
    number was issued to the same pharmacy for the same patient, before the dispense, not past its expiry,
    not revoked before it, and covering the vials dispensed."""
    valid = (
        Q(authorization__decision__kind=DecisionKind.DISPENSE_AUTHORIZATION)
        & Q(authorization__decision__outcome=DecisionOutcome.APPROVED)
        & Q(authorization__pharmacy_id=F("pharmacy_id"))
        & Q(authorization__patient_id=F("patient_id"))
        & Q(authorization__issued_at__lte=F("created_at"))
        & Q(authorization__expires_at__gt=F("created_at"))
        & (Q(authorization__revoked_at__isnull=True) | Q(authorization__revoked_at__gt=F("created_at")))
        & Q(vials__lte=F("authorization__doses_authorized"))
    )
    return Dispense.objects.filter(created_at__gte=period.start, created_at__lt=period.end).exclude(valid)


def unauthorized_infusions(period: Period) -> Any:
    """GATE-3: infusions administered in the period that a facility recorded without an approved infusion
    decision of their own, or without a dispense of that patient's course to that facility behind them
    (the named dispense, or, where none was named, any dispense of the course to that facility)."""
    backing_dispense = Dispense.objects.filter(
        patient_id=OuterRef("patient_id"),
        authorization__course_id=OuterRef("course_id"),
        authorization__facility_id=OuterRef("facility_id"),
    )
    named_ok = (
        Q(dispense__isnull=False)
        & Q(dispense__patient_id=F("patient_id"))
        & Q(dispense__authorization__facility_id=F("facility_id"))
    )
    return (
        Infusion.objects.filter(administered_on__gte=period.first, administered_on__lte=period.last)
        .exclude(recorded_by__role=Role.ADMIN)
        .annotate(backed=Exists(backing_dispense))
        .exclude(
            Q(decision__kind=DecisionKind.INFUSION)
            & Q(decision__outcome=DecisionOutcome.APPROVED)
            & (named_ok | (Q(dispense__isnull=True) & Q(backed=True)))
        )
    )


@assessment_section
def integrity_section(period: Period) -> ReportSection:
    dispenses = Dispense.objects.filter(created_at__gte=period.start, created_at__lt=period.end)
    infusions = Infusion.objects.filter(administered_on__gte=period.first, administered_on__lte=period.last)
    over_infused = (
        Dispense.objects.filter(
            infusions__administered_on__gte=period.first, infusions__administered_on__lte=period.last
        )
        .annotate(n=Count("infusions"))
        .filter(n__gt=F("vials"))
        .count()
    )
    figures = [
        Figure("dispenses", "Dispenses recorded", dispenses.count(), "dispense rows created in the period"),
        Figure(
            "dispenses_without_valid_authorization",
            "Dispenses without a valid authorization",
            unauthorized_dispenses(period).count(),
            "dispenses in the period that do not join an approved dispense_authorization decision whose number "
            "was issued to the dispensing pharmacy for the same patient, before the dispense, unexpired, "
            "unrevoked at the time, and covering the vials",
            target=0,
        ),
        Figure(
            "facility_infusions",
            "Infusions recorded by facilities",
            infusions.exclude(recorded_by__role=Role.ADMIN).count(),
            "infusions administered in the period, recorded with a facility key",
        ),
        Figure(
            "infusions_without_valid_authorization",
            "Facility infusions without a valid authorization",
            unauthorized_infusions(period).count(),
            "facility infusions in the period without an approved infusion decision (GATE-3) of their own, or "
            "with no dispense of the patient's course to that facility behind them",
            target=0,
        ),
        Figure(
            "dispenses_over_infused",
            "Dispenses backing more infusions than vials",
            over_infused,
            "dispenses whose infusions in the period outnumber their vials (GATE-2)",
            target=0,
        ),
        Figure(
            "legacy_infusions_recorded_by_administrators",
            "Legacy infusions recorded by administrators",
            infusions.filter(recorded_by__role=Role.ADMIN).count(),
            "infusions administered in the period recorded with an administrator key (imported history; "
            "these precede the registry's dispenses and are not counted above)",
        ),
    ]
    return ReportSection(
        GOAL_SAFE_USE, "integrity", "Dispenses and infusions without a valid authorization", figures
    )


# --- Goal 4: monitoring --------------------------------------------------------------------------------


@assessment_section
def monitoring_section(period: Period) -> ReportSection:
    """MON-1..4. Compliance per calendar month touched by the period (selectors/program.py
    `monthly_compliance`, from the lab results); overdue from the flags the daily sweep stored (MON-3, MON-5:
    opened on the day a requirement became overdue, resolved by the result or form that closed it);
    status forms from their `status_form.record` audit events."""
    from registry.models import FlagResolution, FlagStatus, MonitoringFlag, MonitoringRequirement
    from registry.selectors.program import monthly_compliance, months_between

    compliance = monthly_compliance(months=months_between(period.first, period.last))
    patient_months = sum(total for _, total, _ in compliance)
    compliant = sum(done for _, _, done in compliance)
    flags = MonitoringFlag.objects.all()
    opened = flags.filter(opened_on__gte=period.first, opened_on__lte=period.last)
    open_at_end = flags.filter(opened_on__lte=period.last).filter(
        Q(resolved_on__isnull=True) | Q(resolved_on__gt=period.last)
    )
    by_requirement = dict(opened.order_by().values_list("requirement").annotate(n=Count("pk")))
    forms_filed = AuditEvent.objects.filter(
        action="status_form.record", created_at__gte=period.start, created_at__lt=period.end
    ).count()
    forms_late = flags.filter(
        requirement=MonitoringRequirement.STATUS_FORM,
        status=FlagStatus.RESOLVED,
        resolution=FlagResolution.RESULT,
        resolved_on__gte=period.first,
        resolved_on__lte=period.last,
    ).count()
    sweep = "flags stored by the daily sweep (MON-5)"
    figures = [
        Figure(
            "monitoring_patient_months",
            "Patient-months in monitoring",
            patient_months,
            "for each calendar month of the period, the patients with a first infusion before the month and a "
            "monitoring window not ended when it began",
        ),
        Figure(
            "monitoring_patient_months_compliant",
            "of which every monthly lab was done",
            compliant,
            "those patient-months with a result of each MON-1 test (CBC with differential, serum creatinine, "
            "urinalysis) collected in the month",
        ),
        Figure(
            "monitoring_compliance_percent",
            "Monthly lab compliance (%)",
            round(100.0 * compliant / patient_months, 1) if patient_months else None,
            "compliant patient-months / patient-months in monitoring",
        ),
        Figure(
            "monitoring_flags_opened",
            "Overdue flags opened during the period",
            opened.count(),
            sweep + " opened on a day of the period (a requirement past due date + grace, MON-3)",
        ),
        *(
            Figure(
                f"monitoring_flags_opened_{r.value}",
                f"Overdue flags opened: {r.label}",
                by_requirement.get(r.value, 0),
                sweep + f" for {r.value} opened on a day of the period",
            )
            for r in MonitoringRequirement
        ),
        Figure(
            "monitoring_flags_open_at_end",
            "Overdue flags open at the end of the period",
            open_at_end.count(),
            sweep + " opened by the period's last day and not resolved by it",
        ),
        Figure(
            "monitoring_flags_blocking_at_end",
            "of which blocking",
            open_at_end.filter(blocking_since__lte=period.last).count(),
            "those blocking (overdue more than 30 days past grace, GATE-4) by the period's last day",
        ),
        Figure(
            "patients_overdue_at_end",
            "Patients overdue at the end of the period",
            open_at_end.values("patient_id").distinct().count(),
            "distinct patients of those open flags",
        ),
        Figure(
            "status_forms_filed",
            "Status forms filed during the period",
            forms_filed,
            "status_form.record audit events in the period (MON-4)",
        ),
        Figure(
            "status_forms_on_time",
            "of which on time",
            forms_filed - forms_late,
            "those filed minus the status forms that resolved an open status_form flag during the period (a form "
            "filed after its due date + grace)",
        ),
    ]
    return ReportSection(GOAL_MONITORING, "monitoring", "Monitoring compliance and status forms", figures)


# --- Goal 5: pregnancy surveillance ----------------------------------------------------------------------


def _report_event(action: str, before: Any) -> Exists:
    """A pregnancy report's audit event `action` stored before `before` (a datetime or an outer column)."""
    return Exists(
        AuditEvent.objects.filter(
            subject_type="pregnancyreport", subject_id=OuterRef("pk"), action=action, created_at__lt=before
        )
    )


@assessment_section
def pregnancy_section(period: Period) -> ReportSection:
    """PRG-2..4 rebuilt from the audit trail: a report counts as filed when its `pregnancy_report.file`
    event falls in the period; an outcome (or infant follow-up) is on time when its
    `pregnancy_report.record_outcome` (`record_infant_follow_up`) event is stored by the end of the day the
    outcome became overdue (estimated due date + 30 days, PRG-4) (or the follow-up was due, 12 months after
    a live birth)."""
    filed_events = AuditEvent.objects.filter(
        subject_type="pregnancyreport",
        action="pregnancy_report.file",
        created_at__gte=period.start,
        created_at__lt=period.end,
    ).values("subject_id")
    filed = PregnancyReport.objects.filter(pk__in=filed_events)
    outcome_events = AuditEvent.objects.filter(
        subject_type="pregnancyreport",
        action="pregnancy_report.record_outcome",
        created_at__gte=period.start,
        created_at__lt=period.end,
    ).values("subject_id")
    outcomes = dict(
        PregnancyReport.objects.filter(pk__in=outcome_events)
        .order_by()
        .values_list("outcome")
        .annotate(n=Count("pk"))
    )
    tz = timezone.get_current_timezone()

    def on_time(due_field: str, action: str) -> tuple[int, int]:
        """(due in the period, recorded by the end of the due day): one statement each."""
        due = PregnancyReport.objects.filter(
            **{f"{due_field}__gte": period.first, f"{due_field}__lte": period.last}
        )
        # The due day's end depends on the row; the reports due in one period are few (a handful a month),
        # and the events are read for those reports only, in one statement.
        ends = {
            pk: dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz)
            for pk, day in due.values_list("pk", due_field)
        }
        firsts: dict[Any, dt.datetime] = {}
        for subject_id, at in (
            AuditEvent.objects.filter(
                subject_type="pregnancyreport", subject_id__in=list(ends), action=action
            )
            .order_by("created_at")
            .values_list("subject_id", "created_at")
        ):
            firsts.setdefault(subject_id, at)
        recorded = sum(1 for pk, end in ends.items() if pk in firsts and firsts[pk] < end)
        return len(ends), recorded

    outcome_due, outcome_on_time = on_time("outcome_overdue_on", "pregnancy_report.record_outcome")
    follow_due, follow_on_time = on_time(
        "infant_follow_up_due_on", "pregnancy_report.record_infant_follow_up"
    )
    open_at_end = (
        PregnancyReport.objects.annotate(
            filed_before=_report_event("pregnancy_report.file", period.end),
            resolved_before=_report_event("pregnancy_report.record_outcome", period.end),
        )
        .filter(filed_before=True, resolved_before=False)
        .count()
    )
    figures = [
        Figure(
            "pregnancies_reported",
            "Pregnancies reported during the period",
            filed.count(),
            "pregnancy reports whose pregnancy_report.file audit event falls in the period",
        ),
        Figure(
            "pregnancies_reported_exposed",
            "of which exposed",
            filed.filter(exposure="exposed").count(),
            "those reports classified exposed (conception during a course or within 4 months after its last "
            "infusion, PRG-2; the stored classification)",
        ),
        Figure(
            "pregnancies_open_at_end",
            "Pregnancies open at the end of the period",
            open_at_end,
            "reports filed before the end of the period with no pregnancy_report.record_outcome event before it",
        ),
        *(
            Figure(
                f"pregnancy_outcomes_{outcome.value}",
                f"Outcomes recorded during the period: {outcome.label.lower()}",
                outcomes.get(outcome.value, 0),
                "pregnancy_report.record_outcome audit events in the period, by the report's outcome "
                "(outcomes are final, PRG-3)",
            )
            for outcome in PregnancyOutcome
        ),
        Figure(
            "pregnancy_outcomes_due",
            "Outcomes due during the period",
            outcome_due,
            "reports whose outcome became overdue (estimated due date + 30 days, PRG-4) on a day of the period",
        ),
        Figure(
            "pregnancy_outcomes_on_time",
            "of which recorded on time",
            outcome_on_time,
            "those with a pregnancy_report.record_outcome audit event stored by the end of that day",
        ),
        Figure(
            "infant_follow_ups_due",
            "Infant follow-ups due during the period",
            follow_due,
            "live births whose infant follow-up fell due (12 months after the birth, PRG-3) on a day of the "
            "period",
        ),
        Figure(
            "infant_follow_ups_on_time",
            "of which recorded on time",
            follow_on_time,
            "those with a pregnancy_report.record_infant_follow_up audit event stored by the end of that day",
        ),
    ]
    return ReportSection(GOAL_PREGNANCY, "pregnancy", "Pregnancy surveillance", figures)


# --- The report -------------------------------------------------------------------------------------------


def settings_in_decisions(period: Period) -> list[dict[str, Any]]:
    """Every distinct set of program settings stored with a decision of the period (GATE-5)."""
    seen: list[dict[str, Any]] = []
    rows = Decision.objects.filter(created_at__gte=period.start, created_at__lt=period.end).values_list(
        "program_settings", flat=True
    )
    for value in rows.order_by().distinct():
        if value not in seen:
            seen.append(value)
    return seen


def assessment_report(*, first: dt.date, last: dt.date, now: dt.datetime) -> dict[str, Any]:
    period = Period(first, last)
    sections = [builder(period) for builder in ASSESSMENT_SECTIONS]
    goals = []
    for goal in GOALS:
        mine = [s for s in sections if s.goal == goal]
        if not mine:
            continue
        goals.append(
            {
                "key": goal.key,
                "title": goal.title,
                "sections": [
                    {
                        "key": s.key,
                        "title": s.title,
                        "figures": [
                            {
                                "key": f.key,
                                "label": f.label,
                                "value": f.value,
                                "method": f.method,
                                **({"target": f.target} if f.target is not None else {}),
                            }
                            for f in s.figures
                        ],
                    }
                    for s in mine
                ],
            }
        )
    return {
        "period": {"from": first, "to": last, "time_zone": str(timezone.get_current_timezone())},
        "generated_at": now,
        "program_settings": rules.current().as_dict(),
        "settings_in_decisions": settings_in_decisions(period),
        "goals": goals,
    }


__all__ = [
    "ASSESSMENT_SECTIONS",
    "GOALS",
    "Figure",
    "Goal",
    "Period",
    "ReportSection",
    "assessment_report",
    "assessment_section",
]
