"""Patients: enrollment, screening, labs, contraindications, authorization, transfer of care and status
(ACT-6..9, ID-4, MON-1..2 lab kinds)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from dateutil.relativedelta import relativedelta
from django.contrib.auth.models import Permission
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet

from registry import rules
from registry.errors import (
    Conflict,
    ErrorCode,
    InvalidTransition,
    PermissionDenied,
    PrescriberNotCertified,
    ValidationFailed,
)
from registry.identifiers import new_registry_id, parse_registry_id
from registry.localtime import local_today
from registry.matching import patient_match_key
from registry.models import (
    CertificationStatus,
    Contraindication,
    LabOutcome,
    LabResult,
    LabTest,
    Patient,
    PatientGroupObjectPermission,
    PatientStatus,
    Prescriber,
    RevokeCategory,
    Role,
    Screening,
    User,
)
from registry.selectors import CARE_TEAM_PERMISSIONS, patients_visible_to
from registry.selectors.facts import Facts, facts_load

from .accounts import care_team_ensure
from .audit import audit_record, audit_record_many
from .decisions import PATIENT_AUTHORIZATION_GATE
from .gate import AlreadyDone, Outcome, gate_run
from .monitoring import monitoring_flags_end, monitoring_results_record
from .pregnancy import pregnancy_test_hold, pregnancy_tests_hold
from .revocation import authorizations_revoke_where

PS = PatientStatus


def _age_on(born: dt.date, on: dt.date) -> int:
    return relativedelta(on, born).years


def _not_future(errors: dict[str, list[str]], field: str, value: dt.date | None, today: dt.date) -> None:
    if value is not None and value > today:
        errors.setdefault(field, []).append("Cannot be in the future.")


def _duplicate_lock(match_key: str, date_of_birth: dt.date) -> None:
    """Serializes enrollments of one normalized name and date of birth (PostgreSQL advisory lock held to
    the end of the transaction), so two concurrent enrollments of one person cannot both miss each other.
    SQLite serializes writers by itself."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(f"{match_key}|{date_of_birth.isoformat()}".encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])


def possible_duplicates(*, first_name: str, last_name: str, date_of_birth: dt.date) -> list[Any]:
    """ACT-6: ids of existing patients (any prescriber, any status) with this normalized first name, last
    name and date of birth: one lookup on the (date_of_birth, match_key) index."""
    return list(
        Patient.objects.filter(
            date_of_birth=date_of_birth, match_key=patient_match_key(first_name, last_name)
        ).values_list("pk", flat=True)
    )


