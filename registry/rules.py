"""Program settings and fixed constants: the program's numbers (docs/rules.md), and nothing else.

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

# Fixed rules (docs/rules.md gives these numbers as constants; the database constraints hold them too).
KNOWLEDGE_ASSESSMENT_QUESTIONS = 8  # ACT-2
KNOWLEDGE_ASSESSMENT_PASS_SCORE = 8  # ACT-2: every question answered correctly
VACCINATION_LEAD_WEEKS = 6  # ACT-7
MINIMUM_ENROLLMENT_AGE_YEARS = 17  # ACT-9
DOSE_MG = 12  # CRS-1: one 12 mg vial per dose
COURSE_1_DOSES = 5  # CRS-2
LATER_COURSE_DOSES = 3  # CRS-2
MAX_DOSES_PER_AUTHORIZATION = 5  # GATE-1 (docs/api.md): doses_requested 1-5
MIN_OBSERVATION_MINUTES = 120  # GATE-3
CORTICOSTEROID_PREMEDICATION_DAYS = 3  # GATE-3: days 1-3
CONCEPTION_AFTER_LMP_DAYS = 14  # PRG-2: estimated conception = LMP + 14 days when only the LMP is known
DUE_AFTER_LMP_DAYS = 280  # PRG-2: estimated due date = LMP + 280 days (Naegele)
DUE_AFTER_CONCEPTION_DAYS = 266  # PRG-2: or conception + 266 days
PREGNANCY_OUTCOME_OVERDUE_DAYS = 30  # PRG-4: an outcome is overdue 30 days after the estimated due date
INFANT_FOLLOW_UP_MONTHS = 12  # PRG-3: infant follow-up is due 12 months after a live birth


@dataclass(frozen=True)
class ProgramSettings:
    """The numbers docs/rules.md lists as program settings (a few of them the registry's own, marked so)."""

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
    # GATE-3 (docs/api.md): facilities may record infusions up to this many days in the past.
    facility_backdate_days: int = 3
    # Monitoring window after the most recent infusion (MON), in calendar months.
    monitoring_months_after_last_infusion: int = 48
    # PRG-1: contraception after a course's last infusion, in calendar months (exposure window).
    pregnancy_exposure_months_after_course: int = 4
    # Idempotency-Key replay window (docs/api.md conventions; registry setting).
    idempotency_window_hours: int = 24
    # GATE-1, CRS-2 (registry setting, issue 9): a pharmacy may be authorized up to this many days before
    # the course's earliest allowed day (the 12-month interval), so the drug can ship ahead; the infusion
    # still waits for that day.
    authorization_lead_days: int = 7
    # --- Monitoring (issue 10) ---
    # MON-1: CBC with differential, serum creatinine, urinalysis, in calendar months after the last result.
    monitoring_monthly_labs_interval_months: int = 1
    # MON-2: thyroid function and liver tests, in calendar months.
    monitoring_thyroid_interval_months: int = 3
    monitoring_liver_interval_months: int = 3
    # MON-2: skin exam, and HPV screening for female patients, in calendar months.
    monitoring_skin_exam_interval_months: int = 12
    monitoring_hpv_interval_months: int = 12
    # MON-4: patient status form, in calendar months.
    status_form_interval_months: int = 6
    # MON-3: a requirement is overdue once its due date plus this grace (days) has passed.
    monitoring_grace_days: int = 7
    # MON-3: overdue for more than this many days (counted from due date plus grace) blocks new courses
    # and dispense authorizations (GATE-4).
    monitoring_blocking_days: int = 30

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
