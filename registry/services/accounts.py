"""Users, API keys and delegates (API.md "Conventions", "Bootstrap", delegates)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import uuid
from typing import Any

from django.contrib.auth.models import Group
from django.core.signals import request_finished
from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from registry.errors import Conflict, ErrorCode, KeyInactive, NotFound
from registry.models import ApiKey, Facility, Pharmacy, Prescriber, Role, User
from registry.selectors.keys import api_key_by_prefix

from .audit import audit_record
from .standing import Standing, participant_of, participant_standing

KEY_PREFIX = "rems"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_issue(*, user: User, actor: User | None, name: str = "") -> tuple[ApiKey, str]:
    """A new key for `user`. The raw key is returned once and never stored: only its SHA-256 is. A
    deactivated participant gets no new key (ACT-5: 409 `participant_deactivated`)."""
    if participant_standing(participant_of(user), now=timezone.now()) == Standing.DEACTIVATED:
        raise Conflict(
            "A deactivated participant cannot be given API keys.", code=ErrorCode.PARTICIPANT_DEACTIVATED
        )
    prefix = secrets.token_hex(6)
    raw = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            user=user, name=name, prefix=prefix, key_hash=_hash(raw), created_by=actor
        )
        audit_record(
            actor=actor, action="api_key.issue", subject=key, changes={"user": user.pk, "name": name}
        )
    return key, raw


def api_key_authenticate(raw: str, *, now: dt.datetime | None = None) -> ApiKey | None:
    """The live key for a raw bearer value, or None. One indexed lookup by prefix (the key, its user and
    the user's participant in one plain statement), a constant-time hash comparison, and at most one
    `last_used_at` write a minute per key.

    ACT-5: a genuine key whose participant (for a delegate, whose prescriber) is deactivated raises
    `KeyInactive` (401 `key_inactive`), whether or not the deactivation's revocation reached it."""
    parts = raw.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key = api_key_by_prefix(parts[1])  # one statement, planned once per process (selectors/keys.py)
    if key is None or not hmac.compare_digest(key.key_hash, _hash(raw)):
        return None
    now = now or timezone.now()
    if participant_standing(participant_of(key.user), now=now) == Standing.DEACTIVATED:
        raise KeyInactive()
    if key.revoked_at is not None or not key.user.is_active:
        return None
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
        _last_used.stamps[key.pk] = now  # written once the answer is sent (api_keys_last_used_write)
        key.last_used_at = now
    return key


class _LastUsed(threading.local):
    def __init__(self) -> None:
        self.stamps: dict[Any, dt.datetime] = {}


_last_used = _LastUsed()


@receiver(request_finished, dispatch_uid="registry.api_keys_last_used_write")
def api_keys_last_used_write(**_: Any) -> None:
    """Off the request path (issue 13): the keys this thread authenticated get their `last_used_at` once
    the response has been handed to the server (Django's `request_finished`), in one UPDATE per key and at
    most once a minute per key. Never lowers a stamp another worker wrote."""
    stamps, _last_used.stamps = _last_used.stamps, {}
    for pk, at in stamps.items():
        ApiKey.objects.filter(pk=pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=at)).update(
            last_used_at=at
        )


def api_key_revoke(*, api_key: ApiKey, actor: User | None, now: dt.datetime) -> ApiKey:
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
        if updated:
            api_key.revoked_at = now
            audit_record(actor=actor, action="api_key.revoke", subject=api_key)
    return api_key


def admin_user_ensure(*, username: str, actor: User | None = None) -> User:
    """The admin user `username`, created (staff, superuser, no password) if missing."""
    with transaction.atomic():
        user, created = User.objects.get_or_create(
            username=username, defaults={"role": Role.ADMIN, "is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            audit_record(actor=actor, action="user.create", subject=user, changes={"role": Role.ADMIN})
        elif user.role != Role.ADMIN:
            raise Conflict(
                f"User {username!r} exists with role {user.role!r}.", code=ErrorCode.USER_ROLE_CONFLICT
            )
    return user


def participant_user_ensure(*, participant: Prescriber | Facility | Pharmacy, actor: User | None) -> User:
    """The participant's own user (one per participant, a database constraint), created on first call."""
    role = Role(participant.kind)
    with transaction.atomic():
        user = User.objects.filter(role=role, **{participant.kind: participant}).first()
        if user is None:
            user = User(
                username=f"{participant.kind}-{participant.pk}", role=role, **{participant.kind: participant}
            )
            user.email = getattr(participant, "email", "") or getattr(participant, "authorized_rep_email", "")
            user.set_unusable_password()
            user.save()
            audit_record(
                actor=actor,
                action="user.create",
                subject=user,
                changes={"role": role, participant.kind: participant.pk},
            )
            if isinstance(participant, Prescriber):
                care_team_ensure(prescriber=participant)
                user.groups.add(care_team_ensure(prescriber=participant))
    return user


def care_team_ensure(*, prescriber: Prescriber) -> Group:
    """The prescriber's care-team group: holds the object permissions on the prescriber's patients; the
    prescriber's user and its delegates are its members (ACT-8, API.md delegates)."""
    if prescriber.care_team_id is not None:
        return prescriber.care_team  # type: ignore[return-value]
    group = Group.objects.create(name=f"care-team-{prescriber.pk}")
    Prescriber.objects.filter(pk=prescriber.pk).update(care_team=group)
    prescriber.care_team = group
    return group


def delegate_add(
    *, prescriber: Prescriber, actor: User, email: str, first_name: str, last_name: str
) -> tuple[User, ApiKey, str]:
    """A delegate acting for `prescriber`, a member of its care team, with a first API key."""
    with transaction.atomic():
        prescriber = Prescriber.objects.select_for_update(no_key=True).get(pk=prescriber.pk)
        if participant_standing(prescriber, now=timezone.now()) == Standing.DEACTIVATED:
            raise Conflict(
                "A deactivated prescriber cannot add delegates.", code=ErrorCode.PARTICIPANT_DEACTIVATED
            )
        user = User(
            username=f"delegate-{secrets.token_hex(8)}",
            role=Role.DELEGATE,
            prescriber=prescriber,
            email=email,
            first_name=first_name,
            last_name=last_name,
        )
        user.set_unusable_password()
        user.save()
        user.groups.add(care_team_ensure(prescriber=prescriber))
        audit_record(
            actor=actor,
            action="delegate.add",
            subject=user,
            changes={"prescriber": prescriber.pk, "email": email},
        )
        key, raw = api_key_issue(user=user, actor=actor, name="delegate")
    return user, key, raw


def delegate_remove(*, prescriber: Prescriber, delegate_id: str, actor: User, now: dt.datetime) -> None:
    """Removes the delegate and all its access at once: out of the care team, user inactive, keys revoked."""
    try:
        delegate_uuid = uuid.UUID(str(delegate_id))
    except ValueError as exc:
        raise NotFound("No such delegate.") from exc
    with transaction.atomic():
        user = (
            User.objects.select_for_update()
            .filter(pk=delegate_uuid, role=Role.DELEGATE, prescriber=prescriber, is_active=True)
            .first()
        )
        if user is None:
            raise NotFound("No such delegate.")
        user.groups.clear()
        user.is_active = False
        user.save(update_fields=["is_active"])
        revoked = ApiKey.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=now)
        audit_record(
            actor=actor,
            action="delegate.remove",
            subject=user,
            changes={"prescriber": prescriber.pk, "keys_revoked": revoked},
        )