def patient_enroll(
    *,
    actor: User,
    data: dict[str, Any],
    now: dt.datetime,
    prescriber_npi: str | None = None,
    confirm_not_duplicate: bool = False,
) -> Patient:
    """ACT-6: a certified prescriber enrolls a patient with a signed enrollment form and becomes the
    prescriber of record (an administrator may enroll for a named certified prescriber). ACT-9: age under
    17 on the enrollment date (the signed form's) is refused; that date may neither precede the date of
    birth nor lie in the future (judged in the enrolling party's zone, registry/localtime.py). ID-4: the
    registry ID is random with a check character; a collision (vanishingly rare) is retried.

    One person, one record (ACT-6, CRS-2): a patient whose normalized first name, last name and date of
    birth match an existing patient of any prescriber and any status is refused 409
    `possible_duplicate_patient`, naming nothing about the other patient (the prescriber asks for a
    transfer of care instead). Only an administrator may confirm a genuine non-duplicate
    (`confirm_not_duplicate`), which is audited with the records it was matched to."""
    if confirm_not_duplicate and actor.role != Role.ADMIN:
        raise PermissionDenied("Only the REMS administrator can confirm that a patient is not a duplicate.")
    today = local_today(actor, now)
    born, signed = data["date_of_birth"], data["enrollment_signed_on"]
    errors: dict[str, list[str]] = {}
    _not_future(errors, "date_of_birth", born, today)
    _not_future(errors, "enrollment_signed_on", signed, today)
    if signed < born and "date_of_birth" not in errors:
        errors.setdefault("enrollment_signed_on", []).append("Cannot precede the date of birth.")
    if errors:
        raise ValidationFailed(errors)
    if _age_on(born, signed) < rules.MINIMUM_ENROLLMENT_AGE_YEARS:
        raise ValidationFailed(
            {"date_of_birth": [f"Patients under {rules.MINIMUM_ENROLLMENT_AGE_YEARS} cannot be enrolled."]},
            "The patient is below the minimum enrollment age (ACT-9).",
            code=ErrorCode.PATIENT_UNDER_MINIMUM_AGE,
        )
    with transaction.atomic():
        prescriber = _enrolling_prescriber(actor=actor, prescriber_npi=prescriber_npi)
        if not prescriber.is_certified_at(now):
            raise PrescriberNotCertified("Only a certified prescriber may enroll patients (ACT-6).")
        match_key = patient_match_key(data["first_name"], data["last_name"])
        _duplicate_lock(match_key, born)
        duplicates = possible_duplicates(
            first_name=data["first_name"], last_name=data["last_name"], date_of_birth=born
        )
        if duplicates and not confirm_not_duplicate:
            raise Conflict(
                "A patient with this name and date of birth is already enrolled. If this is the same "
                "person, ask for a transfer of care; the REMS administrator can confirm a different person.",
                code=ErrorCode.POSSIBLE_DUPLICATE_PATIENT,
            )
        team = care_team_ensure(prescriber=prescriber)
        for attempt in range(5):
            try:
                with transaction.atomic():
                    patient = Patient.objects.create(
                        **data,
                        prescriber=prescriber,
                        rems_patient_id=new_registry_id(),
                        status=PS.ENROLLED,
                        status_changed_at=now,
                    )
                break
            except IntegrityError:
                if attempt == 4:
                    raise
        PatientGroupObjectPermission.objects.bulk_create(
            PatientGroupObjectPermission(group=team, permission=perm, content_object=patient)
            for perm in _care_team_permissions()
        )
        audit_record(
            actor=actor,
            action="patient.enroll",
            subject=patient,
            changes={
                **data,
                "prescriber": prescriber.pk,
                "rems_patient_id": patient.rems_patient_id,
                **(
                    {"confirmed_not_duplicate": True, "possible_duplicates": duplicates}
                    if confirm_not_duplicate and duplicates
                    else {}
                ),
            },
        )
    return patient


def _enrolling_prescriber(*, actor: User, prescriber_npi: str | None) -> Prescriber:
    """The prescriber of record: the calling prescriber, or the one an administrator names (locked
    no-key, so a suspension waits for the enrollment)."""
    if actor.role == Role.ADMIN:
        if not prescriber_npi:
            raise ValidationFailed({"prescriber_npi": ["Required when an administrator enrolls a patient."]})
        found = (
            Prescriber.objects.select_for_update(no_key=True)
            .filter(npi=prescriber_npi)
            .exclude(status=CertificationStatus.DEACTIVATED)
            .first()
        )
        if found is None:
            raise PrescriberNotCertified("No certified prescriber has this NPI.")
        return found
    own = Prescriber.objects.select_for_update(no_key=True).get(pk=actor.prescriber_id)  # type: ignore[misc]
    if prescriber_npi and prescriber_npi != own.npi:
        raise ValidationFailed(
            {"prescriber_npi": ["A prescriber enrolls its own patients; only administrators name another."]}
        )
    return own


def _care_team_permissions() -> QuerySet[Permission]:
    return Permission.objects.filter(
        content_type__app_label="registry", content_type__model="patient", codename__in=CARE_TEAM_PERMISSIONS
    )


def screening_withdrawn(data: dict[str, Any]) -> list[str]:
    """ACT-7, ACT-9: the attestations a screening withdraws (HIV negative, no active infection)."""
    withdrawn = []
    if data.get("hiv_negative") is False:
        withdrawn.append("HIV negative")
    if data.get("no_active_infection") is False:
        withdrawn.append("no active infection")
    return withdrawn


