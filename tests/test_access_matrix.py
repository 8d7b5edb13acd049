"""Permission matrix for suspended, expired and deactivated participants over EVERY endpoint of
registry/api/urls.py (ACT-1, ACT-5; API.md "Access, duplicates and lookups"; STYLE.md 9).

The endpoints are read from the URL conf, not listed by hand: an endpoint added without a line in
`CATEGORY` fails `test_every_endpoint_has_a_suspension_category`, naming it.

For each participant persona (prescriber, its delegate, pharmacy, facility):

- deactivated (a delegate: its prescriber deactivated): every endpoint but the public health check answers
  401 `key_inactive`, exactly.
- suspended, or certified with an expired certification (a delegate: its prescriber's standing): every
  read answers what it answered while the participant was certified; every write answers 403
  `participant_suspended`, exactly, unless the role may not call it at all (403 `permission_denied`, as
  before) or the route has no such method (405, as before); the writes a prescriber's care team keeps
  (monitoring labs, status forms: `SUSPENDED_WRITE`) answer exactly what they answered before.

Writes are sent with an empty JSON object: the refusals come before validation, and an allowed write
answers its validation error, which must be the same as before the suspension.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, reverse

from registry.api import urls as api_urls
from registry.models import ApiKey, CertificationStatus, Facility, Pharmacy, Prescriber
from registry.services.certification import participant_deactivate, participant_suspend

from .conftest import Persona
from .gate_helpers import (
    DAY0,
    approved_number,
    authorized_patient,
    frozen,
    plan_course,
    request_authorization,
)

pytestmark = pytest.mark.django_db

READ = "read"
WRITE = "write"
SUSPENDED_WRITE = "write allowed while suspended"  # ACT-5: monitoring labs and status forms
PUBLIC = "public"

# Every (route name, method) of registry/api/urls.py, with what suspension means for it.
CATEGORY: dict[tuple[str, str], str] = {
    ("health", "get"): PUBLIC,
    ("me", "get"): READ,
    ("lab-results-bulk", "post"): SUSPENDED_WRITE,
    **{
        (f"{kind}-{route}", method): category
        for kind in ("prescriber", "facility", "pharmacy")
        for (route, method), category in {
            ("list", "get"): READ,
            ("list", "post"): WRITE,
            ("detail", "get"): READ,
            ("detail", "put"): WRITE,
            ("detail", "patch"): WRITE,
            ("api-keys", "post"): WRITE,
            ("certify", "post"): WRITE,
            ("suspend", "post"): WRITE,
            ("reinstate", "post"): WRITE,
            ("deactivate", "post"): WRITE,
        }.items()
    },
    ("prescriber-delegates", "post"): WRITE,
    ("prescriber-delegates", "get"): READ,
    ("prescriber-delegate-remove", "delete"): WRITE,
    ("patient-list", "get"): READ,
    ("patient-list", "post"): WRITE,
    ("patient-detail", "get"): READ,
    ("patient-lab-results", "post"): SUSPENDED_WRITE,
    ("patient-lab-results", "get"): READ,
    ("status-form-list", "post"): SUSPENDED_WRITE,
    ("status-form-list", "get"): READ,
    ("patient-monitoring", "get"): READ,
    ("monitoring-flag-list", "get"): READ,
    ("patient-screening", "post"): WRITE,
    ("patient-contraindications", "post"): WRITE,
    ("patient-authorize", "post"): WRITE,
    ("patient-transfer", "post"): WRITE,
    ("patient-suspend", "post"): WRITE,
    ("patient-reinstate", "post"): WRITE,
    ("patient-discontinue", "post"): WRITE,
    ("patient-deceased", "post"): WRITE,
    ("patient-courses", "post"): WRITE,
    ("patient-courses", "get"): READ,
    ("course-detail", "get"): READ,
    ("course-cancel", "post"): WRITE,
    ("infusion-list", "post"): WRITE,
    ("infusion-check", "post"): WRITE,  # records a decision (GATE-5)
    ("dispense-authorization-list", "post"): WRITE,
    ("dispense-authorization-detail", "get"): READ,
    ("dispense-authorization-revoke", "post"): WRITE,
    ("dispense-list", "post"): WRITE,
    ("pregnancy-report-list", "get"): READ,
    ("pregnancy-report-list", "post"): WRITE,  # API.md: only monitoring labs and status forms continue
    ("pregnancy-report-detail", "get"): READ,
    ("pregnancy-report-detail", "patch"): WRITE,
    ("certification", "get"): READ,
    ("reports-assessment", "get"): READ,  # administrators only: a participant is 403 either way
}
# Routes listed ahead of the branch that builds them (none since monitoring landed): skipped, never passed.
PENDING_ROUTES: set[tuple[str, str]] = set()

KEY_INACTIVE = {"code": "key_inactive", "detail": "This API key is inactive: its participant is deactivated."}
PARTICIPANT_SUSPENDED = {
    "code": "participant_suspended",
    "detail": (
        "The participant is suspended or its certification has expired: only reads (and, for a "
        "prescriber's care team, monitoring labs and status forms) are allowed."
    ),
}


def _patterns(patterns: list[Any], prefix: str = "") -> Iterator[URLPattern]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern.url_patterns)
        else:
            yield pattern


def api_endpoints() -> dict[tuple[str, str], URLPattern]:
    """(route name, method) -> pattern, for every handler registry/api/urls.py routes."""
    found: dict[tuple[str, str], URLPattern] = {}
    for pattern in _patterns(api_urls.urlpatterns):
        callback = pattern.callback
        actions = getattr(callback, "actions", None)
        if actions:
            methods = [m for m in actions if m not in ("head", "options")]
        else:
            view = callback.cls  # type: ignore[attr-defined]
            methods = [m for m in view.http_method_names if hasattr(view, m) and m not in ("head", "options")]
        for method in methods:
            found.setdefault((pattern.name or "", method), pattern)
    return found


def test_every_endpoint_has_a_suspension_category():
    """STYLE.md 9: the matrix covers every endpoint; a new one fails here until it is categorized."""
    endpoints = set(api_endpoints())
    uncovered = sorted(endpoints - set(CATEGORY))
    stale = sorted(set(CATEGORY) - endpoints - PENDING_ROUTES)
    assert uncovered == [], f"endpoints without a suspension category in CATEGORY: {uncovered}"
    assert stale == [], f"CATEGORY names endpoints the URL conf does not have: {stale}"


@pytest.fixture
def world(prescriber, delegate, pharmacy, facility):
    """An authorized patient with course 1 planned and an approved authorization number, on DAY0."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        course = plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=2))
        yield {
            "prescriber": prescriber.participant.pk,
            "facility": facility.participant.pk,
            "pharmacy": pharmacy.participant.pk,
            "patient": patient.pk,
            "course": course.pk,
            "number": number,
            "npi": prescriber.participant.npi,
            "pregnancy": uuid.UUID(int=9),  # no such report: 404 while certified
        }


