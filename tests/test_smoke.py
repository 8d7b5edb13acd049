import pytest

pytestmark = pytest.mark.django_db


def test_health_answers_ok_without_auth(anon):
    response = anon.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_prescriber_walkthrough(admin):
    response = admin.post(
        "/api/v1/prescribers",
        {
            "npi": "1558598797",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.org",
            "knowledge_assessment_score": 8,
            "knowledge_assessment_passed_on": "2026-11-01",
            "enrollment_signed_on": "2026-11-01",
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    pid = body["id"]
    assert admin.post(f"/api/v1/prescribers/{pid}/certify").json()["status"] == "certified"
    key = admin.post(f"/api/v1/prescribers/{pid}/api-keys").json()["key"]
    from tests.conftest import client_with_key

    me = client_with_key(key).get("/api/v1/me").json()
    assert me["role"] == "prescriber"
    assert me["participant"] == pid
    assert client_with_key(key).get(f"/api/v1/prescribers/{pid}").status_code == 200