def screening_record(*, patient: Patient, actor: User, data: dict[str, Any], now: dt.datetime) -> Screening:
    """ACT-7 attestations; the newest submission counts. A submission that withdraws an attestation (HIV
    no longer negative, an active infection) holds every gate from then on (decisions.py
    `attestations_hold`) and, like a contraindication (ACT-9), revokes the patient's outstanding
    authorization numbers in the same transaction. Holds the patient lock, so no gate decides
    concurrently on the older screening."""
    errors: dict[str, list[str]] = {}
    for name in ("tb_screened_on", "vaccinations_completed_on"):
        _not_future(errors, name, data.get(name), local_today(actor, now))
    if errors:
        raise ValidationFailed(errors)
    withdrawn = screening_withdrawn(data)
    with transaction.atomic():
        locked = _lock(patient)
        screening = Screening.objects.create(patient=locked, recorded_by=actor, **data)
        revoked = 0
        if withdrawn:
            revoked = authorizations_revoke_where(
                actor=actor,
                now=now,
                reason="Screening attestation withdrawn: " + ", ".join(withdrawn),
                category=RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE,
                patient=locked,
            )
        audit_record(
            actor=actor,
            action="screening.record",
            subject=locked,
            changes={
                "screening": screening.pk,
                **data,
                **({"authorizations_revoked": revoked} if withdrawn else {}),
            },
        )
    return screening


def _lab_errors(row: dict[str, Any], today: dt.date) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    _not_future(errors, "collected_on", row.get("collected_on"), today)
    is_pregnancy = row.get("test") == LabTest.PREGNANCY_TEST
    allowed = (
        (LabOutcome.NEGATIVE, LabOutcome.POSITIVE)
        if is_pregnancy
        else (LabOutcome.NORMAL, LabOutcome.ABNORMAL)
    )
    if row.get("result") not in allowed:
        errors.setdefault("result", []).append(
            f"For {row.get('test')} the result is one of: {', '.join(allowed)}."
        )
    return errors


def lab_result_record(*, patient: Patient, actor: User, data: dict[str, Any], now: dt.datetime) -> LabResult:
    """MON-1..2 lab kinds. A result cannot be dated in the future; pregnancy tests are negative/positive,
    other tests normal/abnormal."""
    errors = _lab_errors(data, local_today(actor, now))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        pregnancy_test_hold(patient=patient, actor=actor, data=data, now=now)  # PRG-4: before the insert
        lab = LabResult.objects.create(patient=patient, recorded_by=actor, **data)
        monitoring_results_record(results=[(patient.pk, lab.test, lab.collected_on)], actor=actor, now=now)
        audit_record(
            actor=actor, action="lab_result.record", subject=patient, changes={"lab_result": lab.pk, **data}
        )
    return lab


BULK_LAB_LIMIT = 5000


