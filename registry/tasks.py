"""Celery tasks: take ids and dates, call one service (STYLE.md 1). JSON messages only."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from registry.services.dispensing import authorizations_expire, authorizations_lapse
from registry.services.idempotency import idempotency_purge


@shared_task
def purge_idempotency_records() -> int:
    return idempotency_purge(now=timezone.now())


@shared_task
def expire_dispense_authorizations() -> int:
    """GATE-2: stores expired numbers as `expired` and lapsed ones as `revoked` (issue 9 item 4)."""
    now = timezone.now()
    return authorizations_expire(now=now) + authorizations_lapse(now=now)
