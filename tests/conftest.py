"""Role personas as fixtures. Each persona is a real user with a real API key, authenticated the way
clients are: `Authorization: Bearer <key>`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from registry.models import Facility, Pharmacy, Prescriber, User
from registry.services.accounts import (
    admin_user_ensure,
    api_key_issue,
    delegate_add,
    participant_user_ensure,
)

from .factories import FacilityFactory, PharmacyFactory, PrescriberFactory

SQLITE_OPT_IN = "REGISTRY_TESTS_ON_SQLITE"


def pytest_configure(config: pytest.Config) -> None:
    """PostgreSQL is the registry's database and the suite's. The quick start's SQLite is tested too, but
    only when asked for explicitly (`make test` runs the API and gate tests a second time on it)."""
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine == "django.db.backends.sqlite3" and os.environ.get(SQLITE_OPT_IN) == "1":
        return
    if engine != "django.db.backends.postgresql":
        raise pytest.UsageError(
            f"The tests run on PostgreSQL (DATABASE_URL points at {engine}). Use `make test`, or set "
            f"DATABASE_URL=postgres://…; {SQLITE_OPT_IN}=1 runs them on the quick start's SQLite."
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests about PostgreSQL itself (row locks between threads, triggers, a worker's own connection) are
    marked `postgres_only` and skipped on SQLite."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        return
    skip = pytest.mark.skip(reason="PostgreSQL only")
    for item in items:
        if item.get_closest_marker("postgres_only") or item.get_closest_marker("worker"):
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    db = settings.DATABASES["default"]
    return f"registry tests database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST')}:{db.get('PORT')}"


@dataclass
class Persona:
    user: User
    key: str
    client: APIClient
    participant: Any = None

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: Any = None, **kw: Any) -> Any:
        return self.client.post(path, data, format="json", **kw)

    def patch(self, path: str, data: Any = None, **kw: Any) -> Any:
        return self.client.patch(path, data, format="json", **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.client.delete(path, **kw)


def client_with_key(key: str | None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def persona_for(user: User, participant: Any = None) -> Persona:
    _, raw = api_key_issue(user=user, actor=None, name="test")
    return Persona(user=user, key=raw, client=client_with_key(raw), participant=participant)


def participant_persona(participant: Prescriber | Facility | Pharmacy) -> Persona:
    return persona_for(participant_user_ensure(participant=participant, actor=None), participant)


@pytest.fixture(autouse=True)
def _clear_throttle_cache() -> None:
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def anon() -> Persona:
    return Persona(user=None, key="", client=client_with_key(None))  # type: ignore[arg-type]


@pytest.fixture
def admin(db: None) -> Persona:
    return persona_for(admin_user_ensure(username="rems-admin"))


@pytest.fixture
def prescriber(db: None) -> Persona:
    return participant_persona(PrescriberFactory(certified=True))


@pytest.fixture
def other_prescriber(db: None) -> Persona:
    return participant_persona(PrescriberFactory(certified=True))


@pytest.fixture
def delegate(prescriber: Persona) -> Persona:
    user, _, raw = delegate_add(
        prescriber=prescriber.participant,
        actor=prescriber.user,
        email="office@example.org",
        first_name="Olive",
        last_name="Office",
    )
    return Persona(user=user, key=raw, client=client_with_key(raw), participant=prescriber.participant)


@pytest.fixture
def other_delegate(other_prescriber: Persona) -> Persona:
    user, _, raw = delegate_add(
        prescriber=other_prescriber.participant,
        actor=other_prescriber.user,
        email="other-office@example.org",
        first_name="Otto",
        last_name="Office",
    )
    return Persona(user=user, key=raw, client=client_with_key(raw), participant=other_prescriber.participant)


@pytest.fixture
def pharmacy(db: None) -> Persona:
    return participant_persona(PharmacyFactory(certified=True))


@pytest.fixture
def facility(db: None) -> Persona:
    return participant_persona(FacilityFactory(certified=True))
