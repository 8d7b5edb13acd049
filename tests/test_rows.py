"""services/rows.py (issue 13): rows written together in one round trip commit or fail as one, with the
values a save would have written; a first row that meets a unique index writes nothing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from registry.models import AuditEvent, User
from registry.services.rows import rows_insert

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)


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
        assert rows_insert(again, follower, first_may_conflict=True) is False
        assert again._state.adding  # not written
        # The transaction goes on: a new first row is written, and its follower with it.
        assert rows_insert(_event(), follower, first_may_conflict=True) is True
    assert AuditEvent.objects.filter(pk=follower.pk).count() == 1
    assert AuditEvent.objects.filter(subject_id=taken.subject_id).count() == 1


def test_without_first_may_conflict_a_duplicate_fails_as_a_save_would() -> None:
    taken = _event()
    taken.save(force_insert=True)
    with pytest.raises(Exception) as raised, transaction.atomic():
        rows_insert(_event(id=taken.pk))
    assert "unique" in str(raised.value).lower() or "duplicate" in str(raised.value).lower()


@pytest.mark.postgres_only
def test_a_value_too_long_for_its_column_is_refused_not_cut() -> None:
    with pytest.raises(DataError), transaction.atomic():
        rows_insert(_event(action="x" * 65))
    assert not AuditEvent.objects.filter(action__startswith="xxxx").exists()


@pytest.mark.django_db(transaction=True)
def test_rows_are_written_only_inside_the_transaction_of_the_change_they_record() -> None:
    with pytest.raises(RuntimeError):
        rows_insert(_event())
