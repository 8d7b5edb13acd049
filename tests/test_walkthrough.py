"""The README walk-through, end to end through the API: certify participants, enroll and authorize a
patient, plan course 1, authorize and dispense 5 doses, infuse 5 days, and see course 2 refused before 12
months (ACT-2..7, CRS-1..4, GATE-1..3)."""

import datetime as dt

import pytest
import time_machine

from tests.conftest import client_with_key

pytestmark = pytest.mark.django_db

BASELINE = [
    "cbc_differential",
    "serum_creatinine",
    "urinalysis",
    "urine_protein_creatinine_ratio",
    "thyroid_function",
    "liver_function",
    "skin_exam",
]


def _register_and_certify(admin, kind, body):
    response = admin.post(f"/api/v1/{kind}", body)
    assert response.status_code == 201, response.json()
    pid = response.json()["id"]
    assert admin.post(f"/api/v1/{kind}/{pid}/certify").json()["status"] == "certified"
    key = admin.post(f"/api/v1/{kind}/{pid}/api-keys").json()["key"]
    return pid, client_with_key(key)


@time_machine.travel(dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC), tick=False)
def test_full_course_1_then_course_2_refused_before_12_months(admin):
    signed = {"enrollment_signed_on": "2026-02-01"}
    _, prescriber = _register_and_certify(
        admin,
        "prescribers",
        {
            "npi": "1558598797",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.org",
            "knowledge_assessment_score": 8,
            "knowledge_assessment_passed_on": "2026-02-01",
            **signed,
        },
    )
    _, facility = _register_and_certify(
        admin,
        "facilities",
        {
            "npi": "1993999998",
            "name": "Riverside Infusion",
            "address_line1": "1 Main St",
            "city": "Boston",
            "state": "MA",
            "postal_code": "02110",
            "authorized_rep_name": "Rita Rep",
            "authorized_rep_email": "rita@example.org",
            "infusion_reaction_readiness_attested_on": "2026-02-01",
            **signed,
        },
    )
    _, pharmacy = _register_and_certify(
        admin,
        "pharmacies",
        {
            "npi": "1245319599",
            "ncpdp_id": "1234567",
            "name": "Specialty Rx",
            "authorized_rep_name": "Pat Rx",
            "authorized_rep_email": "pat@example.org",
            "staff_training_completed_on": "2026-02-01",
            **signed,
        },
    )

    patient = prescriber.post(
        "/api/v1/patients",
        {
            "first_name": "Grace",
            "last_name": "Hopper",
            "date_of_birth": "1990-05-17",
            "sex": "female",
            "reproductive_potential": True,
            **signed,
        },
    ).json()
    assert patient["status"] == "enrolled"
    pid, rems_id = patient["id"], patient["rems_patient_id"]

    refused = prescriber.post(f"/api/v1/patients/{pid}/authorize")
    assert refused.status_code == 409
    assert refused.json()["code"] == "authorization_requirements_unmet"
    assert [r["code"] for r in refused.json()["reasons"]] == [
        "baseline_incomplete",
        "screening_incomplete",
        "pregnancy_test_required",
    ]

    for test in BASELINE:
        assert (
            prescriber.post(
                f"/api/v1/patients/{pid}/lab-results",
                {"test": test, "collected_on": "2026-02-27", "result": "normal"},
            ).status_code
            == 201
        )
    prescriber.post(
        f"/api/v1/patients/{pid}/lab-results",
        {"test": "pregnancy_test", "collected_on": "2026-03-01", "result": "negative"},
    )
    assert (
        prescriber.post(
            f"/api/v1/patients/{pid}/screening",
            {
                "hiv_negative": True,
                "no_active_infection": True,
                "tb_screened_on": "2026-02-01",
                "vaccinations_completed_on": "2026-01-05",
            },
        ).status_code
        == 201
    )
    authorized = prescriber.post(f"/api/v1/patients/{pid}/authorize")
    assert authorized.status_code == 200, authorized.json()
    assert authorized.json()["status"] == "authorized"

    course = prescriber.post(f"/api/v1/patients/{pid}/courses", {"planned_start_on": "2026-03-02"})
    assert course.status_code == 201, course.json()
    assert (course.json()["number"], course.json()["planned_doses"], course.json()["status"]) == (
        1,
        5,
        "planned",
    )

    grant = pharmacy.post(
        "/api/v1/dispense-authorizations",
        {
            "rems_patient_id": rems_id,
            "date_of_birth": "1990-05-17",
            "prescriber_npi": "1558598797",
            "facility_npi": "1993999998",
            "doses_requested": 5,
        },
    )
    assert grant.status_code == 201
    body = grant.json()
    assert body["decision"] == "approved", body
    assert body["course_number"] == 1
    assert body["doses_authorized"] == 5
    assert body["reasons"] == []
    number = body["authorization_number"]
    assert pharmacy.get(f"/api/v1/dispense-authorizations/{number}").json()["status"] == "active"
    dispense = pharmacy.post("/api/v1/dispenses", {"authorization_number": number, "vials": 5})
    assert dispense.status_code == 201, dispense.json()
    assert pharmacy.get(f"/api/v1/dispense-authorizations/{number}").json()["status"] == "used"
    assert pharmacy.post("/api/v1/dispenses", {"authorization_number": number, "vials": 5}).json()[
        "code"
    ] == ("authorization_used")

    for day in range(5):
        on = dt.date(2026, 3, 2) + dt.timedelta(days=day)
        with time_machine.travel(dt.datetime.combine(on, dt.time(15), tzinfo=dt.UTC), tick=False):
            infusion = facility.post(
                "/api/v1/infusions",
                {
                    "rems_patient_id": rems_id,
                    "date_of_birth": "1990-05-17",
                    "administered_on": on.isoformat(),
                    "dose_mg": 12,
                    "corticosteroid_premedication": day < 3,
                    "antiviral_prophylaxis": True,
                    "observation_minutes": 120,
                },
            )
            assert infusion.status_code == 201, infusion.json()
            assert infusion.json()["day_in_course"] == day + 1

    courses = prescriber.get(f"/api/v1/patients/{pid}/courses").json()
    assert courses[0]["status"] == "completed"
    assert courses[0]["doses_given"] == 5
    assert courses[0]["last_infusion_on"] == "2026-03-06"
    assert prescriber.get(f"/api/v1/patients/{pid}").json()["monitoring_ends_on"] == "2030-03-06"

    refused = prescriber.post(f"/api/v1/patients/{pid}/courses", {"planned_start_on": "2026-09-01"})
    assert refused.status_code == 409
    assert refused.json()["code"] == "course_not_allowed"
    assert {"code": "course_interval_not_met", "detail": "Course 2 may not start before 2027-03-06."} in (
        refused.json()["reasons"]
    )
