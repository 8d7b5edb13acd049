"""Participant registration and the certification lifecycle (ACT-1..5).

Transitions (ACT-5)::

    pending --certify--> certified --suspend--> suspended --reinstate--> certified
    pending | certified | suspended --deactivate--> deactivated   (terminal)

`certify` also renews a certified participant whose certification has expired. Every transition locks the
row, checks the current status, records who, when and why in the audit trail, and is refused with 409
`invalid_status_transition` from any other status.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any, TypeVar

from django.db import IntegrityError, transaction
from django.utils import timezone

from registry import rules
from registry.errors import (
    CertificationRequirementsUnmet,
    Conflict,
    DuplicateIdentifier,
    ErrorCode,
    InvalidTransition,
    ValidationFailed,
)
from registry.identifiers import is_valid_ncpdp_id, is_valid_npi
from registry.localtime import is_valid_time_zone, local_date, registry_time_zone, zone_for_state
from registry.models import CertificationStatus, Facility, Pharmacy, Prescriber, RevokeCategory, User

from .audit import audit_record, field_changes
from .dispensing import authorizations_lapse
from .revocation import authorizations_revoke_where
from .standing import participant_keys_stop

P = TypeVar("P", Prescriber, Facility, Pharmacy)

S = CertificationStatus


def prescriber_requirements(p: Prescriber, program: rules.ProgramSettings) -> list[str]:
    """ACT-2: valid NPI; knowledge assessment passed (score and date); enrollment form signed."""
    missing = []
    if not is_valid_npi(p.npi):
        missing.append("valid_npi")
    if (
        p.knowledge_assessment_score is None
        or p.knowledge_assessment_score < rules.KNOWLEDGE_ASSESSMENT_PASS_SCORE
        or p.knowledge_assessment_passed_on is None
    ):
        missing.append("knowledge_assessment_passed")
    if p.enrollment_signed_on is None:
        missing.append("enrollment_form_signed")
    return missing


def facility_requirements(f: Facility, program: rules.ProgramSettings) -> list[str]:
    """ACT-3: valid NPI; authorized representative; enrollment form; infusion-reaction readiness attested."""
    missing = []
    if not is_valid_npi(f.npi):
        missing.append("valid_npi")
    if not (f.authorized_rep_name and f.authorized_rep_email):
        missing.append("authorized_representative")
    if f.enrollment_signed_on is None:
        missing.append("enrollment_form_signed")
    if f.infusion_reaction_readiness_attested_on is None:
        missing.append("infusion_reaction_readiness_attested")
    return missing


def pharmacy_requirements(ph: Pharmacy, program: rules.ProgramSettings) -> list[str]:
    """ACT-4: valid NPI and NCPDP ID; authorized representative; enrollment form; staff training."""
    missing = []
    if not is_valid_npi(ph.npi):
        missing.append("valid_npi")
    if not is_valid_ncpdp_id(ph.ncpdp_id):
        missing.append("valid_ncpdp_id")
    if not (ph.authorized_rep_name and ph.authorized_rep_email):
        missing.append("authorized_representative")
    if ph.enrollment_signed_on is None:
        missing.append("enrollment_form_signed")
    if ph.staff_training_completed_on is None:
        missing.append("staff_training_completed")
    return missing


def participant_requirements(participant: Prescriber | Facility | Pharmacy) -> list[str]:
    """The unmet certification requirements of a participant, as stable codes."""
    program = rules.current()
    if isinstance(participant, Prescriber):
        return prescriber_requirements(participant, program)
    if isinstance(participant, Facility):
        return facility_requirements(participant, program)
    return pharmacy_requirements(participant, program)


def _action(participant: Prescriber | Facility | Pharmacy, verb: str) -> str:
    return f"{participant.kind}.{verb}"


# ACT-2..4: the dates a participant attests (assessment, training, signatures); none may lie in the future.
ATTESTED_DATES = (
    "knowledge_assessment_passed_on",
    "enrollment_signed_on",
    "staff_training_completed_on",
    "infusion_reaction_readiness_attested_on",
)


def participant_dates_refusal(
    *, model: type[Prescriber | Facility | Pharmacy], values: dict[str, Any], now: dt.datetime
) -> ValidationFailed | None:
    """ACT-2..4: an assessment, training or signature date may not lie in the future: judged in the
    participant's own calendar (its `time_zone`, else its state's, else the registry's;
    registry/localtime.py), since the date is the day the participant lived. `values` are the
    participant's fields after the change. Pure: the services and the admin form ask it."""
    zone = values.get("time_zone") or ""
    if not (zone and is_valid_time_zone(zone)):
        zone = zone_for_state(values.get("state")) if model is not Prescriber else registry_time_zone()
    today = local_date(now, zone)
    errors = {
        name: ["Cannot be in the future."]
        for name in ATTESTED_DATES
        if isinstance(values.get(name), dt.date) and values[name] > today
    }
    return ValidationFailed(errors) if errors else None


