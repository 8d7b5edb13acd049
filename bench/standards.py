"""Standards endpoints latency (issue 14), through the full Django/DRF stack in process, against the JSON
dispense authorization in the same run: an NCPDP REMSRequest (a new MessageID each time, so the gate runs),
a replayed REMSRequest (same MessageID: the stored answer), a REMSInitiationRequest, and FHIR
`$rems-etasu`; for a patient with no history and one with 500 labs and 4 prior courses. Prints median and
p99 latency, queries per request and the ratio to the JSON request. Figures only: nothing passes or fails
on time.

    DATABASE_URL=postgres://… .venv/bin/python bench/standards.py
"""

from __future__ import annotations

import itertools
import json

from _harness import bench_database, drop_bench_database, median, p, timed
from authorization import participants_seed, seed_patient
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from registry.models import AuthorizationStatus, DispenseAuthorization
from registry.services.accounts import admin_user_ensure, api_key_issue, participant_user_ensure

REQUESTS = 200
WARMUP = 20
NS = "http://www.ncpdp.org/schema/SCRIPT"


def rems_request(patient, message_id: str) -> bytes:
    return (
        f'<Message xmlns="{NS}"><Header><To>LEMTRADA-REMS</To><From>1234567</From>'
        f"<MessageID>{message_id}</MessageID><SentTime>2026-03-02T15:00:00Z</SentTime></Header><Body>"
        "<REMSRequest><Patient><HumanPatient><Identification>"
        f"<REMSPatientID>{patient.rems_patient_id}</REMSPatientID></Identification>"
        "<DateOfBirth><Date>1980-01-01</Date></DateOfBirth></HumanPatient></Patient>"
        "<Pharmacy><Identification><NCPDPID>1234567</NCPDPID></Identification></Pharmacy>"
        "<Prescriber><NonVeterinarian><Identification><NPI>1558598797</NPI></Identification></NonVeterinarian>"
        "</Prescriber><Facility><Identification><NPI>1993999998</NPI></Identification></Facility>"
        "<MedicationPrescribed><DrugCoded><ProductCode><Code>58468020001</Code></ProductCode></DrugCoded>"
        "<Quantity><Value>1</Value></Quantity></MedicationPrescribed></REMSRequest></Body></Message>"
    ).encode()


def initiation(patient, message_id: str) -> bytes:
    return (
        f'<Message xmlns="{NS}"><Header><To>LEMTRADA-REMS</To><From>1234567</From>'
        f"<MessageID>{message_id}</MessageID><SentTime>2026-03-02T15:00:00Z</SentTime></Header><Body>"
        "<REMSInitiationRequest><Patient><HumanPatient><Identification>"
        f"<REMSPatientID>{patient.rems_patient_id}</REMSPatientID></Identification>"
        f"<Names><Name><LastName>{patient.last_name}</LastName><FirstName>{patient.first_name}</FirstName>"
        "</Name></Names><DateOfBirth><Date>1980-01-01</Date></DateOfBirth></HumanPatient></Patient>"
        "<Pharmacy><Identification><NCPDPID>1234567</NCPDPID></Identification></Pharmacy>"
        "<Prescriber><NonVeterinarian><Identification><NPI>1558598797</NPI></Identification></NonVeterinarian>"
        "</Prescriber><MedicationPrescribed><DrugCoded><ProductCode><Code>58468020001</Code></ProductCode>"
        "</DrugCoded></MedicationPrescribed></REMSInitiationRequest></Body></Message>"
    ).encode()


def etasu(patient) -> str:
    return json.dumps(
        {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "patient",
                    "resource": {
                        "resourceType": "Patient",
                        "identifier": [
                            {"system": "urn:lemtrada-rems:rems-patient-id", "value": patient.rems_patient_id}
                        ],
                        "name": [{"family": patient.last_name}],
                        "birthDate": "1980-01-01",
                    },
                },
                {
                    "name": "medication",
                    "resource": {
                        "resourceType": "Medication",
                        "code": {
                            "coding": [
                                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1594660"}
                            ]
                        },
                    },
                },
            ],
        }
    )


