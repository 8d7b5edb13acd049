"""The daily monitoring sweep (MON-3, MON-5): flags, blocking, resolution, the end of monitoring, expiry of
stale authorization numbers, digests, idempotence, concurrency and the split over patient-id ranges; and
`GET /monitoring-flags`."""

from __future__ import annotations

import datetime as dt
import io
import smtplib
import threading
import uuid

import pytest
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.models import (
    AuditEvent,
    AuthorizationState,
    AuthorizationStatus,
    Digest,
    DigestLine,
    DispenseAuthorization,
    MonitoringFlag,
    Patient,
    PatientStatus,
    Pharmacy,
    RevokeCategory,
    SweepRun,
)
from registry.selectors.authorizations import authorization_state
from registry.services import monitoring
from registry.services.enrollment import patient_enroll, patient_status_change
from registry.services.monitoring import (
    EXTRA_DIGEST_SOURCES,
    DigestNotSent,
    digest_send,
    monitoring_schedule_start,
    monitoring_sweep_part,
    monitoring_sweep_split_start,
    part_range,
)
from registry.services.pregnancy import pregnancy_reminder_digest_lines

from .gate_helpers import (
    DAY0,
    approved_number,
    authorized_patient,
    frozen,
    moment,
    plan_course,
    record_labs,
    request_authorization,
)
from .monitoring_helpers import DUE, MONTHLY, WINDOW_ENDS, days, monitored_patient, sweep

# The sweep's statements are PostgreSQL (data-modifying CTEs, ON CONFLICT, gen_random_uuid()).
pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]


def flags_of(patient, requirement=None):
    qs = MonitoringFlag.objects.filter(patient=patient).order_by("opened_on", "requirement")
    if requirement:
        qs = qs.filter(requirement=requirement)
    return list(qs.values_list("requirement", "due_on", "opened_on", "status", "blocking", "blocking_since"))


# --- Opening and blocking: the day before due, the due day, the last grace day, the day after -------------


@pytest.mark.parametrize(
    "requirement", ["cbc_differential", "thyroid_function", "skin_exam", "hpv_screening", "status_form"]
)
def test_sweep_opens_a_flag_the_day_after_the_last_grace_day_and_blocks_after_30_more_MON_3(
    prescriber, facility, requirement
):
    """MON-3: no flag the day before due, on the due day or on the last grace day; one open flag the day
    after; blocking once overdue more than 30 days counted from due + grace: not on day 30, from day 31.
    For each kind of requirement."""
    patient = monitored_patient(prescriber, facility, sex="female")
    due = DUE[requirement]
    seen = []
    for day in (due - days(1), due, due + days(7), due + days(8)):
        sweep(day)
        seen.append(len(flags_of(patient, requirement)))
    assert seen == [0, 0, 0, 1]
    assert flags_of(patient, requirement) == [(requirement, due, due + days(8), "open", False, None)]

    sweep(due + days(37))
    assert flags_of(patient, requirement)[0][4:] == (False, None)
    sweep(due + days(38))
    assert flags_of(patient, requirement) == [(requirement, due, due + days(8), "open", True, due + days(38))]
    events = AuditEvent.objects.filter(subject_type="monitoringflag", action="monitoring_flag.block")
    assert events.filter(subject_id=MonitoringFlag.objects.get(requirement=requirement).pk).count() == 1


def test_first_sweep_over_imported_history_opens_flags_already_blocking_MON_3(prescriber, facility):
    """MON-3: blocking is counted from due + grace, not from when the flag was raised: the first sweep
    ever, months late, opens the flags blocking."""
    patient = monitored_patient(prescriber, facility)
    result = sweep(dt.date(2026, 7, 3))

    blocking = {r: True for r in MONTHLY}
    assert flags_of(patient) == [
        (
            r,
            DUE[r],
            dt.date(2026, 7, 3),
            "open",
            r in blocking,
            dt.date(2026, 7, 3) if r in blocking else None,
        )
        for r in sorted([*MONTHLY, "liver_function", "thyroid_function"])
    ]
    assert (result.opened, result.blocking, result.resolved, result.completed) == (5, 3, 0, 0)


