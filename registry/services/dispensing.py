"""Dispense authorization and dispensing (GATE-1, GATE-2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection, transaction

from registry.errors import Conflict, ErrorCode, InvalidTransition, NotFound
from registry.identifiers import new_authorization_number
from registry.localtime import local_today
from registry.models import (
    AuthorizationState,
    AuthorizationStatus,
    Dispense,
    DispenseAuthorization,
    Patient,
    Pharmacy,
    RevokeCategory,
    Role,
    User,
)
from registry.selectors import (
    authorization_public_state,
    authorization_revoke_category,
    authorization_state,
    authorization_visible,
)
from registry.selectors.authorizations import lapsed_category, lapsed_q
from registry.selectors.facts import Facts, PartiesNamed, facts_load, participants_for_authorization

from .audit import audit_event, audit_record, audit_record_many
from .decisions import DISPENSE_GATE
from .dob_guard import patient_lookup_guarded
from .gate import Outcome, gate_run
from .rows import rows_insert

# Numbers drawn before an approval gives up (each a 1 in 2^60 collision with a live number).
_NUMBER_DRAWS = 5


def authorization_request(
    *, actor: User, pharmacy: Pharmacy | None, data: dict[str, Any], now: dt.datetime
) -> Outcome[DispenseAuthorization]:
    """GATE-1: every requirement is evaluated at the moment of the check; a denial lists every unmet one.
    GATE-2: an approval issues a single-use authorization number valid 7 days (*setting*), bound to
    pharmacy, facility, patient, course and dose count. GATE-5: the decision is stored either way.

    The patient row is locked for the check, so two pharmacies asking at once cannot both be granted the
    course's last doses; the three parties are share-locked with it (selectors.facts).

    The labs are judged against the authorization day, the pharmacy's own calendar day
    (registry/localtime.py); the course interval lets a pharmacy be authorized up to
    `authorization_lead_days` (*setting*) before the course's earliest day. Before a number is issued, the
    course's lapsed numbers are stored as revoked (`authorizations_lapse`), so a number whose doses were
    freed cannot come back to life when, say, its pharmacy renews its certification."""
    today = local_today(actor, now)
    parties: list[Any] = [None, None, None]

    def load() -> Facts:
        named = PartiesNamed(
            pharmacy_id=pharmacy.pk if pharmacy else None,
            facility_npi=data["facility_npi"],
            prescriber_npi=data["prescriber_npi"],
        )
        patient = patient_lookup_guarded(  # ID-4: date-of-birth guessing lock
            data["rems_patient_id"],
            data["date_of_birth"],
            now=now,
            labs_as_of=today,
            lock=True,
            caller=actor,
            parties=named,  # read and share-locked with the facts, after the patient lock (PostgreSQL)
        )
        found = getattr(patient, "gate_parties", None)
        parties[:] = found or participants_for_authorization(
            pharmacy_id=named.pharmacy_id,
            facility_npi=named.facility_npi,
            prescriber_npi=named.prescriber_npi,
        )
        return facts_load(
            patient=patient,
            annotated=True,
            now=now,
            as_of=today,
            pharmacy=parties[0],
            facility=parties[1],
            prescriber=parties[2],
            request={"doses_requested": data["doses_requested"]},
        )

    def approve(facts: Facts, decision_id: Any, decision_rows: list[Any]) -> DispenseAuthorization:
        patient, course, parties = (
            facts.patient,
            facts.open_course,
            (facts.pharmacy, facts.facility, facts.prescriber),
        )
        pharmacy_, facility, prescriber = parties
        assert patient is not None
        assert course is not None
        assert pharmacy_ is not None
        assert facility is not None
        assert prescriber is not None
        if course.lapsed_doses:  # freed doses are re-authorized: their old numbers must not revive
            authorizations_lapse(now=now, course_id=course.id)
        # GATE-2, GATE-5: the number, its audit event and the approved decision are one statement
        # (Gate.one_statement_approval). 60 random bits make a collision of live numbers negligible; should
        # one be drawn, the unique index turns that statement into a no-op (`rows_insert`) and a new number
        # is drawn. The lapse above is the only write before it (its revocations hold whatever follows);
        # nothing here raises `Refused`, and any error fails the request whole.
        for _ in range(_NUMBER_DRAWS):
            authorization = DispenseAuthorization(
                id=decision_id,
                decision_id=decision_id,
                number=new_authorization_number(),
                pharmacy_id=pharmacy_.pk,
                facility_id=facility.pk,
                prescriber_id=prescriber.pk,
                patient_id=patient.pk,
                course_id=course.id,
                doses_authorized=data["doses_requested"],
                issued_at=now,
                expires_at=now + dt.timedelta(days=facts.program.authorization_validity_days),
            )
            event = audit_event(
                actor=actor,
                action="authorization.issue",
                subject=authorization,
                changes={
                    "decision": decision_id,
                    "outcome": "approved",
                    "number": authorization.number,
                    "doses": authorization.doses_authorized,
                    "expires_at": authorization.expires_at,
                    "course": course.id,
                },
            )
            if rows_insert(authorization, event, *decision_rows, conflict_on=("number",)):
                return authorization
        raise Conflict("No free authorization number could be drawn; retry the request.")

    return gate_run(
        DISPENSE_GATE,
        actor=actor,
        load=load,
        inputs={**data, "pharmacy": pharmacy.pk if pharmacy else None},
        approve=approve,
    )


def authorization_revoke(*, actor: User, number: str, reason: str, now: dt.datetime) -> DispenseAuthorization:
    """GATE-2: an active number can be revoked by the issuing pharmacy or an admin; used, expired or
    already revoked ones cannot."""
    with transaction.atomic():
        authorization = authorization_visible(actor, number, lock=True)
        if authorization is None:
            raise NotFound("No authorization with this number.")
        state = authorization_state(authorization, now)
        if state not in (AuthorizationState.ACTIVE, AuthorizationState.LAPSED):
            raise InvalidTransition(f"The authorization is {state}.", status=state)
        authorization.status, authorization.revoked_at = AuthorizationStatus.REVOKED, now
        authorization.revoked_by, authorization.revoke_reason = actor, reason
        authorization.revoke_category = (
            RevokeCategory.BY_PHARMACY if actor.role == Role.PHARMACY else RevokeCategory.BY_ADMINISTRATOR
        )
        authorization.save(
            update_fields=["status", "revoked_at", "revoked_by", "revoke_reason", "revoke_category"]
        )
        audit_record(
            actor=actor,
            action="authorization.revoke",
            subject=authorization,
            changes={"status": [AuthorizationStatus.ACTIVE, AuthorizationStatus.REVOKED], "reason": reason},
        )
    return authorization


# GATE-2: the answer to a dispense of a number that is not active; a lapsed number is refused as the GET
# shows it (`revoked`).
_REFUSALS: dict[str, tuple[ErrorCode, str]] = {
    AuthorizationState.USED: (
        ErrorCode.AUTHORIZATION_USED,
        "This authorization number has already been dispensed.",
    ),
    AuthorizationState.EXPIRED: (ErrorCode.AUTHORIZATION_EXPIRED, "This authorization number has expired."),
    AuthorizationState.REVOKED: (ErrorCode.AUTHORIZATION_REVOKED, "This authorization number was revoked."),
    AuthorizationState.LAPSED: (
        ErrorCode.AUTHORIZATION_REVOKED,
        "This authorization number no longer holds.",
    ),
}


def dispense_record(*, actor: User, data: dict[str, Any], now: dt.datetime) -> Dispense:
    """GATE-2: consumes an authorization exactly once. The row lock serializes concurrent dispenses of one
    number (the second sees it used); the one-to-one constraint is the last line of defence.

    Events that break a gate revoke outstanding numbers (services/revocation.py); what can lapse without
    an event (a certification's expiry) is re-checked here, so a number never outlives the facts it was
    granted on. Lock order: patient, then authorization, as everywhere else."""
    with transaction.atomic():
        found = authorization_visible(actor, data["authorization_number"])
        if found is None:
            raise Conflict(
                "No authorization issued to this pharmacy has this number.",
                code=ErrorCode.AUTHORIZATION_NOT_FOUND,
            )
        list(Patient.objects.select_for_update().filter(pk=found.patient_id).values_list("pk"))
        if connection.vendor == "postgresql":
            # The pharmacy is shared-locked before the authorization: a suspension (which locks the pharmacy,
            # then its authorizations) and this dispense then queue in one order instead of deadlocking.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM registry_pharmacy WHERE id = %s FOR SHARE", [found.pharmacy_id]
                )
        authorization = (
            DispenseAuthorization.objects.select_for_update(of=("self",))
            .select_related("pharmacy", "facility", "prescriber", "patient", "course")
            .get(pk=found.pk)
        )
        state = authorization_state(authorization, now)
        if state in _REFUSALS:
            code, detail = _REFUSALS[state]
            category = authorization_revoke_category(authorization, now)
            if state == AuthorizationState.LAPSED:
                detail = f"This authorization number no longer holds: {RevokeCategory(category).label}."
            raise Conflict(
                detail,
                code=code,
                status=authorization_public_state(state),
                **({"revocation": category} if category else {}),
            )
        if data["vials"] > authorization.doses_authorized:
            raise Conflict(
                f"At most {authorization.doses_authorized} vials may be dispensed on this authorization.",
                code=ErrorCode.VIALS_EXCEED_AUTHORIZATION,
            )
        dispense = Dispense(
            authorization=authorization,
            pharmacy_id=authorization.pharmacy_id,
            patient_id=authorization.patient_id,
            vials=data["vials"],
            ndc=data.get("ndc", ""),
            lot_number=data.get("lot_number", ""),
            dispensed_by=actor,
        )
        event = audit_event(
            actor=actor,
            action="dispense.record",
            subject=dispense,
            changes={
                "authorization": authorization.number,
                "vials": dispense.vials,
                "ndc": dispense.ndc,
                "lot_number": dispense.lot_number,
            },
        )
        # The dispense and its audit event in one statement (issue 13); the one-to-one index on the
        # authorization is its conflict target, the last line of defence behind the row lock: should it
        # fire, nothing is written and the number answers as used.
        if not rows_insert(dispense, event, conflict_on=("authorization",)):
            raise Conflict(_REFUSALS[AuthorizationState.USED][1], code=ErrorCode.AUTHORIZATION_USED)
        authorization.status, authorization.used_at = AuthorizationStatus.USED, now
        authorization.save(update_fields=["status", "used_at"])
    return dispense


def authorizations_lapse(*, now: dt.datetime, **filters: Any) -> int:
    """GATE-2, ACT-5, ACT-8 (issue 9 item 4): stores active, unexpired numbers whose grounds no longer hold
    (a party's certification expired, the prescriber no longer of record, the patient no longer authorized,
    the course closed) as `revoked` with their category, so the API, the admin and the database read the
    same state; the gate stopped counting their doses the moment they lapsed (selectors/facts.py).

    Set-based (STYLE.md 6): one locking read that classifies every lapsed number (`lapsed_category`),
    one UPDATE per category, one multi-row audit insert. Idempotent; rows another transaction holds are
    skipped and picked up next run. The daily monitoring sweep (MON-5) calls it (with its patient-id range
    as `filters` when split), and the dispense authorization for its course before it issues a number."""
    with transaction.atomic(savepoint=False):
        rows = list(
            DispenseAuthorization.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=AuthorizationStatus.ACTIVE, expires_at__gt=now, **filters)
            .filter(lapsed_q(now))
            .annotate(category=lapsed_category(now))
            .values_list("pk", "category")
        )
        if not rows:
            return 0
        by_category: dict[str, list[Any]] = {}
        for pk, category in rows:
            by_category.setdefault(category, []).append(pk)
        changes_by_id: dict[Any, dict[str, Any]] = {}
        for category, ids in by_category.items():
            reason = f"Lapsed: {RevokeCategory(category).label}"
            DispenseAuthorization.objects.filter(pk__in=ids).update(
                status=AuthorizationStatus.REVOKED,
                revoked_at=now,
                revoked_by=None,
                revoke_reason=reason,
                revoke_category=category,
            )
            change = {
                "status": [AuthorizationStatus.ACTIVE, AuthorizationStatus.REVOKED],
                "reason": reason,
                "category": category,
            }
            changes_by_id.update({pk: change for pk in ids})
        audit_record_many(
            actor=None,
            action="authorization.lapse",
            subject_type="dispenseauthorization",
            changes_by_id=changes_by_id,
            at=now,
        )
    return len(rows)


def authorizations_expire(*, now: dt.datetime, **filters: Any) -> int:
    """GATE-2, MON-5: flips active numbers past their expiry to `expired` (reads already treat them as
    expired), set-based: one locking read, one UPDATE, one multi-row audit insert. Idempotent; rows another
    worker holds are skipped and picked up next run. The daily monitoring sweep calls it (with its
    patient-id range as `filters` when split); it is the only bulk expiry."""
    with transaction.atomic(savepoint=False):
        ids = list(
            DispenseAuthorization.objects.select_for_update(skip_locked=True)
            .filter(status=AuthorizationStatus.ACTIVE, expires_at__lte=now, **filters)
            .values_list("pk", flat=True)
        )
        if not ids:
            return 0
        DispenseAuthorization.objects.filter(pk__in=ids).update(status=AuthorizationStatus.EXPIRED)
        audit_record_many(
            actor=None,
            action="authorization.expire",
            subject_type="dispenseauthorization",
            changes_by_id={
                pk: {"status": [AuthorizationStatus.ACTIVE, AuthorizationStatus.EXPIRED]} for pk in ids
            },
            at=now,
        )
    return len(ids)
