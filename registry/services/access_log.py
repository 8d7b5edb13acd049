"""Who read what (issue 8, item 6; HIPAA accounting of access): an append-only log of every read of
patient data through the API and the admin. One row per patient read; a list read logs each patient it
returned, in one bulk insert."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from registry.middleware import current_request_id
from registry.models import AccessLogEntry, User


def access_log_record(
    *,
    user: User,
    patient_ids: Iterable[Any],
    endpoint: str,
    request_id: str | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Appends one entry per distinct patient in `patient_ids` (one INSERT whatever their number);
    returns how many. `endpoint` names the route, not the concrete URL (e.g. `GET /api/v1/patients/{id}`),
    so the log groups by what was read."""
    ids = list(dict.fromkeys(pid for pid in patient_ids if pid is not None))
    if not ids:
        return 0
    at = now or timezone.now()
    rid = current_request_id() if request_id is None else request_id
    AccessLogEntry.objects.bulk_create(
        [
            AccessLogEntry(
                created_at=at,
                user=user,
                user_role=user.role,
                patient_id=pid,
                endpoint=endpoint[:200],
                request_id=rid,
            )
            for pid in ids
        ]
    )
    return len(ids)