def _values(participant: Any, data: dict[str, Any]) -> dict[str, Any]:
    fields = {f.name for f in participant._meta.concrete_fields}
    return {**{name: getattr(participant, name) for name in fields}, **data}


def participant_register(
    *, model: type[P], actor: User, data: dict[str, Any], now: dt.datetime | None = None
) -> P:
    """Registers a participant as `pending`. A duplicate NPI (or NCPDP ID) among participants that are not
    deactivated is refused by the database and answered 409 `duplicate_identifier`. A site's `time_zone`
    defaults to its state's (models/parties.py). Attested dates may not lie in the future (400)."""
    refusal = participant_dates_refusal(model=model, values=data, now=now or timezone.now())
    if refusal is not None:
        raise refusal
    try:
        with transaction.atomic():
            participant = model.objects.create(**data)
            audit_record(
                actor=actor, action=_action(participant, "register"), subject=participant, changes=data
            )
    except IntegrityError as exc:
        raise DuplicateIdentifier(_duplicate_detail(exc)) from exc
    return participant


def _duplicate_detail(exc: IntegrityError) -> str:
    if "ncpdp" in str(exc):
        return "A pharmacy with this NCPDP provider ID is already registered."
    return "A participant of this kind with this NPI is already registered."


def participant_update_refusal(
    *, participant: Prescriber | Facility | Pharmacy, data: dict[str, Any]
) -> CertificationRequirementsUnmet | Conflict | None:
    """Why an edit may not be made (ACT-5), or None. Pure: the update service asks it under the row lock;
    the admin form asks it to show a field error instead of failing. A certified or suspended participant
    keeps its identifiers and every certification requirement it was certified on."""
    if participant.status not in (S.CERTIFIED, S.SUSPENDED):
        return None
    if {"npi", "ncpdp_id"} & field_changes(participant, data).keys():
        return Conflict(
            "The identifiers of a certified or suspended participant cannot change; deactivate it and "
            "register the new identity.",
            code=ErrorCode.IDENTIFIER_LOCKED,
        )
    edited = copy.copy(participant)
    for name, value in data.items():
        setattr(edited, name, value)
    missing = participant_requirements(edited)
    if missing:
        return CertificationRequirementsUnmet(
            "This change would undo a certification requirement.", missing=missing
        )
    return None


