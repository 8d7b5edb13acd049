"""Dispense authorization latency (issue 4): POST /api/v1/dispense-authorizations through the full
Django/DRF stack in process, for a patient with no history and one with a large history (500 labs, 4 prior
courses), against an authenticated one-query GET (/api/v1/me) in the same run as the baseline. Prints
median and p99 latency, queries per request, and the ratios. Targets: ratio <= 3 and <= 12 queries, both
independent of history size.

    make bench      # or: DATABASE_URL=postgres://… .venv/bin/python bench/authorization.py
"""

from __future__ import annotations

import datetime as dt

from _harness import bench_database, drop_bench_database, median, p, timed
from dateutil.relativedelta import relativedelta
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from registry.models import (
    AuthorizationStatus,
    Course,
    CourseStatus,
    Decision,
    DecisionKind,
    DispenseAuthorization,
    Facility,
    Infusion,
    LabResult,
    Pharmacy,
    Prescriber,
)
from registry.selectors.facts import GATE_LAB_TESTS as BASELINE
from registry.services.accounts import admin_user_ensure, api_key_issue, participant_user_ensure
from registry.services.certification import participant_certify, participant_register
from registry.services.enrollment import (
    lab_result_record,
    patient_authorize,
    patient_enroll,
    screening_record,
)
from registry.services.treatment import course_plan

REQUESTS = 300
WARMUP = 30


def main() -> None:
    bench_database("registry_bench_authorization")
    try:
        run()
    finally:
        drop_bench_database()


def certified(model, admin, now, data):
    participant = participant_register(model=model, actor=admin, data=data)
    return participant_certify(participant=participant, actor=admin, now=now)


def seed_patient(
    user, facility, now, *, history: bool, first_name: str | None = None, authorize: bool = True
):
    """An enrolled patient with baseline labs and screening; authorized with a planned course unless
    `authorize` is false (a patient the gate denies)."""
    today = timezone.localdate(now)
    patient = patient_enroll(
        actor=user,
        now=now,
        data={
            "first_name": first_name or ("Large" if history else "Small"),
            "last_name": "History",
            "date_of_birth": dt.date(1980, 1, 1),
            "sex": "male",
            "reproductive_potential": False,
            "enrollment_signed_on": today - dt.timedelta(days=2000),
        },
    )
    if history:
        # 4 completed courses, each 13 months after the previous one, ending more than 12 months ago.
        start = today - relativedelta(months=13 * 4 + 1)
        decision = Decision.objects.create(kind=DecisionKind.INFUSION, outcome="approved", actor=user)
        for number in range(1, 5):
            doses = 5 if number == 1 else 3
            first = start + relativedelta(months=13 * (number - 1))
            course = Course.objects.create(
                patient=patient,
                number=number,
                planned_doses=doses,
                doses_given=doses,
                status=CourseStatus.COMPLETED,
                planned_start_on=first,
                first_infusion_on=first,
                last_infusion_on=first + dt.timedelta(days=doses - 1),
                planned_by=user,
            )
            for day in range(doses):
                Infusion.objects.create(
                    patient=patient,
                    course=course,
                    facility=facility,
                    administered_on=first + dt.timedelta(days=day),
                    day_in_course=day + 1,
                    dose_mg=12,
                    corticosteroid_premedication=True,
                    antiviral_prophylaxis=True,
                    observation_minutes=120,
                    legacy_history=True,  # imported history: no dispense backs it (issue 9)
                    recorded_by=user,
                    decision=decision
                    if (number, day) == (1, 0)
                    else Decision.objects.create(kind=DecisionKind.INFUSION, outcome="approved", actor=user),
                )
        LabResult.objects.bulk_create(
            LabResult(
                patient=patient,
                test=BASELINE[i % 7],
                collected_on=today - dt.timedelta(days=30 + i % 1500),
                result="normal",
                recorded_by=user,
            )
            for i in range(500)
        )
    for test in BASELINE:
        lab_result_record(
            patient=patient,
            actor=user,
            now=now,
            data={"test": test, "collected_on": today - dt.timedelta(days=2), "result": "normal"},
        )
    screening_record(
        patient=patient,
        actor=user,
        now=now,
        data={
            "hiv_negative": True,
            "no_active_infection": True,
            "tb_screened_on": today - dt.timedelta(days=10),
            "vaccinations_completed_on": today - dt.timedelta(days=90),
        },
    )
    if not authorize:
        return patient
    if not history:
        assert patient_authorize(patient=patient, actor=user, now=now).approved
    else:
        patient.status = "authorized"
        patient.save(update_fields=["status"])
    outcome = course_plan(patient=patient, actor=user, planned_start_on=today, now=now)
    assert outcome.approved, outcome.evaluation.reasons
    return patient


