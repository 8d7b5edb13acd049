"""One patient page (issue 12): everything an administrator needs when a pharmacy or prescriber calls, in
one place. The page is a list of sections; each is a function of the patient returning a `Section` (its
title, its template and that template's context), and runs a fixed number of statements whatever the
patient's history (lists are bounded).

Extension point: `PATIENT_PAGE_SECTIONS` (or `@patient_page_section(after=...)`). Monitoring adds the
schedule, the flags and the status forms; pregnancy surveillance adds the reports; each is one builder and
one small template under admin/registry/console/sections/."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from registry.models import (
    AuditEvent,
    Course,
    Decision,
    Dispense,
    DispenseAuthorization,
    Infusion,
    LabResult,
    LabTest,
    MonitoringFlag,
    Patient,
    PregnancyReport,
    Screening,
    User,
)
from registry.selectors import authorization_state
from registry.selectors.facts import facts_load
from registry.services.decisions import DISPENSE_GATE
from registry.services.gate import about_patient

LIST_LIMIT = 100  # rows per list section; the section says when more exist


@dataclass(frozen=True)
class PatientPageContext:
    patient: Patient
    user: User
    now: dt.datetime

    @property
    def today(self) -> dt.date:
        return timezone.localdate(self.now)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)


SectionBuilder = Callable[[PatientPageContext], Section]
PATIENT_PAGE_SECTIONS: list[SectionBuilder] = []


def patient_page_section(builder: SectionBuilder | None = None, *, after: str | None = None) -> Any:
    """Registers a section builder, at the end or right after the builder named `after`."""

    def register(fn: SectionBuilder) -> SectionBuilder:
        names = [b.__name__ for b in PATIENT_PAGE_SECTIONS]
        if after is not None and after in names:
            PATIENT_PAGE_SECTIONS.insert(names.index(after) + 1, fn)
        else:
            PATIENT_PAGE_SECTIONS.append(fn)
        return fn

    return register(builder) if builder is not None else register


def _tpl(name: str) -> str:
    return f"admin/registry/console/sections/{name}.html"


@patient_page_section
def status_section(ctx: PatientPageContext) -> Section:
    """ACT-8 status and why: the stored reason, the status history from the audit trail, and what a
    dispense authorization would answer about this patient now (the gate's own patient requirements,
    evaluated on the facts the gate would read; nothing is stored)."""
    patient = ctx.patient
    # As the patient's own prescriber would be asked about it: the party requirements of pharmacy and
    # facility are not about the patient and are left out below.
    facts = facts_load(patient=patient, now=ctx.now, as_of=ctx.today, prescriber=patient.prescriber)
    checks = [
        c
        for c, r in zip(DISPENSE_GATE.evaluate(facts).checks, DISPENSE_GATE.all_requirements(), strict=True)
        if about_patient(r)
    ]
    history = list(
        AuditEvent.objects.filter(subject_type="patient", subject_id=patient.pk, changes__has_key="status")
        .select_related("actor")
        .order_by("-created_at")[:LIST_LIMIT]
    )
    return Section(
        "status",
        "Status and why",
        _tpl("status"),
        {
            "patient": patient,
            "checks": checks,
            "history": history,
            "blocking": [c for c in checks if not c.met],
        },
    )


@patient_page_section
def screening_section(ctx: PatientPageContext) -> Section:
    """ACT-7 attestations (the newest counts) and ACT-9 contraindications."""
    screenings = list(
        Screening.objects.filter(patient=ctx.patient)
        .select_related("recorded_by")
        .order_by("-created_at")[:20]
    )
    contraindications = list(ctx.patient.contraindications.select_related("recorded_by").all()[:20])
    return Section(
        "screening",
        "Screening and contraindications",
        _tpl("screening"),
        {"screenings": screenings, "contraindications": contraindications},
    )


@patient_page_section
def labs_section(ctx: PatientPageContext) -> Section:
    """ACT-7, MON-1..2: the latest result of each test, then every result newest first (bounded)."""
    rows = list(
        LabResult.objects.filter(patient=ctx.patient)
        .select_related("recorded_by")
        .order_by("-collected_on", "-created_at")[: LIST_LIMIT + 1]
    )
    latest: dict[str, LabResult] = {}
    for lab in rows:
        latest.setdefault(lab.test, lab)
    return Section(
        "labs",
        "Labs",
        _tpl("labs"),
        {
            "latest": [(test, latest.get(test.value)) for test in LabTest],
            "labs": rows[:LIST_LIMIT],
            "more": len(rows) > LIST_LIMIT,
        },
    )


@patient_page_section
def monitoring_section(ctx: PatientPageContext) -> Section:
    """MON-1..4: the stored schedule (what is due, overdue and blocking today, as the gate reads it), the
    patient's flags and status forms (three statements, lists bounded)."""
    from registry.selectors.monitoring import monitoring_state, patient_status_forms

    state = monitoring_state(patient=ctx.patient, as_of=ctx.today)
    flags = list(
        MonitoringFlag.objects.filter(patient=ctx.patient).order_by("status", "-opened_on", "requirement")[
            :LIST_LIMIT
        ]
    )
    forms = list(patient_status_forms(ctx.patient).select_related("prescriber", "recorded_by")[:LIST_LIMIT])
    return Section(
        "monitoring",
        "Monitoring schedule, flags and status forms",
        _tpl("monitoring"),
        {
            "state": state,
            "overdue": [r for r in state.requirements if r.overdue],
            "blocking": [r for r in state.requirements if r.blocking],
            "flags": flags,
            "forms": forms,
        },
    )


