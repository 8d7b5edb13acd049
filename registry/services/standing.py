"""Access follows certification (ACT-1, ACT-5; API.md "Access, duplicates and lookups").

A participant's *standing* decides what its API keys (and its delegates' keys) may still do:

- ``deactivated``: nothing. Its keys are revoked in the deactivation's transaction and answer 401
  `key_inactive` (checked again at every authentication, so no key of a deactivated participant works,
  whenever it was issued).
- ``suspended`` (suspended, or certified with its certification expired): reads as before; a prescriber's
  care team keeps recording what patient safety needs (monitoring labs, status forms); every other write is
  403 `participant_suspended` (registry/permissions.py `ParticipantInStanding`).
- ``active`` (certified, or pending): unchanged; the gates still refuse what an uncertified party may not
  do. Administrators have no participant and are always active.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from registry.models import ApiKey, CertificationStatus, Facility, Pharmacy, Prescriber, Role, User


class Standing(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"


def participant_of(user: User) -> Prescriber | Facility | Pharmacy | None:
    """The participant a user's keys act for: its own, or for a delegate the prescriber it acts for. Read
    from the relations the key lookup already loaded (no query)."""
    if user.role in (Role.PRESCRIBER, Role.DELEGATE):
        return user.prescriber
    if user.role == Role.FACILITY:
        return user.facility
    if user.role == Role.PHARMACY:
        return user.pharmacy
    return None


def participant_standing(participant: Any, *, now: dt.datetime) -> Standing:
    """ACT-5: deactivated is terminal; suspended, or certified past its expiry, is suspended."""
    if participant is None:
        return Standing.ACTIVE
    if participant.status == CertificationStatus.DEACTIVATED:
        return Standing.DEACTIVATED
    if participant.status == CertificationStatus.SUSPENDED:
        return Standing.SUSPENDED
    if participant.status == CertificationStatus.CERTIFIED and not participant.is_certified_at(now):
        return Standing.SUSPENDED
    return Standing.ACTIVE


def user_standing(user: User, *, now: dt.datetime) -> Standing:
    return participant_standing(participant_of(user), now=now)


def participant_keys_stop(*, participant: Prescriber | Facility | Pharmacy, now: dt.datetime) -> int:
    """ACT-5: revokes every live key of the participant's users (for a prescriber, its own and every
    delegate's: a delegate's user points at the prescriber it acts for). Runs inside the deactivation's
    transaction, which audits the count; returns it."""
    return ApiKey.objects.filter(
        **{f"user__{participant.kind}": participant}, revoked_at__isnull=True
    ).update(revoked_at=now)