def lab_results_bulk_record(
    *,
    actor: User,
    rows: list[dict[str, Any] | None],
    now: dt.datetime,
    format_errors: dict[str, list[str]] | None = None,
) -> int:
    """Bulk lab ingestion: all or nothing, every bad row reported by index (`results.<i>.<field>`), one
    transaction, set-based (one query resolves every patient, one multi-row insert for the results and one
    for the audit events, one event per patient). `rows` holds None where the caller's format validation
    already failed (`format_errors`). A patient the caller may not see reads exactly like an unknown one."""
    today = local_today(actor, now)
    errors: dict[str, list[str]] = dict(format_errors or {})
    canonical = [parse_registry_id(str(r["rems_patient_id"])) if r else None for r in rows]
    wanted = {c for c in canonical if c}
    patients = dict(
        patients_visible_to(actor).filter(rems_patient_id__in=wanted).values_list("rems_patient_id", "pk")
    )
    for index, (row, registry_id) in enumerate(zip(rows, canonical, strict=True)):
        if row is None:
            continue
        row_errors = _lab_errors(row, today)
        if registry_id is None or registry_id not in patients:
            row_errors.setdefault("rems_patient_id", []).append("Unknown patient.")
        for name, messages in row_errors.items():
            errors[f"results.{index}.{name}"] = messages
    if errors:
        bad_rows = len({key.split(".")[1] for key in errors})
        raise ValidationFailed(errors, f"{bad_rows} of {len(rows)} rows are invalid; nothing was recorded.")
    labs = [
        LabResult(
            patient_id=patients[registry_id],
            recorded_by=actor,
            **{k: v for k, v in row.items() if k != "rems_patient_id"},
        )
        for row, registry_id in zip(rows, canonical, strict=True)
        if row is not None and registry_id is not None
    ]
    by_patient: dict[Any, int] = {}
    for lab in labs:
        by_patient[lab.patient_id] = by_patient.get(lab.patient_id, 0) + 1
    with transaction.atomic():
        pregnancy_tests_hold(actor=actor, labs=labs, now=now)  # PRG-4: before the insert
        LabResult.objects.bulk_create(labs, batch_size=1000)
        monitoring_results_record(
            results=[(lab.patient_id, lab.test, lab.collected_on) for lab in labs], actor=actor, now=now
        )
        audit_record_many(
            actor=actor,
            action="lab_result.bulk_record",
            subject_type="patient",
            changes_by_id={patient_id: {"count": count} for patient_id, count in by_patient.items()},
        )
    return len(labs)


def contraindication_record(
    *, patient: Patient, actor: User, data: dict[str, Any], now: dt.datetime
) -> Contraindication:
    """ACT-9: recorded at any time; blocks every gate from then on, outstanding authorization numbers
    included (revoked here). Holds the patient lock, so no gate decides concurrently on older facts."""
    errors: dict[str, list[str]] = {}
    _not_future(errors, "noted_on", data.get("noted_on"), local_today(actor, now))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        locked = _lock(patient)
        item = Contraindication.objects.create(patient=locked, recorded_by=actor, **data)
        revoked = authorizations_revoke_where(
            actor=actor,
            now=now,
            reason=f"Contraindication recorded: {data['kind']}",
            category=RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE,
            patient=locked,
        )
        audit_record(
            actor=actor,
            action="contraindication.record",
            subject=locked,
            changes={"contraindication": item.pk, **data, "authorizations_revoked": revoked},
        )
    return item


def _lock(patient: Patient) -> Patient:
    """The patient row, locked (the prescriber is read, not locked: a lock there would serialize every
    patient of that prescriber and cross with transfers)."""
    return Patient.objects.select_for_update(of=("self",)).select_related("prescriber").get(pk=patient.pk)


def patient_authorize(*, patient: Patient, actor: User, now: dt.datetime) -> Outcome[Patient]:
    """ACT-7: `enrolled -> authorized` when every requirement holds. A refusal (answered 409
    `authorization_requirements_unmet` with every unmet reason) is returned, not raised; either way the
    decision is stored (GATE-5). Authorizing an authorized patient changes nothing and stores nothing."""

    def load() -> Facts:
        locked = _lock(patient)
        if locked.status == PS.AUTHORIZED:
            raise AlreadyDone(locked)
        if locked.status != PS.ENROLLED:
            raise InvalidTransition(
                f"A patient who is {locked.status} cannot be authorized.", status=locked.status
            )
        return facts_load(patient=locked, now=now, as_of=local_today(actor, now))

    def approve(facts: Facts, decision_id: Any) -> Patient:
        locked = facts.patient
        assert locked is not None
        locked.status, locked.authorized_at, locked.status_changed_at = PS.AUTHORIZED, now, now
        locked.status_reason = ""
        locked.save(
            update_fields=["status", "authorized_at", "status_changed_at", "status_reason", "updated_at"]
        )
        audit_record(
            actor=actor,
            action="patient.authorize",
            subject=locked,
            changes={"status": [PS.ENROLLED, PS.AUTHORIZED], "decision": decision_id},
        )
        return locked

    return gate_run(
        PATIENT_AUTHORIZATION_GATE, actor=actor, load=load, inputs={"patient": patient.pk}, approve=approve
    )