@patient_page_section
def courses_section(ctx: PatientPageContext) -> Section:
    """CRS-1..3, GATE-3: courses and every infusion, with the dispense that backed it."""
    courses = list(Course.objects.filter(patient=ctx.patient).order_by("number", "created_at"))
    infusions = list(
        Infusion.objects.filter(patient=ctx.patient)
        .select_related("course", "facility", "dispense__authorization")
        .order_by("administered_on")[:LIST_LIMIT]
    )
    return Section(
        "courses", "Courses and infusions", _tpl("courses"), {"courses": courses, "infusions": infusions}
    )


@patient_page_section
def decisions_section(ctx: PatientPageContext) -> Section:
    """GATE-5: the gate's decisions about this patient, newest first, with their reasons."""
    decisions = list(
        Decision.objects.filter(patient=ctx.patient)
        .select_related("actor")
        .order_by("-created_at")[:LIST_LIMIT]
    )
    return Section("decisions", "Decisions", _tpl("decisions"), {"decisions": decisions})


@patient_page_section
def authorizations_section(ctx: PatientPageContext) -> Section:
    """GATE-2: the patient's authorization numbers and their state now (`authorization_state`, the one
    answer the API and the dispense service also read)."""
    authorizations = list(
        DispenseAuthorization.objects.filter(patient=ctx.patient)
        .select_related("pharmacy", "facility", "prescriber", "patient", "course", "dispense")
        .order_by("-issued_at")[:LIST_LIMIT]
    )
    rows = [(a, authorization_state(a, ctx.now)) for a in authorizations]
    return Section("authorizations", "Dispense authorizations", _tpl("authorizations"), {"rows": rows})


@patient_page_section
def pregnancy_section(ctx: PatientPageContext) -> Section:
    """PRG-2..4: the patient's pregnancy reports, newest first, with exposure, outcome, follow-up and the
    reminders raised (two statements)."""
    reports = list(
        PregnancyReport.objects.filter(patient=ctx.patient)
        .select_related("exposed_course")
        .prefetch_related("reminders")
        .order_by("-reported_on", "-created_at")[:LIST_LIMIT]
    )
    return Section(
        "pregnancy",
        "Pregnancy reports",
        _tpl("pregnancy"),
        {"reports": reports, "applies": ctx.patient.reproductive_potential or bool(reports)},
    )


def patient_audit_events(patient: Patient) -> Any:
    """The audit trail of the patient and of every record hanging off it (courses, decisions,
    authorizations, dispenses, infusions, monitoring flags, pregnancy reports), newest first: one statement with subqueries."""
    pk = patient.pk
    return (
        AuditEvent.objects.filter(
            Q(subject_type="patient", subject_id=pk)
            | Q(subject_type="course", subject_id__in=Course.objects.filter(patient=pk).values("pk"))
            | Q(subject_type="decision", subject_id__in=Decision.objects.filter(patient=pk).values("pk"))
            | Q(
                subject_type="dispenseauthorization",
                subject_id__in=DispenseAuthorization.objects.filter(patient=pk).values("pk"),
            )
            | Q(subject_type="dispense", subject_id__in=Dispense.objects.filter(patient=pk).values("pk"))
            | Q(subject_type="infusion", subject_id__in=Infusion.objects.filter(patient=pk).values("pk"))
            | Q(
                subject_type="monitoringflag",
                subject_id__in=MonitoringFlag.objects.filter(patient=pk).values("pk"),
            )
            | Q(
                subject_type="pregnancyreport",
                subject_id__in=PregnancyReport.objects.filter(patient=pk).values("pk"),
            )
        )
        .select_related("actor")
        .order_by("-created_at")
    )


@patient_page_section
def audit_section(ctx: PatientPageContext) -> Section:
    """ACT-5 / STYLE 5: every audited change about the patient, newest first (bounded)."""
    events = list(patient_audit_events(ctx.patient)[: LIST_LIMIT * 2 + 1])
    return Section(
        "audit",
        "Audit history",
        _tpl("audit"),
        {"events": events[: LIST_LIMIT * 2], "more": len(events) > LIST_LIMIT * 2},
    )


def patient_page_build(*, patient: Patient, user: User, now: dt.datetime) -> list[Section]:
    ctx = PatientPageContext(patient=patient, user=user, now=now)
    return [builder(ctx) for builder in PATIENT_PAGE_SECTIONS]
