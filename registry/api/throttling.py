"""The rate limit, held in a store every worker shares (issue 8, item 4): a per-process cache would let
N workers allow N times the rate.

Fixed one-window counters: each request adds one hit to its caller's counter for the current window
(`duration` seconds, aligned to the epoch) in one atomic step, and is refused once the count passes the
rate. Two stores:

- ``database`` (default): one upsert statement on `registry_throttlebucket` per request (PostgreSQL, and
  SQLite 3.35+ for the quick start); atomic, so concurrent workers never lose a hit.
- ``cache``: Django's default cache. On Redis (`CACHE_URL=redis://…`, what production should use, and
  the default store when the cache is Redis) one MULTI/EXEC round trip, `INCR` + `EXPIRE NX`; on another
  cache backend `add` + `incr`.
"""

from __future__ import annotations

import math
from functools import cache as cache_function
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

_UPSERT = (
    'INSERT INTO registry_throttlebucket ("key", window_start, hits) VALUES (%s, %s, 1) '
    'ON CONFLICT ("key") DO UPDATE SET hits = CASE WHEN registry_throttlebucket.window_start = '
    "excluded.window_start THEN registry_throttlebucket.hits + 1 ELSE 1 END, "
    "window_start = excluded.window_start RETURNING hits"
)


def _hit_database(key: str, window: int) -> int:
    """One atomic statement: a new window restarts the count at 1."""
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT, [key, window])
        row = cursor.fetchone()
    return int(row[0])


@cache_function
def _redis_client_for(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _redis_client() -> Any | None:
    """One redis-py client per process and server for the limiter, on the default cache's (write) server,
    or None when the default cache is not Redis. Django's own Redis cache builds a client object on every
    call and needs two round trips (`add`, then `incr`); the hit below is one (issue 13). Keyed by the
    server's URL, so a changed setting is never answered by an old client."""
    if not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        return None
    location = settings.CACHES["default"]["LOCATION"]
    url = location[0] if isinstance(location, list | tuple) else str(location).split(",")[0]
    return _redis_client_for(url)


def _hit_cache(key: str, window: int, duration: int) -> int:
    name = f"{key}:{window}"
    bucket = cache.make_key(name)  # the same key Django's cache would use, so `cache.get(name)` reads it
    client = _redis_client()
    if client is not None:
        # INCR creates the counter at 1; EXPIRE NX gives it a lifetime once. MULTI/EXEC: one round trip,
        # atomic whichever worker asks.
        pipe = client.pipeline(transaction=True)
        pipe.incr(bucket)
        pipe.expire(bucket, duration * 2, nx=True)
        hits, _ = pipe.execute()
        return int(hits)
    cache.add(name, 0, timeout=duration * 2)
    try:
        return int(cache.incr(name))
    except ValueError:  # expired between add and incr
        cache.add(name, 1, timeout=duration * 2)
        return 1


def throttle_buckets_purge(*, now: float) -> int:
    """Deletes the database store's counters whose window has ended (each throttle scope by its own
    window length): a counter is one row per caller ever seen, so callers that never come back (the
    addresses of a key-guessing run, say) would otherwise stay forever. A counter in its current window
    is kept, so no count is lost; a deleted one would restart at 1 anyway. Returns how many went."""
    from registry.models import ThrottleBucket

    deleted = 0
    for throttle_class in (ApiKeyRateThrottle,):
        throttle = throttle_class()
        if throttle.rate is None:
            continue
        prefix = throttle.cache_format % {"scope": throttle.scope, "ident": ""}
        current = int(now // throttle.duration)
        count, _ = ThrottleBucket.objects.filter(key__startswith=prefix, window_start__lt=current).delete()
        deleted += count
    return deleted


def throttle_hit(*, key: str, window: int, duration: int) -> int:
    """Counts one request for `key` in `window`; returns the window's count including this one."""
    if getattr(settings, "THROTTLE_STORE", "database") == "cache":
        return _hit_cache(key, window, duration)
    return _hit_database(key, window)


class SharedRateThrottle(SimpleRateThrottle):
    """DRF's rate syntax (`"1200/min"`), counted in the shared store."""

    window_end: float
    duration: int
    num_requests: int

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_end = (window + 1) * self.duration
        hits = throttle_hit(key=self.key, window=window, duration=self.duration)
        return hits <= self.num_requests

    def wait(self) -> float:
        return float(max(1, math.ceil(self.window_end - self.now)))


class ApiKeyRateThrottle(SharedRateThrottle):
    """Per API key (the same user with two keys has two budgets); per address when unauthenticated."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        key = request.auth
        ident = f"key-{key.pk}" if key is not None else f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
