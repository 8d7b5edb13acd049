"""Pregnancy reads (PRG-2..4): what a caller may see of pregnancy reports, and what a gate reads of them.

A report is reached through `patients_visible_to`: a report of a patient the caller cannot see does not
exist for it (404). The gate's facts ride in the one facts query of selectors/facts.py (no extra round
trip): `PREGNANCY_FACTS_COLUMNS` are its columns, `pregnancy_gate_facts` turns them into `Facts` fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import QuerySet

from registry.errors import NotFound
from registry.models import Patient, PregnancyReport, PregnancyStatus, User

from .patients import patients_visible_to

# PRG-4: whether a report is open, and the latest recorded outcome date (a positive pregnancy test on or
# before it is resolved). Columns of the facts query, `p` being the patient row; only a constant of this
# module is interpolated.
PREGNANCY_FACTS_COLUMNS = (
    "EXISTS (SELECT 1 FROM registry_pregnancyreport r WHERE r.patient_id = p.id"  # noqa: S608
    f" AND r.status = '{PregnancyStatus.OPEN}') AS pregnancy_report_open, "
    "(SELECT MAX(r.outcome_on) FROM registry_pregnancyreport r WHERE r.patient_id = p.id)"
    " AS pregnancy_latest_outcome_on"
)


def _as_date(value: Any) -> dt.date | None:
    """SQLite returns raw columns as text."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def pregnancy_gate_facts(patient: Patient) -> dict[str, Any]:
    """The `Facts` fields of PRG-4, from a patient loaded by the facts query (`PREGNANCY_FACTS_COLUMNS`)."""
    a: Any = patient
    return {
        "pregnancy_report_open": bool(a.pregnancy_report_open),
        "pregnancy_latest_outcome_on": _as_date(a.pregnancy_latest_outcome_on),
    }


def positive_test_holds(
    *, positive_on: dt.date | None, negative_on: dt.date | None, latest_outcome_on: dt.date | None
) -> bool:
    """PRG-4 (pure): a positive pregnancy test holds the gate while no later negative test is on file
    (a negative on the same day does not lift it) and no report was resolved with an outcome on or after
    the test's day. An open report holds the gate by itself."""
    if positive_on is None:
        return False
    if negative_on is not None and negative_on > positive_on:
        return False
    return latest_outcome_on is None or latest_outcome_on < positive_on


def pregnancy_reports_visible_to(user: User) -> QuerySet[PregnancyReport]:
    """Reports of the patients the caller may see (the prescriber of record, its delegates, admins);
    pharmacies and facilities see none. Newest first."""
    return (
        PregnancyReport.objects.filter(patient__in=patients_visible_to(user))
        .select_related("patient", "exposed_course")
        .order_by("-reported_on", "-created_at", "id")
    )


def pregnancy_report_visible(user: User, report_id: Any) -> PregnancyReport:
    """The report with this id if the caller may see it; otherwise 404 (STYLE.md 3)."""
    report = pregnancy_reports_visible_to(user).filter(pk=report_id).first()
    if report is None:
        raise NotFound()
    return report
