"""Pregnancy reminders (PRG-4): `pregnancy_reminders_raise` for a day on which every one of N reports is
due (half an overdue outcome, half an infant follow-up), then the re-run of the same day (nothing new), with
the number of queries of each, against a plain count of the due reports in the same run as the baseline.

    DATABASE_URL=postgres://… .venv/bin/python bench/pregnancy_reminders.py [N]   (BENCH_REPEAT=5)
"""

from __future__ import annotations

import datetime as dt
import os
import sys

from _harness import bench_database, drop_bench_database, median, timed
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry.identifiers import new_registry_id
from registry.matching import patient_match_key
from registry.models import Patient, PregnancyReport, Prescriber
from registry.services.accounts import admin_user_ensure
from registry.services.certification import participant_certify, participant_register
from registry.services.pregnancy import pregnancy_reminders_raise

REPEAT = int(os.environ.get("BENCH_REPEAT", 5))
AS_OF = dt.date(2028, 1, 1)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    bench_database("registry_bench_pregnancy")
    try:
        run(count)
    finally:
        drop_bench_database()


def _world(count: int) -> None:
    now = timezone.now()
    admin = admin_user_ensure(username="bench")
    prescriber = participant_register(
        model=Prescriber,
        actor=admin,
        data={
            "npi": "1558598797",
            "first_name": "B",
            "last_name": "Ench",
            "email": "b@example.org",
            "knowledge_assessment_score": 8,
            "knowledge_assessment_passed_on": dt.date(2026, 1, 1),
            "enrollment_signed_on": dt.date(2026, 1, 1),
        },
    )
    participant_certify(participant=prescriber, actor=admin, now=now)
    patients = Patient.objects.bulk_create(
        Patient(
            rems_patient_id=new_registry_id(),
            first_name=f"P{i}",
            last_name="Bench",
            match_key=patient_match_key(f"P{i}", "Bench"),  # bulk_create skips save(), which sets it
            date_of_birth=dt.date(1990, 1, 1),
            sex="female",
            reproductive_potential=True,
            enrollment_signed_on=dt.date(2026, 1, 1),
            prescriber=prescriber,
        )
        for i in range(count)
    )
    conception = dt.date(2026, 2, 15)
    due = conception + dt.timedelta(days=266)
    reports = []
    for i, patient in enumerate(patients):
        live = i % 2 == 1
        reports.append(
            PregnancyReport(
                patient=patient,
                reported_by=admin,
                reported_on=dt.date(2026, 3, 20),
                estimated_conception_on=conception,
                estimated_due_on=due,
                due_on_derived=True,
                exposure="not_exposed",
                exposure_computed_at=now,
                status="outcome_recorded" if live else "open",
                outcome="live_birth" if live else "",
                outcome_on=due if live else None,
                gestational_age_weeks=39 if live else None,
                birth_weight_grams=3300 if live else None,
                major_malformation=False if live else None,
                maternal_thyroid_status="normal" if live else "",
                outcome_overdue_on=due + dt.timedelta(days=30),
                infant_follow_up_due_on=dt.date(2027, 11, 8) if live else None,
            )
        )
    PregnancyReport.objects.bulk_create(reports, batch_size=5000)


def run(count: int) -> None:
    _world(count)

    def truncate() -> None:
        with connection.cursor() as cursor:  # DELETE is refused (PRG-5); TRUNCATE is the owner's
            cursor.execute("TRUNCATE registry_pregnancyreminder")

    def baseline() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM registry_pregnancyreport WHERE (status = 'open' AND outcome_overdue_on <= %s)"
                " OR (status = 'outcome_recorded' AND infant_follow_up_due_on <= %s)",
                [AS_OF, AS_OF],
            )
            assert cursor.fetchone()[0] == count

    raise_samples, rerun_samples = [], []
    for _ in range(REPEAT):
        truncate()
        with CaptureQueriesContext(connection) as first:
            raise_samples += timed(lambda: _check(pregnancy_reminders_raise(as_of=AS_OF), count), 1)
        with CaptureQueriesContext(connection) as again:
            rerun_samples += timed(lambda: _check(pregnancy_reminders_raise(as_of=AS_OF), 0), 1)
    base = timed(baseline, REPEAT)

    print(f"pregnancy_reminders_raise over {count} due reports (median of {REPEAT}):")
    print(
        f"  raise all:  {median(raise_samples):.3f} s  ({count / median(raise_samples):,.0f} reminders/s), {len(first)} queries"
    )
    print(f"  re-run:     {median(rerun_samples) * 1000:.1f} ms, {len(again)} queries, nothing new")
    print(f"  baseline (count of the due reports): {median(base) * 1000:.1f} ms")
    for query in first.captured_queries:
        print(f"    {float(query['time']):7.3f} s  {query['sql'][:90]}")


def _check(raised: list, expected: int) -> None:
    assert len(raised) == expected, (len(raised), expected)


if __name__ == "__main__":
    main()
