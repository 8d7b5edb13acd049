"""services/rows.py (issue 13): rows written together in one round trip commit or fail as one, with the
values a save would have written; a first row that meets a unique index writes nothing."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from registry import identifiers
from registry.models import AuditEvent, Decision, Dispense, DispenseAuthorization, User
from registry.services.rows import rows_insert

from .gate_helpers import (
    DAY0,
    approved_number,
    authorized_patient,
    frozen,
    plan_course,
    request_authorization,
)

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)


@pytest.fixture
def clock():
    with frozen(DAY0):
        yield


def _event(**overrides: object) -> AuditEvent:
    values: dict[str, object] = {
        "actor": None,
        "actor_role": "system",
        "action": "test.rows",
        "subject_type": "test",
        "subject_id": uuid.uuid4(),
        "changes": {"a": [1, None], "b": "ü"},
        "created_at": AT,
    }
    values.update(overrides)
    return AuditEvent(**values)


def test_rows_of_several_models_are_one_statement_with_the_values_a_save_writes() -> None:
    user = User.objects.create(username="rows-actor", role="admin")
    first, second = _event(), _event(actor=user, actor_role="admin", request_id="req-1")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert rows_insert(first, second) is True
    statements = [q["sql"] for q in queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
    if connection.vendor == "postgresql":
        assert len(statements) == 1, statements
    assert not first._state.adding
    assert not second._state.adding
    stored = AuditEvent.objects.get(pk=first.pk)
    assert (stored.actor_id, stored.changes, stored.created_at) == (None, {"a": [1, None], "b": "ü"}, AT)
    stored = AuditEvent.objects.get(pk=second.pk)
    assert (stored.actor_id, stored.request_id, stored.subject_id) == (user.pk, "req-1", second.subject_id)


def test_a_first_row_meeting_a_unique_index_writes_nothing_and_leaves_the_transaction_usable() -> None:
    taken = _event()
    taken.save(force_insert=True)
    follower = _event()
    with transaction.atomic():
        again = _event(id=taken.pk)
        assert rows_insert(again, follower, conflict_on=("id",)) is False
        assert again._state.adding  # not written
        # The transaction goes on: a new first row is written, and its follower with it.
        assert rows_insert(_event(), follower, conflict_on=("id",)) is True
    assert AuditEvent.objects.filter(pk=follower.pk).count() == 1
    assert AuditEvent.objects.filter(subject_id=taken.subject_id).count() == 1


def test_a_duplicate_outside_conflict_on_fails_as_a_save_would() -> None:
    taken = _event()
    taken.save(force_insert=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert(_event(id=taken.pk))
    assert AuditEvent.objects.filter(pk=taken.pk).count() == 1


def test_the_conflict_target_is_the_named_unique_index_only(clock, prescriber, facility, pharmacy) -> None:
    """GATE-2: a number drawn twice writes nothing (the caller draws again); a clash on another unique
    index (the primary key) is an error, not a redraw."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    issued = DispenseAuthorization.objects.get(
        number=approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=1))
    )
    events = AuditEvent.objects.count()

    def copy(**overrides: object) -> DispenseAuthorization:
        row = DispenseAuthorization.objects.get(pk=issued.pk)
        row.id, row.decision_id = uuid.uuid4(), uuid.uuid4()
        for name, value in overrides.items():
            setattr(row, name, value)
        row._state.adding = True
        return row

    with transaction.atomic():
        drawn_twice = copy()
        assert rows_insert(drawn_twice, _event(subject_id=drawn_twice.pk), conflict_on=("number",)) is False
    assert AuditEvent.objects.count() == events
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert(copy(id=issued.pk, number="TEST-1111-1111-1"), conflict_on=("number",))
    assert DispenseAuthorization.objects.filter(patient=patient).count() == 1


@pytest.mark.postgres_only
def test_a_value_too_long_for_its_column_is_refused_not_cut() -> None:
    with pytest.raises(DataError), transaction.atomic():
        rows_insert(_event(action="x" * 65))
    assert not AuditEvent.objects.filter(action__startswith="xxxx").exists()


@pytest.mark.django_db(transaction=True)
def test_rows_are_written_only_inside_the_transaction_of_the_change_they_record() -> None:
    with pytest.raises(RuntimeError):
        rows_insert(_event())


