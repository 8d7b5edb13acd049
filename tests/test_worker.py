"""Scheduled work on a real Celery worker consuming from Redis (MON-5: the monitoring sweep, which also
expires stale authorizations, its split over two workers and the digests it sends; idempotency record
purge). The worker runs in-process but talks to the broker like any worker would, and
reads the committed database through its own connection."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from config.celery import app
from registry import tasks
from registry.api.throttling import ApiKeyRateThrottle
from registry.models import (
    AuditEvent,
    AuthorizationStatus,
    Digest,
    DispenseAuthorization,
    IdempotencyRecord,
    MonitoringFlag,
    SweepRun,
    ThrottleBucket,
)

from .gate_helpers import (
    DAY0,
    approved_number,
    authorized_patient,
    frozen,
    infuse_days,
    plan_course,
    request_authorization,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

BROKER = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")


def _connections_forget() -> None:
    """Celery caches the broker connection pool and the result backend it built from the configuration on
    first use (an eager task of an earlier test builds them for no broker); forget them, as Celery does
    after a fork, so the next use reads `broker_url` and `result_backend` again."""
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


@contextlib.contextmanager
def _on_redis() -> Iterator[None]:
    keys = ("broker_url", "result_backend", "task_always_eager", "task_default_queue")
    before = {key: app.conf[key] for key in keys}
    # One queue per pytest-xdist process: each has its own test database.
    queue = f"registry-tests-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    app.conf.update(
        broker_url=BROKER, result_backend=BROKER, task_always_eager=False, task_default_queue=queue
    )
    _connections_forget()
    try:
        yield
    finally:
        app.conf.update(before)
        _connections_forget()
        connection.close()


def _worker(hostname: str) -> Any:
    return start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
        hostname=f"{hostname}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}@tests",
    )


@pytest.fixture
def redis_worker() -> Iterator[None]:
    """A worker on the Redis broker; tasks are sent, not run eagerly."""
    with _on_redis(), _worker("one"):
        yield


@pytest.fixture
def two_redis_workers(tmp_path: Path) -> Iterator[list[str]]:
    """Two `celery worker` processes on one Redis queue and the test database, as in production (each
    started by its PID and stopped by it); answers their node names once both say they are ready."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    queue = f"registry-tests-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": BROKER,
        "CELERY_RESULT_BACKEND": BROKER,
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "CELERY_TASK_DEFAULT_QUEUE": queue,  # the parts and digests they queue go to the test's queue
    }
    names = [f"{label}-{os.getpid()}@tests" for label in ("one", "two")]
    logs = [tmp_path / f"{label}.log" for label in ("one", "two")]
    processes = []
    for name, log in zip(names, logs, strict=True):
        with log.open("w") as out:
            processes.append(
                subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "worker",
                        "--pool",
                        "solo",
                        "-Q",
                        queue,
                        "-n",
                        name,
                        "--loglevel",
                        "INFO",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    env=env,
                    cwd=str(Path(__file__).resolve().parent.parent),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        with _on_redis():
            _wait_for(
                lambda: all(f"{n} ready." in log.read_text() for n, log in zip(names, logs, strict=True))
            )
            yield names
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.2)


