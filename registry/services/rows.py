"""Rows written together in one round trip (issue 13): the gate's decision, its authorization number and
their audit events are new rows of several tables that commit or fail as one. On PostgreSQL they are one
statement (a chain of data-modifying CTEs), compiled from the models' own fields, so the hot path pays
neither the ORM's per-save compilation nor a round trip per row; elsewhere (SQLite, the quick start) they
are ordinary saves.

`conflict_on=("number",)` makes the first row an `INSERT … ON CONFLICT (number) DO NOTHING` and every
other row conditional on it: when the first row meets that unique index (an authorization number drawn
twice), nothing is written, no error aborts the transaction, and `rows_insert` answers False so the
caller can draw again. Any other constraint (another unique index, a check, a foreign key) fails the
statement as a save would.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from django.db import IntegrityError, connection, models, transaction


@cache
def _columns(model: type[models.Model]) -> tuple[str, tuple[tuple[models.Field[Any, Any], str], ...]]:
    """The model's quoted table name and its concrete fields, each with the cast that types its
    parameter (a NULL or a string sent for a uuid, jsonb or date column is typed by the cast)."""
    if model._meta.parents:
        raise TypeError("rows_insert writes one table per row: no multi-table inheritance")
    quote = connection.ops.quote_name
    fields = tuple(
        (field, f"%s::{_cast(field)}") for field in model._meta.local_concrete_fields if not field.generated
    )
    return quote(model._meta.db_table), fields


def _cast(field: models.Field[Any, Any]) -> str:
    """The parameter's type. A string is cast to `text`, never to `varchar(n)`: that cast would cut a
    value too long for its column, where the column's own assignment refuses it, as a save would."""
    db_type = str(field.cast_db_type(connection))
    return "text" if re.fullmatch(r"(varchar|char)\(\d+\)", db_type) else db_type


def _values(obj: models.Model) -> list[Any]:
    """The row's parameters as `save()` would prepare them (defaults and `auto_now_add` applied)."""
    _, fields = _columns(type(obj))
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for field, _ in fields]


def _column(obj: models.Model, name: str) -> str:
    field = obj._meta.get_field(name)
    assert isinstance(field, models.Field)
    return str(field.column)


def _saved(obj: models.Model) -> None:
    obj._state.adding = False
    obj._state.db = connection.alias


def rows_insert(*objs: models.Model, conflict_on: tuple[str, ...] = ()) -> bool:
    """Inserts `objs` (new, unsaved instances, possibly of different models; plain values, no
    expressions) in the caller's transaction, in order, in one statement on PostgreSQL. Returns False when
    the first row met the unique constraint on the fields `conflict_on`: then nothing was written. Any
    other constraint failure raises, as a save would."""
    if not connection.in_atomic_block:
        raise RuntimeError("rows_insert must run inside the transaction of the change it records")
    if not objs:
        return True
    if connection.vendor != "postgresql":
        return _rows_insert_portable(objs, conflict_on)
    if any(obj.pk is None for obj in objs):
        raise ValueError("rows_insert writes rows whose primary key is set (UUIDModel)")
    quote = connection.ops.quote_name
    parts: list[str] = []
    params: list[Any] = []
    for index, obj in enumerate(objs):
        table, fields = _columns(type(obj))
        columns = ", ".join(quote(str(field.column)) for field, _ in fields)
        placeholders = ", ".join(cast for _, cast in fields)
        if index == 0:
            target = ", ".join(quote(_column(obj, name)) for name in conflict_on)
            conflict = f" ON CONFLICT ({target}) DO NOTHING" if conflict_on else ""
            body = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}){conflict} RETURNING 1"  # noqa: S608
        else:
            body = (
                f"INSERT INTO {table} ({columns}) SELECT {placeholders}"  # noqa: S608
                " WHERE EXISTS (SELECT 1 FROM r0) RETURNING 1"
            )
        parts.append(f"r{index} AS ({body})")
        params.extend(_values(obj))
    # Every CTE is counted so PostgreSQL runs each (it would anyway: data-modifying CTEs always run).
    # Table and column names come from the models, values are parameters: nothing here is user text.
    counts = ", ".join(f"(SELECT count(*) FROM r{index})" for index in range(len(objs)))  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT {counts}", params)
        written = cursor.fetchone()
    if written[0] == 0:
        return False
    for obj in objs:
        _saved(obj)
    return True


def _rows_insert_portable(objs: tuple[models.Model, ...], conflict_on: tuple[str, ...]) -> bool:
    first, *rest = objs
    if conflict_on:
        try:
            with transaction.atomic():
                first.save(force_insert=True)
        except IntegrityError as exc:
            if not _unique_on(exc, first, conflict_on):
                raise
            return False
    else:
        first.save(force_insert=True)
    for obj in rest:
        obj.save(force_insert=True)
    return True


def _unique_on(exc: IntegrityError, obj: models.Model, names: tuple[str, ...]) -> bool:
    """SQLite's "UNIQUE constraint failed: table.column, …" naming exactly these fields."""
    table = obj._meta.db_table
    columns = {f"{table}.{_column(obj, name)}" for name in names}
    message = str(exc)
    prefix = "UNIQUE constraint failed: "
    return message.startswith(prefix) and set(message[len(prefix) :].split(", ")) == columns
