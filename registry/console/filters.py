"""List filters of the console; the dashboard's figures link into lists through them, so a figure and the
list behind it count the same rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date

from registry.errors import ReasonCode
from registry.selectors.program import PARTICIPANT_STATES, decisions_with_reason, participant_state_q


class ParticipantStateFilter(admin.SimpleListFilter):
    """ACT-5 as an administrator reads it: certified (still valid), lapsed (certified, expired), pending,
    suspended, deactivated."""

    title = "certification state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(s, s) for s in PARTICIPANT_STATES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in PARTICIPANT_STATES:
            return queryset.filter(participant_state_q(str(self.value()), timezone.now()))
        return queryset


class CertificationExpiryFilter(admin.SimpleListFilter):
    title = "certification expiry"
    parameter_name = "expiry"
    _WINDOWS = {"30d": 30, "90d": 90}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("expired", "expired"),
            ("30d", "within 30 days"),
            ("90d", "within 90 days"),
            ("none", "no expiry"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now, value = timezone.now(), self.value()
        if value == "expired":
            return queryset.filter(certification_expires_at__lte=now)
        if value in self._WINDOWS:
            until = now + dt.timedelta(days=self._WINDOWS[str(value)])
            return queryset.filter(certification_expires_at__gt=now, certification_expires_at__lte=until)
        if value == "none":
            return queryset.filter(certification_expires_at__isnull=True)
        return queryset


class ReasonCodeFilter(admin.SimpleListFilter):
    """GATE-5: decisions whose stored reasons include a reason code."""

    title = "reason code"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(code.value, code.value) for code in ReasonCode]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return decisions_with_reason(queryset, str(self.value()))
        return queryset


def decided_range(value: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """`90d` (the last 90 days up to now) or `YYYY-MM-DD..YYYY-MM-DD` (local days, end exclusive)."""
    if value.endswith("d") and value[:-1].isdigit():
        return now - dt.timedelta(days=int(value[:-1])), now + dt.timedelta(seconds=1)
    start, sep, end = value.partition("..")
    try:
        first, last = parse_date(start), parse_date(end)
    except ValueError:
        return None
    if not sep or first is None or last is None:
        return None
    tz = timezone.get_current_timezone()
    return (
        dt.datetime.combine(first, dt.time(), tzinfo=tz),
        dt.datetime.combine(last, dt.time(), tzinfo=tz),
    )


class DecidedFilter(admin.SimpleListFilter):
    title = "decided"
    parameter_name = "decided"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("7d", "last 7 days"), ("30d", "last 30 days"), ("90d", "last 90 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        window = decided_range(str(self.value()), timezone.now()) if self.value() else None
        if window is None:
            return queryset
        return queryset.filter(created_at__gte=window[0], created_at__lt=window[1])


class PatientMonitoringFilter(admin.SimpleListFilter):
    """MON-3, GATE-4: patients with a requirement overdue, or overdue beyond the blocking threshold, today,
    read from the stored schedule (what the gate reads)."""

    title = "monitoring"
    parameter_name = "monitoring"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("overdue", "overdue"), ("blocking", "overdue, blocking")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        from registry.models import MonitoringSchedule
        from registry.selectors.program import monitoring_due_q

        if self.value() in ("overdue", "blocking"):
            due = MonitoringSchedule.objects.filter(
                monitoring_due_q(str(self.value()), as_of=timezone.localdate())
            ).values("patient_id")
            return queryset.filter(pk__in=due)
        return queryset


class PatientInMonitoringFilter(admin.SimpleListFilter):
    """MON-1: patients in monitoring during a calendar month (`YYYY-MM`): a first infusion before the month
    began and a window that had not ended by then; the dashboard's compliance chart counts them."""

    title = "in monitoring during"
    parameter_name = "in_monitoring"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from registry.selectors.program import month_starts

        return [(f"{m:%Y-%m}", f"{m:%Y-%m}") for m in reversed(month_starts(timezone.localdate(), 12))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        from registry.selectors.program import in_monitoring_during

        try:
            start = dt.date.fromisoformat(f"{self.value()}-01") if self.value() else None
        except ValueError:
            start = None
        return queryset.filter(in_monitoring_during(start)) if start else queryset
