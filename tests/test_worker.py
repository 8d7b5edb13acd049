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
from registry.models import IdempotencyRecord

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
