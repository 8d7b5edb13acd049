"""Makes every patient's guardian grants match its prescriber of record's care team (ACT-8), set-based:
missing grants are inserted, grants held by any other group are removed. Used after `loaddata` of the demo
data (fixtures carry no integer permission rows) and as a repair tool. Idempotent."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import F

from registry.models import Patient, PatientGroupObjectPermission, Prescriber
from registry.services.accounts import care_team_ensure
from registry.services.audit import audit_record
from registry.services.enrollment import _care_team_permissions


class Command(BaseCommand):
    help = "Align patients' care-team grants with their prescriber of record (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            for prescriber in Prescriber.objects.filter(
                patients__isnull=False, care_team__isnull=True
            ).distinct():
                care_team_ensure(prescriber=prescriber)
            stale, _ = PatientGroupObjectPermission.objects.exclude(
                group_id=F("content_object__prescriber__care_team_id")
            ).delete()
            perms = list(_care_team_permissions())
            rows = [
                PatientGroupObjectPermission(group_id=team_id, permission=perm, content_object_id=patient_id)
                for patient_id, team_id in Patient.objects.values_list("pk", "prescriber__care_team_id")
                for perm in perms
            ]
            before = PatientGroupObjectPermission.objects.count()
            PatientGroupObjectPermission.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
            created = PatientGroupObjectPermission.objects.count() - before
            if stale or created:
                for prescriber in Prescriber.objects.filter(patients__isnull=False).distinct():
                    audit_record(
                        actor=None,
                        action="care_team.sync",
                        subject=prescriber,
                        changes={"grants_created": created, "grants_removed": stale},
                    )
        self.stdout.write(f"care-team grants: {created} created, {stale} removed")
