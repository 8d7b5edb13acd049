"""The caller's network address, the same way for every limit that keys on it: the rate limit of
unauthenticated calls (DRF's `NUM_PROXIES`) and the admin login lockout (django-axes).

With `TRUSTED_PROXY_COUNT` = 0 (the default) it is REMOTE_ADDR and X-Forwarded-For is ignored, so a
client cannot choose its own address. Behind n reverse proxies that each append to X-Forwarded-For
(docker-compose: n = 1), it is the n-th address from the right: the one the outermost trusted proxy saw.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0))
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    addresses = [a.strip() for a in forwarded.split(",") if a.strip()]
    if not addresses:
        return remote
    return addresses[-min(proxies, len(addresses))]
