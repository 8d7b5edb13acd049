"""Pregnancy surveillance in the administrators' console (PRG-2..5).

Reports are filed by the care team through the API; here administrators read them, filter by exposure,
status and overdue follow-up, correct dates and record outcomes through the same service as the API
(validated and audited the same way; the exposure is computed, never entered), re-classify the exposure
after history was imported, and export every report for the sponsor's pregnancy exposure registry (PRG-5:
phone 1-800-745-4447, option 2). Reports are never deleted (the database refuses it too).
"""

from __future__ import annotations

import csv
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from registry.admin import AuditedAdmin
from registry.errors import InvalidTransition, ValidationFailed
from registry.models import PregnancyReport, PregnancyStatus
from registry.services.pregnancy import (
    DATE_FIELDS,
    FOLLOW_UP_FIELDS,
    OUTCOME_FIELDS,
    pregnancy_exposure_recompute,
    pregnancy_report_changes,
    pregnancy_report_update,
)

EDITABLE_FIELDS = (*DATE_FIELDS, *OUTCOME_FIELDS, *FOLLOW_UP_FIELDS)

# PRG-5: what the sponsor's registry needs, and no more: no name, no date of birth, no free text.
CSV_COLUMNS = (
    ("report_id", lambda r: r.pk),
    ("rems_patient_id", lambda r: r.patient.rems_patient_id),
    ("reported_on", lambda r: r.reported_on),
    ("lmp_on", lambda r: r.lmp_on or ""),
    ("estimated_conception_on", lambda r: r.estimated_conception_on),
    ("estimated_due_on", lambda r: r.estimated_due_on),
    ("exposure", lambda r: r.exposure),
    ("exposed_course_number", lambda r: r.exposed_course.number if r.exposed_course_id else ""),
    (
        "exposed_course_first_infusion_on",
        lambda r: r.exposed_course.first_infusion_on if r.exposed_course_id else "",
    ),
    (
        "exposed_course_last_infusion_on",
        lambda r: r.exposed_course.last_infusion_on if r.exposed_course_id else "",
    ),
    ("status", lambda r: r.status),
    ("outcome", lambda r: r.outcome),
    ("outcome_on", lambda r: r.outcome_on or ""),
    ("gestational_age_weeks", lambda r: "" if r.gestational_age_weeks is None else r.gestational_age_weeks),
    ("birth_weight_grams", lambda r: "" if r.birth_weight_grams is None else r.birth_weight_grams),
    (
        "major_malformation",
        lambda r: "" if r.major_malformation is None else ("yes" if r.major_malformation else "no"),
    ),
    ("maternal_thyroid_status", lambda r: r.maternal_thyroid_status),
    ("infant_follow_up_on", lambda r: r.infant_follow_up_on or ""),
)


class _Echo:
    def write(self, value: str) -> str:
        return value


def pregnancy_csv_rows(queryset: QuerySet[PregnancyReport]) -> Any:
    """The header, then one row per report (streamed; the query is iterated in chunks)."""
    writer = csv.writer(_Echo())
    yield writer.writerow([name for name, _ in CSV_COLUMNS])
    for report in (
        queryset.select_related("patient", "exposed_course")
        .order_by("reported_on", "id")
        .iterator(chunk_size=2000)
    ):
        yield writer.writerow([value(report) for _, value in CSV_COLUMNS])