def _path(name: str, pattern: URLPattern, ids: dict[str, Any]) -> str:
    kwargs: dict[str, Any] = {}
    for group in pattern.pattern.regex.groupindex:
        if group == "pk":
            kwargs["pk"] = ids[name.split("-")[0]]
        elif group == "number":
            kwargs["number"] = ids["number"]
        elif group == "delegate_id":
            kwargs["delegate_id"] = uuid.UUID(int=7)  # no such delegate: 404 while certified
        elif group == "patient_pk":
            kwargs["patient_pk"] = ids["patient"]
        elif group == "npi":
            kwargs["npi"] = ids["npi"]
        elif group != "format":
            raise AssertionError(f"no test value for URL argument {group!r} of {name}")
    return reverse(name, kwargs=kwargs)


def _call(persona: Persona, method: str, path: str) -> tuple[int, Any]:
    if method == "get":
        response = persona.get(path)
    elif method == "delete":
        response = persona.delete(path)
    else:
        response = getattr(persona.client, method)(path, {}, format="json")
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def _all(persona: Persona, ids: dict[str, Any]) -> dict[tuple[str, str], tuple[int, Any]]:
    endpoints = api_endpoints()
    return {
        (name, method): _call(persona, method, _path(name, pattern, ids))
        for (name, method), pattern in sorted(endpoints.items())
    }


def _standing_change(persona: Persona, admin: Persona, state: str) -> None:
    participant = persona.participant
    if state == "suspended":
        participant_suspend(
            participant=participant, actor=admin.user, reason="Audit", now=dt.datetime.now(dt.UTC)
        )
    elif state == "expired":
        type(participant).objects.filter(pk=participant.pk).update(
            certification_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        )
    else:
        participant_deactivate(
            participant=participant, actor=admin.user, reason="Closed", now=dt.datetime.now(dt.UTC)
        )


def _code(body: Any) -> Any:
    return body.get("code") if isinstance(body, dict) else None


PERSONAS = ("prescriber", "delegate", "pharmacy", "facility")


@pytest.mark.parametrize("state", ["suspended", "expired"])
@pytest.mark.parametrize("role", PERSONAS)
def test_act5_suspended_participant_reads_as_before_and_writes_only_labs_and_forms(
    request, world, admin, role, state
):
    """ACT-5: reads unchanged; writes 403 `participant_suspended` except monitoring labs and status forms
    (same answer as before); role refusals and 405s unchanged."""
    persona: Persona = request.getfixturevalue(role)
    with frozen(DAY0):
        before = _all(persona, world)
        _standing_change(persona, admin, state)
        after = _all(persona, world)

    wrong = []
    for endpoint, (status, body) in sorted(after.items()):
        category = CATEGORY[endpoint]
        was_status, was_body = before[endpoint]
        if category in (READ, PUBLIC):
            expected: tuple[int, Any] = (was_status, "as before")
            ok = status == was_status and _code(body) != "participant_suspended"
        elif (
            category == SUSPENDED_WRITE
            or was_status == 405
            or (was_status, _code(was_body)) == (403, "permission_denied")
        ):
            expected = (was_status, was_body)
            ok = (status, body) == (was_status, was_body)
        else:
            expected = (403, PARTICIPANT_SUSPENDED)
            ok = (status, body) == expected
        if not ok:
            wrong.append(f"{endpoint}: got {status} {body}, expected {expected}")
    assert wrong == []


@pytest.mark.parametrize("role", PERSONAS)
def test_act5_deactivated_participant_keys_answer_401_key_inactive_everywhere(request, world, admin, role):
    """ACT-5: every key of a deactivated participant, and of a deactivated prescriber's delegate, answers
    401 `key_inactive` on every endpoint but the public health check; the keys are revoked in the
    deactivation's transaction."""
    persona: Persona = request.getfixturevalue(role)
    with frozen(DAY0):
        _standing_change(persona, admin, "deactivated")
        after = _all(persona, world)

    wrong = [
        f"{endpoint}: got {status} {body}"
        for endpoint, (status, body) in sorted(after.items())
        if (status, body)
        != ((200, {"status": "ok"}) if CATEGORY[endpoint] == PUBLIC else (401, KEY_INACTIVE))
    ]
    assert wrong == []
    assert not ApiKey.objects.filter(user=persona.user, revoked_at__isnull=True).exists()
    model = {"prescriber": Prescriber, "delegate": Prescriber, "pharmacy": Pharmacy, "facility": Facility}[
        role
    ]
    assert model.objects.get(pk=persona.participant.pk).status == CertificationStatus.DEACTIVATED
