"""Program settings and the rule table: the numbers DOMAIN.md marks *setting*, and nothing else.

The sponsor and FDA change these (the REMS was modified in 2016, 2018 and 2024), so no service holds them
as literals. `current()` returns the settings in force; every gate decision stores `as_dict()` of them
(GATE-5) so a decision can be explained with the numbers it was made under.

Override one from the environment as ``REMS_<NAME>=<value>`` (e.g. ``REMS_AUTHORIZATION_VALIDITY_DAYS=5``)
or, in tests, through ``settings.REMS_SETTINGS``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

# Fixed rules (DOMAIN.md gives these numbers without *setting*; the database constraints hold them too).
KNOWLEDGE_ASSESSMENT_QUESTIONS = 8  # ACT-2
KNOWLEDGE_ASSESSMENT_PASS_SCORE = 8  # ACT-2: every question answered correctly
VACCINATION_LEAD_WEEKS = 6  # ACT-7
MINIMUM_ENROLLMENT_AGE_YEARS = 17  # ACT-9
DOSE_MG = 12  # CRS-1: one 12 mg vial per dose
COURSE_1_DOSES = 5  # CRS-2
LATER_COURSE_DOSES = 3  # CRS-2
MAX_DOSES_PER_AUTHORIZATION = 5  # API.md: doses_requested 1-5
MIN_OBSERVATION_MINUTES = 120  # GATE-3
CORTICOSTEROID_PREMEDICATION_DAYS = 3  # GATE-3: days 1-3


@dataclass(frozen=True)
class ProgramSettings:
    """The numbers DOMAIN.md marks *setting* (and two of the registry's own, marked so)."""

    # ACT-5: certification expiry in days after certification; None = certifications do not expire.
    certification_validity_days: int | None = None
    # ACT-7: baseline labs collected no more than this many days before the first infusion.
    baseline_lab_max_age_days: int = 30
    # ACT-7: negative pregnancy test within this many days, for patients of reproductive potential.
    pregnancy_test_max_age_days: int = 7
    # CRS-2: calendar months between the last infusion of a course and the next course.
    course_interval_months: int = 12
    # CRS-2 (registry setting): a course's doses are given on consecutive days; a missed day may be made up
    # within this many extra days, counted from the first dose.
    course_dose_allowance_days: int = 2
    # CRS-4: pre-course labs (CBC with differential, creatinine, urinalysis) no older than this.
    pre_course_lab_max_age_days: int = 30
    # GATE-2: authorization numbers are valid this many days.
    authorization_validity_days: int = 7
    # API.md: facilities may record infusions up to this many days in the past.
    facility_backdate_days: int = 3
    # Monitoring window after the most recent infusion (MON), in calendar months.
    monitoring_months_after_last_infusion: int = 48
    # PRG-1: contraception after a course's last infusion, in calendar months (exposure window).
    pregnancy_exposure_months_after_course: int = 4
    # Idempotency-Key replay window (API.md conventions; registry setting).
    idempotency_window_hours: int = 24
    # GATE-1, CRS-2 (registry setting, issue 9): a pharmacy may be authorized up to this many days before
    # the course's earliest allowed day (the 12-month interval), so the drug can ship ahead; the infusion
    # still waits for that day.
    authorization_lead_days: int = 7

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_OPTIONAL = {"certification_validity_days"}


def _coerce(field: dataclasses.Field[Any], raw: Any) -> Any:
    if raw is None or raw == "" or (isinstance(raw, str) and raw.lower() == "none"):
        if field.name not in _OPTIONAL:
            raise ImproperlyConfigured(f"REMS setting {field.name} needs a number.")
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"REMS setting {field.name}={raw!r} is not a whole number.") from exc
    if value < 0:
        raise ImproperlyConfigured(f"REMS setting {field.name} cannot be negative.")
    return value


def current() -> ProgramSettings:
    """The program settings in force now: defaults overlaid with ``settings.REMS_SETTINGS``."""
    overrides: dict[str, Any] = getattr(django_settings, "REMS_SETTINGS", {}) or {}
    fields = {f.name: f for f in dataclasses.fields(ProgramSettings)}
    values = {name: _coerce(fields[name], raw) for name, raw in overrides.items() if name in fields}
    return ProgramSettings(**values)


# The rule table: each ID from DOMAIN.md and where it is enforced.
RULES: dict[str, str] = {
    "ACT-1": "services/certification.py, selectors.py (only certified/enrolled parties pass gates)",
    "ACT-2": "services/certification.py: prescriber_requirements",
    "ACT-3": "services/certification.py: facility_requirements",
    "ACT-4": "services/certification.py: pharmacy_requirements",
    "ACT-5": "services/certification.py: participant_transition; models/parties.py: is_certified_at",
    "ACT-6": "services/enrollment.py: patient_enroll",
    "ACT-7": "services/decisions.py: AUTHORIZATION_REQUIREMENTS",
    "ACT-8": "services/enrollment.py: patient status transitions and patient_transfer",
    "ACT-9": "services/enrollment.py (age), services/decisions.py: no_contraindication",
    "CRS-1": "models/treatment.py constraints; services/decisions.py: dose_is_standard, no_infusion_same_day",
    "CRS-2": "services/decisions.py: course_interval_met; services/treatment.py: course_plan",
    "CRS-3": "models/treatment.py: one open course constraint; services/treatment.py",
    "CRS-4": "services/decisions.py: pre_course_labs_fresh, baseline_complete",
    "GATE-1": "services/decisions.py: DISPENSE_REQUIREMENTS",
    "GATE-2": "services/dispensing.py, identifiers.py: authorization numbers",
    "GATE-3": "services/decisions.py: INFUSION_REQUIREMENTS; services/treatment.py: infusion_record",
    "GATE-4": "services/decisions.py: one requirement function per blocking condition",
    "GATE-5": "models/decisions.py: Decision; services/decisions.py: decision_record",
    "ID-1": "identifiers.py: validate_npi",
    "ID-2": "identifiers.py: validate_ncpdp_id",
    "ID-3": "identifiers.py: validate_dea_number",
    "ID-4": "identifiers.py: new_registry_id, parse_registry_id",
}
