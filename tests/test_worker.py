"""Scheduled work on a real Celery worker consuming from Redis (MON-5: expiring stale authorizations;
idempotency record purge). The worker runs in-process but talks to the broker like any worker would, and
reads the committed database through its own connection."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from config.celery import app
from registry import tasks
from registry.models import AuditEvent, AuthorizationStatus, DispenseAuthorization, IdempotencyRecord

from .gate_helpers import (
    DAY0,
    approved_number,
    authorized_patient,
    frozen,
    plan_course,
    request_authorization,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

BROKER = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_worker() -> Iterator[None]:
    """A worker on the Redis broker; tasks are sent, not run eagerly."""
    keys = ("broker_url", "result_backend", "task_always_eager", "task_default_queue")
    before = {key: app.conf[key] for key in keys}
    # One queue per pytest-xdist process: each has its own test database.
    queue = f"registry-tests-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    app.conf.update(
        broker_url=BROKER, result_backend=BROKER, task_always_eager=False, task_default_queue=queue
    )
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
        ):
            yield
    finally:
        app.conf.update(before)
        connection.close()


def test_expire_task_on_a_real_worker_expires_stale_numbers_once_MON_5(
    prescriber, pharmacy, facility, redis_worker
):
    """An authorization issued on DAY0 is past its 7-day validity (GATE-2) now; the worker flips it to
    expired and audits it, and a second run changes nothing (MON-5 idempotence)."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))

    first = tasks.expire_dispense_authorizations.delay().get(timeout=60)
    second = tasks.expire_dispense_authorizations.delay().get(timeout=60)

    assert (first, second) == (1, 0)
    authorization = DispenseAuthorization.objects.get(number=number)
    assert authorization.status == AuthorizationStatus.EXPIRED
    events = AuditEvent.objects.filter(action="authorization.expire", subject_id=authorization.pk)
    assert [(e.actor_id, e.actor_role, e.changes) for e in events] == [
        (None, "system", {"status": ["active", "expired"]})
    ]


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
