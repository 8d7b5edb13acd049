"""The REMS administrators' console. Lifecycle actions call the same services as the API, so they are
validated and audited the same way; audit events are read-only here as in the database."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from registry.errors import RegistryError
from registry.models import (
    ApiKey,
    AuditEvent,
    Facility,
    Pharmacy,
    Prescriber,
    User,
)
from registry.services import certification
from registry.services.accounts import api_key_revoke


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=2000)


def audit_history_html(obj: Any) -> str:
    """The object's audit trail, newest first, for a read-only admin field."""
    if obj is None or obj.pk is None:
        return "—"
    events = AuditEvent.objects.filter(subject_type=obj._meta.model_name, subject_id=obj.pk).select_related(
        "actor"
    )
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        (
            (f"{e.created_at:%Y-%m-%d %H:%M:%S %Z}", e.action, e.actor or e.actor_role, e.changes)
            for e in events[:200]
        ),
    )
    return format_html(
        "<table><thead><tr><th>When</th><th>Action</th><th>Who</th><th>Changes</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        rows or format_html("<tr><td colspan=4>No events.</td></tr>"),
    )


class AuditedAdmin(admin.ModelAdmin):
    """Adds the read-only audit history and runs one service per selected object for lifecycle actions."""

    def audit_history(self, obj: Any) -> str:
        return audit_history_html(obj)

    audit_history.short_description = "Audit history"  # type: ignore[attr-defined]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # records of a REMS are deactivated, never deleted

    def run_service(
        self, request: HttpRequest, queryset: QuerySet[Any], verb: str, service: Any, needs_reason: bool
    ) -> HttpResponse | None:
        reason = ""
        if needs_reason:
            form = ReasonForm(request.POST if "apply" in request.POST else None)
            if not form.is_valid():
                return TemplateResponse(
                    request,
                    "admin/registry/transition.html",
                    {
                        **self.admin_site.each_context(request),
                        "title": f"{verb.capitalize()} — reason required",
                        "objects": list(queryset),
                        "form": form,
                        "action": request.POST.get("action"),
                        "opts": self.model._meta,
                    },
                )
            reason = form.cleaned_data["reason"]
        done = 0
        for obj in queryset:
            try:
                kwargs: dict[str, Any] = {"actor": request.user, "now": timezone.now(), "reason": reason}
                service(participant=obj, **kwargs)
                done += 1
            except RegistryError as exc:
                extra = f" ({', '.join(exc.extra.get('missing', []))})" if exc.extra.get("missing") else ""
                self.message_user(request, f"{obj}: {exc.detail}{extra} [{exc.code}]", messages.ERROR)
        if done:
            self.message_user(request, f"{verb.capitalize()}: {done} done.", messages.SUCCESS)
        return None