def pregnancy_csv_response(queryset: QuerySet[PregnancyReport]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(pregnancy_csv_rows(queryset), content_type="text/csv")
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="pregnancy-registry-{stamp}.csv"'
    return response


class OverdueFilter(admin.SimpleListFilter):
    """PRG-4: an outcome overdue (estimated due date + 30 days passed, none recorded) or an infant
    follow-up due (12 months after a live birth, none recorded), as of today; the same days the reminders
    are raised on."""

    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("outcome", "Outcome overdue"),
            ("infant_follow_up", "Infant follow-up due"),
            ("any", "Either"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        today = timezone.localdate()
        outcome = queryset.filter(status=PregnancyStatus.OPEN, outcome_overdue_on__lte=today)
        follow_up = queryset.filter(
            status=PregnancyStatus.OUTCOME_RECORDED, infant_follow_up_due_on__lte=today
        )
        if self.value() == "outcome":
            return outcome
        if self.value() == "infant_follow_up":
            return follow_up
        if self.value() == "any":
            return outcome | follow_up
        return queryset


class PregnancyReportForm(forms.ModelForm):
    """Shows the service's own refusals (PRG-2 dates, PRG-3 outcome) as form errors before saving."""

    class Meta:
        model = PregnancyReport
        fields = EDITABLE_FIELDS

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.instance.pk is None or self.errors:
            return cleaned
        data = {name: cleaned.get(name) for name in self.changed_data if name in EDITABLE_FIELDS}
        current = PregnancyReport.objects.get(pk=self.instance.pk)
        try:
            pregnancy_report_changes(report=current, data=data, today=timezone.localdate())
        except ValidationFailed as exc:
            for name, problems in exc.extra.get("errors", {}).items():
                self.add_error(name if name in self.fields else None, problems)
        except InvalidTransition as exc:
            self.add_error(None, exc.detail)
        return cleaned

    def _post_clean(self) -> None:
        """The model's constraints are the service's to hold; the instance is saved by the service."""


@admin.register(PregnancyReport)
class PregnancyReportAdmin(AuditedAdmin):
    form = PregnancyReportForm
    list_display = (
        "rems_patient_id",
        "reported_on",
        "estimated_conception_on",
        "estimated_due_on",
        "exposure",
        "exposed_course_number",
        "status",
        "outcome",
        "outcome_on",
    )
    list_filter = ("exposure", "status", OverdueFilter, "outcome")
    search_fields = ("patient__rems_patient_id",)
    list_select_related = ("patient", "exposed_course")
    date_hierarchy = "reported_on"
    readonly_fields = (
        "patient",
        "reported_by",
        "conception_derived",
        "due_on_derived",
        "exposure",
        "exposed_course_number",
        "exposure_computed_at",
        "status",
        "outcome_overdue_on",
        "infant_follow_up_due_on",
        "reminders",
        "created_at",
        "updated_at",
        "audit_history",
    )
    fieldsets = (
        ("Report", {"fields": ("patient", "reported_by", "reported_on", "status")}),
        (
            "Dates (PRG-2)",
            {
                "fields": (
                    "lmp_on",
                    "estimated_conception_on",
                    "conception_derived",
                    "estimated_due_on",
                    "due_on_derived",
                )
            },
        ),
        (
            "Exposure (PRG-2: computed from the patient's infusions)",
            {"fields": ("exposure", "exposed_course_number", "exposure_computed_at")},
        ),
        ("Outcome (PRG-3)", {"fields": (*OUTCOME_FIELDS, "outcome_overdue_on")}),
        ("Infant follow-up (PRG-3)", {"fields": ("infant_follow_up_due_on", *FOLLOW_UP_FIELDS)}),
        ("Reminders (PRG-4)", {"fields": ("reminders",)}),
        ("Audit", {"fields": ("created_at", "updated_at", "audit_history")}),
    )
    actions = ("export_csv", "recompute_exposure")
    change_list_template = "admin/registry/pregnancyreport/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # filed by the care team through the API (PRG-2), which classifies the exposure

    @admin.display(description="REMS patient ID", ordering="patient__rems_patient_id")
    def rems_patient_id(self, obj: PregnancyReport) -> str:
        return obj.patient.rems_patient_id

    @admin.display(description="Exposed course")
    def exposed_course_number(self, obj: PregnancyReport) -> Any:
        return obj.exposed_course.number if obj.exposed_course_id else "—"  # type: ignore[union-attr]

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        data = {name: form.cleaned_data.get(name) for name in form.changed_data if name in EDITABLE_FIELDS}
        if data:
            pregnancy_report_update(report=obj, actor=request.user, data=data, now=timezone.now())  # type: ignore[arg-type]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Nothing related is edited here (the service saved the report)."""

    @admin.display(description="Reminders raised (PRG-4)")
    def reminders(self, obj: PregnancyReport) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (r.kind, r.due_on.isoformat(), r.raised_on.isoformat())
                for r in obj.reminders.order_by("raised_on")
            ),
        )
        return format_html(
            "<table><thead><tr><th>Kind</th><th>Due</th><th>Raised</th></tr></thead><tbody>{}</tbody></table>",
            rows or mark_safe("<tr><td colspan=3>None raised.</td></tr>"),
        )

    def get_urls(self) -> list[Any]:
        export = self.admin_site.admin_view(self.export_all_view)
        return [path("export.csv", export, name="registry_pregnancyreport_export"), *super().get_urls()]

    def export_all_view(self, request: HttpRequest) -> HttpResponseBase:
        """PRG-5: every report, for the sponsor's pregnancy exposure registry."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        return pregnancy_csv_response(PregnancyReport.objects.all())

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra = {**(extra_context or {}), "export_url": reverse("admin:registry_pregnancyreport_export")}
        return super().changelist_view(request, extra_context=extra)

    @admin.action(description="Export selected reports as CSV (sponsor's pregnancy registry)")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[PregnancyReport]) -> HttpResponseBase:
        return pregnancy_csv_response(queryset)

    @admin.action(description="Re-classify exposure from the recorded infusions")
    def recompute_exposure(self, request: HttpRequest, queryset: QuerySet[PregnancyReport]) -> None:
        changed = sum(
            pregnancy_exposure_recompute(report=report, actor=request.user, now=timezone.now())  # type: ignore[arg-type]
            for report in queryset
        )
        self.message_user(
            request,
            format_html("Exposure re-classified: {} of {} changed.", changed, queryset.count()),
            messages.SUCCESS,
        )
