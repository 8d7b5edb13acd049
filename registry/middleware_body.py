"""Request bodies over the size limit answer 413 `payload_too_large` in the JSON error contract, before
anything reads them (issue 8, item 4).

Django enforces DATA_UPLOAD_MAX_MEMORY_SIZE only when `request.body` or `request.POST` is read; DRF's
parsers read the stream directly, so without this a body of any size would be parsed. A declared
Content-Length over the limit is refused unread. A chunked body (no Content-Length) is read up to one byte
past the limit: over it, 413; within it, the body is handed on with its length, so chunked uploads parse
like any other instead of reading as empty.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse

from registry.errors import ErrorCode


def payload_too_large_response() -> JsonResponse:
    return JsonResponse(
        {"code": ErrorCode.PAYLOAD_TOO_LARGE, "detail": body_limit_detail()},
        status=ErrorCode.PAYLOAD_TOO_LARGE.http_status,
    )


def body_limit() -> int | None:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def body_limit_detail() -> str:
    limit = body_limit()
    return f"The request body is larger than the registry accepts ({limit} bytes)."


# The standards endpoints cap their bodies themselves, far lower (NCPDP_MAX_BODY_BYTES, FHIR_MAX_BODY_BYTES),
# and answer in their own formats (an NCPDP `Error`, a FHIR `OperationOutcome`): left to them.
OWN_LIMIT_PREFIXES = ("/api/ncpdp/", "/api/fhir/")


class BodySizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = body_limit()
        if limit is None or request.path.startswith(OWN_LIMIT_PREFIXES):
            return self.get_response(request)
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            return payload_too_large_response()
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        wsgi_input = request.META.get("wsgi.input")
        if chunked and not declared and wsgi_input is not None:
            data = wsgi_input.read(limit + 1)
            if len(data) > limit:
                return payload_too_large_response()
            request._stream = LimitedStream(io.BytesIO(data), len(data))  # type: ignore[assignment]
            request.META["CONTENT_LENGTH"] = str(len(data))
        return self.get_response(request)