def test_one_open_flag_per_requirement_across_days(prescriber, facility):
    """MON-3: a requirement stays flagged once while it stays overdue: later sweeps open nothing new."""
    patient = monitored_patient(prescriber, facility)
    sweep(dt.date(2026, 4, 4))
    later = sweep(dt.date(2026, 4, 5))

    assert later.opened == 0
    assert len(flags_of(patient)) == 3


def test_one_open_flag_is_also_the_database_guarantee(prescriber, facility):
    from django.db import IntegrityError, transaction

    patient = monitored_patient(prescriber, facility)
    sweep(dt.date(2026, 4, 4))
    flag = MonitoringFlag.objects.filter(patient=patient).first()
    with pytest.raises(IntegrityError), transaction.atomic():
        MonitoringFlag.objects.create(
            patient=patient, requirement=flag.requirement, due_on=flag.due_on, opened_on=flag.opened_on
        )


# --- Resolution ------------------------------------------------------------------------------------------------


def test_a_new_result_closes_the_matching_flag_in_its_transaction_MON_3(prescriber, facility):
    patient = monitored_patient(prescriber, facility)
    sweep(dt.date(2026, 4, 4))
    with frozen(dt.date(2026, 4, 6)):
        response = prescriber.post(
            f"/api/v1/patients/{patient.pk}/lab-results",
            {"test": "cbc_differential", "collected_on": "2026-04-05", "result": "abnormal"},
        )
    assert response.status_code == 201

    flag = MonitoringFlag.objects.get(patient=patient, requirement="cbc_differential")
    assert (flag.status, flag.resolved_on, flag.resolution) == ("resolved", dt.date(2026, 4, 6), "result")
    event = AuditEvent.objects.get(action="monitoring_flag.resolve", subject_id=flag.pk)
    assert (event.actor_id, event.changes["done_on"]) == (prescriber.user.pk, "2026-04-05")
    assert MonitoringFlag.objects.filter(patient=patient, status="open").count() == 2
    assert sweep(dt.date(2026, 4, 7)).opened == 0  # 2026-04-05 is next due 2026-05-05


def test_a_status_form_closes_the_status_form_flag_MON_4(prescriber, delegate, facility):
    patient = monitored_patient(prescriber, facility)
    sweep(dt.date(2026, 9, 10))
    assert flags_of(patient, "status_form")[0][3] == "open"
    with frozen(dt.date(2026, 9, 11)):
        response = delegate.post(
            f"/api/v1/patients/{patient.pk}/status-forms",
            {"completed_on": "2026-09-11", "labs_reviewed": True, "adverse_events": ["infection"]},
        )
    assert response.status_code == 201
    assert flags_of(patient, "status_form")[0][3] == "resolved"


def test_an_older_result_closes_no_flag(prescriber, facility):
    """A late-entered result older than the last one does not advance the schedule, so closes nothing."""
    patient = monitored_patient(prescriber, facility)
    sweep(dt.date(2026, 4, 4))
    with frozen(dt.date(2026, 4, 6)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2026, 2, 1), tests=["cbc_differential"])
    assert flags_of(patient, "cbc_differential")[0][3] == "open"


def test_bulk_results_close_flags_of_many_patients(prescriber, facility):
    first, second = monitored_patient(prescriber, facility), monitored_patient(prescriber, facility)
    sweep(dt.date(2026, 4, 4))
    rows = [
        {"rems_patient_id": p.rems_patient_id, "test": t, "collected_on": "2026-04-05", "result": "normal"}
        for p in (first, second)
        for t in MONTHLY
    ]
    with frozen(dt.date(2026, 4, 5)):
        assert prescriber.post("/api/v1/lab-results/bulk", {"results": rows}).status_code == 201
    assert MonitoringFlag.objects.filter(status="open").count() == 0
    assert MonitoringFlag.objects.filter(status="resolved", resolved_on=dt.date(2026, 4, 5)).count() == 6


# --- The end of monitoring (MON-5, ACT-8) ---------------------------------------------------------------------