def _with_derived_zone(participant: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Issue 9 item 7: a site whose `time_zone` is its state's default follows a corrected state (a site
    left on the old state's calendar would judge "today" and "future" a day off); a zone set on purpose
    (not the old state's default), or set in the same edit, is kept."""
    if isinstance(participant, Prescriber) or "state" not in data or "time_zone" in data:
        return data
    if participant.time_zone and participant.time_zone != zone_for_state(participant.state):
        return data
    return {**data, "time_zone": zone_for_state(data["state"])}


def participant_update(
    *, participant: P, actor: User, data: dict[str, Any], now: dt.datetime | None = None
) -> P:
    """Edits registration details; `status` never changes here. A certified or suspended participant keeps
    its identifiers (NPI, NCPDP ID: 409 `identifier_locked`; deactivate and re-enroll instead), and an
    edit may not undo a certification requirement it was certified on (409
    `certification_requirements_unmet` with `missing`, ACT-2..5). A site's zone derived from its state
    follows a corrected state (`_with_derived_zone`)."""
    data = {k: v for k, v in data.items() if k not in {"status", "id"}}
    try:
        with transaction.atomic():
            locked = type(participant).objects.select_for_update(no_key=True).get(pk=participant.pk)
            data = _with_derived_zone(locked, data)
            changes = field_changes(locked, data)
            refusal = participant_update_refusal(participant=locked, data=data)
            if refusal is not None:
                raise refusal
            dates = participant_dates_refusal(
                model=type(locked), values=_values(locked, data), now=now or timezone.now()
            )
            if dates is not None:
                raise dates
            for name, value in data.items():
                setattr(locked, name, value)
            locked.save()
            if changes:
                audit_record(actor=actor, action=_action(locked, "update"), subject=locked, changes=changes)
    except IntegrityError as exc:
        raise DuplicateIdentifier(_duplicate_detail(exc)) from exc
    return locked


_PAST = {
    "certify": "certified",
    "suspend": "suspended",
    "reinstate": "reinstated",
    "deactivate": "deactivated",
}


def _transition(
    *,
    participant: P,
    actor: User,
    verb: str,
    allowed_from: set[str],
    to: str,
    reason: str,
    now: dt.datetime,
    extra: dict[str, Any] | None = None,
    check: bool = False,
) -> P:
    with transaction.atomic():
        locked = type(participant).objects.select_for_update(no_key=True).get(pk=participant.pk)
        renewing = verb == "certify" and locked.status == S.CERTIFIED and not locked.is_certified_at(now)
        if locked.status not in allowed_from and not renewing:
            raise InvalidTransition(
                f"A {locked.kind} that is {locked.status} cannot be {_PAST[verb]}.",
                status=locked.status,
            )
        if check:
            missing = participant_requirements(locked)
            if missing:
                raise CertificationRequirementsUnmet(missing=missing)
        before = locked.status
        lapsed = 0
        if renewing:  # GATE-2: numbers that lapsed with the expired certification stay revoked (issue 9)
            lapsed = authorizations_lapse(now=now, **{locked.kind: locked})
        locked.status = to
        locked.status_reason = reason
        locked.status_changed_at = now
        for name, value in (extra or {}).items():
            setattr(locked, name, value)
        locked.save()
        revoked = 0
        if to in (S.SUSPENDED, S.DEACTIVATED):  # ACT-5: fails every gate, outstanding numbers included
            revoked = authorizations_revoke_where(
                actor=actor,
                now=now,
                reason=f"{locked.kind.capitalize()} {to}: {reason}",
                category=RevokeCategory.PARTICIPANT_NOT_CERTIFIED,
                **{locked.kind: locked},
            )
        keys_stopped = participant_keys_stop(participant=locked, now=now) if to == S.DEACTIVATED else 0
        audit_record(
            actor=actor,
            action=_action(locked, verb),
            subject=locked,
            changes={
                "status": [before, to],
                "reason": reason,
                **(extra or {}),
                **({"authorizations_revoked": revoked} if revoked else {}),
                **({"authorizations_lapsed": lapsed} if lapsed else {}),
                **({"api_keys_revoked": keys_stopped} if keys_stopped else {}),
            },
            at=now,
        )
    return locked


def participant_certify(*, participant: P, actor: User, now: dt.datetime, reason: str = "") -> P:
    """ACT-2..5: pending -> certified when every requirement is met (409 with `missing` otherwise).
    Sets the expiry when the program has a certification validity (ACT-5 *setting*). Renewing an expired
    certification first stores the numbers that lapsed with it as revoked (`authorizations_lapse`), so a
    renewal revives none of them (GATE-2, issue 9 item 4)."""
    validity = rules.current().certification_validity_days
    expires = now + dt.timedelta(days=validity) if validity else None
    return _transition(
        participant=participant,
        actor=actor,
        verb="certify",
        allowed_from={S.PENDING},
        to=S.CERTIFIED,
        reason=reason,
        now=now,
        extra={"certified_at": now, "certification_expires_at": expires},
        check=True,
    )


def participant_suspend(*, participant: P, actor: User, reason: str, now: dt.datetime) -> P:
    """ACT-5: certified -> suspended. A suspended participant fails every gate that needs it."""
    return _transition(
        participant=participant,
        actor=actor,
        verb="suspend",
        allowed_from={S.CERTIFIED},
        to=S.SUSPENDED,
        reason=reason,
        now=now,
    )


def participant_reinstate(*, participant: P, actor: User, reason: str, now: dt.datetime) -> P:
    """ACT-5: suspended -> certified, provided the certification requirements are still met."""
    return _transition(
        participant=participant,
        actor=actor,
        verb="reinstate",
        allowed_from={S.SUSPENDED},
        to=S.CERTIFIED,
        reason=reason,
        now=now,
        check=True,
    )


def participant_deactivate(*, participant: P, actor: User, reason: str, now: dt.datetime) -> P:
    """ACT-5: any non-terminal status -> deactivated (terminal; re-enrollment registers anew). Every API
    key of the participant and of its delegates is revoked in the same transaction (401 `key_inactive`)."""
    return _transition(
        participant=participant,
        actor=actor,
        verb="deactivate",
        allowed_from={S.PENDING, S.CERTIFIED, S.SUSPENDED},
        to=S.DEACTIVATED,
        reason=reason,
        now=now,
    )


TRANSITIONS = {
    "certify": participant_certify,
    "suspend": participant_suspend,
    "reinstate": participant_reinstate,
    "deactivate": participant_deactivate,
}