def main() -> None:
    bench_database("registry_bench_standards")
    try:
        run()
    finally:
        drop_bench_database()


def run() -> None:
    now = timezone.now()
    admin = admin_user_ensure(username="bench")
    prescriber, facility, pharmacy = participants_seed(admin, now)
    prescriber_user = participant_user_ensure(participant=prescriber, actor=admin)
    _, pharmacy_key = api_key_issue(
        user=participant_user_ensure(participant=pharmacy, actor=admin), actor=admin
    )
    _, prescriber_key = api_key_issue(user=prescriber_user, actor=admin)
    patients = {
        "no history": seed_patient(prescriber_user, facility, now, history=False),
        "500 labs, 4 prior courses": seed_patient(prescriber_user, facility, now, history=True),
    }
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    rx = APIClient()
    rx.credentials(HTTP_AUTHORIZATION=f"Bearer {pharmacy_key}")
    ehr = APIClient()
    ehr.credentials(HTTP_AUTHORIZATION=f"Bearer {prescriber_key}")
    ids = itertools.count()

    def release() -> None:
        DispenseAuthorization.objects.filter(status=AuthorizationStatus.ACTIVE).update(
            status=AuthorizationStatus.REVOKED
        )

    def json_request(patient):
        body = {
            "rems_patient_id": patient.rems_patient_id,
            "date_of_birth": "1980-01-01",
            "prescriber_npi": "1558598797",
            "facility_npi": "1993999998",
            "doses_requested": 1,
        }

        def call() -> None:
            response = rx.post("/api/v1/dispense-authorizations", body, format="json")
            assert response.json()["decision"] == "approved", response.json()

        return call

    def ncpdp_request(patient):
        def call() -> None:
            response = rx.post(
                "/api/ncpdp/rems", rems_request(patient, f"M{next(ids)}"), content_type="application/xml"
            )
            assert b"<Approved>" in response.content, response.content

        return call

    def ncpdp_replay(patient):
        body = rems_request(patient, f"REPLAYED-{patient.pk}")

        def call() -> None:
            response = rx.post("/api/ncpdp/rems", body, content_type="application/xml")
            assert b"<Approved>" in response.content, response.content

        return call

    def ncpdp_initiation(patient):
        def call() -> None:
            response = rx.post(
                "/api/ncpdp/rems", initiation(patient, f"I{next(ids)}"), content_type="application/xml"
            )
            assert b"<Open" in response.content, response.content

        return call

    def fhir(patient):
        body = etasu(patient)

        def call() -> None:
            response = ehr.post(
                "/api/fhir/GuidanceResponse/$rems-etasu", body, content_type="application/fhir+json"
            )
            assert response.status_code == 200, response.content

        return call

    cases = {}
    for label, patient in patients.items():
        cases[f"JSON authorization, {label}"] = (json_request(patient), release)
        cases[f"NCPDP REMSRequest, {label}"] = (ncpdp_request(patient), release)
        cases[f"NCPDP REMSRequest replayed, {label}"] = (ncpdp_replay(patient), None)
        cases[f"NCPDP REMSInitiationRequest, {label}"] = (ncpdp_initiation(patient), None)
        cases[f"FHIR $rems-etasu, {label}"] = (fhir(patient), None)

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
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(REQUESTS):  # interleaved rounds: load bursts hit every case alike
        for name, (fn, after) in cases.items():
            samples[name] += timed(fn, 1)
            if after:
                after()

    print(
        f"standards endpoints through the full stack, {REQUESTS} requests each after {WARMUP} warm-up, "
        f"PostgreSQL {connection.pg_version}"
    )
    for label in patients:
        base = median(samples[f"JSON authorization, {label}"])
        for name in [n for n in cases if n.endswith(label)]:
            print(
                f"  {name:<58} median {median(samples[name]) * 1000:6.2f} ms  p99 {p(samples[name], 0.99) * 1000:6.2f} ms"
                f"  queries {queries[name]:2d}  vs JSON {median(samples[name]) / base:4.2f}x"
            )


if __name__ == "__main__":
    main()
