"""Decision inputs (GATE-5): everything a gate decision needs, loaded in a constant number of queries
whatever the patient's history (one query for the patient with its latest labs, screening and
contraindications as annotations; one for its courses; one per named participant)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from registry import rules
from registry.identifiers import parse_registry_id
from registry.models import (
    AuthorizationStatus,
    Contraindication,
    Course,
    Dispense,
    DispenseAuthorization,
    Facility,
    Infusion,
    LabOutcome,
    LabResult,
    LabTest,
    Patient,
    Pharmacy,
    Prescriber,
    Screening,
)
from registry.models.treatment import OPEN_COURSE_STATUSES

SCREENING_FIELDS = ("hiv_negative", "no_active_infection", "tb_screened_on", "vaccinations_completed_on")


@dataclass(frozen=True)
class ScreeningFacts:
    hiv_negative: bool
    no_active_infection: bool
    tb_screened_on: dt.date | None
    vaccinations_completed_on: dt.date | None


@dataclass(frozen=True)
class CourseFacts:
    id: Any
    number: int
    status: str
    planned_doses: int
    doses_given: int
    first_infusion_on: dt.date | None
    last_infusion_on: dt.date | None
    committed_doses: int  # doses under active authorizations plus vials dispensed (GATE-2)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_COURSE_STATUSES

    @property
    def doses_remaining_to_infuse(self) -> int:
        return self.planned_doses - self.doses_given

    @property
    def available_doses(self) -> int:
        """Doses that a new authorization may still cover: planned minus what is given or already
        committed to an active authorization or a dispense, whichever is larger."""
        return max(0, self.planned_doses - max(self.doses_given, self.committed_doses))


@dataclass(frozen=True)
class Facts:
    """What a decision is made from. Pure data: requirement functions never touch the database."""

    as_of: dt.date
    now: dt.datetime
    program: rules.ProgramSettings
    patient: Patient | None = None
    latest_lab_on: dict[str, dt.date] = field(default_factory=dict)
    latest_negative_pregnancy_on: dt.date | None = None
    latest_positive_pregnancy_on: dt.date | None = None
    screening: ScreeningFacts | None = None
    contraindication_kinds: tuple[str, ...] = ()
    infused_on_date: bool = False
    courses: tuple[CourseFacts, ...] = ()
    pharmacy: Pharmacy | None = None
    facility: Facility | None = None
    prescriber: Prescriber | None = None
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def open_course(self) -> CourseFacts | None:
        return next((c for c in self.courses if c.is_open), None)

    @property
    def prior_courses(self) -> list[CourseFacts]:
        """Courses that had at least one infusion, other than the open one."""
        open_course = self.open_course
        return [c for c in self.courses if c.doses_given > 0 and c is not open_course]


def _latest(qs: QuerySet[Any], value: str) -> Subquery:
    return Subquery(qs.order_by(f"-{value}", "-created_at").values(value)[:1])


def annotated_patients(*, on_date: dt.date | None = None) -> QuerySet[Patient]:
    """Patients with their decision facts as annotations: one SQL statement, each annotation an indexed
    correlated lookup, so its cost does not grow with the number of labs or screenings."""
    labs = LabResult.objects.filter(patient=OuterRef("pk"))
    annotations: dict[str, Any] = {
        f"lab_{test}": _latest(labs.filter(test=test), "collected_on") for test in LabTest.values
    }
    pregnancy = labs.filter(test=LabTest.PREGNANCY_TEST)
    annotations["preg_negative_on"] = _latest(pregnancy.filter(result=LabOutcome.NEGATIVE), "collected_on")
    annotations["preg_positive_on"] = _latest(pregnancy.filter(result=LabOutcome.POSITIVE), "collected_on")
    screenings = Screening.objects.filter(patient=OuterRef("pk")).order_by("-created_at")
    for name in SCREENING_FIELDS:
        annotations[f"screening_{name}"] = Subquery(screenings.values(name)[:1])
    annotations["screening_exists"] = Exists(screenings)
    contraindications = Contraindication.objects.filter(patient=OuterRef("pk"))
    for kind in ("hiv", "active_infection", "hypersensitivity"):
        annotations[f"ci_{kind}"] = Exists(contraindications.filter(kind=kind))
    if on_date is not None:
        annotations["infused_on_date"] = Exists(
            Infusion.objects.filter(patient=OuterRef("pk"), administered_on=on_date)
        )
    return Patient.objects.select_related("prescriber").annotate(**annotations)


def _courses(patient: Patient, now: dt.datetime) -> tuple[CourseFacts, ...]:
    active = DispenseAuthorization.objects.filter(
        course=OuterRef("pk"), status=AuthorizationStatus.ACTIVE, expires_at__gt=now
    )
    dispensed = Dispense.objects.filter(authorization__course=OuterRef("pk"))
    rows = (
        Course.objects.filter(patient=patient)
        .annotate(
            active_doses=Coalesce(
                Subquery(active.values("course").annotate(s=Sum("doses_authorized")).values("s")[:1]),
                Value(0),
                output_field=IntegerField(),
            ),
            dispensed_vials=Coalesce(
                Subquery(dispensed.values("authorization__course").annotate(s=Sum("vials")).values("s")[:1]),
                Value(0),
                output_field=IntegerField(),
            ),
        )
        .order_by("number", "created_at")
    )
    return tuple(
        CourseFacts(
            id=c.pk,
            number=c.number,
            status=c.status,
            planned_doses=c.planned_doses,
            doses_given=c.doses_given,
            first_infusion_on=c.first_infusion_on,
            last_infusion_on=c.last_infusion_on,
            committed_doses=c.active_doses + c.dispensed_vials,
        )
        for c in rows
    )


def _patient_facts(p: Patient) -> dict[str, Any]:
    a: Any = p
    screening = None
    if a.screening_exists:
        screening = ScreeningFacts(**{name: getattr(a, f"screening_{name}") for name in SCREENING_FIELDS})
    return {
        "patient": p,
        "latest_lab_on": {t: getattr(a, f"lab_{t}") for t in LabTest.values if getattr(a, f"lab_{t}")},
        "latest_negative_pregnancy_on": a.preg_negative_on,
        "latest_positive_pregnancy_on": a.preg_positive_on,
        "screening": screening,
        "contraindication_kinds": tuple(
            k for k in ("hiv", "active_infection", "hypersensitivity") if getattr(a, f"ci_{k}")
        ),
        "infused_on_date": bool(getattr(a, "infused_on_date", False)),
    }


def patient_by_registry_id(
    rems_patient_id: str, date_of_birth: dt.date, *, on_date: dt.date | None = None, lock: bool = False
) -> Patient | None:
    """ID-4: a pharmacy or facility names a patient by registry ID and date of birth. An unknown ID, a
    malformed one and a date-of-birth mismatch are indistinguishable to the caller."""
    canonical = parse_registry_id(rems_patient_id)
    if canonical is None:
        return None
    qs = annotated_patients(on_date=on_date).filter(rems_patient_id=canonical, date_of_birth=date_of_birth)
    if lock:  # the patient row only: writers on one patient serialize here
        qs = qs.select_for_update(of=("self",))
    return qs.first()


def facts_load(
    *,
    patient: Patient | None,
    now: dt.datetime,
    as_of: dt.date,
    annotated: bool = False,
    pharmacy: Pharmacy | None = None,
    facility: Facility | None = None,
    prescriber: Prescriber | None = None,
    request: dict[str, Any] | None = None,
    on_date: dt.date | None = None,
) -> Facts:
    """Facts for a decision. `patient` may already carry the annotations (`annotated=True`), saving the
    reload; otherwise it is reloaded with them in one query."""
    values: dict[str, Any] = {}
    if patient is not None:
        if not annotated:
            patient = annotated_patients(on_date=on_date).get(pk=patient.pk)
        values.update(_patient_facts(patient))
        values["courses"] = _courses(patient, now)
    return Facts(
        as_of=as_of,
        now=now,
        program=rules.current(),
        pharmacy=pharmacy,
        facility=facility,
        prescriber=prescriber,
        request=request or {},
        **values,
    )


def certified_participant(model: type[Any], npi: str) -> Any:
    """The registered, not-deactivated participant with this NPI (certified or not), or None."""
    return model.objects.filter(npi=npi).exclude(status="deactivated").first() if npi else None


__all__ = ["Facts", "annotated_patients", "certified_participant", "facts_load", "patient_by_registry_id"]
