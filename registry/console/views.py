"""Console views: the program dashboard and the patient page. Both are admin views (login, staff, role
admin: `RegistryAdminSite.has_permission`) and read-only; the patient page's buttons post to the same
admin actions as the lists, which call the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone

from registry.models import Patient

from .dashboard import dashboard_build
from .patient_page import patient_page_build

DASHBOARD_PERMISSION = "registry.view_patient"  # both console roles hold it


def dashboard_view(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    if not user.has_perm(DASHBOARD_PERMISSION):
        raise PermissionDenied
    now = timezone.now()
    return TemplateResponse(
        request,
        "admin/registry/console/dashboard.html",
        {
            **admin.site.each_context(request),
            "title": "Program dashboard",
            "panels": dashboard_build(now=now),
            "now": now,
            "report_from": (timezone.localdate(now).replace(day=1)).isoformat(),
            "report_to": timezone.localdate(now).isoformat(),
        },
    )


def patient_page_view(request: HttpRequest, model_admin: Any, object_id: str) -> HttpResponse:
    user: Any = request.user
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    patient = get_object_or_404(Patient.objects.select_related("prescriber"), pk=object_id)
    can_change = model_admin.has_change_permission(request)
    can_change_prescriber = user.has_perm("registry.change_prescriber")
    return TemplateResponse(
        request,
        "admin/registry/console/patient_page.html",
        {
            **admin.site.each_context(request),
            "title": f"Patient {patient.rems_patient_id} — {patient.last_name}, {patient.first_name}",
            "patient": patient,
            "sections": patient_page_build(patient=patient, user=user, now=timezone.now()),
            "opts": Patient._meta,
            "can_change": can_change,
            "can_change_prescriber": can_change_prescriber,
            "patient_actions": [
                (verb, label)
                for verb, label in (
                    ("suspend", "Suspend"),
                    ("reinstate", "Reinstate"),
                    ("discontinue", "Discontinue"),
                )
            ],
        },
    )
