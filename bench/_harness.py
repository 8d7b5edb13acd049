"""Shared set-up for the benchmarks: Django on a throw-away PostgreSQL database, timing helpers.

Benchmarks print figures and ratios against a baseline measured in the same run; they never pass or fail
on time."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402


def bench_database(name: str) -> None:
    """Creates (and migrates) a fresh database for the run; refuses anything but PostgreSQL."""
    if connection.vendor != "postgresql":
        sys.exit("benchmarks run on PostgreSQL: set DATABASE_URL=postgres://…")
    setup_test_environment()
    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    # Throttling would measure the limiter, not the registry.
    from registry.api.throttling import ApiKeyRateThrottle

    ApiKeyRateThrottle.THROTTLE_RATES = {"api_key": "100000000/min"}


def drop_bench_database() -> None:
    connection.creation.destroy_test_db(settings.DATABASES["default"]["NAME"], verbosity=0)
    teardown_test_environment()  # so that a benchmark may create the next database (one per size)


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)
