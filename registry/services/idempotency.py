"""`Idempotency-Key` on creating POSTs (API.md conventions).

The claim row is inserted inside the request's transaction before the work runs. A second request with
the same key blocks on the unique index until the first commits, then replays the stored answer; if the
first failed, its claim rolled back with it and the second runs normally. Only successful (2xx) answers
are stored, so a client may retry a refused request with the same key once it has fixed the cause.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction

from registry import rules
from registry.errors import IdempotencyKeyReused
from registry.models import IdempotencyRecord, User


def idempotency_claim(
    *, user: User, key: str, method: str, path: str, fingerprint: str, now: dt.datetime
) -> tuple[IdempotencyRecord, IdempotencyRecord | None]:
    """Claims `key` for this request. Returns `(claim, None)` to go ahead, or `(record, record)` when a
    stored answer must be replayed. Raises `IdempotencyKeyReused` for the same key with another request.
    Must run inside the request's transaction."""
    window = dt.timedelta(hours=rules.current().idempotency_window_hours)
    fields = {"method": method, "path": path, "fingerprint": fingerprint, "created_at": now}
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(user=user, key=key, **fields), None
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.select_for_update().get(user=user, key=key)
    if existing.created_at <= now - window:
        IdempotencyRecord.objects.filter(pk=existing.pk).update(
            response_status=None, response_body=None, **fields
        )
        existing.refresh_from_db()
        return existing, None
    if existing.fingerprint != fingerprint or existing.method != method or existing.path != path:
        raise IdempotencyKeyReused()
    return existing, existing


def idempotency_store(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(response_status=status, response_body=body)


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """A refused request leaves no claim behind."""
    IdempotencyRecord.objects.filter(pk=record.pk).delete()


def idempotency_purge(*, now: dt.datetime) -> int:
    window = dt.timedelta(hours=rules.current().idempotency_window_hours)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lte=now - window).delete()
    return deleted