def participants_seed(admin, now):
    """One certified prescriber, facility and pharmacy (the NPIs the request bodies name)."""
    today = timezone.localdate(now)
    signed = {"enrollment_signed_on": today - dt.timedelta(days=30)}
    prescriber = certified(
        Prescriber,
        admin,
        now,
        {
            "npi": "1558598797",
            "first_name": "B",
            "last_name": "Ench",
            "email": "b@example.org",
            "knowledge_assessment_score": 8,
            "knowledge_assessment_passed_on": today,
            **signed,
        },
    )
    facility = certified(
        Facility,
        admin,
        now,
        {
            "npi": "1993999998",
            "name": "Site",
            "authorized_rep_name": "R",
            "authorized_rep_email": "r@example.org",
            "infusion_reaction_readiness_attested_on": today,
            **signed,
        },
    )
    pharmacy = certified(
        Pharmacy,
        admin,
        now,
        {
            "npi": "1245319599",
            "ncpdp_id": "1234567",
            "name": "Rx",
            "authorized_rep_name": "R",
            "authorized_rep_email": "r@example.org",
            "staff_training_completed_on": today,
            **signed,
        },
    )
    return prescriber, facility, pharmacy


def run() -> None:
    now = timezone.now()
    admin = admin_user_ensure(username="bench")
    prescriber, facility, pharmacy = participants_seed(admin, now)
    user = participant_user_ensure(participant=prescriber, actor=admin)
    _, key = api_key_issue(user=participant_user_ensure(participant=pharmacy, actor=admin), actor=admin)
    patients = {
        "no history": seed_patient(user, facility, now, history=False),
        "500 labs, 4 prior courses": seed_patient(user, facility, now, history=True),
    }
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would have done on a live database
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def request_for(patient):
        body = {
            "rems_patient_id": patient.rems_patient_id,
            "date_of_birth": "1980-01-01",
            "prescriber_npi": "1558598797",
            "facility_npi": "1993999998",
            "doses_requested": 1,
        }

        def call() -> None:
            response = client.post("/api/v1/dispense-authorizations", body, format="json")
            assert response.status_code == 201, response.json()
            assert response.json()["decision"] == "approved", response.json()

        return call

    def release() -> None:
        """Frees the dose again (outside the measured call) so every request takes the approval path."""
        DispenseAuthorization.objects.filter(status=AuthorizationStatus.ACTIVE).update(
            status=AuthorizationStatus.REVOKED
        )

    def baseline() -> None:
        assert client.get("/api/v1/me").status_code == 200

    cases = {"GET /api/v1/me (baseline)": (baseline, None)}
    for name, patient in patients.items():
        cases[f"authorization, {name}"] = (request_for(patient), release)

    queries: dict[str, int] = {}
    for name, (fn, after) in cases.items():
        for _ in range(WARMUP):
            fn()
            if after:
                after()
        with CaptureQueriesContext(connection) as ctx:
            fn()
        queries[name] = len(ctx.captured_queries)
        if after:
            after()
    # Interleaved rounds: a burst of load on the machine hits every case alike, so the ratios hold.
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(REQUESTS):
        for name, (fn, after) in cases.items():
            samples[name] += timed(fn, 1)
            if after:
                after()
    results = {name: (samples[name], queries[name]) for name in cases}

    base = median(results["GET /api/v1/me (baseline)"][0])
    print(
        f"dispense authorization through the full stack, {REQUESTS} requests each after {WARMUP} warm-up, "
        f"PostgreSQL {connection.pg_version}"
    )
    for name, (samples, queries) in results.items():
        print(
            f"  {name:<42} median {median(samples) * 1000:6.2f} ms  p99 {p(samples, 0.99) * 1000:6.2f} ms"
            f"  queries {queries:2d}  ratio {median(samples) / base:4.2f}x"
        )


if __name__ == "__main__":
    main()