def test_window_end_completes_monitoring_and_closes_flags(prescriber, facility):
    """The window ends 48 months after the last infusion (2030-03-06): overdue requirements are still
    flagged on that day; the day after, the patient is `monitoring_complete`, its flags close and nothing
    new opens."""
    patient = monitored_patient(prescriber, facility)
    on_last_day = sweep(WINDOW_ENDS)
    assert on_last_day.opened == 7
    assert Patient.objects.get(pk=patient.pk).status == PatientStatus.AUTHORIZED

    after = sweep(WINDOW_ENDS + days(1))

    assert (after.completed, after.resolved, after.opened) == (1, 7, 0)
    patient.refresh_from_db()
    assert (patient.status, patient.status_reason) == (
        "monitoring_complete",
        "Monitoring window ended on 2030-03-06.",
    )
    assert set(MonitoringFlag.objects.values_list("status", "resolution")) == {
        ("resolved", "monitoring_ended")
    }
    event = AuditEvent.objects.get(action="patient.monitoring_complete", subject_id=patient.pk)
    assert (event.actor_id, event.actor_role, event.changes["status"]) == (
        None,
        "system",
        ["authorized", "monitoring_complete"],
    )
    assert sweep(WINDOW_ENDS + days(2)).counts() == dict.fromkeys(
        ("opened", "resolved", "blocking", "completed", "expired", "lapsed", "digests"), 0
    )


def test_discontinued_patients_are_monitored_until_the_window_ends_ACT_8(prescriber, facility):
    """ACT-8: discontinued means treatment stopped; monitoring continues, then completes."""
    patient = monitored_patient(prescriber, facility)
    with frozen(dt.date(2026, 3, 20)):
        patient_status_change(
            patient=patient,
            actor=prescriber.user,
            verb="discontinue",
            reason="Stopped",
            now=moment(dt.date(2026, 3, 20)),
        )
    assert sweep(dt.date(2026, 4, 4)).opened == 3
    assert sweep(WINDOW_ENDS + days(1)).completed == 1
    patient.refresh_from_db()
    assert patient.status == "monitoring_complete"
    event = AuditEvent.objects.get(action="patient.monitoring_complete", subject_id=patient.pk)
    assert event.changes["status"] == ["discontinued", "monitoring_complete"]


def test_deceased_patients_are_not_flagged_and_their_flags_close(prescriber, facility):
    patient = monitored_patient(prescriber, facility)
    sweep(dt.date(2026, 4, 4))
    with frozen(dt.date(2026, 4, 10)):
        patient_status_change(
            patient=patient,
            actor=prescriber.user,
            verb="record_death",
            reason="",
            now=moment(dt.date(2026, 4, 10)),
        )
    # ACT-8: the death closes the open flags at once (as the sweep would), and no sweep raises new ones
    closed = MonitoringFlag.objects.filter(patient=patient)
    assert (
        sorted(closed.values_list("status", "resolution", "resolved_on"))
        == [("resolved", "monitoring_ended", dt.date(2026, 4, 10))] * 3
    )
    result = sweep(dt.date(2026, 7, 1))
    assert (result.opened, result.resolved) == (0, 0)
    assert not MonitoringFlag.objects.filter(status="open").exists()


# --- Stale authorization numbers (GATE-2, MON-5) ------------------------------------------------------------


