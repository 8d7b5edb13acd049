"""ID-4: date-of-birth guessing. A pharmacy or facility names a patient by registry ID and date of birth;
after `DOB_MISMATCH_LIMIT` mismatches for one registry ID from one caller within `DOB_MISMATCH_WINDOW`,
that caller gets `patient_not_found` for that registry ID for `DOB_LOCK_DURATION`, even with the right
date. The answer never differs between a mismatch, an unknown ID and a lock: all three are "no patient".

A well-formed registry ID that matches no patient with that date of birth counts as a mismatch whether or
not the ID exists, so the guard itself cannot be used to learn which IDs exist. The lock is audited, shown
to administrators (admin "Date-of-birth lookup locks"), and lifted by `dob_lock_lift`.

The NCPDP initiation without a registry ID names the patient by name, date of birth and sex among one
prescriber's patients; `patient_of_record_guarded` puts the same rule on that lookup, keyed by the name.

Runs inside the caller's transaction (the gate's, or the NCPDP message's): the answer commits, and the
mismatch with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils.crypto import salted_hmac

from registry.errors import Conflict, ErrorCode
from registry.identifiers import parse_registry_id
from registry.matching import name_normalize, patient_match_key
from registry.models import DobLookupGuard, LookupKind, Patient, Prescriber, User
from registry.selectors.facts import patient_by_registry_id
from registry.selectors.patients import patient_of_record_by_demographics

from .audit import audit_record

# ID-4 (issue 8): fixed program rules, not settings.
DOB_MISMATCH_LIMIT = 5
DOB_MISMATCH_WINDOW = dt.timedelta(hours=24)
DOB_LOCK_DURATION = dt.timedelta(hours=24)


def dob_mismatch_record(
    *,
    caller: User,
    rems_patient_id: str,
    now: dt.datetime,
    lookup: LookupKind = LookupKind.REGISTRY_ID,
    prescriber: Prescriber | None = None,
) -> DobLookupGuard:
    """Counts one mismatch; locks the pair (audited) on the `DOB_MISMATCH_LIMIT`-th within the window.
    The guard row is locked for the update, so concurrent mismatches from one caller all count.
    `rems_patient_id` is the registry ID asked for, or for a name lookup its digest (`demographics_key`),
    stored with the `prescriber` whose patients were searched (it names no patient), so that an
    administrator can tell one name lock from another."""
    named: dict[str, Any] = {"user": caller, "lookup": lookup, "rems_patient_id": rems_patient_id}
    with transaction.atomic():
        try:
            with transaction.atomic():
                DobLookupGuard.objects.get_or_create(**named, defaults={"prescriber": prescriber})
        except IntegrityError:
            pass  # a concurrent first mismatch created it
        guard = DobLookupGuard.objects.select_for_update().get(**named)
        if guard.locked_until is not None and guard.locked_until > now:
            return guard  # locked: asking again while locked neither counts nor extends the lock
        since = now - DOB_MISMATCH_WINDOW  # a lock and its lifting clear the list: those are spent
        recent = [t for t in guard.failures if dt.datetime.fromisoformat(t) > since]
        recent = [*recent, now.isoformat()][-DOB_MISMATCH_LIMIT:]
        guard.failures = recent
        fields = ["failures", "updated_at"]
        if len(recent) >= DOB_MISMATCH_LIMIT:
            guard.locked_at = now
            guard.locked_until = now + DOB_LOCK_DURATION
            guard.failures = []
            fields += ["locked_at", "locked_until"]
            audit_record(
                actor=caller,
                action="dob_lookup.lock",
                subject=guard,
                changes={
                    "rems_patient_id": rems_patient_id,
                    "mismatches": len(recent),
                    "locked_until": guard.locked_until,
                    # a name lookup's lock says so (its "ID" is the name's digest)
                    **({"lookup": lookup} if lookup != LookupKind.REGISTRY_ID else {}),
                },
                at=now,
            )
        guard.save(update_fields=fields)
    return guard


def dob_lock_lift(*, guard: DobLookupGuard, actor: User, reason: str, now: dt.datetime) -> DobLookupGuard:
    """An administrator lifts a lock at once (audited); the caller starts again with no mismatches.
    409 `dob_lock_not_active` when the pair is not locked."""
    with transaction.atomic():
        locked = DobLookupGuard.objects.select_for_update().get(pk=guard.pk)
        if locked.locked_until is None or locked.locked_until <= now:
            raise Conflict("This lookup is not locked for this caller.", code=ErrorCode.DOB_LOCK_NOT_ACTIVE)
        before = locked.locked_until
        locked.locked_until = None
        locked.lifted_at = now
        locked.lifted_by = actor
        locked.failures = []
        locked.save(update_fields=["locked_until", "lifted_at", "lifted_by", "failures", "updated_at"])
        audit_record(
            actor=actor,
            action="dob_lookup.lift",
            subject=locked,
            changes={
                "rems_patient_id": locked.rems_patient_id,
                "locked_until": before,
                "reason": reason,
                **({"lookup": locked.lookup} if locked.lookup != LookupKind.REGISTRY_ID else {}),
            },
            at=now,
        )
    return locked


def patient_lookup_guarded(
    rems_patient_id: str, date_of_birth: dt.date, *, caller: User, now: dt.datetime, **lookup: Any
) -> Patient | None:
    """The registry ID + date-of-birth lookup (`selectors.facts.patient_by_registry_id`, whose keywords
    `lookup` passes on) behind the ID-4 guard: a locked caller finds nothing (a condition on the lookup's
    own statement, no extra query), and a miss on a well-formed ID counts as a mismatch. None in all
    three cases, so the answers are equal."""
    found = patient_by_registry_id(
        rems_patient_id, date_of_birth, now=now, locked_out_for=caller.pk, **lookup
    )
    canonical = parse_registry_id(rems_patient_id)
    if found is None and canonical is not None:  # a malformed ID cannot exist: nothing to count
        dob_mismatch_record(caller=caller, rems_patient_id=canonical, now=now)
    return found


_DEMOGRAPHICS_SALT = "registry.dob_guard.demographics"


def demographics_key(prescriber: Prescriber, first_name: str, last_name: str) -> str:
    """What a name lookup's guard is keyed by: the prescriber and the normalized name (the match key),
    as a keyed digest, so the guard table never holds a patient's name."""
    value = f"{prescriber.pk}|{patient_match_key(first_name, last_name)}"
    return salted_hmac(_DEMOGRAPHICS_SALT, value, algorithm="sha256").hexdigest()[:16]


