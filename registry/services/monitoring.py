"""Post-infusion monitoring (MON-1..5): the stored schedule, status forms, flags, the daily sweep and the
prescribers' digests.

The schedule (`MonitoringSchedule`, one row per patient and requirement) is the single source of what is
due. It starts at the first infusion (rows built from the patient's history), and every lab result, status
form or infusion that changes it updates it in the same transaction (set-based for bulk labs). Next due is
counted in calendar months after the latest result (`relativedelta`: a result on 31 January is next due on
28/29 February), or after the first infusion when there is no result yet. The window ends 48 months
(*setting*) after the most recent infusion.

A requirement is **overdue** on day D when D > next due + grace (7 days, *setting*) and D is inside the
window; it **blocks** (GATE-4) when D > next due + grace + the blocking threshold (30 days, *setting*),
counted from due date plus grace, never from when a flag was raised (MON-3). The gate reads the schedule
directly (selectors/monitoring.py `monitoring_blocks_load`), so a registry that imported history an hour
ago blocks at once.

The daily sweep (`monitoring_sweep`, MON-5) runs a fixed number of statements whatever the registry's
size: it closes flags whose requirement is no longer overdue, opens one flag per overdue requirement (the
partial unique index makes a re-run harmless), marks flags blocking, completes monitoring for patients past
the window, stores stale authorization numbers as expired and lapsed ones as revoked (services/dispensing.py
`authorizations_expire`, `authorizations_lapse`: the only bulk expiry), and assembles one digest per prescriber listing its new
flags (and the items of `EXTRA_DIGEST_SOURCES`), sent after commit by a Celery task. A `SweepRun` row
unique on the date is the database guard: a second or concurrent run for the same day does nothing. The
sweep can be split into patient-id ranges (`monitoring_sweep_split_start` + `monitoring_sweep_part`),
dispatched as a Celery group; the part that finishes last assembles the digests, so the result is the
same as one run.

The sweep's statements are PostgreSQL (data-modifying CTEs, `gen_random_uuid()`); the schedule upkeep and
the gate's read are plain ORM and work on the quick-start SQLite database as well.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from registry import rules
from registry.errors import PermissionDenied, ValidationFailed
from registry.localtime import local_today
from registry.models import (
    AdverseEvent,
    Digest,
    DigestStatus,
    FlagResolution,
    FlagStatus,
    LabResult,
    MonitoringFlag,
    MonitoringRequirement,
    MonitoringSchedule,
    Patient,
    PatientStatus,
    Role,
    Sex,
    StatusForm,
    SweepRun,
    User,
)
from registry.models import DigestLine as DigestLineRow
from registry.selectors.monitoring import blocking_before, overdue_before

from .audit import audit_record, audit_record_many
from .dispensing import authorizations_expire, authorizations_lapse

logger = logging.getLogger(__name__)

MR = MonitoringRequirement

# What the digest and the admin call each requirement (no patient data in these).
REQUIREMENT_LABELS: dict[str, str] = {
    MR.CBC_DIFFERENTIAL: "CBC with differential (MON-1)",
    MR.SERUM_CREATININE: "Serum creatinine (MON-1)",
    MR.URINALYSIS: "Urinalysis with cell counts (MON-1)",
    MR.THYROID_FUNCTION: "Thyroid function (MON-2)",
    MR.LIVER_FUNCTION: "Liver tests (MON-2)",
    MR.SKIN_EXAM: "Skin exam (MON-2)",
    MR.HPV_SCREENING: "HPV screening (MON-2)",
    MR.STATUS_FORM: "Patient status form (MON-4)",
}
LAB_REQUIREMENT_VALUES = frozenset(r.value for r in MR if r != MR.STATUS_FORM)


def interval_months(program: rules.ProgramSettings, requirement: str) -> int:
    """MON-1, MON-2, MON-4: the interval of a requirement, in calendar months (*settings*)."""
    return {
        MR.CBC_DIFFERENTIAL: program.monitoring_monthly_labs_interval_months,
        MR.SERUM_CREATININE: program.monitoring_monthly_labs_interval_months,
        MR.URINALYSIS: program.monitoring_monthly_labs_interval_months,
        MR.THYROID_FUNCTION: program.monitoring_thyroid_interval_months,
        MR.LIVER_FUNCTION: program.monitoring_liver_interval_months,
        MR.SKIN_EXAM: program.monitoring_skin_exam_interval_months,
        MR.HPV_SCREENING: program.monitoring_hpv_interval_months,
        MR.STATUS_FORM: program.status_form_interval_months,
    }[MR(requirement)]


def requirements_for(sex: str) -> tuple[str, ...]:
    """MON-1, MON-2, MON-4: HPV screening applies to female patients only."""
    return tuple(r.value for r in MR if r != MR.HPV_SCREENING or sex == Sex.FEMALE)


def next_due(program: rules.ProgramSettings, requirement: str, anchor: dt.date) -> dt.date:
    """Calendar-month arithmetic: 31 January + 1 month is 28 (or 29) February."""
    return anchor + relativedelta(months=interval_months(program, requirement))


# --- The schedule ----------------------------------------------------------------------------------


def monitoring_schedule_start(
    *,
    patient_id: Any,
    sex: str,
    first_infusion_on: dt.date,
    window_ends_on: dt.date,
    program: rules.ProgramSettings,
    now: dt.datetime,
) -> None:
    """MON-1, MON-2, MON-4: called in the infusion's transaction. Builds (or rebuilds) the patient's
    schedule from its history: last done is the latest result (or status form), next due the interval
    after it, or after the first infusion when there is none; the window ends 48 months (*setting*) after
    the most recent infusion, so a new course extends it. Three queries, whatever the history."""
    lab_tests = [r for r in requirements_for(sex) if r in LAB_REQUIREMENT_VALUES]
    latest: dict[str, dt.date | None] = dict(
        LabResult.objects.filter(patient_id=patient_id, test__in=lab_tests)
        .values("test")
        .annotate(latest=Max("collected_on"))
        .values_list("test", "latest")
    )
    latest[MR.STATUS_FORM] = StatusForm.objects.filter(patient_id=patient_id).aggregate(
        latest=Max("completed_on")
    )["latest"]
    rows = []
    for requirement in requirements_for(sex):
        done = latest.get(requirement)
        rows.append(
            MonitoringSchedule(
                patient_id=patient_id,
                requirement=requirement,
                last_done_on=done,
                next_due_on=next_due(program, requirement, done or first_infusion_on),
                window_ends_on=window_ends_on,
                updated_at=now,
            )
        )
    MonitoringSchedule.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["patient", "requirement"],
        update_fields=["last_done_on", "next_due_on", "window_ends_on", "updated_at"],
    )


def monitoring_results_record(
    *, results: Sequence[tuple[Any, str, dt.date]], actor: User | None, now: dt.datetime
) -> int:
    """MON-1..4, MON-3: applies new results `(patient_id, requirement, done_on)` (lab results named by
    their test, status forms as `status_form`) to the stored schedule inside the caller's transaction, and
    closes the open flag of each requirement a newer result arrived for ("a new result closes it").
    Set-based: whatever the number of results, at most five queries (schedule rows read and locked in id
    order, one bulk update, open flags read and locked, one update, one audit insert); none when no result
    concerns monitoring. Results older than the last one recorded change nothing. Returns the number of
    flags closed."""
    latest: dict[tuple[Any, str], dt.date] = {}
    for patient_id, requirement, done_on in results:
        if requirement in MR.values:
            key = (patient_id, requirement)
            latest[key] = max(done_on, latest.get(key, done_on))
    if not latest:
        return 0
    program = rules.current()
    rows = list(
        MonitoringSchedule.objects.select_for_update()
        .filter(patient_id__in={k[0] for k in latest}, requirement__in={k[1] for k in latest})
        .order_by("id")
    )
    changed = []
    for row in rows:
        found = latest.get((row.patient_id, row.requirement))
        if found is None or (row.last_done_on is not None and found <= row.last_done_on):
            continue
        row.last_done_on = found
        row.next_due_on = next_due(program, row.requirement, found)
        row.updated_at = now
        changed.append(row)
    if not changed:
        return 0
    MonitoringSchedule.objects.bulk_update(changed, ["last_done_on", "next_due_on", "updated_at"])
    advanced = {(row.patient_id, row.requirement) for row in changed}
    flags = [
        (pk, patient_id, requirement)
        for pk, patient_id, requirement in MonitoringFlag.objects.select_for_update()
        .filter(
            status=FlagStatus.OPEN,
            patient_id__in={k[0] for k in advanced},
            requirement__in={k[1] for k in advanced},
        )
        .order_by("id")
        .values_list("pk", "patient_id", "requirement")
        if (patient_id, requirement) in advanced
    ]
    if not flags:
        return 0
    return _flags_resolve(
        {
            pk: {"done_on": latest[(patient_id, requirement)].isoformat()}
            for pk, patient_id, requirement in flags
        },
        resolution=FlagResolution.RESULT,
        actor=actor,
        now=now,
    )


def _flags_resolve(
    flags: dict[Any, dict[str, Any]], *, resolution: str, actor: User | None, now: dt.datetime
) -> int:
    """Closes the (locked) open flags `flags` (id -> extra audit changes) on the actor's local day, one
    update and one audit insert; returns how many."""
    today = local_today(actor, now) if actor is not None else timezone.localdate(now)
    MonitoringFlag.objects.filter(pk__in=list(flags)).update(
        status=FlagStatus.RESOLVED, resolved_on=today, resolution=resolution
    )
    audit_record_many(
        actor=actor,
        action="monitoring_flag.resolve",
        subject_type="monitoringflag",
        changes_by_id={
            pk: {"status": [FlagStatus.OPEN, FlagStatus.RESOLVED], "resolution": resolution, **extra}
            for pk, extra in flags.items()
        },
        at=now,
    )
    return len(flags)


REBUILD_BATCH = 500  # patients per transaction


def monitoring_schedule_rebuild(
    *, actor: User | None, now: dt.datetime, batch: int = REBUILD_BATCH
) -> tuple[int, int]:
    """MON-1, MON-2, MON-4 (*settings*): the stored schedule written again from the program settings now
    in force, after an interval or the window length (`monitoring_months_after_last_infusion`) changed:
    each row's next due date is its interval after its last result (or after the first infusion when
    there is none, as `monitoring_schedule_start` computes it), each window ends that many months after
    the patient's most recent infusion, and `Patient.monitoring_ends_on` follows. Rows that already agree
    are not touched; each changed patient gets one audit event (`monitoring_schedule.rebuild`).

    Patients still monitored only (not deceased, not `monitoring_complete`: their monitoring has ended and
    stays ended). `batch` patients per transaction, in id order: their patient rows are locked first, then
    their schedule rows in id order (the registry's lock order: an infusion locks the patient, then the
    schedule; results lock schedule rows in id order), and the new dates are computed from the locked
    rows, so a result or infusion committed meanwhile is never overwritten, and the gate waits at most for
    one batch. A constant number of statements per batch. Returns (schedule rows changed, patients
    changed)."""
    program = rules.current()
    window = relativedelta(months=program.monitoring_months_after_last_infusion)
    rows_changed = patients_changed = 0
    after: Any = None
    while True:
        with transaction.atomic():
            patients = (
                # NO KEY UPDATE: results naming these patients (a foreign key) may still be inserted meanwhile;
                # the gate's and the infusion's FOR UPDATE wait for the batch.
                Patient.objects.select_for_update(no_key=True)
                .filter(first_infusion_on__isnull=False, last_infusion_on__isnull=False)
                .exclude(status__in=(PatientStatus.DECEASED, PatientStatus.MONITORING_COMPLETE))
            )
            if after is not None:
                patients = patients.filter(pk__gt=after)
            locked = list(
                patients.order_by("pk").only(
                    "pk", "first_infusion_on", "last_infusion_on", "monitoring_ends_on"
                )[:batch]
            )
            if not locked:
                break
            after = locked[-1].pk
            by_id = {patient.pk: patient for patient in locked}
            schedule = list(
                MonitoringSchedule.objects.select_for_update().filter(patient_id__in=by_id).order_by("pk")
            )
            changes: dict[Any, dict[str, Any]] = {}
            rows = []
            for row in schedule:
                patient = by_id[row.patient_id]
                first, last = patient.first_infusion_on, patient.last_infusion_on
                if first is None or last is None:  # excluded above
                    continue
                due = next_due(program, row.requirement, row.last_done_on or first)
                ends = last + window
                if (due, ends) == (row.next_due_on, row.window_ends_on):
                    continue
                moved = changes.setdefault(row.patient_id, {"next_due_on": {}})
                if due != row.next_due_on:
                    moved["next_due_on"][row.requirement] = [row.next_due_on, due]
                if ends != row.window_ends_on:
                    moved["window_ends_on"] = [row.window_ends_on, ends]
                row.next_due_on, row.window_ends_on, row.updated_at = due, ends, now
                rows.append(row)
            ends_moved = []
            for patient in locked:
                ends = patient.last_infusion_on + window  # type: ignore[operator]
                if patient.monitoring_ends_on != ends:
                    changes.setdefault(patient.pk, {"next_due_on": {}})["monitoring_ends_on"] = [
                        patient.monitoring_ends_on,
                        ends,
                    ]
                    patient.monitoring_ends_on, patient.updated_at = ends, now
                    ends_moved.append(patient)
            MonitoringSchedule.objects.bulk_update(
                rows, ["next_due_on", "window_ends_on", "updated_at"], batch_size=1000
            )
            Patient.objects.bulk_update(ends_moved, ["monitoring_ends_on", "updated_at"], batch_size=1000)
            if changes:
                audit_record_many(
                    actor=actor,
                    action="monitoring_schedule.rebuild",
                    subject_type="patient",
                    changes_by_id=changes,
                    at=now,
                )
            rows_changed += len(rows)
            patients_changed += len(changes)
        if len(locked) < batch:
            break
    return rows_changed, patients_changed


def monitoring_flags_end(*, patient_id: Any, actor: User | None, now: dt.datetime) -> int:
    """ACT-8: a patient's open flags closed as `monitoring_ended` (a recorded death), in the caller's
    transaction, each audited as the sweep audits its own; returns how many. The sweep would close them
    on its next run; the flag list and the dashboard should not wait for it."""
    flags = list(
        MonitoringFlag.objects.select_for_update()
        .filter(patient_id=patient_id, status=FlagStatus.OPEN)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not flags:
        return 0
    return _flags_resolve(
        {pk: {} for pk in flags}, resolution=FlagResolution.MONITORING_ENDED, actor=actor, now=now
    )


# --- Status forms (MON-4) -------------------------------------------------------------------------


def status_form_record(
    *, patient: Patient, actor: User, data: dict[str, Any], now: dt.datetime
) -> StatusForm:
    """MON-4: the prescriber of record (or its delegate) files a patient status form: still under care,
    labs reviewed, adverse events since the last form from the fixed list. Not in the future, not before
    enrollment. Updates the schedule and closes an open status-form flag in the same transaction."""
    if actor.role not in (Role.PRESCRIBER, Role.DELEGATE) or actor.prescriber_id != patient.prescriber_id:
        raise PermissionDenied("Only the prescriber of record or its delegate files status forms (MON-4).")
    errors: dict[str, list[str]] = {}
    completed_on = data["completed_on"]
    if completed_on > local_today(actor, now):
        errors["completed_on"] = ["Cannot be in the future."]
    elif completed_on < patient.enrollment_signed_on:
        errors["completed_on"] = ["Cannot be before the patient's enrollment."]
    events = list(data.get("adverse_events") or [])
    unknown = [e for e in events if e not in AdverseEvent.values]
    if unknown:
        errors["adverse_events"] = [f"Unknown adverse event(s): {', '.join(map(str, unknown))}."]
    elif len(set(events)) != len(events):
        errors["adverse_events"] = ["Each adverse event is listed once."]
    if errors:
        raise ValidationFailed(errors)
    ordered = [e for e in AdverseEvent.values if e in events]
    with transaction.atomic():
        form = StatusForm.objects.create(
            patient=patient,
            prescriber_id=patient.prescriber_id,
            completed_on=completed_on,
            still_under_care=data.get("still_under_care", True),
            labs_reviewed=data["labs_reviewed"],
            adverse_events=ordered,
            notes=data.get("notes", ""),
            recorded_by=actor,
        )
        closed = monitoring_results_record(
            results=[(patient.pk, MR.STATUS_FORM, completed_on)], actor=actor, now=now
        )
        audit_record(
            actor=actor,
            action="status_form.record",
            subject=patient,
            changes={
                "status_form": form.pk,
                "completed_on": completed_on,
                "still_under_care": form.still_under_care,
                "labs_reviewed": form.labs_reviewed,
                "adverse_events": ordered,
                "flags_resolved": closed,
            },
            at=now,
        )
    return form


# --- The daily sweep (MON-3, MON-5) ------------------------------------------------------------------


@dataclass(frozen=True)
class DigestLine:
    """One item of a prescriber's digest. Sources other than monitoring flags (pregnancy reminders, say)
    return these from `EXTRA_DIGEST_SOURCES`: the registry ID only, no other patient data."""

    prescriber_id: Any
    rems_patient_id: str
    kind: str
    label: str
    due_on: dt.date
    blocking: bool


# Called as `source(as_of=<date>, patient_id_range=<(lo, hi) or None>)` inside the sweep's transaction;
# each returns only the items NEWLY raised (each exactly once over all runs). Their lines are stored and
# sent with the flag lines, in the same one digest per prescriber. Features register themselves here from
# their own code (the pregnancy reminders, PRG-4: from RegistryConfig.ready), so this module imports none.
EXTRA_DIGEST_SOURCES: list[Callable[..., list[DigestLine]]] = []


@dataclass
class SweepResult:
    as_of: dt.date
    opened: int = 0
    resolved: int = 0
    blocking: int = 0
    completed: int = 0
    expired: int = 0
    lapsed: int = 0
    digests: int = 0
    already_ran: bool = False
    digest_ids: list[Any] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "opened": self.opened,
            "resolved": self.resolved,
            "blocking": self.blocking,
            "completed": self.completed,
            "expired": self.expired,
            "lapsed": self.lapsed,
            "digests": self.digests,
        }


_UUID_SPACE = 1 << 128
_SWEEP_WORK_MEM = "64MB"


def part_range(index: int, total: int) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """The patient-id range `[lo, hi)` of part `index` of `total` (patient ids are random UUIDs, so equal
    slices of the id space hold about equal numbers of patients); None is open-ended."""
    if not 0 <= index < total:
        raise ValueError(f"part {index} of {total}")
    lo = None if index == 0 else uuid.UUID(int=index * _UUID_SPACE // total)
    hi = None if index == total - 1 else uuid.UUID(int=(index + 1) * _UUID_SPACE // total)
    return lo, hi


def _require_postgresql() -> None:
    if connection.vendor != "postgresql":
        raise RuntimeError("The monitoring sweep runs on PostgreSQL (DATABASE_URL=postgres://…).")


def _range_sql(column: str, lo: Any, hi: Any) -> str:
    return (f" AND {column} >= %(lo)s" if lo is not None else "") + (
        f" AND {column} < %(hi)s" if hi is not None else ""
    )


_AUDIT_INSERT = (
    "INSERT INTO registry_auditevent"
    " (id, created_at, actor_id, actor_role, action, subject_type, subject_id, changes, request_id)"
)
_LABELS_SQL = "(VALUES {}) AS lbl(requirement, label)".format(
    ", ".join(f"('{k}', '{v}')" for k, v in REQUIREMENT_LABELS.items())
)
# Patients the registry still monitors: not deceased, monitoring not complete (discontinued and suspended
# patients are monitored until their window ends, ACT-8).
_MONITORED = "('deceased', 'monitoring_complete')"


def _sweep_statements(range_patient: str, range_flag: str) -> list[tuple[str, str]]:
    """The sweep's statements over one patient-id range, in lock order (flags, patients; the authorization
    numbers follow in `_part_run`). Each returns one row of counts. Rows a concurrent transaction holds
    (a lab result closing its flag, say) are skipped, never waited for, so the sweep cannot deadlock with
    the registry's writes; what it skipped is taken up by the next run.

    The flag statement reads the overdue set once (`od`: the schedule's covering index on next due, joined
    to the monitored patients, as the bench's baseline does) and the open flags once (`fl`, each marked
    overdue or not by a hash join with `od`); everything else follows from those two sets: flags to
    resolve (open, no longer overdue), flags to mark blocking (open, still overdue, past the threshold),
    flags to open (overdue, no open flag), one audit insert for the three kinds and the digest lines. Only
    the flags that change are locked."""
    flags = f"""
        WITH od AS MATERIALIZED (
            SELECT s.patient_id, s.requirement, s.next_due_on, p.prescriber_id, p.rems_patient_id
            FROM registry_monitoringschedule s JOIN registry_patient p ON p.id = s.patient_id
            WHERE s.next_due_on < %(overdue_before)s AND s.window_ends_on >= %(as_of)s
              AND p.status NOT IN {_MONITORED}
              {range_patient.replace("{col}", "s.patient_id")}
        ), fl AS MATERIALIZED (
            SELECT f.id, f.patient_id, f.requirement, f.due_on, f.blocking, od.patient_id IS NOT NULL AS overdue
            FROM registry_monitoringflag f
            LEFT JOIN od ON od.patient_id = f.patient_id AND od.requirement = f.requirement
            WHERE f.status = 'open' {range_flag}
        ), rc AS (
            SELECT f.id,
                   CASE WHEN s.window_ends_on < %(as_of)s OR p.status IN {_MONITORED}
                   THEN '{FlagResolution.MONITORING_ENDED}' ELSE '{FlagResolution.RESULT}' END AS resolution
            FROM fl JOIN registry_monitoringflag f ON f.id = fl.id
            -- One index probe per flag to resolve (OFFSET 0 keeps the planner from hashing the schedule).
            CROSS JOIN LATERAL (SELECT s.window_ends_on FROM registry_monitoringschedule s
                                WHERE s.patient_id = fl.patient_id AND s.requirement = fl.requirement
                                OFFSET 0) s
            CROSS JOIN LATERAL (SELECT p.status FROM registry_patient p WHERE p.id = fl.patient_id OFFSET 0) p
            WHERE NOT fl.overdue AND f.status = 'open'
            FOR UPDATE OF f SKIP LOCKED
        ), bc AS (
            SELECT f.id FROM fl JOIN registry_monitoringflag f ON f.id = fl.id
            WHERE fl.overdue AND NOT fl.blocking AND fl.due_on < %(blocking_before)s
              AND f.status = 'open' AND NOT f.blocking
            FOR UPDATE OF f SKIP LOCKED
        ), r AS (
            UPDATE registry_monitoringflag f
            SET status = 'resolved', resolved_on = %(as_of)s, resolution = rc.resolution
            FROM rc WHERE f.id = rc.id
            RETURNING f.id, f.resolution
        ), b AS (
            UPDATE registry_monitoringflag f SET blocking = TRUE, blocking_since = %(as_of)s
            FROM bc WHERE f.id = bc.id
            RETURNING f.id
        ), o AS (
            INSERT INTO registry_monitoringflag
                (id, created_at, patient_id, requirement, due_on, opened_on, status, blocking, blocking_since,
                 resolved_on, resolution, sweep_id)
            SELECT gen_random_uuid(), %(now)s, od.patient_id, od.requirement, od.next_due_on, %(as_of)s, 'open',
                   od.next_due_on < %(blocking_before)s,
                   CASE WHEN od.next_due_on < %(blocking_before)s THEN %(as_of)s END, NULL, '', %(run)s
            FROM od
            WHERE NOT EXISTS (SELECT 1 FROM fl WHERE fl.patient_id = od.patient_id
                              AND fl.requirement = od.requirement)
            -- The partial unique index stays the arbiter (a flag opened by a writer since the snapshot).
            ON CONFLICT (patient_id, requirement) WHERE status = 'open' DO NOTHING
            RETURNING id, patient_id, requirement, due_on, blocking
        ), ol AS MATERIALIZED (
            SELECT o.id, o.requirement, o.due_on, o.blocking, od.prescriber_id, od.rems_patient_id
            FROM o JOIN od ON od.patient_id = o.patient_id AND od.requirement = o.requirement
        ), a AS (
            {_AUDIT_INSERT}
            SELECT gen_random_uuid(), %(now)s, NULL, 'system', x.action, 'monitoringflag', x.id, x.changes, ''
            FROM (
                SELECT 'monitoring_flag.resolve' AS action, r.id,
                       json_build_object('status', json_build_array('open', 'resolved'),
                                         'resolution', r.resolution, 'sweep', %(run)s::text)::jsonb AS changes
                FROM r
                UNION ALL
                SELECT 'monitoring_flag.open', o.id,
                       json_build_object('patient', o.patient_id, 'requirement', o.requirement,
                                         'due_on', o.due_on, 'blocking', o.blocking, 'sweep', %(run)s::text)::jsonb
                FROM o
                UNION ALL
                SELECT 'monitoring_flag.block', b.id,
                       json_build_object('blocking', json_build_array(false, true), 'sweep', %(run)s::text)::jsonb
                FROM b
            ) x
        ), pd AS MATERIALIZED (
            -- A run in one part names each prescriber's digest now (the digest row follows in
            -- `_digests_assemble`, same transaction; the foreign key is checked at commit), so its lines
            -- are written once. A split run's lines get their digest when its last part assembles them.
            SELECT x.prescriber_id, CASE WHEN %(one_part)s THEN gen_random_uuid() END AS digest_id
            FROM (SELECT DISTINCT ol.prescriber_id FROM ol) x
        ), l AS (
            INSERT INTO registry_digestline
                (run_id, prescriber_id, digest_id, flag_id, rems_patient_id, kind, label, due_on, blocking)
            SELECT %(run)s, ol.prescriber_id, pd.digest_id, ol.id, ol.rems_patient_id, ol.requirement,
                   lbl.label, ol.due_on, ol.blocking
            FROM ol JOIN pd ON pd.prescriber_id = ol.prescriber_id
                   JOIN {_LABELS_SQL} ON lbl.requirement = ol.requirement
        )
        SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM o),
               (SELECT count(*) FILTER (WHERE o.blocking) FROM o), (SELECT count(*) FROM b)
    """
    complete = f"""
        WITH old AS (
            SELECT p.id, p.status FROM registry_patient p
            WHERE p.status IN ('authorized', 'discontinued') AND p.monitoring_ends_on < %(as_of)s
              AND NOT EXISTS (SELECT 1 FROM registry_course c WHERE c.patient_id = p.id
                              AND c.status IN ('planned', 'in_progress'))
              {range_patient.replace("{col}", "p.id")}
            FOR UPDATE OF p SKIP LOCKED
        ), c AS (
            UPDATE registry_patient p
            SET status = 'monitoring_complete', status_changed_at = %(now)s, updated_at = %(now)s,
                status_reason = 'Monitoring window ended on ' || to_char(p.monitoring_ends_on, 'YYYY-MM-DD') || '.'
            FROM old WHERE p.id = old.id
            RETURNING p.id, old.status AS before
        ), a AS (
            {_AUDIT_INSERT}
            SELECT gen_random_uuid(), %(now)s, NULL, 'system', 'patient.monitoring_complete', 'patient', c.id,
                   json_build_object('status', json_build_array(c.before, 'monitoring_complete'),
                                     'sweep', %(run)s::text)::jsonb, ''
            FROM c
        )
        SELECT count(*) FROM c
    """
    return [("flags", flags), ("complete", complete)]


def _part_run(*, run: SweepRun, index: int, program: rules.ProgramSettings, worker: str = "") -> SweepResult:
    """One patient-id range of `run`, inside the caller's transaction. Returns what it did."""
    result = SweepResult(as_of=run.as_of)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO registry_sweeppart (run_id, index, done_at, worker) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            [run.pk, index, timezone.now(), worker[:200]],
        )
        if cursor.fetchone() is None:  # this part was done already (a redelivered task): nothing to do
            result.already_ran = True
            return result
    lo, hi = part_range(index, run.parts_total)
    params: dict[str, Any] = {
        "as_of": run.as_of,
        "now": run.now,
        "run": run.pk,
        "lo": lo,
        "hi": hi,
        "overdue_before": overdue_before(program, run.as_of),
        "blocking_before": blocking_before(program, run.as_of),
        "one_part": run.parts_total == 1,
    }
    statements = _sweep_statements(_range_sql("{col}", lo, hi), _range_sql("f.patient_id", lo, hi))
    with connection.cursor() as cursor:
        # The flag statement hashes the overdue set and the open flags: let it do so in memory (this
        # transaction only; the default 4 MB spills to disk from about 50,000 overdue requirements).
        cursor.execute(f"SET LOCAL work_mem = '{_SWEEP_WORK_MEM}'")
        for name, sql in statements:
            cursor.execute(sql, params)
            row = cursor.fetchone()
            if name == "flags":
                result.resolved, result.opened = row[0], row[1]
                result.blocking = row[2] + row[3]
            else:
                result.completed = row[0]
    # GATE-2 (issue 9 item 4): numbers past their expiry are stored as expired, numbers whose grounds no
    # longer hold (after this run's completions too) as revoked with their category. Both set-based.
    in_range = {
        **({"patient_id__gte": lo} if lo is not None else {}),
        **({"patient_id__lt": hi} if hi is not None else {}),
    }
    result.expired = authorizations_expire(now=run.now, **in_range)
    result.lapsed = authorizations_lapse(now=run.now, **in_range)
    extra = [
        line
        for source in EXTRA_DIGEST_SOURCES
        for line in source(as_of=run.as_of, patient_id_range=None if lo is None and hi is None else (lo, hi))
    ]
    if extra:
        DigestLineRow.objects.bulk_create(
            DigestLineRow(
                run=run,
                prescriber_id=line.prescriber_id,
                rems_patient_id=line.rems_patient_id,
                kind=line.kind,
                label=line.label,
                due_on=line.due_on,
                blocking=line.blocking,
            )
            for line in extra
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE registry_sweeprun SET opened = opened + %s, resolved = resolved + %s,"
            " blocking = blocking + %s, completed = completed + %s, expired = expired + %s,"
            " lapsed = lapsed + %s,"
            " parts_done = parts_done + 1 WHERE id = %s RETURNING parts_done, parts_total",
            [
                result.opened,
                result.resolved,
                result.blocking,
                result.completed,
                result.expired,
                result.lapsed,
                run.pk,
            ],
        )
        parts_done, parts_total = cursor.fetchone()
    if parts_done == parts_total:
        result.digest_ids = _digests_assemble(run)
        result.digests = len(result.digest_ids)
    return result