def test_sweep_expires_stale_authorization_numbers_once(prescriber, facility, pharmacy):
    """MON-5, GATE-2: the sweep is where stale numbers are expired in bulk, audited; reads already said
    expired."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    authorization = DispenseAuthorization.objects.get(number=number)
    assert authorization_state(authorization, moment(DAY0 + days(7))) == AuthorizationState.EXPIRED

    assert sweep(DAY0 + days(6)).expired == 0
    assert sweep(DAY0 + days(7)).expired == 1
    assert sweep(DAY0 + days(8)).expired == 0

    authorization.refresh_from_db()
    assert authorization.status == AuthorizationStatus.EXPIRED
    events = AuditEvent.objects.filter(action="authorization.expire", subject_id=authorization.pk)
    assert [(e.actor_id, e.actor_role, e.changes) for e in events] == [
        (None, "system", {"status": ["active", "expired"]})
    ]


def test_sweep_stores_lapsed_numbers_as_revoked_once_and_reports_them_GATE_2(prescriber, facility, pharmacy):
    """GATE-2, ACT-5 (issue 9 item 4): a number whose pharmacy's certification expired without an event
    reads `revoked` at once; the sweep stores it as revoked with its category, audited, and counts it as
    lapsed (not expired); a second day finds nothing."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    Pharmacy.objects.filter(pk=pharmacy.participant.pk).update(certification_expires_at=moment(DAY0, hour=16))
    authorization = DispenseAuthorization.objects.get(number=number)
    assert authorization_state(authorization, moment(DAY0 + days(1))) == AuthorizationState.LAPSED

    first = sweep(DAY0 + days(1))
    second = sweep(DAY0 + days(2))

    assert (first.lapsed, first.expired, second.lapsed, second.expired) == (1, 0, 0, 0)
    assert SweepRun.objects.get(as_of=DAY0 + days(1)).lapsed == 1
    authorization.refresh_from_db()
    assert (authorization.status, authorization.revoke_category, authorization.revoked_by) == (
        AuthorizationStatus.REVOKED,
        RevokeCategory.PARTICIPANT_NOT_CERTIFIED,
        None,
    )
    assert authorization.revoked_at == moment(DAY0 + days(1))
    events = AuditEvent.objects.filter(action="authorization.lapse", subject_id=authorization.pk)
    assert [(e.actor_id, e.actor_role, e.changes["category"]) for e in events] == [
        (None, "system", "participant_not_certified")
    ]


# --- Idempotence and concurrency (MON-5) --------------------------------------------------------------------------


