"""Bulk lab ingestion (issue 3): rows per second for 5,000 rows through POST /api/v1/lab-results/bulk (the
whole Django/DRF stack, in process) and through the service alone, against the same rows inserted by a
plain `executemany` in the same run as the baseline.

    make bench      # or: DATABASE_URL=postgres://… .venv/bin/python bench/bulk_labs.py
"""

from __future__ import annotations

import datetime as dt
import uuid

from _harness import bench_database, drop_bench_database, median, timed
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from registry.api.serializers.patients import bulk_row_errors
from registry.models import LabResult, Prescriber
from registry.services.accounts import api_key_issue, participant_user_ensure
from registry.services.certification import participant_certify, participant_register
from registry.services.enrollment import lab_results_bulk_record, patient_enroll

ROWS = 5000
REPEAT = 5
TESTS = ["cbc_differential", "serum_creatinine", "urinalysis", "thyroid_function", "liver_function"]


def main() -> None:
    bench_database("registry_bench_bulk")
    try:
        run()
    finally:
        drop_bench_database()


def run() -> None:
    now = timezone.now()
    today = timezone.localdate(now)
    from registry.services.accounts import admin_user_ensure

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
            "knowledge_assessment_passed_on": today,
            "enrollment_signed_on": today,
        },
    )
    prescriber = participant_certify(participant=prescriber, actor=admin, now=now)
    user = participant_user_ensure(participant=prescriber, actor=admin)
    _, key = api_key_issue(user=user, actor=admin)
    patients = [
        patient_enroll(
            actor=user,
            now=now,
            data={
                "first_name": f"P{i}",
                "last_name": "Bench",
                "date_of_birth": dt.date(1980, 1, 1),
                "sex": "male",
                "reproductive_potential": False,
                "enrollment_signed_on": today,
            },
        )
        for i in range(50)
    ]
    rows = [
        {
            "rems_patient_id": patients[i % 50].rems_patient_id,
            "test": TESTS[i % 5],
            "collected_on": (today - dt.timedelta(days=i % 300)).isoformat(),
            "result": "normal",
            "value": "4.2",
            "unit": "10^9/L",
        }
        for i in range(ROWS)
    ]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def clear() -> None:
        LabResult.objects.all().delete()

    def via_api() -> None:
        response = client.post("/api/v1/lab-results/bulk", {"results": rows}, format="json")
        assert response.status_code == 201, response.content[:300]

    def via_service() -> None:
        valid, errors = bulk_row_errors(rows)
        lab_results_bulk_record(actor=user, rows=valid, format_errors=errors, now=timezone.now())

    by_id = {p.rems_patient_id: p.pk for p in patients}
    plain = [
        (
            uuid.uuid4(),
            now,
            by_id[r["rems_patient_id"]],
            r["test"],
            r["collected_on"],
            r["result"],
            r["value"],
            r["unit"],
            "",
            user.pk,
        )
        for r in rows
    ]

    def via_executemany() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO registry_labresult (id, created_at, patient_id, test, collected_on, result, value, unit,"
                " notes, recorded_by_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(uuid.uuid4(), *row[1:]) for row in plain],
            )

    results = {}
    for name, fn in (("executemany (baseline)", via_executemany), ("service", via_service), ("API", via_api)):
        samples = []
        for _ in range(REPEAT):
            clear()
            samples += timed(fn, 1)
            assert LabResult.objects.count() == ROWS
        results[name] = median(samples)

    base = results["executemany (baseline)"]
    print(f"bulk lab ingestion, {ROWS} rows, median of {REPEAT} runs, PostgreSQL {connection.pg_version}")
    for name, seconds in results.items():
        print(
            f"  {name:<24} {seconds * 1000:8.1f} ms  {ROWS / seconds:10.0f} rows/s  ratio {seconds / base:5.2f}x"
        )


if __name__ == "__main__":
    main()
