"""Pregnancy reminders (PRG-3, PRG-4, MON-5): `pregnancy_reminders_raise(as_of=...)` raises, set-based,
an `outcome_overdue` reminder once the estimated due date + 30 days is reached without an outcome, and an
`infant_follow_up_due` reminder 12 months after a live birth without a follow-up; each once per report,
returning only what it created (the daily sweep puts them in the prescriber's digest)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.models import AuditEvent, PregnancyReminder
from registry.services.pregnancy import pregnancy_reminders_raise, pregnancy_report_update

from .gate_helpers import DAY0, frozen, moment
from .pregnancy_helpers import LIVE_BIRTH, file_report, rp_patient

pytestmark = pytest.mark.django_db

D = dt.date
DAY = dt.timedelta(days=1)
DUE = D(2026, 11, 8)  # LMP 2026-02-01 + 280 days
OUTCOME_OVERDUE = D(2026, 12, 8)  # DUE + 30 days
BIRTH = D(2026, 11, 6)
FOLLOW_UP_DUE = D(2027, 11, 6)  # 12 months after the birth


def _raised(reminders):
    return [(r.prescriber_id, r.rems_patient_id, r.kind, r.due_on) for r in reminders]


def _new_report(prescriber, **dates):
    with frozen(DAY0):
        patient = rp_patient(prescriber, authorize=False)
    return patient, file_report(
        prescriber, patient, on=D(2026, 3, 20), **(dates or {"lmp_on": D(2026, 2, 1)})
    )


def _record(prescriber, report, on, **data):
    return pregnancy_report_update(report=report, actor=prescriber.user, data=data, now=moment(on))


# --- outcome_overdue ------------------------------------------------------------------------------------


def test_outcome_overdue_raised_on_due_date_plus_30_days_once(prescriber):
    """PRG-4: nothing the day before; on due + 30 days one reminder, with what the digest needs; the same
    day again, and the day after, nothing new; the reminder is stored once and audited."""
    patient, report = _new_report(prescriber)
    assert report.outcome_overdue_on == OUTCOME_OVERDUE

    assert pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE - DAY) == []
    raised = pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE)
    assert _raised(raised) == [
        (prescriber.participant.pk, patient.rems_patient_id, "outcome_overdue", OUTCOME_OVERDUE)
    ]
    assert raised[0].report_id == report.pk
    assert pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE) == []
    assert pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE + DAY) == []

    stored = PregnancyReminder.objects.get()
    assert (stored.report_id, stored.kind, stored.due_on, stored.raised_on, stored.pk) == (
        report.pk,
        "outcome_overdue",
        OUTCOME_OVERDUE,
        OUTCOME_OVERDUE,
        raised[0].reminder_id,
    )
    event = AuditEvent.objects.get(action="pregnancy_reminder.raise")
    assert (event.actor, event.actor_role, event.subject_id) == (None, "system", report.pk)
    assert event.changes == {
        "reminder": str(stored.pk),
        "kind": "outcome_overdue",
        "due_on": "2026-12-08",
        "raised_on": "2026-12-08",
    }


def test_a_sweep_that_missed_days_raises_the_reminder_late_with_its_due_day(prescriber):
    patient, _report = _new_report(prescriber)
    raised = pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE + 10 * DAY)
    assert _raised(raised) == [
        (prescriber.participant.pk, patient.rems_patient_id, "outcome_overdue", OUTCOME_OVERDUE)
    ]
    assert PregnancyReminder.objects.get().raised_on == OUTCOME_OVERDUE + 10 * DAY


def test_no_outcome_reminder_once_the_outcome_is_recorded(prescriber):
    _, report = _new_report(prescriber)
    _record(
        prescriber,
        report,
        D(2026, 5, 2),
        outcome="spontaneous_abortion",
        outcome_on=D(2026, 5, 1),
        maternal_thyroid_status="normal",
    )
    assert pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE + 400 * DAY) == []
    assert not PregnancyReminder.objects.exists()


def test_a_corrected_due_date_moves_the_reminder(prescriber):
    """PRG-2/PRG-4: the stored due date follows a correction."""
    _, report = _new_report(prescriber)
    report = _record(prescriber, report, D(2026, 4, 1), estimated_due_on=D(2026, 11, 20))
    assert report.outcome_overdue_on == D(2026, 12, 20)
    assert pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE) == []
    assert [r.due_on for r in pregnancy_reminders_raise(as_of=D(2026, 12, 20))] == [D(2026, 12, 20)]


# --- infant_follow_up_due -----------------------------------------------------------------------------------


def test_infant_follow_up_due_raised_12_months_after_a_live_birth_once(prescriber):
    """PRG-3: a live birth on 2026-11-06: the follow-up reminder on 2027-11-06, not the day before, once;
    no outcome reminder for it (the outcome is recorded)."""
    patient, report = _new_report(prescriber)
    report = _record(prescriber, report, D(2026, 11, 10), outcome_on=BIRTH, **LIVE_BIRTH)
    assert report.infant_follow_up_due_on == FOLLOW_UP_DUE

    assert pregnancy_reminders_raise(as_of=FOLLOW_UP_DUE - DAY) == []
    assert _raised(pregnancy_reminders_raise(as_of=FOLLOW_UP_DUE)) == [
        (prescriber.participant.pk, patient.rems_patient_id, "infant_follow_up_due", FOLLOW_UP_DUE)
    ]
    assert pregnancy_reminders_raise(as_of=FOLLOW_UP_DUE) == []
    assert pregnancy_reminders_raise(as_of=FOLLOW_UP_DUE + 30 * DAY) == []
    assert list(PregnancyReminder.objects.values_list("kind", flat=True)) == ["infant_follow_up_due"]


def test_no_follow_up_reminder_once_the_follow_up_is_recorded_or_without_a_live_birth(prescriber):
    _, followed = _new_report(prescriber)
    followed = _record(prescriber, followed, D(2026, 11, 10), outcome_on=BIRTH, **LIVE_BIRTH)
    _record(prescriber, followed, D(2027, 11, 1), infant_follow_up_on=D(2027, 11, 1))
    _, stillbirth = _new_report(prescriber)
    _record(
        prescriber,
        stillbirth,
        D(2026, 11, 10),
        outcome="stillbirth",
        outcome_on=BIRTH,
        maternal_thyroid_status="hypothyroid",
        major_malformation=False,
    )

    assert pregnancy_reminders_raise(as_of=FOLLOW_UP_DUE + 100 * DAY) == []


def test_a_late_outcome_after_the_reminder_then_the_follow_up_reminder(prescriber):
    """Each kind once: the outcome reminder, then, after a late live-birth outcome, the follow-up one."""
    _patient, report = _new_report(prescriber)
    assert [r.kind for r in pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE)] == ["outcome_overdue"]
    report = _record(prescriber, report, OUTCOME_OVERDUE + DAY, outcome_on=BIRTH, **LIVE_BIRTH)

    assert pregnancy_reminders_raise(as_of=FOLLOW_UP_DUE - DAY) == []
    assert [r.kind for r in pregnancy_reminders_raise(as_of=FOLLOW_UP_DUE)] == ["infant_follow_up_due"]
    assert PregnancyReminder.objects.filter(report=report).count() == 2


# --- Set-based, scoped, concurrent-safe ----------------------------------------------------------------------------


def test_both_kinds_for_many_reports_in_one_call_for_each_prescriber(prescriber, other_prescriber):
    """The digest's input: one entry per new reminder, naming the patient's prescriber of record."""
    mine, _overdue = _new_report(prescriber)
    theirs, born = _new_report(other_prescriber)
    _record(other_prescriber, born, D(2026, 11, 10), outcome_on=D(2026, 11, 7), **LIVE_BIRTH)
    future, _ = _new_report(prescriber, lmp_on=D(2026, 3, 1))  # due 2026-12-06: overdue from 2027-01-05

    raised = pregnancy_reminders_raise(as_of=D(2027, 11, 7))

    assert sorted(_raised(raised), key=str) == sorted(
        [
            (prescriber.participant.pk, mine.rems_patient_id, "outcome_overdue", OUTCOME_OVERDUE),
            (prescriber.participant.pk, future.rems_patient_id, "outcome_overdue", D(2027, 1, 5)),
            (other_prescriber.participant.pk, theirs.rems_patient_id, "infant_follow_up_due", D(2027, 11, 7)),
        ],
        key=str,
    )
    assert PregnancyReminder.objects.count() == 3
    assert pregnancy_reminders_raise(as_of=D(2027, 11, 7)) == []


def test_raising_costs_the_same_few_queries_for_1_and_for_20_reports(prescriber, other_prescriber):
    """STYLE.md 6: set-based; the number of queries does not grow with the reports."""
    _new_report(prescriber)
    for _ in range(20):
        _new_report(other_prescriber)

    with CaptureQueriesContext(connection) as none_due:
        assert pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE - DAY) == []
    with CaptureQueriesContext(connection) as all_due:
        assert len(pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE)) == 21
    with CaptureQueriesContext(connection) as again:
        assert pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE) == []

    print(f"reminder queries: none due={len(none_due)}, 21 due={len(all_due)}, rerun={len(again)}")
    # One statement on PostgreSQL; three on SQLite (insert, read, audit). It joins the caller's
    # transaction without a savepoint, so inside the daily sweep it adds just that.
    assert len(all_due) <= 3, [q["sql"][:80] for q in all_due]
    assert len(none_due) == len(again) <= 3
    if connection.vendor == "postgresql":
        assert len(none_due) == len(all_due) == len(again) == 1


def test_patient_id_range_raises_for_that_slice_only(prescriber):
    """A sweep may work in slices: low <= patient id < high."""
    first, _ = _new_report(prescriber)
    second, _ = _new_report(prescriber)
    low, high = sorted([first.pk, second.pk])

    only_low = pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE, patient_id_range=(low, high))
    assert [r.rems_patient_id for r in only_low] == [(first if first.pk == low else second).rems_patient_id]
    rest = pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE, patient_id_range=(high, None))
    assert [r.rems_patient_id for r in rest] == [(first if first.pk == high else second).rems_patient_id]
    assert pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE, patient_id_range=(None, None)) == []
    assert PregnancyReminder.objects.count() == 2


def test_one_reminder_per_report_and_kind_is_a_database_constraint(prescriber):
    from django.db import IntegrityError, transaction

    pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE)
    _, report = _new_report(prescriber)
    pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE)
    existing = PregnancyReminder.objects.get(report=report)
    with pytest.raises(IntegrityError), transaction.atomic():
        PregnancyReminder.objects.create(
            report=report, kind=existing.kind, due_on=existing.due_on, raised_on=existing.due_on
        )


def test_reminders_are_kept_forever(prescriber):
    """PRG-5: the database refuses to delete a reminder, like its report."""
    from django.db import DatabaseError, transaction

    _new_report(prescriber)
    pregnancy_reminders_raise(as_of=OUTCOME_OVERDUE)
    with pytest.raises(DatabaseError, match="kept forever"), transaction.atomic():
        PregnancyReminder.objects.all().delete()
    assert PregnancyReminder.objects.count() == 1