def test_second_run_for_the_same_date_changes_and_sends_nothing_MON_5(
    prescriber, facility, mailoutbox, django_capture_on_commit_callbacks
):
    monitored_patient(prescriber, facility)
    with django_capture_on_commit_callbacks(execute=True):
        first = sweep(dt.date(2026, 4, 4))
    counts = (
        MonitoringFlag.objects.count(),
        AuditEvent.objects.count(),
        Digest.objects.count(),
        len(mailoutbox),
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        second = sweep(dt.date(2026, 4, 4))

    assert (first.opened, first.digests, first.already_ran) == (3, 1, False)
    assert second.already_ran is True
    assert second.counts() == dict.fromkeys(first.counts(), 0)
    assert callbacks == []
    assert (
        MonitoringFlag.objects.count(),
        AuditEvent.objects.count(),
        Digest.objects.count(),
        len(mailoutbox),
    ) == counts
    assert counts[3] == 1
    assert SweepRun.objects.get(as_of=dt.date(2026, 4, 4)).opened == 3


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_open_no_duplicate_flags_and_send_no_duplicate_digests(
    prescriber, other_prescriber, facility, mailoutbox
):
    """MON-5: two workers sweeping the same day at once: the sweep-run row's unique date makes one wait
    and then do nothing; one flag per requirement, one digest per prescriber, one e-mail each."""
    monitored_patient(prescriber, facility)
    monitored_patient(other_prescriber, facility)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(sweep(dt.date(2026, 4, 4)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert sorted(r.already_ran for r in results) == [False, True]
    assert MonitoringFlag.objects.count() == 6
    assert Digest.objects.count() == 2
    assert sorted(m.to[0] for m in mailoutbox) == sorted(
        [prescriber.participant.email, other_prescriber.participant.email]
    )
    assert SweepRun.objects.count() == 1


# --- Digests (MON-5) ---------------------------------------------------------------------------------------------


def test_one_digest_per_prescriber_lists_only_registry_id_requirement_due_date_and_blocking(
    prescriber, other_prescriber, facility, mailoutbox, django_capture_on_commit_callbacks
):
    """MON-5: one e-mail per prescriber listing its new flags (registry ID, requirement, due date,
    blocking), no other patient data; stored with its lines; a flag is never listed twice."""
    first = monitored_patient(prescriber, facility)
    second = monitored_patient(prescriber, facility)
    third = monitored_patient(other_prescriber, facility)
    with frozen(dt.date(2026, 4, 30)):
        record_labs(first, prescriber.user, collected_on=dt.date(2026, 4, 30), tests=MONTHLY)
    with django_capture_on_commit_callbacks(execute=True):
        result = sweep(dt.date(2026, 5, 4))

    assert result.digests == 2
    assert len(mailoutbox) == 2
    mail = next(m for m in mailoutbox if m.to == [prescriber.participant.email])
    assert mail.subject == "LEMTRADA REMS: 3 new monitoring item(s) for 2026-05-04, 3 blocking"
    expected = sorted(
        f"{second.rems_patient_id}  {label}  due 2026-03-27  BLOCKING"
        for label in (
            "CBC with differential (MON-1)",
            "Serum creatinine (MON-1)",
            "Urinalysis with cell counts (MON-1)",
        )
    )
    body_lines = [line for line in mail.body.splitlines() if line.startswith(second.rems_patient_id)]
    assert sorted(body_lines) == expected
    assert first.rems_patient_id not in mail.body
    for patient in (first, second, third):
        for private in (patient.first_name, patient.last_name, patient.date_of_birth.isoformat()):
            assert private not in mail.body
    assert third.rems_patient_id not in mail.body

    digest = Digest.objects.get(prescriber=prescriber.participant)
    assert (digest.status, digest.recipient, digest.attempts) == ("sent", prescriber.participant.email, 1)
    assert digest.lines.count() == 3
    assert set(digest.lines.values_list("rems_patient_id", "due_on", "blocking")) == {
        (second.rems_patient_id, dt.date(2026, 3, 27), True)
    }
    assert AuditEvent.objects.filter(action="digest.send", subject_id=digest.pk).count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        sweep(dt.date(2026, 5, 5))
    assert len(mailoutbox) == 2  # nothing new: no digest, no mail
    assert DigestLine.objects.filter(flag__isnull=False).count() == 6


def test_extra_digest_sources_are_listed_in_the_same_digest(
    prescriber, facility, mailoutbox, django_capture_on_commit_callbacks, monkeypatch
):
    """The digest extension point: items that are not monitoring flags (a pregnancy reminder, say) ride
    in the same one digest per prescriber."""
    patient = monitored_patient(prescriber, facility)
    calls = []

    def reminders(*, as_of, patient_id_range):
        calls.append((as_of, patient_id_range))
        return [
            monitoring.DigestLine(
                prescriber_id=prescriber.participant.pk,
                rems_patient_id=patient.rems_patient_id,
                kind="pregnancy_outcome_overdue",
                label="Pregnancy outcome overdue (PRG-4)",
                due_on=dt.date(2026, 4, 1),
                blocking=False,
            )
        ]

    monkeypatch.setattr(monitoring, "EXTRA_DIGEST_SOURCES", [reminders])
    with django_capture_on_commit_callbacks(execute=True):
        sweep(dt.date(2026, 4, 4))

    assert calls == [(dt.date(2026, 4, 4), None)]
    assert len(mailoutbox) == 1
    assert (
        f"{patient.rems_patient_id}  Pregnancy outcome overdue (PRG-4)  due 2026-04-01" in mailoutbox[0].body
    )
    digest = Digest.objects.get()
    assert sorted(digest.lines.values_list("kind", flat=True)) == [
        "cbc_differential",
        "pregnancy_outcome_overdue",
        "serum_creatinine",
        "urinalysis",
    ]
    # The module's own list is untouched by the test: it holds what the app registered, the pregnancy
    # reminders (tests/test_pregnancy_digest.py).
    assert list(EXTRA_DIGEST_SOURCES) == [pregnancy_reminder_digest_lines]


class RefusingBackend(BaseEmailBackend):
    """The outside world failing: the SMTP server refuses."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("connection refused")


def test_a_failed_send_is_recorded_and_retried_until_sent(prescriber, facility, settings, mailoutbox):
    """MON-5: sending happens after the commit, with retries: a failure is stored on the digest (and
    audited) and raised for the task to retry; the next attempt sends it once."""
    monitored_patient(prescriber, facility)
    sweep(dt.date(2026, 4, 4))  # on-commit callbacks not run: the digest is pending
    digest = Digest.objects.get()
    assert digest.status == "pending"

    settings.EMAIL_BACKEND = "tests.test_monitoring_sweep.RefusingBackend"
    with pytest.raises(DigestNotSent):
        digest_send(digest_id=digest.pk, now=moment(dt.date(2026, 4, 4)))
    digest.refresh_from_db()
    assert (digest.status, digest.attempts, digest.last_error) == (
        "failed",
        1,
        "SMTPServerDisconnected: connection refused",
    )

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert digest_send(digest_id=digest.pk, now=moment(dt.date(2026, 4, 4))) is True
    assert digest_send(digest_id=digest.pk, now=moment(dt.date(2026, 4, 4))) is False
    digest.refresh_from_db()
    assert (digest.status, digest.attempts) == ("sent", 2)
    assert len(mailoutbox) == 1


# --- Set-based: the number of statements does not grow with the number of patients ----------------------


def _scheduled_patients(prescriber, count: int, *, name: str = "Sweep") -> None:
    """`count` enrolled patients whose monitoring started on 2026-03-02 (the schedule as the infusion
    service starts it), with nothing done since."""
    from registry import rules

    for i in range(count):
        patient = patient_enroll(
            actor=prescriber.user,
            data={
                "first_name": f"P{i}",
                "last_name": name,
                "date_of_birth": dt.date(1980, 1, 1) + days(i),
                "sex": "female",
                "reproductive_potential": False,
                "enrollment_signed_on": dt.date(2026, 2, 1),
            },
            now=moment(dt.date(2026, 2, 1)),
        )
        Patient.objects.filter(pk=patient.pk).update(
            status="authorized",
            first_infusion_on=DAY0,
            last_infusion_on=DAY0,
            monitoring_ends_on=dt.date(2030, 3, 2),
        )
        monitoring_schedule_start(
            patient_id=patient.pk,
            sex="female",
            first_infusion_on=DAY0,
            window_ends_on=dt.date(2030, 3, 2),
            program=rules.current(),
            now=moment(DAY0),
        )


def test_sweep_statement_count_is_constant_in_the_number_of_patients(prescriber, other_prescriber):
    """STYLE.md 6: the sweep issues the same statements for 1 patient as for 25 (and 25 open flags each
    with a digest line): 16 for monitoring, and one for the pregnancy reminders (none due here;
    tests/test_pregnancy_digest.py counts them with reminders due)."""
    _scheduled_patients(prescriber, 1)
    with CaptureQueriesContext(connection) as one:
        small = sweep(dt.date(2026, 4, 10))
    _scheduled_patients(other_prescriber, 25, name="Sweeper")
    with CaptureQueriesContext(connection) as many:
        large = sweep(dt.date(2026, 7, 10))

    assert (small.opened, large.opened) == (3, 25 * 5 + 2)
    assert len(one.captured_queries) == len(many.captured_queries), [
        q["sql"][:50] for q in many.captured_queries
    ]
    assert len(many.captured_queries) <= 17


# --- Split over patient-id ranges (MON-5, issue 10 item 4) ---------------------------------------------------------


def test_part_ranges_cover_the_id_space_without_overlap():
    ranges = [part_range(i, 4) for i in range(4)]
    assert ranges[0][0] is None
    assert ranges[-1][1] is None
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(3))
    assert ranges[1][0] == uuid.UUID("40000000-0000-0000-0000-000000000000")
    with pytest.raises(ValueError):
        part_range(4, 4)


def test_split_sweep_gives_the_same_result_as_one_run_with_one_digest_per_prescriber(
    prescriber, mailoutbox, django_capture_on_commit_callbacks
):
    """The sweep split into 8 patient-id ranges opens the same flags as one run would, and the part that
    finishes last sends one digest per prescriber, whatever ranges its patients fall in."""
    _scheduled_patients(prescriber, 6)
    ids = list(Patient.objects.values_list("pk", flat=True))
    assert len({i.int * 8 >> 128 for i in ids}) >= 2  # the patients fall in several ranges

    with django_capture_on_commit_callbacks(execute=True):
        run, pending = monitoring_sweep_split_start(
            as_of=dt.date(2026, 4, 10), now=moment(dt.date(2026, 4, 10)), parts=8
        )
        assert pending == list(range(8))
        results = [monitoring_sweep_part(run_id=run.pk, index=i) for i in pending]
        again = monitoring_sweep_part(run_id=run.pk, index=3)

    assert again.already_ran is True
    assert sum(r.opened for r in results) == 6 * 3
    assert [r.digests for r in results] == [0] * 7 + [1]
    run.refresh_from_db()
    assert (run.parts_done, run.opened, run.digests) == (8, 18, 1)
    assert run.finished_at is not None
    assert len(mailoutbox) == 1
    assert DigestLine.objects.filter(digest__isnull=True).count() == 0
    assert (
        monitoring_sweep_split_start(as_of=dt.date(2026, 4, 10), now=moment(dt.date(2026, 4, 10)), parts=8)[1]
        == []
    )


# --- The management command ---------------------------------------------------------------------------------


def test_sweep_monitoring_command_prints_the_counts(prescriber, facility):
    monitored_patient(prescriber, facility)
    out = io.StringIO()
    with frozen(dt.date(2026, 4, 4)):
        call_command("sweep_monitoring", "--as-of", "2026-04-04", stdout=out)
        call_command("sweep_monitoring", "--as-of", "2026-04-04", stdout=out)
    assert out.getvalue().splitlines() == [
        "monitoring sweep 2026-04-04: opened=3 resolved=0 blocking=0 completed=0 expired=0 lapsed=0 digests=1",
        "monitoring sweep 2026-04-04: opened=0 resolved=0 blocking=0 completed=0 expired=0 lapsed=0 digests=0"
        " (already swept for this date: nothing changed)",
    ]


def test_sweep_monitoring_command_refuses_a_bad_date():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("sweep_monitoring", "--as-of", "04/04/2026")


# --- GET /monitoring-flags ---------------------------------------------------------------------------------------


def _flags(persona, query=""):
    with frozen(dt.date(2026, 6, 10)):
        return persona.get(f"/api/v1/monitoring-flags{query}")


def test_flags_list_is_scoped_to_visible_patients_and_filterable(
    prescriber, delegate, other_prescriber, admin, facility
):
    mine = monitored_patient(prescriber, facility)
    theirs = monitored_patient(other_prescriber, facility)
    sweep(dt.date(2026, 4, 4))
    sweep(dt.date(2026, 6, 4))  # thyroid and liver open; the monthly flags block
    with frozen(dt.date(2026, 6, 5)):
        record_labs(mine, prescriber.user, collected_on=dt.date(2026, 6, 5), tests=["urinalysis"])

    body = _flags(prescriber).json()
    assert body["count"] == 5
    assert {f["rems_patient_id"] for f in body["results"]} == {mine.rems_patient_id}
    first = body["results"][0]
    assert set(first) == {
        "id",
        "patient",
        "rems_patient_id",
        "requirement",
        "due_on",
        "opened_on",
        "status",
        "resolved_on",
        "blocking",
        "blocking_since",
        "resolution",
    }
    assert _flags(delegate).json()["count"] == 5
    assert _flags(admin).json()["count"] == 10
    assert {f["patient"] for f in _flags(other_prescriber).json()["results"]} == {str(theirs.pk)}

    opened = _flags(prescriber, "?status=open").json()
    assert sorted((f["requirement"], f["blocking"]) for f in opened["results"]) == [
        ("cbc_differential", True),
        ("liver_function", False),
        ("serum_creatinine", True),
        ("thyroid_function", False),
    ]
    resolved = _flags(prescriber, "?status=resolved").json()["results"]
    assert [(f["requirement"], f["resolved_on"], f["resolution"]) for f in resolved] == [
        ("urinalysis", "2026-06-05", "result")
    ]
    assert _flags(prescriber, "?blocking=true&requirement=cbc_differential").json()["count"] == 1
    assert _flags(prescriber, "?blocking=false").json()["count"] == 2  # urinalysis closed while blocking
    page = _flags(prescriber, "?limit=2").json()
    assert (page["count"], len(page["results"])) == (5, 2)


@pytest.mark.parametrize("query", ["?status=closed", "?requirement=mri", "?blocking=maybe"])
def test_flags_list_refuses_unknown_filter_values(prescriber, query):
    response = _flags(prescriber, query)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_flags_list_is_refused_to_pharmacies_and_facilities(pharmacy, facility):
    assert _flags(pharmacy).status_code == 403
    assert _flags(facility).status_code == 403
