"""The REMS administrators' console. Lifecycle actions call the same services as the API, so they are
validated and audited the same way; audit events are read-only here as in the database."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from registry.errors import RegistryError
from registry.models import (
    ApiKey,
    AuditEvent,
    AuthorizationStatus,
    Contraindication,
    Course,
    Decision,
    Dispense,
    DispenseAuthorization,
    Facility,
    Infusion,
    LabResult,
    Patient,
    Pharmacy,
    Prescriber,
    RevokeCategory,
    Screening,
    User,
)
from registry.selectors import (
    authorization_public_state,
    authorization_revoke_category,
    authorization_state,
    identifier_in_use,
)
from registry.services import certification
from registry.services.accounts import api_key_revoke
from registry.services.dispensing import authorization_revoke
from registry.services.enrollment import patient_status_change


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
        rows or mark_safe("<tr><td colspan=4>No events.</td></tr>"),
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


class ParticipantForm(forms.ModelForm):
    """Refuses an identifier already held by an active participant of the same kind (ACT-5) as a form
    error, before the service's database constraint would."""

    def _unique(self, field: str) -> str:
        value = self.cleaned_data[field]
        if identifier_in_use(self._meta.model, field=field, value=value, exclude_pk=self.instance.pk):
            raise forms.ValidationError(
                f"A {self._meta.model._meta.verbose_name} with this {field.upper().replace('_ID', ' ID')} is already "
                "registered.",
                code="duplicate_identifier",
            )
        return value

    def clean_npi(self) -> str:
        return self._unique("npi")

    def clean_ncpdp_id(self) -> str:
        return self._unique("ncpdp_id")

    def clean(self) -> dict[str, Any]:
        """ACT-5: the same refusal the update service applies (identifiers locked, requirements kept)."""
        cleaned = super().clean() or {}
        values = {f.name: getattr(self.instance, f.name) for f in self.instance._meta.concrete_fields}
        dates = certification.participant_dates_refusal(
            model=type(self.instance), values={**values, **cleaned}, now=timezone.now()
        )
        if dates is not None:  # ACT-2..4: attested dates may not lie in the future (issue 9)
            for name, messages_ in dates.extra["errors"].items():
                self.add_error(name if name in self.fields else None, messages_)
        if self.instance.pk is not None:
            data = {name: cleaned[name] for name in self.changed_data if name in cleaned}
            refusal = certification.participant_update_refusal(participant=self.instance, data=data)
            if refusal is not None:
                missing = refusal.extra.get("missing")
                raise forms.ValidationError(
                    f"{refusal.detail} Missing: {', '.join(missing)}." if missing else refusal.detail,
                    code=refusal.code,
                )
        return cleaned


