"""`python manage.py rebuild_monitoring_schedule`: writes every patient's stored monitoring schedule again
from the program settings now in force (MON-1, MON-2, MON-4). Run it once after changing a monitoring
interval or `monitoring_months_after_last_infusion`: the schedule stores due dates and window ends, so
until then the gate, the sweep and the API keep the old ones for each patient until its next result or
infusion. Grace and blocking days are applied when read and need no rebuild. Prints what changed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from registry.services.monitoring import monitoring_schedule_rebuild


class Command(BaseCommand):
    help = "Write the stored monitoring schedule again from the current program settings (audited)."

    def handle(self, *args: Any, **options: Any) -> None:
        rows, patients = monitoring_schedule_rebuild(actor=None, now=timezone.now())
        self.stdout.write(f"schedule rows changed: {rows}, patients changed: {patients}")