def patient_transfer(*, patient: Patient, actor: User, prescriber_npi: str, now: dt.datetime) -> Patient:
    """ACT-8: transfer of care to another certified prescriber; the care-team grants move with the patient
    in one UPDATE, so the old team loses access and the new one gains it at once."""
    with transaction.atomic():
        locked = _lock(patient)
        target = (
            Prescriber.objects.select_for_update(no_key=True)
            .filter(npi=prescriber_npi, status=CertificationStatus.CERTIFIED)
            .first()
        )
        if target is None or not target.is_certified_at(now):
            raise PrescriberNotCertified("No certified prescriber has this NPI.")
        if target.pk == locked.prescriber_id:
            raise Conflict(
                "The patient is already under this prescriber's care.",
                code=ErrorCode.ALREADY_PRESCRIBER_OF_RECORD,
            )
        team = care_team_ensure(prescriber=target)
        before = locked.prescriber_id
        locked.prescriber = target
        locked.save(update_fields=["prescriber", "updated_at"])
        PatientGroupObjectPermission.objects.filter(content_object=locked).update(group=team)
        # GATE-1: numbers granted on the old prescriber of record no longer hold.
        authorizations_revoke_where(
            actor=actor,
            now=now,
            reason="Transfer of care",
            category=RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE,
            patient=locked,
        )
        audit_record(
            actor=actor,
            action="patient.transfer",
            subject=locked,
            changes={"prescriber": [before, target.pk]},
        )
    return locked


# ACT-8 status transitions other than authorization: verb -> (allowed from, to, roles).
_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "suspend": (frozenset({PS.ENROLLED, PS.AUTHORIZED, PS.DISCONTINUED}), PS.SUSPENDED),
    "discontinue": (frozenset({PS.ENROLLED, PS.AUTHORIZED, PS.SUSPENDED}), PS.DISCONTINUED),
    "record_death": (
        frozenset({PS.ENROLLED, PS.AUTHORIZED, PS.SUSPENDED, PS.DISCONTINUED, PS.MONITORING_COMPLETE}),
        PS.DECEASED,
    ),
}


def patient_status_change(
    *, patient: Patient, actor: User, verb: str, reason: str, now: dt.datetime
) -> Patient:
    """ACT-8: `suspend` (REMS administrator, with reason), `reinstate` (administrator: back to the status
    held before the suspension), `discontinue` (treatment stopped; monitoring continues) and
    `record_death`. Refused with 409 `invalid_status_transition` from any other status. Who may call
    which verb is the API's role map (registry/api/views/patients.py) and the admin's own permission."""
    with transaction.atomic():
        locked = _lock(patient)
        before = locked.status
        if verb == "reinstate":
            if before != PS.SUSPENDED:
                raise InvalidTransition(f"A patient who is {before} cannot be reinstated.", status=before)
            to = locked.status_before_suspension or PS.ENROLLED
            locked.status_before_suspension = ""
        else:
            allowed, to = _TRANSITIONS[verb]
            if before not in allowed:
                raise InvalidTransition(f"A patient who is {before} cannot be moved to {to}.", status=before)
            if verb == "suspend":
                locked.status_before_suspension = before
        locked.status, locked.status_reason, locked.status_changed_at = to, reason, now
        locked.save(
            update_fields=[
                "status",
                "status_reason",
                "status_changed_at",
                "status_before_suspension",
                "updated_at",
            ]
        )
        if to in (PS.SUSPENDED, PS.DISCONTINUED, PS.DECEASED):  # ACT-8: no further dispensing
            authorizations_revoke_where(
                actor=actor,
                now=now,
                reason=f"Patient {to}: {reason}",
                category=RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE,
                patient=locked,
            )
        if to == PS.DECEASED:  # ACT-8: monitoring ends with the death; its open flags close now
            monitoring_flags_end(patient_id=locked.pk, actor=actor, now=now)
        audit_record(
            actor=actor,
            action=f"patient.{verb}",
            subject=locked,
            changes={"status": [before, to], "reason": reason},
        )
    return locked
