"""The API key lookup behind every authenticated request (issue 13): one indexed statement by prefix that
reads the key, its user and the user's participant, written once as plain SQL so that no request pays the
ORM's planning of a four-table join.

The column lists come from the models' own metadata (so a new field is read without touching this file),
and each value passes through the database backend's converters exactly as a queryset's would (SQLite
returns UUIDs and datetimes as text; PostgreSQL returns them typed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model

from registry.models import ApiKey, Facility, Pharmacy, Prescriber, User

# The participant tables a user may point at, with the user's foreign key to each.
_PARTICIPANTS: tuple[tuple[str, type[Model]], ...] = (
    ("prescriber", Prescriber),
    ("facility", Facility),
    ("pharmacy", Pharmacy),
)


@dataclass(frozen=True)
class _Part:
    model: type[Model]
    alias: str
    attnames: list[str]
    converters: list[list[Any]]
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.attnames)

    def build(self, row: tuple[Any, ...]) -> Model | None:
        values = list(row[self.start : self.end])
        if values[0] is None:  # the primary key: no row on this side of a LEFT JOIN
            return None
        for i, converters in enumerate(self.converters):
            for converter in converters:
                values[i] = converter(values[i], None, connection)
        return self.model.from_db(connection.alias, self.attnames, values)


@dataclass(frozen=True)
class _Lookup:
    sql: str
    key: _Part
    user: _Part
    participants: tuple[tuple[str, _Part], ...]


def _part(model: type[Model], alias: str, start: int) -> _Part:
    fields = list(model._meta.concrete_fields)
    converters = [
        connection.ops.get_db_converters(field.get_col(alias)) + field.get_db_converters(connection)
        for field in fields
    ]
    return _Part(model, alias, [f.attname for f in fields], converters, start)


@cache
def _lookup(vendor: str) -> _Lookup:
    """Built once per process (and database backend) from the models' metadata."""
    key = _part(ApiKey, "k", 0)
    user = _part(User, "u", key.end)
    participants = []
    start = user.end
    for name, model in _PARTICIPANTS:
        part = _part(model, name[:2], start)
        participants.append((name, part))
        start = part.end
    parts = [key, user, *(p for _, p in participants)]
    columns = ", ".join(
        f'{part.alias}."{field.column}"' for part in parts for field in part.model._meta.concrete_fields
    )
    joins = " ".join(
        f'LEFT JOIN {model._meta.db_table} {name[:2]} ON {name[:2]}.id = u."{name}_id"'
        for name, model in _PARTICIPANTS
    )
    # Identifiers from the models' metadata; the prefix is a bound parameter.
    sql = (
        f"SELECT {columns} FROM {ApiKey._meta.db_table} k JOIN {User._meta.db_table} u ON u.id = k.user_id "  # noqa: S608
        f"{joins} WHERE k.prefix = %s LIMIT 1"
    )
    return _Lookup(sql, key, user, tuple(participants))


def api_key_by_prefix(prefix: str) -> ApiKey | None:
    """The key with this (unique, indexed) prefix, revoked or not, with `key.user` and the user's participant
    loaded (no further query reads them); None when no key has it."""
    lookup = _lookup(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(lookup.sql, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    key = lookup.key.build(row)
    user = lookup.user.build(row)
    assert isinstance(key, ApiKey)
    assert isinstance(user, User)
    for name, part in lookup.participants:
        User._meta.get_field(name).set_cached_value(user, part.build(row))  # type: ignore[union-attr]
    ApiKey._meta.get_field("user").set_cached_value(key, user)
    return key