def _overdue_patient_with_stale_number(prescriber, pharmacy, facility):
    """Course 1 of 2026-03-02..06 with baseline labs of 2026-02-27 and nothing since (the monthly labs are
    overdue from 2026-04-04); and another patient holding an authorization number of 2026-03-02, stale
    since 2026-03-09."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 5)
    with frozen(DAY0):
        other = authorized_patient(prescriber)
        plan_course(prescriber, other, start=DAY0)
        number = approved_number(request_authorization(pharmacy, other, prescriber, facility, doses=5))
    return patient, number


def test_sweep_task_on_a_real_worker_flags_expires_and_sends_the_digest_once_MON_5(
    prescriber, pharmacy, facility, mailoutbox, redis_worker
):
    """The beat task, enqueued on Redis and run by a worker: it opens the overdue flags, expires the stale
    number (audited as the system), and the digest task it queues after commit sends one e-mail; a second
    run for the same date changes and sends nothing."""
    patient, number = _overdue_patient_with_stale_number(prescriber, pharmacy, facility)

    first = tasks.sweep_monitoring.delay("2026-04-04").get(timeout=60)
    _wait_for(lambda: Digest.objects.filter(status="sent").exists())
    second = tasks.sweep_monitoring.delay("2026-04-04").get(timeout=60)

    assert first == {
        "as_of": "2026-04-04",
        "already_ran": False,
        "opened": 3,
        "resolved": 0,
        "blocking": 0,
        "completed": 0,
        "expired": 1,
        "lapsed": 0,
        "digests": 1,
    }
    assert second["already_ran"] is True
    assert set(MonitoringFlag.objects.values_list("patient_id", "requirement", "status")) == {
        (patient.pk, r, "open") for r in ("cbc_differential", "serum_creatinine", "urinalysis")
    }
    authorization = DispenseAuthorization.objects.get(number=number)
    assert authorization.status == AuthorizationStatus.EXPIRED
    events = AuditEvent.objects.filter(action="authorization.expire", subject_id=authorization.pk)
    assert [(e.actor_id, e.actor_role, e.changes) for e in events] == [
        (None, "system", {"status": ["active", "expired"]})
    ]
    time.sleep(1)  # nothing else is on its way
    assert [m.to for m in mailoutbox] == [[prescriber.participant.email]]
    assert SweepRun.objects.get().parts.get().worker  # the worker's node name


def test_split_sweep_runs_over_two_workers_with_the_result_of_one_run(
    prescriber, other_prescriber, pharmacy, facility, two_redis_workers
):
    """Issue 10 item 4: the sweep split into 4 patient-id ranges, dispatched as a Celery group to two
    workers: every range done once, the same flags and expiry as one run, one digest per prescriber."""
    _, number = _overdue_patient_with_stale_number(prescriber, pharmacy, facility)
    with frozen(DAY0):
        second = authorized_patient(other_prescriber)
        plan_course(other_prescriber, second, start=DAY0)
    infuse_days(facility, second, DAY0, 5)

    dispatched = tasks.sweep_monitoring.delay("2026-04-04", 4).get(timeout=60)
    assert dispatched["parts_dispatched"] == [0, 1, 2, 3]
    _wait_for(lambda: SweepRun.objects.filter(finished_at__isnull=False).exists())
    _wait_for(lambda: Digest.objects.filter(status="sent").count() == 2)

    run = SweepRun.objects.get()
    assert (run.parts_done, run.opened, run.expired, run.digests) == (4, 6, 1, 2)
    assert sorted(run.parts.values_list("index", flat=True)) == [0, 1, 2, 3]
    workers = list(run.parts.order_by("index").values_list("worker", flat=True))
    print("split sweep parts done by:", workers)
    assert set(workers) <= set(two_redis_workers)
    assert MonitoringFlag.objects.filter(status="open").count() == 6
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.EXPIRED
    assert sorted(Digest.objects.filter(status="sent").values_list("recipient", flat=True)) == sorted(
        [prescriber.participant.email, other_prescriber.participant.email]
    )
    again = tasks.sweep_monitoring.delay("2026-04-04", 4).get(timeout=60)
    assert again["parts_dispatched"] == []


def test_purge_task_on_a_real_worker_drops_only_stale_idempotency_records(admin, redis_worker):
    """Idempotency-Key answers are kept 24 h (*setting*); the hourly purge removes older ones only."""
    now = dt.datetime.now(dt.UTC)
    IdempotencyRecord.objects.create(
        user=admin.user,
        key="old",
        method="POST",
        path="/api/v1/x",
        fingerprint="f",
        created_at=now - dt.timedelta(hours=25),
    )
    IdempotencyRecord.objects.create(
        user=admin.user,
        key="fresh",
        method="POST",
        path="/api/v1/x",
        fingerprint="f",
        created_at=now - dt.timedelta(hours=1),
    )

    assert tasks.purge_idempotency_records.delay().get(timeout=60) == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_purge_task_on_a_real_worker_drops_only_ended_rate_limit_windows(redis_worker):
    """The database rate-limit store keeps one counter per caller ever seen; the hourly purge removes the
    counters whose window has ended (their next hit would restart at 1) and keeps the current ones and
    other stores' rows."""
    current = int(time.time() // ApiKeyRateThrottle().duration)  # +1 below: a window may end meanwhile
    ThrottleBucket.objects.bulk_create(
        [
            ThrottleBucket(key="throttle_api_key_ip-203.0.113.9", window_start=current - 300, hits=40),
            ThrottleBucket(key="throttle_api_key_key-ended", window_start=current - 1, hits=3),
            ThrottleBucket(key="throttle_api_key_key-current", window_start=current + 1, hits=7),
            ThrottleBucket(key="another_scope_x", window_start=0, hits=1),
        ]
    )
    assert tasks.purge_rate_limit_counters.delay().get(timeout=60) == 2
    assert sorted(ThrottleBucket.objects.values_list("key", flat=True)) == [
        "another_scope_x",
        "throttle_api_key_key-current",
    ]
