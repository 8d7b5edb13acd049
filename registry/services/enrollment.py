"""Patients: enrollment, screening, labs, contraindications, authorization, transfer of care and status
(ACT-6..9, ID-4, MON-1..2 lab kinds)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dateutil.relativedelta import relativedelta
from django.contrib.auth.models import Permission
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from registry import rules
from registry.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from registry.identifiers import new_registry_id, parse_registry_id
from registry.middleware import current_request_id
from registry.models import (
    AuditEvent,
    CertificationStatus,
    Contraindication,
    DecisionKind,
    LabOutcome,
    LabResult,
    LabTest,
    Patient,
    PatientGroupObjectPermission,
    PatientStatus,
    Prescriber,
    Role,
    Screening,
    User,
)
from registry.selectors import CARE_TEAM_PERMISSIONS, patients_visible_to

from .accounts import care_team_ensure
from .audit import audit_record
from .decisions import AUTHORIZATION_REQUIREMENTS, Evaluation, Outcome, decision_record, evaluate
from .facts import facts_load
from .monitoring import monitoring_results_record
from .revocation import authorizations_revoke_where

PS = PatientStatus


AUTHORIZATION_REQUIREMENTS_UNMET = "authorization_requirements_unmet"  # ACT-7; `reasons` lists every one


class PrescriberNotCertified(Conflict):
    code = "prescriber_not_certified"
    default_detail = "Only a certified prescriber may do this."


def _age_on(born: dt.date, on: dt.date) -> int:
    return relativedelta(on, born).years


def _not_future(errors: dict[str, list[str]], field: str, value: dt.date | None, today: dt.date) -> None:
    if value is not None and value > today:
        errors.setdefault(field, []).append("Cannot be in the future.")


def patient_enroll(*, actor: User, data: dict[str, Any], now: dt.datetime) -> Patient:
    """ACT-6: a certified prescriber enrolls a patient with a signed enrollment form and becomes the
    prescriber of record. ACT-9: under 17 at enrollment is refused. ID-4: the registry ID is
    random with a check character; a collision (vanishingly rare) is retried."""
    today = timezone.localdate(now)
    errors: dict[str, list[str]] = {}
    _not_future(errors, "date_of_birth", data["date_of_birth"], today)
    _not_future(errors, "enrollment_signed_on", data["enrollment_signed_on"], today)
    if not errors and _age_on(data["date_of_birth"], today) < rules.MINIMUM_ENROLLMENT_AGE_YEARS:
        raise ValidationFailed(
            {"date_of_birth": [f"Patients under {rules.MINIMUM_ENROLLMENT_AGE_YEARS} cannot be enrolled."]},
            "The patient is below the minimum enrollment age (ACT-9).",
            code="patient_under_minimum_age",
        )
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        prescriber = Prescriber.objects.select_for_update(no_key=True).get(pk=actor.prescriber_id)  # type: ignore[misc]
        if not prescriber.is_certified_at(now):
            raise PrescriberNotCertified("Only a certified prescriber may enroll patients (ACT-6).")
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
            changes={**data, "prescriber": prescriber.pk, "rems_patient_id": patient.rems_patient_id},
        )
    return patient


def _care_team_permissions() -> QuerySet[Permission]:
    return Permission.objects.filter(
        content_type__app_label="registry", content_type__model="patient", codename__in=CARE_TEAM_PERMISSIONS
    )


def screening_record(*, patient: Patient, actor: User, data: dict[str, Any], now: dt.datetime) -> Screening:
    """ACT-7 attestations; the newest submission counts."""
    errors: dict[str, list[str]] = {}
    for name in ("tb_screened_on", "vaccinations_completed_on"):
        _not_future(errors, name, data.get(name), timezone.localdate(now))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        screening = Screening.objects.create(patient=patient, recorded_by=actor, **data)
        audit_record(
            actor=actor,
            action="screening.record",
            subject=patient,
            changes={"screening": screening.pk, **data},
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
    errors = _lab_errors(data, timezone.localdate(now))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
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
    today = timezone.localdate(now)
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
    request_id = current_request_id()
    with transaction.atomic():
        LabResult.objects.bulk_create(labs, batch_size=1000)
        monitoring_results_record(
            results=[(lab.patient_id, lab.test, lab.collected_on) for lab in labs], actor=actor, now=now
        )
        AuditEvent.objects.bulk_create(
            AuditEvent(
                actor=actor,
                actor_role=actor.role,
                action="lab_result.bulk_record",
                subject_type="patient",
                subject_id=patient_id,
                changes={"count": count},
                request_id=request_id,
            )
            for patient_id, count in by_patient.items()
        )
    return len(labs)


def contraindication_record(
    *, patient: Patient, actor: User, data: dict[str, Any], now: dt.datetime
) -> Contraindication:
    """ACT-9: recorded at any time; blocks every gate from then on, outstanding authorization numbers
    included (revoked here). Holds the patient lock, so no gate decides concurrently on older facts."""
    errors: dict[str, list[str]] = {}
    _not_future(errors, "noted_on", data.get("noted_on"), timezone.localdate(now))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        locked = _lock(patient)
        item = Contraindication.objects.create(patient=locked, recorded_by=actor, **data)
        revoked = authorizations_revoke_where(
            actor=actor, now=now, reason=f"Contraindication recorded: {data['kind']}", patient=locked
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


def patient_authorize(*, patient: Patient, actor: User, now: dt.datetime) -> Outcome:
    """ACT-7: `enrolled -> authorized` when every requirement holds. A refusal (answered 409
    `authorization_requirements_unmet` with every unmet reason) is returned, not raised; either way the
    decision is stored (GATE-5). Authorizing an authorized patient changes nothing and stores nothing."""
    with transaction.atomic():
        locked = _lock(patient)
        if locked.status == PS.AUTHORIZED:
            return Outcome(None, Evaluation(()), locked)
        if locked.status != PS.ENROLLED:
            raise InvalidTransition(
                f"A patient who is {locked.status} cannot be authorized.", status=locked.status
            )
        facts = facts_load(patient=locked, now=now, as_of=timezone.localdate(now))
        evaluation = evaluate(AUTHORIZATION_REQUIREMENTS, facts)
        decision = decision_record(
            kind=DecisionKind.PATIENT_AUTHORIZATION,
            evaluation=evaluation,
            facts=facts,
            actor=actor,
            inputs={"patient": locked.pk},
        )
        if evaluation.approved:
            locked.status, locked.authorized_at, locked.status_changed_at = PS.AUTHORIZED, now, now
            locked.status_reason = ""
            locked.save(
                update_fields=["status", "authorized_at", "status_changed_at", "status_reason", "updated_at"]
            )
            audit_record(
                actor=actor,
                action="patient.authorize",
                subject=locked,
                changes={"status": [PS.ENROLLED, PS.AUTHORIZED]},
            )
            return Outcome(decision, evaluation, locked)
    return Outcome(decision, evaluation)


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
                "The patient is already under this prescriber's care.", code="already_prescriber_of_record"
            )
        team = care_team_ensure(prescriber=target)
        before = locked.prescriber_id
        locked.prescriber = target
        locked.save(update_fields=["prescriber", "updated_at"])
        PatientGroupObjectPermission.objects.filter(content_object=locked).update(group=team)
        # GATE-1: numbers granted on the old prescriber of record no longer hold.
        authorizations_revoke_where(actor=actor, now=now, reason="Transfer of care", patient=locked)
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
    `record_death`. Refused with 409 `invalid_status_transition` from any other status."""
    if verb in ("suspend", "reinstate") and actor.role != Role.ADMIN:
        from registry.errors import PermissionDenied

        raise PermissionDenied("Only a REMS administrator may suspend or reinstate a patient (ACT-8).")
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
                actor=actor, now=now, reason=f"Patient {to}: {reason}", patient=locked
            )
        audit_record(
            actor=actor,
            action=f"patient.{verb}",
            subject=locked,
            changes={"status": [before, to], "reason": reason},
        )
    return locked


def patient_get_visible(*, user: User, patient_id: Any) -> Patient:
    patient = patients_visible_to(user).filter(pk=patient_id).first()
    if patient is None:
        raise NotFound()
    return patient
