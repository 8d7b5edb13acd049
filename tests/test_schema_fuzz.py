"""Property-based fuzzing of every operation in the served OpenAPI schema (schemathesis, in-process WSGI).

One pytest item per operation, generated from the schema the app serves at `/api/schema/`, so endpoints
added later are fuzzed without touching this file. Every item runs in its own pytest-django test
transaction (the in-process WSGI calls share the test's database connection), and every generated
example inside it in a savepoint that is rolled back, so each example starts from the same seeded state.

Caller: the admin's API key (`Authorization: Bearer <key>`), except for the few operations the admin's
role may not call at all (403 from the role check before anything else): those are fuzzed as the first
persona whose role may, so that the fuzzing reaches their handlers. A failure's curl line names the
caller in its `X-Request-ID`.

Checks, and only these: no 5xx, every status code is documented, the content type is documented, the
body matches the documented schema. Deliberately NOT checked: that invalid input is rejected or valid
input accepted (`negative_data_rejection`, `positive_data_acceptance`): generated "valid" data routinely
breaks domain rules (a 409 is a correct answer), and the API's 400s are covered by the status check.

Reaching past the 404: path parameters are random UUIDs, which only ever find nothing. Per operation the
test lists the collection each path parameter indexes (`GET /api/v1/prescribers` for
`/api/v1/prescribers/{id}/...`, nested as deep as the path goes) and, for about half of the generated
cases, substitutes ids of records that exist (made by the persona fixtures and `_api_seeds`).

Deterministic: fixed seed, Hypothesis `derandomize`, no example database. Bounded: `MAX_EXAMPLES`
generated cases per operation. Unthrottled for the duration (the fuzzing is not a load test).
"""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.python import wsgi

from config.wsgi import application

from .factories import make_npi

SCHEMA_PATH = "/api/schema/?format=json"
SEED = 20261101
MAX_EXAMPLES = 15
# The conftest personas besides the admin, in the order tried when the admin's role may not call an
# operation (see FuzzContext). Creating them also creates records to fuzz against (participants, users,
# keys, a delegate); `_api_seeds` adds what only the API makes.
OTHER_PERSONAS = ("prescriber", "pharmacy", "facility", "delegate", "other_prescriber")
MAX_BINDINGS = 25  # existing-id combinations kept per operation

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        # Stateful testing is not run by the pytest integration; keep the config explicit anyway. The
        # schema's examples (the standards endpoints document complete exchanges) are for readers: the
        # test draws its own data (`st.data()`), which schemathesis cannot combine with example cases.
        "phases": {"stateful": {"enabled": False}, "examples": {"enabled": False}},
    }
)


def _load_schema() -> schemathesis.schemas.BaseSchema:
    """The schema exactly as served. Loaded at collection time, which has no database: the schema view is
    public (drf-spectacular's SERVE_PERMISSIONS) and touches none. Should it ever demand a key, fall back
    to drf-spectacular's generator, which builds the same document (SERVE_PUBLIC) in-process."""
    probe = wsgi.get_client(application).get(path=SCHEMA_PATH)
    if probe.status_code in (401, 403):
        from drf_spectacular.generators import SchemaGenerator

        raw = SchemaGenerator().get_schema(request=None, public=True)
        loaded = schemathesis.openapi.from_dict(raw, config=CONFIG)
        loaded.app = application
        return loaded
    return schemathesis.openapi.from_wsgi(SCHEMA_PATH, application, config=CONFIG)


schema = _load_schema()


@pytest.fixture(autouse=True)
def _in_process_wsgi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unthrottled, and the WSGI handler must not close the test transaction's connection.

    Django's WSGIHandler fires request_started/request_finished, whose close_old_connections handler
    closes any connection not in autocommit mode, i.e. the one holding the test transaction. Django's
    test client disconnects that handler around each of its own requests (and reconnects it after);
    the raw handler schemathesis calls does not. Make the check a no-op for the test's duration."""
    from registry.api.throttling import ApiKeyRateThrottle

    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {ApiKeyRateThrottle.scope: "1000000/min"})
    monkeypatch.setattr(BaseDatabaseWrapper, "close_if_unusable_or_obsolete", lambda self: None)


