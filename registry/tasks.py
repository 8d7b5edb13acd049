"""Celery tasks: take ids and dates, call one service (STYLE.md 1). JSON messages only."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from celery import group, shared_task
from django.conf import settings
from django.utils import timezone

from registry.services import monitoring
from registry.services.idempotency import idempotency_purge
from registry.services.rate_limits import throttle_buckets_purge


@shared_task
def purge_idempotency_records() -> int:
    return idempotency_purge(now=timezone.now())


@shared_task
def purge_rate_limit_counters() -> int:
    return throttle_buckets_purge(now=time.time())


@shared_task(bind=True)
def sweep_monitoring(self: Any, as_of: str | None = None, parts: int | None = None) -> dict[str, Any]:
    """MON-5: the daily monitoring sweep (beat runs it; `as_of` defaults to today in the registry's time
    zone). It also stores stale authorization numbers as expired and lapsed ones as revoked (GATE-2, issue
    9): the only bulk expiry there is. With
    `parts` > 1 (default: the MONITORING_SWEEP_PARTS setting) the patients are split into that many id
    ranges, dispatched as a Celery group to whichever workers are running; the part that finishes last
    assembles the digests, so the result is the same as one run."""
    now = timezone.now()
    day = dt.date.fromisoformat(as_of) if as_of else timezone.localdate(now)
    parts = parts or int(settings.MONITORING_SWEEP_PARTS)
    if parts <= 1:
        result = monitoring.monitoring_sweep(as_of=day, now=now, worker=self.request.hostname or "")
        return {"as_of": day.isoformat(), "already_ran": result.already_ran, **result.counts()}
    run, pending = monitoring.monitoring_sweep_split_start(as_of=day, now=now, parts=parts)
    if pending:
        group(sweep_monitoring_part.s(str(run.pk), index) for index in pending).apply_async()
    return {"as_of": day.isoformat(), "run": str(run.pk), "parts_dispatched": pending}


@shared_task(bind=True)
def sweep_monitoring_part(self: Any, run_id: str, index: int) -> dict[str, Any]:
    """One patient-id range of a split sweep; done once per (run, part) whatever the deliveries."""
    result = monitoring.monitoring_sweep_part(run_id=run_id, index=index, worker=self.request.hostname or "")
    return {"part": index, "already_ran": result.already_ran, **result.counts()}


@shared_task(
    autoretry_for=(monitoring.DigestNotSent,),
    retry_backoff=60,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=8,
)
def send_digest(digest_id: str) -> bool:
    """MON-5: sends one prescriber's digest after the sweep committed; retried with backoff on failure."""
    return monitoring.digest_send(digest_id=digest_id, now=timezone.now())
