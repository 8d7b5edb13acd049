"""Who read what (issue 8, item 6; HIPAA accounting of access): an append-only log of every read of
patient data through the API and the admin. One row per patient read; a read logs every patient it
returned in ONE insert statement, whatever their number (a page holds up to 500), on every database."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.utils import timezone

from registry.middleware import current_request_id
from registry.models import AccessLogEntry, User

# SQLite: Django caps a statement at 999 parameters, so bulk_create would split a page of more than 142
# rows into several INSERTs. The per-row values (id, patient) travel as one JSON parameter instead; the
# shared ones once. Django stores UUIDs on SQLite as 32 hex digits, which is what the rows carry.
_SQLITE_INSERT = (
    'INSERT INTO "registry_accesslogentry" ("id", "created_at", "user_id", "user_role", "patient_id", "endpoint", '
    "\"request_id\") SELECT json_extract(value, '$[0]'), %s, %s, %s, json_extract(value, '$[1]'), %s, %s "
    "FROM json_each(%s)"
)


def access_log_record(
    *,
    user: User,
    patient_ids: Iterable[Any],
    endpoint: str,
    request_id: str | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Appends one entry per distinct patient in `patient_ids`, in one INSERT; returns how many.
    `endpoint` names the route, not the concrete URL (e.g. `GET /api/v1/patients/{id}`), so the log
    groups by what was read."""
    ids = list(dict.fromkeys(pid for pid in patient_ids if pid is not None))
    if not ids:
        return 0
    at = now or timezone.now()
    rid = current_request_id() if request_id is None else request_id
    rows = [
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
    fields = AccessLogEntry._meta.concrete_fields
    if connection.ops.bulk_batch_size(fields, rows) >= len(rows):  # PostgreSQL: always
        AccessLogEntry.objects.bulk_create(rows)
        return len(rows)
    pairs = [[row.id.hex, uuid.UUID(str(row.patient_id)).hex] for row in rows]
    with connection.cursor() as cursor:
        cursor.execute(
            _SQLITE_INSERT,
            [
                connection.ops.adapt_datetimefield_value(at),
                uuid.UUID(str(user.pk)).hex,
                user.role,
                endpoint[:200],
                rid,
                json.dumps(pairs),
            ],
        )
    return len(rows)
