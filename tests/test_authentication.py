"""Authentication at wire speed (issue 13): one plain statement finds the key, its user and participant;
`last_used_at` is written after the answer, at most once a minute; nothing of ACT-5 is given up (a revoked
key, an inactive user, a deactivated participant are refused on the very next request)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry.models import ApiKey, AuditEvent, Decision, DispenseAuthorization, Prescriber
from registry.selectors.keys import api_key_by_prefix
from registry.services.accounts import api_key_authenticate, api_key_revoke
from registry.services.certification import participant_deactivate

from .gate_helpers import DAY0, authorized_patient, frozen, moment, plan_course, request_authorization

pytestmark = pytest.mark.django_db

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


@pytest.fixture
def clock():
    with frozen(DAY0):
        yield


def _key(persona) -> ApiKey:
    return ApiKey.objects.get(user=persona.user)


def test_the_lookup_loads_key_user_and_participant_in_one_statement(prescriber, delegate, pharmacy):
    """Issue 13: one statement per authentication; the participant the standing check reads (ACT-5) is
    loaded with it, for a delegate the prescriber it acts for."""
    for persona, participant in ((prescriber, prescriber.participant), (delegate, prescriber.participant)):
        prefix = persona.key.split("_")[1]
        with CaptureQueriesContext(connection) as queries:
            key = api_key_by_prefix(prefix)
            assert key is not None
            assert key.user == persona.user
            assert key.user.prescriber == participant
            assert key.user.prescriber.npi == participant.npi
            assert key.user.pharmacy is None
            assert isinstance(key.created_at, dt.datetime)
            assert key.created_at.tzinfo is not None
        assert len(queries) == 1, [q["sql"][:80] for q in queries]
    found = api_key_by_prefix(pharmacy.key.split("_")[1])
    assert found is not None
    assert found.user.pharmacy.ncpdp_id == pharmacy.participant.ncpdp_id
    assert api_key_by_prefix("0" * 12) is None


def test_me_costs_the_key_and_the_rate_limit_only(pharmacy):
    """Issue 13: an authenticated one-row read is the key lookup, the rate limit's count and the read."""
    pharmacy.get("/api/v1/me")  # the first request stamps last_used_at (after the answer)
    with CaptureQueriesContext(connection) as queries:
        assert pharmacy.get("/api/v1/me").status_code == 200
    work = [q["sql"] for q in queries if not q["sql"].upper().startswith(TRANSACTION_CONTROL)]
    assert len(work) <= 2, work


def test_last_used_is_written_after_the_answer_once_a_minute(pharmacy):
    """Issue 13: the stamp is written once the response is handed over (not inside the request), at most
    once a minute, and never moved backwards."""
    with frozen(DAY0):
        assert pharmacy.get("/api/v1/me").status_code == 200
        first = _key(pharmacy).last_used_at
        assert first == moment(DAY0)
        with CaptureQueriesContext(connection) as queries:
            assert pharmacy.get("/api/v1/me").status_code == 200
        assert not any(q["sql"].startswith("UPDATE") for q in queries)
    later = moment(DAY0) + dt.timedelta(minutes=2)
    with frozen(later):
        pharmacy.get("/api/v1/me")
    assert _key(pharmacy).last_used_at == later


def test_a_revoked_key_and_a_deactivated_participant_stop_at_once_ACT_5(prescriber, delegate, admin):
    """ACT-5: no cache stands between a revocation or a deactivation and the next request."""
    assert delegate.get("/api/v1/me").status_code == 200
    api_key_revoke(api_key=_key(delegate), actor=admin.user, now=timezone.now())
    assert delegate.get("/api/v1/me").status_code == 401
    assert prescriber.get("/api/v1/me").status_code == 200
    participant_deactivate(
        participant=Prescriber.objects.get(pk=prescriber.participant.pk),
        actor=admin.user,
        reason="left the program",
        now=timezone.now(),
    )
    refused = prescriber.get("/api/v1/me")
    assert refused.status_code == 401
    assert refused.json()["code"] == "key_inactive"
    assert api_key_authenticate("rems_nonsense") is None


def test_a_dispense_authorization_is_at_most_5_statements_GATE_1(clock, prescriber, facility, pharmacy):
    """Issue 13, GATE-1, GATE-5: the approved authorization (key, rate limit, patient lock, facts with the
    monitoring blocks and the share-locked parties, then the number, its audit event and the decision) in
    at most 5 statements
    besides transaction control (the issue's budget is 8), and no savepoint: the writes are one
    all-or-nothing statement. Every part is still there: the lock, the stored decision, the audit event."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    pharmacy.get("/api/v1/me")
    events = AuditEvent.objects.count()
    with CaptureQueriesContext(connection) as queries:
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=1)
    assert response.json()["decision"] == "approved", response.json()
    sql = [q["sql"] for q in queries]
    work = [s for s in sql if not s.upper().startswith(TRANSACTION_CONTROL)]
    # key, rate limit, patient lock, facts with the parties, and one statement for every write
    assert len(work) <= 5, [s[:70] for s in work]
    # One savepoint: the gate's own transaction, nested in the test's; none around the approval.
    assert sum(s.upper().startswith("SAVEPOINT") for s in sql) == 1, [s[:40] for s in sql]
    locks = [i for i, s in enumerate(work) if "FOR UPDATE" in s]
    shares = [i for i, s in enumerate(work) if "FOR SHARE" in s and "registry_pharmacy" in s]
    assert locks, "the patient is locked"
    assert shares, "the parties are share-locked"
    assert locks[0] < shares[0], "the parties are share-locked after the patient lock"
    writes = [s for s in work if "INSERT INTO" in s and "registry_throttlebucket" not in s]
    assert len(writes) == 1, writes
    for table in ("registry_dispenseauthorization", "registry_auditevent", "registry_decision"):
        assert f'INSERT INTO "{table}"' in writes[0]
    number = response.json()["authorization_number"]
    authorization = DispenseAuthorization.objects.get(number=number)
    assert Decision.objects.filter(pk=authorization.decision_id, outcome="approved").exists()
    issued = AuditEvent.objects.get(action="authorization.issue", subject_id=authorization.pk)
    assert issued.changes["number"] == number
    assert AuditEvent.objects.count() == events + 1  # the number's issue is the approval's one event
