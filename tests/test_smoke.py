import pytest

from .processes import manage

pytestmark = pytest.mark.django_db


def test_health_answers_ok_without_auth(anon):
    response = anon.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


HEALTH_FROM_A_FRESH_PROCESS = (
    "from django.test import Client; r = Client().get('/api/v1/health', HTTP_HOST='localhost'); "
    "print(r.status_code, r.content.decode())"
)


def test_health_answers_503_when_the_database_does_not_answer():
    """The probe says `ok` only when the database answers: a registry whose PostgreSQL is down (nothing
    listens on port 1) answers 503 `unavailable`, without authentication and without a 500."""
    result = manage(
        "shell",
        "-c",
        HEALTH_FROM_A_FRESH_PROCESS,
        DATABASE_URL="postgres://registry:registry@127.0.0.1:1/registry",
        DB_POOL_MIN_SIZE="0",
        DB_POOL_TIMEOUT="2",
        ALLOWED_HOSTS="localhost",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == '503 {"status":"unavailable"}'


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
