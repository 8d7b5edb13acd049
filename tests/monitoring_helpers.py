"""Shared set-up for the monitoring tests (MON-1..5).

The calendar of `monitored_patient` (course 1 of `gate_helpers`: baseline labs 2026-02-27, infusions
2026-03-02..06, no monitoring since):

| requirement | next due | last grace day | first overdue day | first blocking day |
|---|---|---|---|---|
| CBC, creatinine, urinalysis (monthly) | 2026-03-27 | 2026-04-03 | 2026-04-04 | 2026-05-04 |
| thyroid, liver (3 months) | 2026-05-27 | 2026-06-03 | 2026-06-04 | 2026-07-04 |
| status form (6 months after the first infusion) | 2026-09-02 | 2026-09-09 | 2026-09-10 | 2026-10-10 |
| skin exam (12 months) | 2027-02-27 | 2027-03-06 | 2027-03-07 | 2027-04-06 |
| HPV screening, female patients (12 months after the first infusion) | 2027-03-02 | 2027-03-09 | 2027-03-10 | 2027-04-09 |

The window ends 48 months after the last infusion: 2030-03-06.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from registry.models import Patient
from registry.services.monitoring import SweepResult, monitoring_sweep

from .conftest import Persona
from .gate_helpers import moment, patient_after_course_1

WINDOW_ENDS = dt.date(2030, 3, 6)
MONTHLY = ("cbc_differential", "serum_creatinine", "urinalysis")
QUARTERLY = ("thyroid_function", "liver_function")

# requirement -> next due for `monitored_patient`
DUE = {
    "cbc_differential": dt.date(2026, 3, 27),
    "serum_creatinine": dt.date(2026, 3, 27),
    "urinalysis": dt.date(2026, 3, 27),
    "thyroid_function": dt.date(2026, 5, 27),
    "liver_function": dt.date(2026, 5, 27),
    "status_form": dt.date(2026, 9, 2),
    "skin_exam": dt.date(2027, 2, 27),
    "hpv_screening": dt.date(2027, 3, 2),
}


def monitored_patient(prescriber: Persona, facility: Persona, **enroll: Any) -> Patient:
    """After course 1, with no monitoring result since the baseline (see the module's table)."""
    return patient_after_course_1(prescriber, facility, monitored_until=None, **enroll)


def sweep(on: dt.date) -> SweepResult:
    """The daily sweep for `on`, run at 15:00 UTC that day."""
    return monitoring_sweep(as_of=on, now=moment(on))


def days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)
