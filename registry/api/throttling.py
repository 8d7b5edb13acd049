"""The rate limit as DRF throttles (issue 8, item 4): each request adds one hit to its caller's counter for
the current window and is refused once the count passes the rate. The counters live in a store every
worker shares (registry/services/rate_limits.py); a per-process cache would let N workers allow N times
the rate.
"""

from __future__ import annotations

import math
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from registry.services.rate_limits import KEY_FORMAT, throttle_hit


class SharedRateThrottle(SimpleRateThrottle):
    """DRF's rate syntax (`"1200/min"`), counted in the shared store."""

    cache_format = KEY_FORMAT
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
