"""Admin for monitoring (issue 10): flags (filters by requirement, blocking, status and age), schedules and
status forms (their own lists, and on the patient page with the patient's flags), sweep runs and digest
history with their lines. Everything is read-only here: flags, schedules, status forms and digests change
only through the services (results, status forms, the sweep), so the audit trail stays whole."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from registry import rules
from registry.admin import PatientAdmin, ReadOnlyAdmin, _ReadOnlyInline
from registry.models import (
    Digest,
    DigestLine,
    MonitoringFlag,
    MonitoringSchedule,
    PatientStatus,
    StatusForm,
    SweepRun,
)
from registry.selectors.monitoring import (
    blocking_before,
    overdue_before,
    patient_monitored,
    requirement_state,
)


class FlagAgeFilter(admin.SimpleListFilter):
    """How long a flag has been open (or had been, when it was resolved), in days since it opened."""

    title = "age"
    parameter_name = "age"
    BANDS = (("0-7", 0, 7), ("8-30", 8, 30), ("31-90", 31, 90), ("91+", 91, None))

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, f"{key} days") for key, _, _ in self.BANDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        for key, low, high in self.BANDS:
            if self.value() == key:
                today = timezone.localdate()
                queryset = queryset.filter(opened_on__lte=today - dt.timedelta(days=low))
                if high is not None:
                    queryset = queryset.filter(opened_on__gte=today - dt.timedelta(days=high))
                return queryset
        return queryset


@admin.register(MonitoringFlag)
class MonitoringFlagAdmin(ReadOnlyAdmin):
    list_display = (
        "patient",
        "requirement",
        "due_on",
        "opened_on",
        "status",
        "blocking",
        "blocking_since",
        "resolved_on",
        "resolution",
    )
    list_filter = ("requirement", "blocking", "status", FlagAgeFilter, "resolution")
    search_fields = ("patient__rems_patient_id",)
    list_select_related = ("patient",)
    date_hierarchy = "opened_on"
    readonly_fields = (*list_display, "sweep", "created_at", "audit_history")
    list_per_page = 100


class _ScheduleToday:
    """What a stored schedule row means on the registry's today (MON-3, GATE-4)."""

    @staticmethod
    def _today(obj: MonitoringSchedule) -> Any:
        monitored = patient_monitored(obj.patient.status)
        return requirement_state(
            obj, as_of=timezone.localdate(), program=rules.current(), monitored=monitored
        )

    @admin.display(boolean=True, description="overdue today")
    def overdue_today(self, obj: MonitoringSchedule) -> bool:
        return bool(self._today(obj).overdue)

    @admin.display(boolean=True, description="blocking today")
    def blocking_today(self, obj: MonitoringSchedule) -> bool:
        return bool(self._today(obj).blocking)


