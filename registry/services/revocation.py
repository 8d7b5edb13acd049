"""GATE-2 and ACT-5: an authorization number stays valid only while what it was granted on holds. Any
change that would fail the gate (a party suspended or deactivated; the patient suspended, discontinued,
deceased or transferred; a contraindication; the course cancelled) revokes the affected active numbers in
the same transaction, set-based, with an audit event per number."""

from __future__ import annotations

import datetime as dt
from typing import Any

from registry.middleware import current_request_id
from registry.models import AuditEvent, AuthorizationStatus, DispenseAuthorization, RevokeCategory, User


def authorizations_revoke_where(
    *, actor: User | None, now: dt.datetime, reason: str, category: RevokeCategory, **filters: Any
) -> int:
    """Revokes the active authorizations matching `filters`. Must run inside the caller's transaction.
    `reason` (which may name clinical facts) is kept for administrators; pharmacies read `category`."""
    ids = list(
        DispenseAuthorization.objects.select_for_update()
        .filter(status=AuthorizationStatus.ACTIVE, **filters)
        .values_list("pk", flat=True)
    )
    if not ids:
        return 0
    DispenseAuthorization.objects.filter(pk__in=ids).update(
        status=AuthorizationStatus.REVOKED,
        revoked_at=now,
        revoked_by=actor,
        revoke_reason=reason,
        revoke_category=category,
    )
    request_id = current_request_id()
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor=actor,
            actor_role=actor.role if actor else "system",
            action="authorization.revoke",
            subject_type="dispenseauthorization",
            subject_id=pk,
            request_id=request_id,
            created_at=now,
            changes={
                "status": [AuthorizationStatus.ACTIVE, AuthorizationStatus.REVOKED],
                "reason": reason,
                "category": category,
            },
        )
        for pk in ids
    )
    return len(ids)
