"""The HTTP side of `Idempotency-Key`: the rules are in services/idempotency.py."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from registry.errors import ValidationFailed
from registry.services.idempotency import idempotency_claim, idempotency_release, idempotency_store

IDEMPOTENCY_HEADER = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description="Same key and body within 24 h returns the first answer and creates nothing new.",
)


def _canonical(data: Any) -> str:
    return json.dumps(data, cls=JSONEncoder, sort_keys=True, separators=(",", ":"))


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Wraps a creating POST handler of a DRF view."""

    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not 1 <= len(key) <= 255:
            raise ValidationFailed({"Idempotency-Key": ["Must be 1 to 255 characters."]})
        path = request.path.rstrip("/")
        fingerprint = hashlib.sha256(
            f"{request.method} {path} {_canonical(request.data)}".encode()
        ).hexdigest()
        with transaction.atomic():
            record, replay = idempotency_claim(
                user=request.user,  # type: ignore[arg-type]
                key=key,
                method=request.method or "POST",
                path=path,
                fingerprint=fingerprint,
                now=timezone.now(),
            )
            if replay is not None:
                replay_check = getattr(view, "idempotent_replay_check", None)
                if replay_check is not None:
                    replay_check(replay.response_body)  # 404 once the caller cannot see the record
                return Response(
                    replay.response_body,
                    status=replay.response_status,
                    headers={"Idempotent-Replayed": "true"},
                )
            response = handler(view, request, *args, **kwargs)
            if 200 <= response.status_code < 300:
                body = json.loads(_canonical(response.data))
                idempotency_store(record=record, status=response.status_code, body=body)
            else:
                idempotency_release(record=record)
        return response

    wrapper.idempotent = True  # type: ignore[attr-defined]
    return wrapper
