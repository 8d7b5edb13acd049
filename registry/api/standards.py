"""What the standards endpoints (NCPDP SCRIPT, FHIR) share: a capped body read, one answer format whatever
the `Accept` header says, and an OpenAPI schema that documents their own error bodies only."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request

from registry.api.schema import RegistryAutoSchema


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "payload_too_large"
    default_detail = "The body is too large."


def read_capped(stream: Any, *, limit: int, declared: str | None) -> bytes:
    """Reads at most `limit` bytes; refuses (413) without reading when the declared length is larger."""
    try:
        length = int(declared or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise PayloadTooLarge(f"The body exceeds {limit} bytes.")
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise PayloadTooLarge(f"The body exceeds {limit} bytes.")
    return bytes(body)


class OneFormatNegotiation(BaseContentNegotiation):
    """A standard fixes its answer's format: an NCPDP system gets XML, a FHIR client FHIR JSON, whatever
    `Accept` says (so no 406). The parsers are chosen by `Content-Type` as usual."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        return next((p for p in parsers if p.media_type == media_type), None)

    def select_renderer(self, request: Request, renderers: Any, format_suffix: Any = None) -> Any:
        renderer = renderers[0]
        return renderer, renderer.media_type


class StandardsAutoSchema(RegistryAutoSchema):
    """Keeps only the responses documented in the view's own media type: the registry-wide defaults
    (JSON `Error` bodies) do not describe what these endpoints answer."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        media_type = getattr(self.view, "answer_media_type", None)
        if media_type is None:
            return responses
        return {code: r for code, r in responses.items() if media_type in r.get("content", {})}
