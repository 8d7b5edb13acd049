"""The rate limit's shared store (issue 8, item 4): a per-process cache would let N workers allow N times
the rate. The DRF throttle classes (registry/api/throttling.py) count through `throttle_hit`; the hourly
Celery task `purge_rate_limit_counters` calls `throttle_buckets_purge`.

Fixed one-window counters: each request adds one hit to its caller's counter for the current window
(`duration` seconds, aligned to the epoch) in one atomic step. Two stores (setting `THROTTLE_STORE`):

- ``database`` (default): one upsert statement on `registry_throttlebucket` per request (PostgreSQL, and
  SQLite 3.35+ for the quick start); atomic, so concurrent workers never lose a hit.
- ``cache``: Django's default cache. On Redis (`CACHE_URL=redis://…`, what production should use, and
  the default store when the cache is Redis) one MULTI/EXEC round trip, `INCR` + `EXPIRE NX`; on another
  cache backend `add` + `incr`.
"""

from __future__ import annotations

from functools import cache as cache_function
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection

# A counter's key: its scope and the caller (DRF's own `cache_format`, which the throttle classes use).
KEY_FORMAT = "throttle_%(scope)s_%(ident)s"

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


def rate_window_seconds(rate: str) -> int:
    """The window of a DRF-style rate ("1200/min" -> 60), as DRF's `SimpleRateThrottle.parse_rate` reads it."""
    return {"s": 1, "m": 60, "h": 3600, "d": 86400}[rate.split("/", 1)[1][0]]


def throttle_buckets_purge(*, now: float) -> int:
    """Deletes the database store's counters whose window has ended (each rate-limit scope by its own
    window length, from `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`): a counter is one row per caller ever
    seen, so callers that never come back (the addresses of a key-guessing run, say) would otherwise stay
    forever. A counter in its current window is kept, so no count is lost; a deleted one would restart at
    1 anyway. Returns how many went."""
    from registry.models import ThrottleBucket

    deleted = 0
    rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
    for scope, rate in sorted(rates.items()):
        if not rate:
            continue
        prefix = KEY_FORMAT % {"scope": scope, "ident": ""}
        current = int(now // rate_window_seconds(rate))
        count, _ = ThrottleBucket.objects.filter(key__startswith=prefix, window_start__lt=current).delete()
        deleted += count
    return deleted


def throttle_hit(*, key: str, window: int, duration: int) -> int:
    """Counts one request for `key` in `window`; returns the window's count including this one."""
    if getattr(settings, "THROTTLE_STORE", "database") == "cache":
        return _hit_cache(key, window, duration)
    return _hit_database(key, window)
