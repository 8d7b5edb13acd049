"""ACT-5 and STYLE.md 5: every state change writes an audit event in the same transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db import models, transaction

from registry.middleware import current_request_id
from registry.models import AuditEvent, User


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def audit_event(
    *,
    actor: User | None,
    action: str,
    subject: models.Model,
    changes: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> AuditEvent:
    """One audit event, not yet saved: for `audit_record`, or for `rows.rows_insert` to write with the
    change it records in one statement."""
    event = AuditEvent(
        actor=actor,
        actor_role=actor.role if actor is not None else "system",
        action=action,
        subject_type=subject._meta.model_name or "",
        subject_id=subject.pk,
        changes=_jsonable(changes or {}),
        request_id=current_request_id(),
    )
    if at is not None:
        event.created_at = at
    return event


def audit_record(
    *,
    actor: User | None,
    action: str,
    subject: models.Model,
    changes: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> AuditEvent:
    """Append one audit event. Must run inside the transaction of the change it records."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    event = audit_event(actor=actor, action=action, subject=subject, changes=changes, at=at)
    event.save(force_insert=True)
    return event


def audit_record_many(
    *,
    actor: User | None,
    action: str,
    subject_type: str,
    changes_by_id: dict[Any, dict[str, Any]],
    at: dt.datetime | None = None,
) -> int:
    """Set-based audit (STYLE.md 6): one event per subject id, in one multi-row insert. Must run inside
    the transaction of the change it records."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record_many must run inside the transaction of the change it records")
    request_id = current_request_id()
    extra = {"created_at": at} if at is not None else {}
    AuditEvent.objects.bulk_create(
        (
            AuditEvent(
                actor=actor,
                actor_role=actor.role if actor is not None else "system",
                action=action,
                subject_type=subject_type,
                subject_id=subject_id,
                changes=_jsonable(changes),
                request_id=request_id,
                **extra,
            )
            for subject_id, changes in changes_by_id.items()
        ),
        batch_size=1000,
    )
    return len(changes_by_id)


def field_changes(instance: models.Model, data: dict[str, Any]) -> dict[str, list[Any]]:
    """`{field: [old, new]}` for the fields in `data` whose value differs."""
    return {
        name: [getattr(instance, name), value]
        for name, value in data.items()
        if getattr(instance, name) != value
    }
