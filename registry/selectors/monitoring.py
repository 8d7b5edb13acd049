"""Monitoring reads (MON-1..5, GATE-4): the stored schedule as the API and the gate read it, status forms
and flags of the patients a caller may see. The schedule rows are written by services/monitoring.py; the
day arithmetic both sides share (when a requirement is overdue, when it blocks) lives here.

A requirement is **overdue** on day D when D > next due + grace (7 days, *setting*) and D is inside the
window; it **blocks** when D > next due + grace + the blocking threshold (30 days, *setting*), counted from
due date plus grace, never from when a flag was raised (MON-3).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from registry import rules
from registry.models import (
    MonitoringFlag,
    MonitoringRequirement,
    MonitoringSchedule,
    Patient,
    PatientStatus,
    StatusForm,
    User,
)

from .patients import patients_visible_to


def overdue_before(program: rules.ProgramSettings, as_of: dt.date) -> dt.date:
    """MON-3: on `as_of`, a requirement due before this day has passed due date + grace."""
    return as_of - dt.timedelta(days=program.monitoring_grace_days)


def blocking_before(program: rules.ProgramSettings, as_of: dt.date) -> dt.date:
    """MON-3, GATE-4: on `as_of`, a requirement due before this day has been overdue more than the blocking
    threshold, counted from due date + grace."""
    return as_of - dt.timedelta(days=program.monitoring_grace_days + program.monitoring_blocking_days)


@dataclass(frozen=True)
class RequirementState:
    requirement: str
    last_done_on: dt.date | None
    next_due_on: dt.date | None  # None once the next due date falls after the window
    overdue: bool
    blocking: bool


@dataclass(frozen=True)
class MonitoringState:
    monitoring_ends_on: dt.date | None
    requirements: tuple[RequirementState, ...] = ()


def requirement_state(
    row: MonitoringSchedule, *, as_of: dt.date, program: rules.ProgramSettings, monitored: bool = True
) -> RequirementState:
    """What a stored row means on `as_of`. `monitored=False` (a deceased patient, ACT-8: the sweep flags
    nothing for them and closes their flags) reads nothing as overdue or due."""
    in_window = monitored and as_of <= row.window_ends_on
    return RequirementState(
        requirement=row.requirement,
        last_done_on=row.last_done_on,
        next_due_on=row.next_due_on if monitored and row.next_due_on <= row.window_ends_on else None,
        overdue=in_window and row.next_due_on < overdue_before(program, as_of),
        blocking=in_window and row.next_due_on < blocking_before(program, as_of),
    )


def monitoring_state(*, patient: Patient, as_of: dt.date) -> MonitoringState:
    """API.md `GET /patients/{id}/monitoring`, answered from the stored schedule (one query), in the order
    of MonitoringRequirement (MON-1, MON-2, MON-4)."""
    program = rules.current()
    order = {r.value: i for i, r in enumerate(MonitoringRequirement)}
    rows = sorted(
        MonitoringSchedule.objects.filter(patient=patient), key=lambda r: order.get(r.requirement, 99)
    )
    monitored = patient_monitored(patient.status)
    return MonitoringState(
        monitoring_ends_on=patient.monitoring_ends_on,
        requirements=tuple(
            requirement_state(r, as_of=as_of, program=program, monitored=monitored) for r in rows
        ),
    )


def patient_monitored(status: str) -> bool:
    """ACT-8: every patient is monitored until the window ends (discontinued and suspended ones too),
    except a deceased one. (A `monitoring_complete` patient's window has ended, so nothing reads as due;
    the sweep's `_MONITORED` leaves out both.)"""
    return status != PatientStatus.DECEASED


def monitoring_blocks_load(*, patient_id: Any, as_of: dt.date) -> tuple[str, ...]:
    """GATE-4, MON-3, MON-4: the patient's requirements overdue beyond the blocking threshold on `as_of`,
    read from the stored schedule at the moment of the check (one indexed query): the gate never depends
    on when the sweep last ran, so a registry that imported history an hour ago blocks at once. In the
    order of MonitoringRequirement."""
    program = rules.current()
    blocking = set(
        MonitoringSchedule.objects.filter(
            patient_id=patient_id,
            next_due_on__lt=blocking_before(program, as_of),
            window_ends_on__gte=as_of,
        ).values_list("requirement", flat=True)
    )
    return tuple(r.value for r in MonitoringRequirement if r in blocking)


def monitoring_blocking_parse(csv: str | None) -> tuple[str, ...]:
    """The facts query's `monitoring_blocking_csv` column (selectors/facts.py) as `monitoring_blocks_load`
    answers it: in the order of MonitoringRequirement."""
    blocking = set((csv or "").split(","))
    return tuple(r.value for r in MonitoringRequirement if r in blocking)


def patient_status_forms(patient: Patient) -> QuerySet[StatusForm]:
    """MON-4: the patient's status forms, newest first."""
    return patient.status_forms.order_by("-completed_on", "-created_at", "id")


def monitoring_flags_visible_to(user: User) -> QuerySet[MonitoringFlag]:
    """MON-3: flags of the patients `user` may see (none for pharmacies and facilities)."""
    return MonitoringFlag.objects.filter(patient__in=patients_visible_to(user))