class _ScriptedEntropy:
    """The operating system's randomness (the outside world) replaced for `registry.identifiers`: the
    scripted symbols first, then real randomness."""

    def __init__(self, symbols: str) -> None:
        self.symbols = list(symbols)

    def choice(self, seq: str) -> str:
        return self.symbols.pop(0) if self.symbols else secrets.choice(seq)


def test_a_number_drawn_twice_is_drawn_again_GATE_2(
    clock, prescriber, facility, pharmacy, monkeypatch
) -> None:
    """GATE-2: the unique index turns the one write statement into a no-op and a new number is drawn; the
    approval is stored once, with one audit event for the number it issued."""
    first, second = authorized_patient(prescriber), authorized_patient(prescriber)
    for patient in (first, second):
        plan_course(prescriber, patient, start=DAY0)
    taken = approved_number(request_authorization(pharmacy, first, prescriber, facility, doses=1))
    monkeypatch.setattr(identifiers, "secrets", _ScriptedEntropy(taken.replace("-", "")[:12]))
    events = AuditEvent.objects.count()
    number = approved_number(request_authorization(pharmacy, second, prescriber, facility, doses=1))
    assert number != taken
    issued = DispenseAuthorization.objects.get(number=number)
    assert issued.patient_id == second.pk
    assert Decision.objects.filter(pk=issued.decision_id, outcome="approved", patient=second).count() == 1
    assert list(
        AuditEvent.objects.filter(action="authorization.issue", subject_id=issued.pk).values_list(
            "changes__number", flat=True
        )
    ) == [number]
    assert AuditEvent.objects.count() == events + 1
    assert DispenseAuthorization.objects.count() == 2


def test_numbers_that_never_come_free_fail_the_request_whole(
    clock, prescriber, facility, pharmacy, monkeypatch
) -> None:
    """Five draws that all meet live numbers (each a 1 in 2^60 event): a 409 the client retries under its
    Idempotency-Key, and nothing of the attempt is stored."""
    first, second = authorized_patient(prescriber), authorized_patient(prescriber)
    for patient in (first, second):
        plan_course(prescriber, patient, start=DAY0)
    taken = approved_number(request_authorization(pharmacy, first, prescriber, facility, doses=1))
    monkeypatch.setattr(identifiers, "secrets", _ScriptedEntropy(taken.replace("-", "")[:12] * 5))
    decisions, events = Decision.objects.count(), AuditEvent.objects.count()
    response = request_authorization(pharmacy, second, prescriber, facility, doses=1)
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "conflict"
    assert (Decision.objects.count(), AuditEvent.objects.count()) == (decisions, events)
    assert not DispenseAuthorization.objects.filter(patient=second).exists()


def test_a_dispense_meeting_the_one_to_one_index_writes_nothing_GATE_2(
    clock, prescriber, facility, pharmacy
) -> None:
    """GATE-2: behind the row lock, the one-to-one index on the authorization is the last line of
    defence, and the dispense's one statement takes it as its conflict target. Reached here by putting a
    used number back to active (which no service does): the second dispense answers 409
    `authorization_used`, and nothing of it is written. The dispense and its audit event are one
    statement."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=1))
    with CaptureQueriesContext(connection) as queries:
        first = pharmacy.post("/api/v1/dispenses", {"authorization_number": number, "vials": 1})
    assert first.status_code == 201, first.json()
    if connection.vendor == "postgresql":  # SQLite: ordinary saves
        writes = [q["sql"] for q in queries if 'INSERT INTO "registry_dispense"' in q["sql"]]
        assert len(writes) == 1
        assert 'INSERT INTO "registry_auditevent"' in writes[0]
    DispenseAuthorization.objects.filter(number=number).update(status="active", used_at=None)
    events = AuditEvent.objects.filter(action="dispense.record").count()
    again = pharmacy.post("/api/v1/dispenses", {"authorization_number": number, "vials": 1})
    assert (again.status_code, again.json()["code"]) == (409, "authorization_used"), again.json()
    assert Dispense.objects.filter(authorization__number=number).count() == 1
    assert AuditEvent.objects.filter(action="dispense.record").count() == events
