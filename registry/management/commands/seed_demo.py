"""`manage.py seed_demo [--today YYYY-MM-DD] [--patients N]`: the living demo (issue 12, registry/demo.py).

Without `--patients`, writes the demo program through the services, dated relative to today (once: a
second run says the demo is there and does nothing). With `--patients N`, also adds N treated patients,
set-based, for benchmarks and for trying the console at scale (on top of the demo, which it loads first
when missing)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from registry.demo import demo_loaded, demo_seed, monitoring_catch_up, program_generate


class Command(BaseCommand):
    help = "Loads the demo program (dates relative to today); --patients N adds N more, set-based."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--today", type=dt.date.fromisoformat, default=None, help="Default: today.")
        parser.add_argument("--patients", type=int, default=0, help="Add N generated treated patients.")
        parser.add_argument("--admin", default="admin", help="The demo administrator's username.")

    def handle(self, *args: Any, **options: Any) -> None:
        today = options["today"] or timezone.localdate()
        if options["patients"] < 0:
            raise CommandError("--patients must be 0 or more.")
        started = time.perf_counter()
        if demo_loaded():
            self.stdout.write("The demo program is already loaded.")
        else:
            demo_seed(today=today, admin_username=options["admin"])
            self.stdout.write(
                f"Demo program written for {today.isoformat()} ({time.perf_counter() - started:.1f} s)."
            )
        if options["patients"]:
            started = time.perf_counter()
            program_generate(patients=options["patients"], today=today)
            if connection.vendor != "postgresql":  # on PostgreSQL, the next daily sweep raises their flags
                monitoring_catch_up(today=today)
            call_command("sync_care_teams", verbosity=0)
            self.stdout.write(
                f"Added {options['patients']} generated patients ({time.perf_counter() - started:.1f} s)."
            )