class ParticipantAdmin(AuditedAdmin):
    list_filter = ("status",)
    readonly_fields = (
        "id",
        "status",
        "status_reason",
        "status_changed_at",
        "certified_at",
        "certification_expires_at",
        "missing_requirements",
        "created_at",
        "updated_at",
        "audit_history",
    )
    actions = ("certify", "suspend", "reinstate", "deactivate")
    list_per_page = 50

    @admin.display(description="Missing for certification")
    def missing_requirements(self, obj: Any) -> str:
        return ", ".join(certification.participant_requirements(obj)) or "none" if obj.pk else "—"

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        try:
            if change:
                certification.participant_update(participant=obj, actor=request.user, data=data)  # type: ignore[arg-type]
            else:
                created = certification.participant_register(
                    model=type(obj),
                    actor=request.user,  # type: ignore[arg-type]
                    data={f: form.cleaned_data[f] for f in form.cleaned_data},
                )
                obj.pk = created.pk
        except RegistryError as exc:
            self.message_user(request, f"{exc.detail} [{exc.code}]", messages.ERROR)
            raise

    @admin.action(description="Certify selected")
    def certify(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self.run_service(request, queryset, "certify", certification.participant_certify, False)

    @admin.action(description="Suspend selected (reason required)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self.run_service(request, queryset, "suspend", certification.participant_suspend, True)

    @admin.action(description="Reinstate selected (reason required)")
    def reinstate(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self.run_service(request, queryset, "reinstate", certification.participant_reinstate, True)

    @admin.action(description="Deactivate selected (reason required)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self.run_service(request, queryset, "deactivate", certification.participant_deactivate, True)


@admin.register(Prescriber)
class PrescriberAdmin(ParticipantAdmin):
    list_display = ("last_name", "first_name", "npi", "status", "certified_at", "certification_expires_at")
    search_fields = ("npi", "last_name", "first_name", "email", "dea_number")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "npi",
                    "first_name",
                    "last_name",
                    "credentials",
                    "email",
                    "phone",
                    "dea_number",
                )
            },
        ),
        (
            "Certification (ACT-2)",
            {
                "fields": (
                    "knowledge_assessment_score",
                    "knowledge_assessment_passed_on",
                    "enrollment_signed_on",
                    "missing_requirements",
                )
            },
        ),
        (
            "Lifecycle (ACT-5)",
            {
                "fields": (
                    "status",
                    "status_reason",
                    "status_changed_at",
                    "certified_at",
                    "certification_expires_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        ("Audit", {"fields": ("audit_history",)}),
    )


_SITE = (
    "name",
    "address_line1",
    "city",
    "state",
    "postal_code",
    "authorized_rep_name",
    "authorized_rep_email",
)


@admin.register(Facility)
class FacilityAdmin(ParticipantAdmin):
    list_display = ("name", "npi", "city", "state", "status", "certified_at")
    search_fields = ("npi", "name", "city")
    fieldsets = (
        (None, {"fields": ("id", "npi", *_SITE)}),
        (
            "Certification (ACT-3)",
            {
                "fields": (
                    "enrollment_signed_on",
                    "infusion_reaction_readiness_attested_on",
                    "missing_requirements",
                )
            },
        ),
        (
            "Lifecycle (ACT-5)",
            {
                "fields": (
                    "status",
                    "status_reason",
                    "status_changed_at",
                    "certified_at",
                    "certification_expires_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        ("Audit", {"fields": ("audit_history",)}),
    )


@admin.register(Pharmacy)
class PharmacyAdmin(ParticipantAdmin):
    list_display = ("name", "npi", "ncpdp_id", "city", "state", "status", "certified_at")
    search_fields = ("npi", "ncpdp_id", "name", "city")
    fieldsets = (
        (None, {"fields": ("id", "npi", "ncpdp_id", *_SITE)}),
        (
            "Certification (ACT-4)",
            {"fields": ("enrollment_signed_on", "staff_training_completed_on", "missing_requirements")},
        ),
        (
            "Lifecycle (ACT-5)",
            {
                "fields": (
                    "status",
                    "status_reason",
                    "status_changed_at",
                    "certified_at",
                    "certification_expires_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        ("Audit", {"fields": ("audit_history",)}),
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "subject_type", "subject_id", "actor", "actor_role", "request_id")
    list_filter = ("subject_type", "actor_role", "action")
    search_fields = ("subject_id", "action", "request_id", "actor__username")
    date_hierarchy = "created_at"
    list_select_related = ("actor",)


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("user__role",)
    search_fields = ("prefix", "user__username", "name")
    actions = ("revoke",)
    list_select_related = ("user",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and bool(request.user.is_superuser)  # the changelist, for the revoke action

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(api_key=key, actor=request.user, now=timezone.now())  # type: ignore[arg-type]
        self.message_user(request, "Keys revoked.", messages.SUCCESS)


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = (
        "username",
        "role",
        "email",
        "is_active",
        "prescriber",
        "facility",
        "pharmacy",
        "last_login",
    )
    list_filter = ("role", "is_active")
    search_fields = ("username", "email", "first_name", "last_name")
    exclude = ("password",)
