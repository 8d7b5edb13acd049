"""Where an approved dispense authorization's time goes, in process (issue 13): the requests of
`bench/wire.py` sent through Django's whole handler (every middleware, DRF, the key check and the rate limit
counted in Redis, as under gunicorn) by the test client, without HTTP and without load, on the same seeded
registry. For each case it prints the median request, the median time spent waiting on PostgreSQL (each
statement as the client sees it, plus the commit), and the rest (Python: Django, DRF, the registry's own
code); for the approved authorization, each statement apart.

The last lines answer one question with the figures of this run: how far could the authorization go if its
own Python cost nothing? Its database time alone is compared with a whole `GET /me`.

Nothing here passes or fails on time; read the ratios.

    make bench-profile      # or: DATABASE_URL=postgres://… .venv/bin/python bench/gate_profile.py [--requests N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# The rate limit counts in Redis, as under gunicorn in bench/wire.py and in production.
os.environ.setdefault("CACHE_URL", os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/13"))

from _harness import bench_database, drop_bench_database, median
from django.db import connection
from django.test import Client
from django.utils import timezone
from wire import authorization_body, program_seed

WARM_UP = 30


class DatabaseClock:
    """Client-side time of every statement (an execute wrapper) and of every commit, per request."""

    def __init__(self) -> None:
        self.statements: dict[str, list[float]] = defaultdict(list)
        self.spent = 0.0
        self.commit_spent = 0.0
        self.commits: list[float] = []

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - start
            self.spent += elapsed
            self.statements[" ".join(sql.split())[:72]].append(elapsed)

    def commit_timed(self) -> Callable[[], None]:
        commit = connection._commit

        def timed() -> None:
            start = time.perf_counter()
            try:
                commit()
            finally:
                elapsed = time.perf_counter() - start
                self.commit_spent += elapsed
                self.commits.append(elapsed)

        return timed


def measure(request: Callable[[], None], count: int) -> tuple[list[float], list[float], DatabaseClock]:
    clock = DatabaseClock()
    totals: list[float] = []
    waits: list[float] = []
    original = connection._commit
    connection._commit = clock.commit_timed()  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(clock):
            for _ in range(count):
                clock.spent = clock.commit_spent = 0.0
                start = time.perf_counter()
                request()
                totals.append(time.perf_counter() - start)
                waits.append(clock.spent + clock.commit_spent)
    finally:
        connection._commit = original  # type: ignore[method-assign]
    return totals, waits, clock


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per case")
    args = parser.parse_args()
    bench_database("registry_bench_profile")
    try:
        program = program_seed(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        client = Client(HTTP_HOST="localhost")
        pharmacy = {"HTTP_AUTHORIZATION": f"Bearer {program.pharmacy_key}"}
        turn = {"approve": 0, "deny": 0}

        def call(method: str, path: str, expect: int, body: str | None = None) -> None:
            if method == "GET":
                response = client.get(path, **pharmacy)
            else:
                response = client.post(path, data=body, content_type="application/json", **pharmacy)
            if response.status_code != expect:
                raise SystemExit(f"{method} {path}: {response.status_code} {response.content[:300]!r}")

        def authorization(kind: str) -> Callable[[], None]:
            patients = program.approve if kind == "approve" else program.deny

            def request() -> None:
                patient = patients[turn[kind] % len(patients)]
                turn[kind] += 1
                call("POST", "/api/v1/dispense-authorizations", 201, authorization_body(patient))

            return request

        cases = {
            "GET /api/v1/health": lambda: client.get("/api/v1/health"),
            "GET /api/v1/me": lambda: call("GET", "/api/v1/me", 200),
            "POST dispense-authorizations, approved": authorization("approve"),
            "POST dispense-authorizations, denied": authorization("deny"),
        }
        for request in cases.values():
            for _ in range(WARM_UP):
                request()
        # 300 approved patients with 1 dose each of 5: more requests than patients x 4 run out of doses.
        count = min(args.requests, len(program.approve) * 3)
        print(f"\n{count} requests per case, in process (Django's handler, no HTTP); medians in ms")
        print(f"  {'case':<40} {'request':>8} {'database':>9} {'python':>7}")
        results: dict[str, tuple[float, float]] = {}
        approve_clock: DatabaseClock | None = None
        for name, request in cases.items():
            totals, waits, clock = measure(request, count)
            total, wait = median(totals) * 1000, median(waits) * 1000
            results[name] = (total, wait)
            print(f"  {name:<40} {total:8.2f} {wait:9.2f} {total - wait:7.2f}")
            if "approved" in name:
                approve_clock = clock
        assert approve_clock is not None
        print("\nthe approved authorization's statements (client side, median ms; the commit apart):")
        for sql, samples in approve_clock.statements.items():
            print(f"  {median(samples) * 1000:6.3f}  {sql}")
        print(f"  {median(approve_clock.commits) * 1000:6.3f}  COMMIT")
        me_total, me_wait = results["GET /api/v1/me"]
        approve_total, approve_wait = results["POST dispense-authorizations, approved"]
        me_python = me_total - me_wait
        print(
            f"\napproved / /me, whole requests: {approve_total / me_total:.2f}x"
            f"\napproved's database time alone / a whole /me: {approve_wait / me_total:.2f}x"
            f"\napproved's Python beyond /me's: {approve_total - approve_wait - me_python:.2f} ms"
            "\nlower bound, were the approval's own Python free (its database time + the Python /me pays)"
            f" / /me: {(approve_wait + me_python) / me_total:.2f}x"
        )
    finally:
        connection.close()
        drop_bench_database()


if __name__ == "__main__":
    main()