def _digests_assemble(run: SweepRun) -> list[Any]:
    """MON-5: one digest per prescriber with new lines in this run (all parts done), each line linked to
    it, each digest audited; sent after commit. Constant number of statements."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH d AS (
                INSERT INTO registry_digest
                    (id, created_at, run_id, prescriber_id, recipient, status, attempts, sent_at, last_error)
                SELECT coalesce(l.digest_id, gen_random_uuid()), %(now)s, %(run)s, l.prescriber_id, pr.email,
                       'pending', 0, NULL, ''
                -- the id the flag statement gave the prescriber's lines (a run in one part), else a new one
                FROM (SELECT prescriber_id, (max(digest_id::text))::uuid AS digest_id FROM registry_digestline
                      WHERE run_id = %(run)s GROUP BY prescriber_id) l
                JOIN registry_prescriber pr ON pr.id = l.prescriber_id
                ON CONFLICT DO NOTHING
                RETURNING id, prescriber_id
            ), a AS (
                {_AUDIT_INSERT}
                SELECT gen_random_uuid(), %(now)s, NULL, 'system', 'digest.create', 'digest', d.id,
                       json_build_object('prescriber', d.prescriber_id, 'sweep', %(run)s::text)::jsonb, ''
                FROM d
            )
            SELECT id FROM d
            """,
            {"now": run.now, "run": run.pk},
        )
        digest_ids = [row[0] for row in cursor.fetchall()]
        # The lines still without a digest (a split run's, the extra sources') get their prescriber's. One
        # probe of the (run, prescriber) unique index per line, written as a subquery so that both keys
        # are the probe's: as a join, the planner (its statistics predating this run) took the run for one
        # row and scanned all the run's digests once per line (52 s at 1,000,000 patients).
        cursor.execute(
            "UPDATE registry_digestline l SET digest_id = (SELECT d.id FROM registry_digest d"
            " WHERE d.run_id = l.run_id AND d.prescriber_id = l.prescriber_id)"
            " WHERE l.run_id = %(run)s AND l.digest_id IS NULL",
            {"run": run.pk},
        )
        cursor.execute(
            "UPDATE registry_sweeprun SET digests = %s, finished_at = %s WHERE id = %s",
            [len(digest_ids), timezone.now(), run.pk],
        )
    ids = [str(pk) for pk in digest_ids]
    if ids:
        transaction.on_commit(lambda: _digests_enqueue(ids))
    return digest_ids