def patient_of_record_guarded(
    prescriber: Prescriber,
    *,
    first_name: str,
    last_name: str,
    date_of_birth: dt.date,
    sex: str | None,
    caller: User,
    now: dt.datetime,
) -> Patient | None:
    """ID-4 for the NCPDP initiation without a registry ID: a name, a date of birth (and sex) among the
    named prescriber's patients (`selectors.patients.patient_of_record_by_demographics`) behind the same
    guard as the registry ID: `DOB_MISMATCH_LIMIT` misses for one name of one prescriber from one caller
    within the window lock that caller out of that name for `DOB_LOCK_DURATION`, so a caller holding a
    name cannot try dates of birth until one answers (and learn that the person is a patient). A miss, an
    unknown name and a lock all answer None."""
    if not name_normalize(first_name) or not name_normalize(last_name):
        return None  # names nobody: nothing to count
    key = demographics_key(prescriber, first_name, last_name)
    with transaction.atomic():
        # One caller's lookups of one name run one at a time (to the end of the transaction), so a burst
        # of guesses in flight together cannot pass the lock that the fifth miss is about to commit.
        _guesses_serialize(caller, key)
        locked = DobLookupGuard.objects.filter(
            user=caller, lookup=LookupKind.DEMOGRAPHICS, rems_patient_id=key, locked_until__gt=now
        ).exists()
        if locked:
            return None
        found = patient_of_record_by_demographics(
            prescriber, first_name=first_name, last_name=last_name, date_of_birth=date_of_birth, sex=sex
        )
        if found is None:
            dob_mismatch_record(
                caller=caller,
                rems_patient_id=key,
                now=now,
                lookup=LookupKind.DEMOGRAPHICS,
                prescriber=prescriber,
            )
    return found


def _guesses_serialize(caller: User, key: str) -> None:
    """A PostgreSQL advisory lock on (caller, name digest), held to the end of the transaction; SQLite
    (the quick start) serializes writers by itself."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(f"dob_guard|{caller.pk}|{key}".encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])