class DueFilter(admin.SimpleListFilter):
    """Schedule rows by what they mean today (MON-3): overdue, blocking, due within 30 days."""

    title = "due"
    parameter_name = "due"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("overdue", "overdue"), ("blocking", "blocking"), ("soon", "due within 30 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        today, program = timezone.localdate(), rules.current()
        inside = queryset.filter(window_ends_on__gte=today).exclude(patient__status=PatientStatus.DECEASED)
        if self.value() == "overdue":
            return inside.filter(next_due_on__lt=overdue_before(program, today))
        if self.value() == "blocking":
            return inside.filter(next_due_on__lt=blocking_before(program, today))
        if self.value() == "soon":
            return inside.filter(next_due_on__gte=today, next_due_on__lte=today + dt.timedelta(days=30))
        return queryset


@admin.register(MonitoringSchedule)
class MonitoringScheduleAdmin(_ScheduleToday, ReadOnlyAdmin):
    """MON-1, MON-2, MON-4: every patient's stored schedule, one row per requirement."""

    list_display = (
        "patient",
        "requirement",
        "last_done_on",
        "next_due_on",
        "window_ends_on",
        "overdue_today",
        "blocking_today",
    )
    list_filter = ("requirement", DueFilter)
    search_fields = ("patient__rems_patient_id",)
    list_select_related = ("patient",)
    readonly_fields = (
        "patient",
        "requirement",
        "last_done_on",
        "next_due_on",
        "window_ends_on",
        "updated_at",
        "overdue_today",
        "blocking_today",
    )
    ordering = ("next_due_on", "id")
    list_per_page = 100


@admin.register(StatusForm)
class StatusFormAdmin(ReadOnlyAdmin):
    """MON-4: status forms as filed through the API by the prescriber of record or its delegate."""

    list_display = (
        "patient",
        "completed_on",
        "still_under_care",
        "labs_reviewed",
        "prescriber",
        "created_at",
    )
    list_filter = ("still_under_care", "labs_reviewed")
    search_fields = ("patient__rems_patient_id", "prescriber__npi", "prescriber__last_name")
    list_select_related = ("patient", "prescriber")
    readonly_fields = (
        "id",
        "patient",
        "prescriber",
        "completed_on",
        "still_under_care",
        "labs_reviewed",
        "adverse_events",
        "notes",
        "recorded_by",
        "created_at",
    )
    date_hierarchy = "completed_on"


class MonitoringScheduleInline(_ScheduleToday, _ReadOnlyInline):
    """The stored schedule on the patient page, with what it means today (MON-1..4)."""

    model = MonitoringSchedule
    fields = (
        "requirement",
        "last_done_on",
        "next_due_on",
        "window_ends_on",
        "overdue_today",
        "blocking_today",
    )
    readonly_fields = fields
    ordering = ("next_due_on",)
    verbose_name_plural = "monitoring schedule"


class StatusFormInline(_ReadOnlyInline):
    model = StatusForm
    fields = (
        "completed_on",
        "still_under_care",
        "labs_reviewed",
        "adverse_events",
        "prescriber",
        "recorded_by",
    )
    readonly_fields = fields


class MonitoringFlagInline(_ReadOnlyInline):
    model = MonitoringFlag
    fields = ("requirement", "due_on", "opened_on", "status", "blocking", "resolved_on", "resolution")
    readonly_fields = fields
    ordering = ("-opened_on",)
    max_num = 0


# The patient page shows its schedule, status forms and flags after the existing sections.
PatientAdmin.inlines = (  # type: ignore[assignment]
    *PatientAdmin.inlines,
    MonitoringScheduleInline,
    StatusFormInline,
    MonitoringFlagInline,
)


class DigestLineInline(_ReadOnlyInline):
    model = DigestLine
    fk_name = "digest"
    fields = ("rems_patient_id", "kind", "label", "due_on", "blocking", "flag")
    readonly_fields = fields


@admin.register(Digest)
class DigestAdmin(ReadOnlyAdmin):
    """MON-5: every digest sent (or pending, or failed and retrying), with what it listed."""

    list_display = (
        "created_at",
        "run",
        "prescriber",
        "recipient",
        "status",
        "attempts",
        "sent_at",
        "line_count",
    )
    list_filter = ("status",)
    search_fields = ("recipient", "prescriber__npi", "prescriber__last_name", "lines__rems_patient_id")
    list_select_related = ("run", "prescriber")
    readonly_fields = (
        "id",
        "run",
        "prescriber",
        "recipient",
        "status",
        "attempts",
        "sent_at",
        "last_error",
        "created_at",
        "audit_history",
    )
    inlines = (DigestLineInline,)

    def line_count(self, obj: Digest) -> int:
        return obj.lines.count()


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyAdmin):
    """MON-5: one row per sweep date with what it did."""

    list_display = (
        "as_of",
        "parts_done",
        "parts_total",
        "opened",
        "resolved",
        "blocking",
        "completed",
        "expired",
        "lapsed",
        "digests",
        "finished_at",
    )
    readonly_fields = (*list_display, "now", "created_at", "audit_history")
    date_hierarchy = "as_of"
