"""`manage.py roles_sync`: the console groups (REMS administrator, read-only auditor) get exactly the
permissions registry/console/roles.py lists (issue 12). Idempotent."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from registry.console.roles import roles_sync


class Command(BaseCommand):
    help = "Gives the console groups exactly the permissions registry/console/roles.py lists."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, n in roles_sync().items():
            self.stdout.write(f"{name}: {n} permissions")
