"""Admin for the standards endpoints' message log (read-only: the answers are records)."""

from __future__ import annotations

from django.contrib import admin

from registry.admin import ReadOnlyAdmin
from registry.models import NcpdpMessage


@admin.register(NcpdpMessage)
class NcpdpMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "transaction",
        "message_id",
        "sender",
        "patient",
        "decision",
        "response_status",
    )
    list_filter = ("transaction",)
    search_fields = ("message_id", "response_message_id", "sender__username", "patient__rems_patient_id")
    date_hierarchy = "created_at"
    list_select_related = ("sender", "patient", "decision")