@dataclass
class FuzzContext:
    admin: Any  # tests.conftest.Persona, as are the others
    others: list[Any]
    _bindings: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    _callers: dict[str, Any] = field(default_factory=dict)

    def bindings(self, path: str) -> list[dict[str, str]]:
        """Listed once per test item: every example rolls back, so the ids stay valid throughout."""
        if path not in self._bindings:
            self._bindings[path] = existing_bindings(self.admin, path)
        return self._bindings[path]

    def caller(self, method: str, path: str) -> Any:
        """The admin, unless the admin's role may not call the operation at all (a few are one role's
        alone: a prescriber enrolls patients, a pharmacy requests dispense authorizations). Then the first
        persona whose role may, so the fuzzing reaches the handler rather than the role check (which
        answers 403 before anything else is looked at)."""
        key = f"{method} {path}"
        if key not in self._callers:
            self._callers[key] = next(
                (p for p in [self.admin, *self.others] if self._probe(p, method, path) != 403), self.admin
            )
        return self._callers[key]

    def _probe(self, persona: Any, method: str, path: str) -> int:
        binding = (self.bindings(path) or [{}])[0]
        url = _fill(path.strip("/").split("/"), binding, default=str(uuid.UUID(int=0)))
        with transaction.atomic():
            response = persona.client.generic(
                method.upper(), url, data=b"{}", content_type="application/json"
            )
            transaction.set_rollback(True)
        return int(response.status_code)


def _api_seeds(request: pytest.FixtureRequest) -> None:
    """Records only the public API creates (API.md bodies), made as their callers would. Best effort: a
    seed the API refuses (or an endpoint not there yet) only means fewer ids to fuzz against."""
    past = (timezone.localdate() - dt.timedelta(days=30)).isoformat()
    admin = request.getfixturevalue("admin")
    prescriber = request.getfixturevalue("prescriber")
    admin.post(  # a pending prescriber, so certify/suspend/... have something to act on
        "/api/v1/prescribers",
        {
            "npi": make_npi(random.Random(SEED)),
            "first_name": "Pending",
            "last_name": "Prescriber",
            "email": "pending@example.org",
            "knowledge_assessment_score": 8,
            "knowledge_assessment_passed_on": past,
            "enrollment_signed_on": past,
        },
    )
    for sex, potential in (("female", True), ("male", False)):
        prescriber.post(
            "/api/v1/patients",
            {
                "first_name": "Fuzz",
                "last_name": sex.title(),
                "date_of_birth": "1985-03-14",
                "sex": sex,
                "reproductive_potential": potential,
                "enrollment_signed_on": past,
            },
        )


@pytest.fixture
def fuzz(request: pytest.FixtureRequest, db: None) -> FuzzContext:
    """Create the records to fuzz against, and the personas to fuzz as."""
    context = FuzzContext(
        admin=request.getfixturevalue("admin"),
        others=[request.getfixturevalue(name) for name in OTHER_PERSONAS],
    )
    _api_seeds(request)
    return context


_PARAM = re.compile(r"^\{([^}]+)\}$")


def _list_items(admin: Any, path: str) -> list[dict[str, Any]]:
    response = admin.get(path)
    if response.status_code != 200 or "json" not in response.get("Content-Type", ""):
        return []
    body = response.json()
    items = body.get("results", []) if isinstance(body, dict) else body
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def existing_bindings(admin: Any, path: str) -> list[dict[str, str]]:
    """Values for the path's parameters that name existing records, found by listing each parent
    collection (`/a/{x}/b/{y}`: list `/a` for x, then `/a/<x>/b` for y)."""
    segments = path.strip("/").split("/")
    bindings: list[dict[str, str]] = [{}]
    for index, segment in enumerate(segments):
        match = _PARAM.match(segment)
        if not match:
            continue
        name = match.group(1)
        extended = []
        for binding in bindings:
            for item in _list_items(admin, _fill(segments[:index], binding)):
                value = item.get(name, item.get("id"))
                if isinstance(value, str | int) and not isinstance(value, bool):
                    extended.append({**binding, name: str(value)})
        bindings = extended[:MAX_BINDINGS]
        if not bindings:
            return []
    return bindings if bindings != [{}] else []


def _fill(segments: list[str], binding: dict[str, str], default: str | None = None) -> str:
    parts = []
    for segment in segments:
        match = _PARAM.match(segment)
        parts.append(binding.get(match.group(1), default or segment) if match else segment)
    return "/" + "/".join(parts)


@schema.parametrize()
@schema.given(data=st.data())
# The fixtures are per operation on purpose (each example rolls back to their state); and a loaded machine
# must not fail the run over generation speed.
@settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ]
)
def test_operation_conforms_to_schema(case: Any, data: st.DataObject, fuzz: FuzzContext) -> None:
    bindings = fuzz.bindings(case.operation.path)
    if bindings and data.draw(st.booleans(), label="existing ids"):
        binding = data.draw(st.sampled_from(bindings), label="binding")
        case.path_parameters = {**(case.path_parameters or {}), **binding}
    caller = fuzz.caller(case.operation.method, case.operation.path)
    # The request id names the caller in a failure's curl line (the key itself is filtered out there).
    headers = {"Authorization": f"Bearer {caller.key}", "X-Request-ID": f"schema-fuzz-as-{caller.user.role}"}
    # Each example starts from the seeded state: its writes (and any transaction it breaks) roll back.
    with transaction.atomic():
        case.call_and_validate(headers=headers, checks=CHECKS)
        transaction.set_rollback(True)
