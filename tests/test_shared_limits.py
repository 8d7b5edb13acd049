"""Limits that hold across workers (issue 8 item 4): the rate limit lives in a store every worker shares,
so two worker processes allow the rate once, not twice; bodies over the size limit answer 413
`payload_too_large` in the JSON error contract, declared or chunked, without a traceback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from registry.services.accounts import admin_user_ensure, api_key_issue

ROOT = Path(__file__).resolve().parent.parent
RATE = 6

# One worker process: configure Django against the same database (and Redis), call GET /api/v1/me
# `attempts` times through the whole stack with the key, print the statuses as JSON.
WORKER = textwrap.dedent(
    """
    import json, os, sys
    import django
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    django.setup()
    from django.test import Client
    client = Client(HTTP_AUTHORIZATION="Bearer " + sys.argv[1])
    sys.stdin.readline()  # both workers start together
    print(json.dumps([client.get("/api/v1/me").status_code for _ in range(int(sys.argv[2]))]))
    """
)


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.parametrize("store", ["database", "cache"])
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_share_one_rate_limit(store):
    """Two separate Python processes (own memory, own connections), 6 requests each against a limit of
    6 a day for one key: 6 answers 200 in all and 6 are 429, whichever process asked."""
    user = admin_user_ensure(username=f"throttle-{uuid.uuid4().hex[:8]}")
    _, raw = api_key_issue(user=user, actor=None, name="shared limit")
    connection.close()  # committed (transactional test): the workers read the key
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "API_THROTTLE_RATE": f"{RATE}/day",
        "THROTTLE_STORE": store,
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "2",
    }
    if store == "cache":
        env["CACHE_URL"] = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    workers = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", WORKER, raw, str(RATE)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=120) for worker in workers]

    statuses = []
    for (out, err), worker in zip(outputs, workers, strict=True):
        assert worker.returncode == 0, err
        statuses += json.loads(out.strip().splitlines()[-1])
    assert sorted(statuses) == [200] * RATE + [429] * RATE


TOO_LARGE = {
    "code": "payload_too_large",
    "detail": "The request body is larger than the registry accepts (2000 bytes).",
}


@pytest.fixture
def small_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000


def _big_body() -> bytes:
    return json.dumps({"results": [{"notes": "x" * 100}] * 30}).encode()


@pytest.mark.django_db
def test_a_body_over_the_limit_answers_413_payload_too_large(admin, small_limit, caplog):
    response = admin.client.post("/api/v1/lab-results/bulk", _big_body(), content_type="application/json")

    assert response.status_code == 413
    assert response.json() == TOO_LARGE
    assert "Traceback" not in caplog.text


@pytest.mark.django_db
def test_a_chunked_body_over_the_limit_answers_413_too(admin, small_limit):
    response = admin.client.post(
        "/api/v1/lab-results/bulk",
        _big_body(),
        content_type="application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
    )

    assert (response.status_code, response.json()) == (413, TOO_LARGE)


@pytest.mark.django_db
def test_a_chunked_body_within_the_limit_is_parsed(admin, small_limit):
    """Without a Content-Length Django would read a chunked body as empty; within the limit it is handed
    on and validated like any other (here: a validation error naming the bad row, not an empty body)."""
    body = json.dumps({"results": [{"rems_patient_id": "nope"}]}).encode()
    response = admin.client.post(
        "/api/v1/lab-results/bulk",
        body,
        content_type="application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        # a server's de-chunked input stream returns what there is (the test client's refuses to)
        **{"wsgi.input": io.BytesIO(body)},
    )

    assert response.status_code == 400
    assert any(key.startswith("results.0.") for key in response.json()["errors"])


@pytest.mark.django_db
def test_a_body_within_the_limit_is_served(admin, small_limit):
    response = admin.get("/api/v1/me")
    assert response.status_code == 200
