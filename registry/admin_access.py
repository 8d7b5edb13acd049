"""The privacy officer's console (issue 8): the access log (per patient, exportable as CSV), the
date-of-birth lookup locks (ID-4; lifted through the service, audited), and access logging of the
patient admin's own reads. Imported at the end of registry/admin.py."""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from registry.admin import AuditedAdmin, PatientAdmin, ReadOnlyAdmin
from registry.models import (
    AccessLogEntry,
    Course,
    Decision,
    Dispense,
    DispenseAuthorization,
    DobLookupGuard,
    Infusion,
    NcpdpMessage,
    Patient,
    PregnancyReport,
    User,
)
from registry.services.access_log import access_log_record
from registry.services.dob_guard import dob_lock_lift

ACCESS_LOG_CSV_COLUMNS = ("when", "user", "role", "patient", "rems_patient_id", "endpoint", "request_id")


def access_log_csv(entries: QuerySet[AccessLogEntry]) -> HttpResponse:
    """The entries as CSV, oldest first, for a privacy officer's accounting of disclosures."""
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="access-log.csv"'
    writer = csv.writer(response)
    writer.writerow(ACCESS_LOG_CSV_COLUMNS)
    rows = entries.select_related("user", "patient").order_by("created_at", "id")
    for entry in rows.iterator(chunk_size=2000):
        writer.writerow(
            [
                entry.created_at.isoformat(),
                entry.user.username,
                entry.user_role,
                entry.patient_id,
                entry.patient.rems_patient_id,
                entry.endpoint,
                entry.request_id,
            ]
        )
    return response


@admin.register(AccessLogEntry)
class AccessLogEntryAdmin(ReadOnlyAdmin):
    """Who read what: append-only (the database refuses changes), filterable per patient and user."""

    list_display = ("created_at", "user", "user_role", "patient_registry_id", "endpoint", "request_id")
    list_filter = ("user_role", "endpoint")
    search_fields = ("patient__rems_patient_id", "user__username", "request_id")
    list_select_related = ("user", "patient")
    date_hierarchy = "created_at"
    actions = ("export_csv",)
    list_per_page = 100
    readonly_fields = ("created_at", "user", "user_role", "patient", "endpoint", "request_id")

    @admin.display(description="REMS patient ID", ordering="patient__rems_patient_id")
    def patient_registry_id(self, obj: AccessLogEntry) -> str:
        return obj.patient.rems_patient_id

    @admin.action(description="Export selected entries as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AccessLogEntry]) -> HttpResponse:
        return access_log_csv(queryset)


@admin.register(DobLookupGuard)
class DobLookupGuardAdmin(AuditedAdmin):
    """ID-4: callers locked out of a registry ID (or, for the NCPDP initiation by name, of a name of one
    prescriber's patients: shown as a digest) after repeated date-of-birth mismatches. Lifting runs the
    service (audited, with a reason)."""

    list_display = (
        "rems_patient_id",
        "lookup",
        "prescriber",
        "user",
        "locked_now",
        "locked_at",
        "locked_until",
        "lifted_at",
        "lifted_by",
    )
    list_filter = ("lookup", "locked_at", "lifted_at")
    search_fields = ("rems_patient_id", "user__username", "prescriber__npi", "prescriber__last_name")
    list_select_related = ("user", "lifted_by", "prescriber")
    readonly_fields = (
        "user",
        "lookup",
        "rems_patient_id",
        "prescriber",
        "failures",
        "locked_at",
        "locked_until",
        "lifted_at",
        "lifted_by",
        "audit_history",
    )
    actions = ("lift_locks",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(boolean=True, description="Locked now")
    def locked_now(self, obj: DobLookupGuard) -> bool:
        return obj.locked_until is not None and obj.locked_until > timezone.now()

    def has_lift_permission(self, request: HttpRequest) -> bool:
        """Lifting a lock is a state change: REMS administrators (and superusers), not read-only auditors
        (registry/console/roles.py); the lock's fields themselves are never edited."""
        return request.user.has_perm("registry.change_doblookupguard")

    @admin.action(description="Lift selected locks (reason required)", permissions=["lift"])
    def lift_locks(self, request: HttpRequest, queryset: QuerySet[DobLookupGuard]) -> HttpResponse | None:
        def service(*, participant: DobLookupGuard, actor: User, now: Any, reason: str) -> DobLookupGuard:
            return dob_lock_lift(guard=participant, actor=actor, reason=reason, now=now)

        return self.run_service(request, queryset, "lift", service, True)


def access_history_html(patient: Patient | None, limit: int = 100) -> str:
    """The patient's latest reads, newest first, with a link to the full (exportable) list."""
    if patient is None or patient.pk is None:
        return "—"
    entries = AccessLogEntry.objects.filter(patient=patient).select_related("user").order_by("-created_at")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        ((f"{e.created_at:%Y-%m-%d %H:%M:%S %Z}", e.user, e.user_role, e.endpoint) for e in entries[:limit]),
    )
    full = reverse("admin:registry_accesslogentry_changelist") + f"?patient__id__exact={patient.pk}"
    return format_html(
        '<p><a href="{}">Full access log for this patient (exportable as CSV)</a></p>'
        "<table><thead><tr><th>When</th><th>Who</th><th>Role</th><th>Endpoint</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        full,
        rows or mark_safe("<tr><td colspan=4>No reads recorded.</td></tr>"),
    )


def _patient_id_of(obj: Any) -> Any:
    return obj.pk if isinstance(obj, Patient) else getattr(obj, "patient_id", None)


class AccessLoggedAdminMixin:
    """Logs the admin's own reads of patient data (issue 8 item 6): a change page logs its record's
    patient, a list page every patient on the page shown, in one insert. For the patient admin and every
    admin whose records name a patient (courses, decisions, authorizations, dispenses, infusions,
    pregnancy reports, NCPDP messages)."""

    model: Any

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        if request.method == "GET" and response.status_code == 200:
            shown = (getattr(response, "context_data", None) or {}).get("original")
            access_log_record(
                user=request.user,  # type: ignore[arg-type]
                patient_ids=[_patient_id_of(shown)] if shown is not None else [],
                endpoint=f"ADMIN {self.model._meta.model_name} change page",
            )
        return response

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)  # type: ignore[misc]
        shown = (getattr(response, "context_data", None) or {}).get("cl")
        if request.method == "GET" and response.status_code == 200 and shown is not None:
            access_log_record(
                user=request.user,  # type: ignore[arg-type]
                patient_ids=[_patient_id_of(o) for o in shown.result_list],
                endpoint=f"ADMIN {self.model._meta.model_name} list",
            )
        return response


class AccessLoggedPatientAdmin(AccessLoggedAdminMixin, PatientAdmin):
    """The patient admin, logging its reads and showing the patient's access history."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*super().get_readonly_fields(request, obj), "access_history")

    @admin.display(description="Access history (who read this patient)")
    def access_history(self, obj: Patient) -> str:
        return access_history_html(obj)


admin.site.unregister(Patient)
admin.site.register(Patient, AccessLoggedPatientAdmin)

# Every other admin whose records name a patient logs its reads too: the registered admin class, with the
# logging mixed in first.
for _model in (Course, Decision, DispenseAuthorization, Dispense, Infusion, PregnancyReport, NcpdpMessage):
    _registered = type(admin.site.get_model_admin(_model))
    admin.site.unregister(_model)
    admin.site.register(
        _model, type(f"AccessLogged{_registered.__name__}", (AccessLoggedAdminMixin, _registered), {})
    )
