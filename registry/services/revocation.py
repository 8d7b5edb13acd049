"""GATE-2 and ACT-5: an authorization number stays valid only while what it was granted on holds. Any
change that would fail the gate (a party suspended or deactivated; the patient suspended, discontinued,
deceased or transferred; a contraindication; the course cancelled) revokes the affected active numbers in
the same transaction, set-based, with an audit event per number."""

from __future__ import annotations

import datetime as dt
from typing import Any

from registry.models import AuthorizationStatus, DispenseAuthorization, RevokeCategory, User

from .audit import audit_record_many


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
    changes = {
        "status": [AuthorizationStatus.ACTIVE, AuthorizationStatus.REVOKED],
        "reason": reason,
        "category": category,
    }
    audit_record_many(
        actor=actor,
        action="authorization.revoke",
        subject_type="dispenseauthorization",
        changes_by_id={pk: changes for pk in ids},
        at=now,
    )
    return len(ids)
