"""`python manage.py sweep_monitoring [--as-of YYYY-MM-DD] [--parts N]`: the daily monitoring sweep
(MON-3, MON-5) for that date, synchronously, in this process. Prints the counts opened, resolved,
blocking, completed, expired (and digests). A second run for the same date changes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from registry.services import monitoring


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--as-of must be YYYY-MM-DD, not {value!r}.") from exc


class Command(BaseCommand):
    help = "Run the daily monitoring sweep for a date (default: today in the registry's time zone)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", dest="as_of", type=str, default=None, help="YYYY-MM-DD")
        parser.add_argument(
            "--parts",
            type=int,
            default=1,
            help="Split the patients into this many id ranges, run one after the other here "
            "(the Celery task runs them on several workers).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        as_of = _date(options["as_of"]) if options["as_of"] else timezone.localdate(now)
        parts = options["parts"]
        if not 1 <= parts <= 64:
            raise CommandError("--parts must be 1 to 64.")
        if parts == 1:
            result = monitoring.monitoring_sweep(as_of=as_of, now=now)
            already = result.already_ran
        else:
            run, pending = monitoring.monitoring_sweep_split_start(as_of=as_of, now=now, parts=parts)
            already = not pending
            for index in pending:
                monitoring.monitoring_sweep_part(run_id=run.pk, index=index)
            result = monitoring.sweep_totals(as_of=as_of) if pending else monitoring.SweepResult(as_of=as_of)
        counts = result.counts()
        note = " (already swept for this date: nothing changed)" if already else ""
        self.stdout.write(
            f"monitoring sweep {as_of.isoformat()}: "
            + " ".join(f"{name}={value}" for name, value in counts.items())
            + note
        )
