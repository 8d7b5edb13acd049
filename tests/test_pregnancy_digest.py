"""Pregnancy reminders in the daily sweep's digests (PRG-4, MON-5): the pregnancy module registers
`pregnancy_reminder_digest_lines` on the monitoring sweep's `EXTRA_DIGEST_SOURCES` (from the app's
`ready()`; monitoring does not import pregnancy), so the sweep raises the due reminders and lists each
once, ever, in the prescriber of record's one digest."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.models import Digest, DigestLine, PregnancyReminder
from registry.services import monitoring
from registry.services.monitoring import monitoring_sweep_part, monitoring_sweep_split_start
from registry.services.pregnancy import (
    pregnancy_digest_source_register,
    pregnancy_reminder_digest_lines,
    pregnancy_report_update,
)

from .gate_helpers import DAY0, frozen, moment
from .monitoring_helpers import sweep
from .pregnancy_helpers import LIVE_BIRTH, file_report, rp_patient
from .processes import manage

D = dt.date
DAY = dt.timedelta(days=1)
REPORTED_ON = D(2026, 3, 20)
LMP = D(2026, 2, 1)  # due 2026-11-08 (LMP + 280 days)
OUTCOME_OVERDUE = D(2026, 12, 8)  # due + 30 days
BIRTH = D(2026, 11, 6)
FOLLOW_UP_DUE = D(2027, 11, 6)  # 12 months after the birth


def _reported(prescriber, *, lmp_on=LMP):
    """A patient of reproductive potential with an open report (no infusion, so no monitoring flags)."""
    with frozen(DAY0):
        patient = rp_patient(prescriber, authorize=False)
    report = file_report(prescriber, patient, on=REPORTED_ON, lmp_on=lmp_on)
    return patient, report


def _pregnancy_lines():
    return list(
        DigestLine.objects.filter(kind__startswith="pregnancy_")
        .order_by("rems_patient_id")
        .values_list("prescriber_id", "rems_patient_id", "kind", "label", "due_on", "blocking", "digest_id")
    )


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_sweep_puts_a_due_outcome_reminder_into_the_prescribers_digest_exactly_once_PRG_4_MON_5(
    prescriber, other_prescriber, mailoutbox, django_capture_on_commit_callbacks
):
    """PRG-4, MON-5: nothing the day before the outcome is overdue; on due date + 30 days the sweep raises
    the reminder and lists it in the prescriber of record's digest (registry ID, reminder, due day,
    blocking: the open report holds new courses), and another prescriber's patient goes to that
    prescriber's digest only; the same day again, and the days after, list nothing new."""
    patient, report = _reported(prescriber)
    other_patient, _ = _reported(other_prescriber)
    assert report.outcome_overdue_on == OUTCOME_OVERDUE

    with django_capture_on_commit_callbacks(execute=True):
        before = sweep(OUTCOME_OVERDUE - DAY)
    assert (before.digests, len(mailoutbox), PregnancyReminder.objects.count()) == (0, 0, 0)

    with django_capture_on_commit_callbacks(execute=True):
        due = sweep(OUTCOME_OVERDUE)
    assert due.digests == 2
    digest = Digest.objects.get(prescriber=prescriber.participant)
    other_digest = Digest.objects.get(prescriber=other_prescriber.participant)
    label = "Pregnancy outcome overdue (PRG-4)"
    assert _pregnancy_lines() == sorted(
        [
            (
                prescriber.participant.pk,
                patient.rems_patient_id,
                "pregnancy_outcome_overdue",
                label,
                OUTCOME_OVERDUE,
                True,
                digest.pk,
            ),
            (
                other_prescriber.participant.pk,
                other_patient.rems_patient_id,
                "pregnancy_outcome_overdue",
                label,
                OUTCOME_OVERDUE,
                True,
                other_digest.pk,
            ),
        ],
        key=lambda line: line[1],
    )
    assert len(mailoutbox) == 2
    mail = next(m for m in mailoutbox if m.to == [prescriber.participant.email])
    assert mail.subject == "LEMTRADA REMS: 1 new monitoring item(s) for 2026-12-08, 1 blocking"
    listed = [line for line in mail.body.splitlines() if line.startswith(patient.rems_patient_id)]
    assert listed == [f"{patient.rems_patient_id}  {label}  due 2026-12-08  BLOCKING"]
    assert other_patient.rems_patient_id not in mail.body
    for private in (patient.first_name, patient.last_name, patient.date_of_birth.isoformat()):
        assert private not in mail.body
    assert (digest.status, digest.lines.count()) == ("sent", 1)

    with django_capture_on_commit_callbacks(execute=True):
        again = sweep(OUTCOME_OVERDUE)
        later = [sweep(OUTCOME_OVERDUE + n * DAY) for n in (1, 2, 30)]
    assert again.already_ran is True
    assert [r.digests for r in later] == [0, 0, 0]
    assert len(mailoutbox) == 2
    assert len(_pregnancy_lines()) == 2
    assert PregnancyReminder.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_a_sweep_that_missed_days_lists_the_reminder_with_its_due_day(prescriber, mailoutbox):
    """MON-5: the sweep raises what fell due by its date, so a day without a sweep loses nothing."""
    patient, _ = _reported(prescriber)
    sweep(OUTCOME_OVERDUE + 10 * DAY)
    assert [(line[1], line[4]) for line in _pregnancy_lines()] == [(patient.rems_patient_id, OUTCOME_OVERDUE)]


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_infant_follow_up_reminder_is_listed_once_and_blocks_nothing_PRG_4(prescriber):
    """PRG-3, PRG-4: 12 months after a live birth with no follow-up, one line that is not blocking (the
    report has its outcome: nothing holds the gate)."""
    patient, report = _reported(prescriber)
    pregnancy_report_update(
        report=report,
        actor=prescriber.user,
        data={"outcome_on": BIRTH, **LIVE_BIRTH},
        now=moment(D(2026, 11, 10)),
    )
    sweep(FOLLOW_UP_DUE - DAY)
    assert _pregnancy_lines() == []
    sweep(FOLLOW_UP_DUE)
    sweep(FOLLOW_UP_DUE + DAY)
    digest = Digest.objects.get()
    assert _pregnancy_lines() == [
        (
            prescriber.participant.pk,
            patient.rems_patient_id,
            "pregnancy_infant_follow_up_due",
            "Infant follow-up due (PRG-4)",
            FOLLOW_UP_DUE,
            False,
            digest.pk,
        )
    ]


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_split_sweep_lists_each_reminder_once_in_one_digest(
    prescriber, mailoutbox, django_capture_on_commit_callbacks
):
    """MON-5 over patient-id ranges: each part raises the reminders of its range only, and the part that
    finishes last sends one digest with every reminder, each listed once."""
    patients = [_reported(prescriber)[0] for _ in range(6)]
    assert len({p.pk.int * 8 >> 128 for p in patients}) >= 2  # the patients fall in several ranges

    with django_capture_on_commit_callbacks(execute=True):
        run, pending = monitoring_sweep_split_start(
            as_of=OUTCOME_OVERDUE, now=moment(OUTCOME_OVERDUE), parts=8
        )
        results = [monitoring_sweep_part(run_id=run.pk, index=i) for i in pending]
        assert monitoring_sweep_part(run_id=run.pk, index=0).already_ran is True

    assert [r.digests for r in results] == [0] * 7 + [1]
    digest = Digest.objects.get()
    assert sorted(line[1] for line in _pregnancy_lines()) == sorted(p.rems_patient_id for p in patients)
    assert {line[6] for line in _pregnancy_lines()} == {digest.pk}
    assert len(mailoutbox) == 1
    assert PregnancyReminder.objects.count() == 6


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_sweep_statements_do_not_grow_with_the_reminders_due(prescriber, other_prescriber):
    """STYLE.md 6: the same statements for one due reminder as for five (one raises them all, one stores
    their digest lines)."""
    _reported(prescriber)
    for _ in range(5):
        _reported(other_prescriber, lmp_on=LMP + 10 * DAY)
    with CaptureQueriesContext(connection) as one:
        assert sweep(OUTCOME_OVERDUE).digests == 1
    with CaptureQueriesContext(connection) as five:
        assert sweep(OUTCOME_OVERDUE + 10 * DAY).digests == 1
    assert len(_pregnancy_lines()) == 6
    assert len(one.captured_queries) == len(five.captured_queries), [
        q["sql"][:50] for q in five.captured_queries
    ]
    assert len(five.captured_queries) <= 18


def test_registering_twice_keeps_one_source():
    """The registration is idempotent (Django may call `ready()` more than once)."""
    pregnancy_digest_source_register()
    pregnancy_digest_source_register()
    assert monitoring.EXTRA_DIGEST_SOURCES.count(pregnancy_reminder_digest_lines) == 1


def test_a_fresh_process_has_the_pregnancy_source_without_importing_pregnancy_itself():
    """A worker or `manage.py sweep_monitoring` starts Django and imports monitoring only: `ready()` has
    registered the pregnancy source by then."""
    shown = manage(
        "shell",
        "-c",
        "from registry.services.monitoring import EXTRA_DIGEST_SOURCES as s; "
        "print([f'{f.__module__}.{f.__qualname__}' for f in s])",
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == (
        "['registry.services.pregnancy.pregnancy_reminder_digest_lines']"
    )


def test_monitoring_does_not_import_pregnancy():
    """The extension point's purpose: monitoring knows no feature that adds digest items."""
    source = Path(monitoring.__file__).read_text()
    imported = {
        node.module or "" for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert sorted(name for name in imported if "pregnancy" in name) == []