def _digests_enqueue(digest_ids: list[str]) -> None:
    from registry.tasks import send_digest

    for digest_id in digest_ids:
        send_digest.delay(digest_id)


def _run_create(*, as_of: dt.date, now: dt.datetime, parts: int) -> SweepRun | None:
    """The sweep-run row for the date, or None when one exists: the unique date is the guard (a
    concurrent creator waits on the index, then finds the row)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO registry_sweeprun (id, created_at, as_of, now, parts_total, parts_done, opened,"
            " resolved, blocking, completed, expired, lapsed, digests, finished_at)"
            " VALUES (%s, %s, %s, %s, %s, 0, 0, 0, 0, 0, 0, 0, 0, NULL) ON CONFLICT (as_of) DO NOTHING RETURNING id",
            [uuid.uuid4(), timezone.now(), as_of, now, parts],
        )
        row = cursor.fetchone()
    return None if row is None else SweepRun.objects.get(pk=row[0])


def monitoring_sweep(*, as_of: dt.date, now: dt.datetime, worker: str = "") -> SweepResult:
    """MON-3, MON-5: the daily sweep for `as_of`, in one process and one transaction, over every patient.
    Idempotent: a second run for the same date (even one started concurrently: it waits on the sweep-run
    row's unique date) changes nothing and sends nothing, and answers `already_ran`. The number of
    statements does not depend on the number of patients."""
    _require_postgresql()
    program = rules.current()
    with transaction.atomic():
        run = _run_create(as_of=as_of, now=now, parts=1)
        if run is None:
            return SweepResult(as_of=as_of, already_ran=True)
        result = _part_run(run=run, index=0, program=program, worker=worker)
        audit_record(actor=None, action="monitoring_sweep.run", subject=run, changes=result.counts(), at=now)
    logger.info("monitoring sweep %s: %s", as_of, result.counts())
    return result


def monitoring_sweep_split_start(
    *, as_of: dt.date, now: dt.datetime, parts: int
) -> tuple[SweepRun, list[int]]:
    """MON-5 over several workers: creates (commits) the sweep-run row for `as_of` with `parts` patient-id
    ranges and answers the run and the parts still to do. For a run that exists already it answers its
    unfinished parts (none once finished), so re-dispatching an interrupted sweep is safe."""
    _require_postgresql()
    if not 1 <= parts <= 64:
        raise ValueError("A sweep is split into 1 to 64 parts.")
    with transaction.atomic():
        run = _run_create(as_of=as_of, now=now, parts=parts)
        if run is not None:
            audit_record(
                actor=None, action="monitoring_sweep.start", subject=run, changes={"parts": parts}, at=now
            )
            return run, list(range(parts))
    run = SweepRun.objects.get(as_of=as_of)
    done = set(run.parts.values_list("index", flat=True))
    return run, [i for i in range(run.parts_total) if i not in done]


def monitoring_sweep_part(*, run_id: Any, index: int, worker: str = "") -> SweepResult:
    """One patient-id range of a split sweep, in its own transaction. Done once per (run, part): a
    redelivered or duplicate task finds its part row and does nothing. The part that completes last (the
    run row's counter, updated under its row lock) assembles the prescribers' digests."""
    _require_postgresql()
    program = rules.current()
    with transaction.atomic():
        run = SweepRun.objects.get(pk=run_id)
        result = _part_run(run=run, index=index, program=program, worker=worker)
        if not result.already_ran:
            audit_record(
                actor=None,
                action="monitoring_sweep.part",
                subject=run,
                changes={"part": index, **result.counts()},
                at=run.now,
            )
    return result


def sweep_totals(*, as_of: dt.date) -> SweepResult:
    """The stored counts of the sweep run for `as_of` (all parts so far)."""
    run = SweepRun.objects.get(as_of=as_of)
    return SweepResult(
        as_of=as_of,
        opened=run.opened,
        resolved=run.resolved,
        blocking=run.blocking,
        completed=run.completed,
        expired=run.expired,
        lapsed=run.lapsed,
        digests=run.digests,
    )


# --- Digests (MON-5) --------------------------------------------------------------------------------


def digest_message(digest: Digest) -> tuple[str, str]:
    """Subject and body: registry ID, requirement, due date, blocking or not; no other patient data."""
    lines = list(digest.lines.order_by("rems_patient_id", "due_on", "kind"))
    blocking = sum(1 for line in lines if line.blocking)
    subject = f"LEMTRADA REMS: {len(lines)} new monitoring item(s) for {digest.run.as_of.isoformat()}"
    if blocking:
        subject += f", {blocking} blocking"
    body = [
        "New items for your patients in the LEMTRADA REMS registry.",
        "Blocking items stop new courses and dispense authorizations until they are resolved.",
        "",
    ]
    body += [
        f"{line.rems_patient_id}  {line.label}  due {line.due_on.isoformat()}"
        + ("  BLOCKING" if line.blocking else "")
        for line in lines
    ]
    body += ["", "Sign in to the registry to see details. Do not reply to this message."]
    return subject, "\n".join(body)


class DigestNotSent(Exception):
    """Raised for a failed send so the Celery task retries."""


def digest_send(*, digest_id: Any, now: dt.datetime) -> bool:
    """MON-5: sends one digest e-mail (console backend locally, SMTP from the environment in production).
    Holds the digest's row lock while sending, so two deliveries of the task cannot both send; a sent
    digest is not sent again (answers False). A failure is recorded and re-raised for the task's retry."""
    with transaction.atomic():
        digest = Digest.objects.select_for_update().select_related("run").filter(pk=digest_id).first()
        if digest is None or digest.status == DigestStatus.SENT:
            return False
        subject, body = digest_message(digest)
        digest.attempts += 1
        failure: Exception | None = None
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [digest.recipient], fail_silently=False)
        except Exception as exc:  # any transport error: recorded, then retried by the task
            failure = exc
        if failure is None:
            digest.status, digest.sent_at, digest.last_error = DigestStatus.SENT, now, ""
            digest.save(update_fields=["status", "sent_at", "last_error", "attempts"])
            audit_record(
                actor=None,
                action="digest.send",
                subject=digest,
                changes={"recipient": digest.recipient, "lines": digest.lines.count()},
                at=now,
            )
            return True
        digest.status, digest.last_error = DigestStatus.FAILED, f"{type(failure).__name__}: {failure}"[:2000]
        digest.save(update_fields=["status", "last_error", "attempts"])
        audit_record(
            actor=None,
            action="digest.send_failed",
            subject=digest,
            changes={"attempt": digest.attempts, "error": digest.last_error},
            at=now,
        )
    raise DigestNotSent(str(failure))


__all__ = [
    "EXTRA_DIGEST_SOURCES",
    "DigestLine",
    "SweepResult",
    "digest_send",
    "monitoring_results_record",
    "monitoring_schedule_start",
    "monitoring_sweep",
    "monitoring_sweep_part",
    "monitoring_sweep_split_start",
    "status_form_record",
]