class ParticipantAdmin(AuditedAdmin):
    form = ParticipantForm
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

    def get_list_filter(self, request: HttpRequest) -> Any:
        from registry.console.filters import CertificationExpiryFilter, ParticipantStateFilter

        return (ParticipantStateFilter, "status", CertificationExpiryFilter)

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
        except RegistryError as exc:  # the form validated this; only a race can get here
            self.message_user(request, f"{exc.detail} [{exc.code}]", messages.ERROR)
            raise

    @admin.action(description="Certify selected", permissions=["change"])
    def certify(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self.run_service(request, queryset, "certify", certification.participant_certify, False)

    @admin.action(description="Suspend selected (reason required)", permissions=["change"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self.run_service(request, queryset, "suspend", certification.participant_suspend, True)

    @admin.action(description="Reinstate selected (reason required)", permissions=["change"])
    def reinstate(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self.run_service(request, queryset, "reinstate", certification.participant_reinstate, True)

    @admin.action(description="Deactivate selected (reason required)", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self.run_service(request, queryset, "deactivate", certification.participant_deactivate, True)


@admin.register(Prescriber)
class PrescriberAdmin(ParticipantAdmin):
    list_display = (
        "last_name",
        "first_name",
        "npi",
        "status",
        "certified_at",
        "certification_expires_at",
        "patient_count",
    )
    search_fields = ("npi", "last_name", "first_name", "email", "dea_number")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(n_patients=Count("patients"))

    @admin.display(description="Patients", ordering="n_patients")
    def patient_count(self, obj: Any) -> Any:
        url = reverse("admin:registry_patient_changelist")
        return format_html('<a href="{}?prescriber__id__exact={}">{}</a>', url, obj.pk, obj.n_patients)

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
    list_display = ("name", "npi", "city", "state", "status", "certified_at", "certification_expires_at")
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
    list_display = (
        "name",
        "npi",
        "ncpdp_id",
        "city",
        "state",
        "status",
        "certified_at",
        "certification_expires_at",
    )
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


class ReadOnlyAdmin(AuditedAdmin):
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
        # The changelist, for the revoke action; the key's fields are never edited.
        return obj is None and request.user.has_perm("registry.change_apikey")

    @admin.action(description="Revoke selected keys", permissions=["change"])
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


# --- Patients (ACT-6..9) ----------------------------------------------------------------------------


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ScreeningInline(_ReadOnlyInline):
    model = Screening
    fields = (
        "created_at",
        "hiv_negative",
        "no_active_infection",
        "tb_screened_on",
        "vaccinations_completed_on",
        "recorded_by",
    )
    readonly_fields = fields


class LabResultInline(_ReadOnlyInline):
    model = LabResult
    fields = ("test", "collected_on", "result", "value", "unit", "notes", "recorded_by")
    readonly_fields = fields
    ordering = ("-collected_on",)
    max_num = 0


class ContraindicationInline(_ReadOnlyInline):
    model = Contraindication
    fields = ("kind", "noted_on", "notes", "recorded_by")
    readonly_fields = fields


class CourseInline(_ReadOnlyInline):
    model = Course
    fields = (
        "number",
        "status",
        "planned_doses",
        "doses_given",
        "planned_start_on",
        "first_infusion_on",
        "last_infusion_on",
        "cancelled_reason",
    )
    readonly_fields = fields


class InfusionInline(_ReadOnlyInline):
    model = Infusion
    fields = (
        "administered_on",
        "course",
        "day_in_course",
        "dose_mg",
        "corticosteroid_premedication",
        "antiviral_prophylaxis",
        "observation_minutes",
        "facility",
    )
    readonly_fields = fields


class PossibleDuplicateFilter(admin.SimpleListFilter):
    """ACT-6: patients whose normalized name and date of birth (the match key) another patient shares: the
    pairs enrollment would refuse today. They arise from an administrator's confirmed non-duplicate, from
    records that predate a change of the key (migration 0014 folds ø, ł, æ ...), or from imports; each
    pair is for an administrator to confirm or resolve by a transfer of care."""

    title = "possible duplicate"
    parameter_name = "possible_duplicate"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Shares name and date of birth with another patient")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() != "yes":
            return queryset
        twin = Patient.objects.filter(
            date_of_birth=OuterRef("date_of_birth"), match_key=OuterRef("match_key")
        ).exclude(pk=OuterRef("pk"))
        return queryset.filter(Exists(twin)).order_by("date_of_birth", "match_key")


@admin.register(Patient)
class PatientAdmin(AuditedAdmin):
    """Patients are enrolled by prescribers through the API; here administrators read them and suspend or
    reinstate them (ACT-8) through the same service, with a reason."""

    list_display = (
        "rems_patient_id",
        "last_name",
        "first_name",
        "date_of_birth",
        "status",
        "prescriber",
        "last_infusion_on",
        "monitoring_ends_on",
        "patient_page_link",
    )
    list_filter = ("status", "sex", "reproductive_potential", PossibleDuplicateFilter)
    search_fields = ("rems_patient_id", "last_name", "first_name", "prescriber__npi", "prescriber__last_name")
    search_help_text = "REMS patient ID, name, date of birth (YYYY-MM-DD), or the prescriber's NPI or name."
    list_select_related = ("prescriber",)
    readonly_fields = (
        "id",
        "rems_patient_id",
        "first_name",
        "last_name",
        "date_of_birth",
        "sex",
        "reproductive_potential",
        "enrollment_signed_on",
        "status",
        "status_reason",
        "status_changed_at",
        "prescriber",
        "authorized_at",
        "first_infusion_on",
        "last_infusion_on",
        "monitoring_ends_on",
        "created_at",
        "updated_at",
        "audit_history",
    )
    exclude = ("status_before_suspension",)
    inlines = (ScreeningInline, LabResultInline, ContraindicationInline, CourseInline, InfusionInline)
    actions = ("suspend", "reinstate", "discontinue")
    list_per_page = 50
    change_form_template = "admin/registry/console/patient_change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # enrollment is the prescriber's act (ACT-6), through the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The changelist, for the status actions; a patient's record is never edited in the console.
        return obj is None and super().has_change_permission(request)

    def get_list_filter(self, request: HttpRequest) -> Any:
        from registry.console.filters import PatientInMonitoringFilter, PatientMonitoringFilter

        return (
            *self.list_filter,
            PatientMonitoringFilter,
            PatientInMonitoringFilter,
            ("prescriber", admin.RelatedOnlyFieldListFilter),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Also by date of birth: a term that reads as a date matches it exactly."""
        results, duplicates = super().get_search_results(request, queryset, search_term)
        try:
            born = parse_date(search_term.strip()) if search_term else None
        except ValueError:  # shaped like a date, but not one (2026-02-30)
            born = None
        if born is not None:
            results = results | queryset.filter(date_of_birth=born)
        return results, duplicates

    @admin.display(description="Patient page")
    def patient_page_link(self, obj: Patient) -> str:
        return format_html('<a href="{}">open</a>', reverse("admin:registry_patient_page", args=[obj.pk]))

    def get_urls(self) -> list[Any]:
        from registry.console.views import patient_page_view

        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            return patient_page_view(request, self, object_id)

        return [
            path("<uuid:object_id>/page/", self.admin_site.admin_view(view), name="registry_patient_page"),
            *super().get_urls(),
        ]

    def _status(self, request: HttpRequest, queryset: QuerySet[Any], verb: str) -> HttpResponse | None:
        def service(*, participant: Patient, actor: User, now: Any, reason: str) -> Patient:
            return patient_status_change(patient=participant, actor=actor, verb=verb, reason=reason, now=now)

        return self.run_service(request, queryset, verb, service, True)

    @admin.action(description="Suspend selected patients (reason required)", permissions=["change"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self._status(request, queryset, "suspend")

    @admin.action(description="Reinstate selected patients (reason required)", permissions=["change"])
    def reinstate(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        return self._status(request, queryset, "reinstate")

    @admin.action(description="Discontinue selected patients (reason required)", permissions=["change"])
    def discontinue(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        """ACT-8: treatment stopped; monitoring continues. The same service as the API's discontinue."""
        return self._status(request, queryset, "discontinue")


@admin.register(Course)
class CourseAdmin(ReadOnlyAdmin):
    list_display = (
        "patient",
        "number",
        "status",
        "planned_doses",
        "doses_given",
        "planned_start_on",
        "last_infusion_on",
    )
    list_filter = ("status", "number")
    search_fields = ("patient__rems_patient_id", "patient__last_name")
    list_select_related = ("patient",)
    inlines = (InfusionInline,)


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    """GATE-5: every decision with its requirements, the settings in force, inputs and actor."""

    list_display = ("created_at", "kind", "outcome", "patient", "actor", "reason_codes")
    list_filter = ("kind", "outcome")

    def get_list_filter(self, request: HttpRequest) -> Any:
        from registry.console.filters import DecidedFilter, ReasonCodeFilter

        return (*self.list_filter, ReasonCodeFilter, DecidedFilter)

    search_fields = ("patient__rems_patient_id", "request_id", "actor__username")
    date_hierarchy = "created_at"
    list_select_related = ("patient", "actor")

    @admin.display(description="Reasons")
    def reason_codes(self, obj: Decision) -> str:
        return ", ".join(r.get("code", "") for r in obj.reasons) or "—"


@admin.register(DispenseAuthorization)
class DispenseAuthorizationAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "current_status",
        "pharmacy",
        "facility",
        "patient",
        "doses_authorized",
        "issued_at",
        "expires_at",
    )
    list_filter = ("status", "revoke_category")
    search_fields = (
        "number",
        "patient__rems_patient_id",
        "pharmacy__name",
        "pharmacy__npi",
        "pharmacy__ncpdp_id",
    )

    def get_list_filter(self, request: HttpRequest) -> Any:
        return (*self.list_filter, ("pharmacy", admin.RelatedOnlyFieldListFilter))

    list_select_related = ("pharmacy", "facility", "prescriber", "patient", "course")
    readonly_fields = ("stored_requirements", "program_settings")
    actions = ("revoke",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The changelist, for the revoke action; an authorization's fields are never edited.
        return obj is None and request.user.has_perm("registry.change_dispenseauthorization")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("registry.view_dispenseauthorization")

    @admin.display(description="Status")
    def current_status(self, obj: DispenseAuthorization) -> str:
        """The state the API and the dispense service read: a lapsed number reads `revoked`, with its
        category, before the daily sweep stores it so and after (issue 9 item 4)."""
        now = timezone.now()
        state = authorization_public_state(authorization_state(obj, now))
        category = authorization_revoke_category(obj, now)
        return f"{state} ({RevokeCategory(category).label})" if category else state

    @admin.display(description="Requirements evaluated (GATE-5)")
    def stored_requirements(self, obj: DispenseAuthorization) -> str:
        return format_html_join(
            "",
            "<div>{} — {}</div>",
            (
                (r["requirement"], "met" if r["met"] else f"unmet ({r.get('code')})")
                for r in obj.decision.requirements
            ),
        )

    @admin.display(description="Program settings in force")
    def program_settings(self, obj: DispenseAuthorization) -> str:
        return format_html("<code>{}</code>", obj.decision.program_settings)

    @admin.action(description="Revoke selected authorizations (reason required)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        active = queryset.filter(status=AuthorizationStatus.ACTIVE)
        skipped = queryset.count() - active.count()
        if skipped:
            self.message_user(
                request,
                f"{skipped} selected authorization(s) are not active and were left as they are.",
                messages.WARNING,
            )

        def service(*, participant: DispenseAuthorization, actor: User, now: Any, reason: str) -> Any:
            return authorization_revoke(actor=actor, number=participant.number, reason=reason, now=now)

        return self.run_service(request, active, "revoke", service, True)


@admin.register(Dispense)
class DispenseAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "authorization", "pharmacy", "patient", "vials", "ndc", "lot_number")
    search_fields = ("authorization__number", "patient__rems_patient_id", "lot_number")
    list_select_related = ("authorization", "pharmacy", "patient")


@admin.register(Infusion)
class InfusionAdmin(ReadOnlyAdmin):
    list_display = (
        "administered_on",
        "patient",
        "course",
        "day_in_course",
        "facility",
        "observation_minutes",
    )
    search_fields = ("patient__rems_patient_id", "facility__name", "facility__npi")
    list_select_related = ("patient", "course", "facility")
    date_hierarchy = "administered_on"


# Site titles and the second factor: registry/admin_site.py (the default `admin.site`).

# Monitoring (MON-1..5), pregnancy surveillance (PRG-2..5) and the NCPDP message log (issue 14) have their
# own modules; importing them registers their admin. Then issue 8's module: the access log, date-of-birth
# locks, and access logging mixed into every admin registered above whose records name a patient (so it
# comes last).
from registry import admin_monitoring, admin_pregnancy, admin_standards  # noqa: E402, F401, I001
from registry import admin_access  # noqa: E402, F401
