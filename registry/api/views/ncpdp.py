"""`POST /api/ncpdp/rems`: NCPDP SCRIPT REMS transactions (API.md "Standards endpoints").

Everything this endpoint answers is an NCPDP message, errors included: a pharmacy system reads one
format. The body is read size-capped and parsed with defusedxml (registry/ncpdp_xml.py); the REMSRequest's
gate input is validated by the JSON endpoint's own serializer before the one gate service runs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.api.serializers.treatment import AuthorizationRequestSerializer
from registry.api.standards import OneFormatNegotiation, PayloadTooLarge, StandardsAutoSchema, read_capped
from registry.errors import ErrorCode, RegistryError
from registry.models import NcpdpTransaction
from registry.ncpdp_xml import (
    TRANSACTION_REJECTED,
    TRY_LATER,
    UNABLE_TO_PROCESS,
    NcpdpError,
    error_render,
    message_parse,
)
from registry.permissions import GATE_PARTIES
from registry.services import ncpdp

from . import standards_examples as examples
from .base import ThrottleFailuresMixin

XML = "application/xml"


class NcpdpXmlParser(BaseParser):
    """Hands the view the raw body (capped at NCPDP_MAX_BODY_BYTES); parsing is `message_parse`'s."""

    media_type = "application/xml"

    def parse(  # type: ignore[override]
        self, stream: Any, media_type: str | None = None, parser_context: Any = None
    ) -> bytes:
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        return read_capped(stream, limit=settings.NCPDP_MAX_BODY_BYTES, declared=declared)


class NcpdpTextXmlParser(NcpdpXmlParser):
    media_type = "text/xml"


class NcpdpXmlRenderer(BaseRenderer):
    media_type = XML
    format = "xml"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> Any:
        return data


# Which NCPDP Error/Code and DescriptionCode stand for the HTTP-level refusals.
_HTTP_ERRORS: tuple[tuple[type[exceptions.APIException], str, ErrorCode], ...] = (
    (exceptions.NotAuthenticated, UNABLE_TO_PROCESS, ErrorCode.NOT_AUTHENTICATED),
    (exceptions.AuthenticationFailed, UNABLE_TO_PROCESS, ErrorCode.AUTHENTICATION_FAILED),
    (exceptions.PermissionDenied, UNABLE_TO_PROCESS, ErrorCode.PERMISSION_DENIED),
    (exceptions.Throttled, TRY_LATER, ErrorCode.THROTTLED),
    (exceptions.UnsupportedMediaType, TRANSACTION_REJECTED, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.NotAcceptable, TRANSACTION_REJECTED, ErrorCode.NOT_ACCEPTABLE),
    (exceptions.MethodNotAllowed, TRANSACTION_REJECTED, ErrorCode.METHOD_NOT_ALLOWED),
    (PayloadTooLarge, TRANSACTION_REJECTED, ErrorCode.PAYLOAD_TOO_LARGE),
    (exceptions.ParseError, TRANSACTION_REJECTED, ErrorCode.MALFORMED_XML),
)

# The gate serializer's fields, as the REMSRequest elements that carry them.
_ELEMENTS = {
    "rems_patient_id": "Patient/HumanPatient/Identification/REMSPatientID",
    "date_of_birth": "Patient/HumanPatient/DateOfBirth/Date",
    "prescriber_npi": "Prescriber/NonVeterinarian/Identification/NPI",
    "facility_npi": "Facility/Identification/NPI",
    "doses_requested": "MedicationPrescribed/Quantity/Value",
}


def _xml_response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, content_type="application/xml; charset=utf-8", headers=headers)


def _error_doc(status: int, text: str) -> OpenApiResponse:
    return OpenApiResponse(
        OpenApiTypes.STR,
        description=text
        + " The body is an NCPDP `Error` message (`Code`, `DescriptionCode`, `Description`).",
        examples=[OpenApiExample(f"error-{status}", value=examples.NCPDP_ERROR, media_type=XML)],
    )


class NcpdpRemsView(ThrottleFailuresMixin, APIView):
    """NCPDP SCRIPT (2017071) REMS transactions for pharmacy and healthcare-setting systems."""

    roles = {"post": GATE_PARTIES}
    parser_classes = [NcpdpXmlParser, NcpdpTextXmlParser]
    renderer_classes = [NcpdpXmlRenderer]
    content_negotiation_class = OneFormatNegotiation
    schema = StandardsAutoSchema()
    answer_media_type = XML

    @extend_schema(
        operation_id="ncpdp_rems",
        tags=["standards"],
        summary="NCPDP SCRIPT REMS transaction",
        description=(
            "An NCPDP SCRIPT `Message` whose `Body` holds a `REMSInitiationRequest` or a `REMSRequest` "
            "(pharmacy or facility key; REMSRequest: pharmacy only). Answers the matching "
            "`REMSInitiationResponse` / `REMSResponse`, or an `Error` message. The answer's "
            "`RelatesToMessageID` is the request's `MessageID`; a repeated `MessageID` from the same "
            "sender replays the first answer (`Idempotent-Replayed: true`). See docs/standards.md."
        ),
        request={XML: OpenApiTypes.STR, "text/xml": OpenApiTypes.STR},
        examples=[
            OpenApiExample(
                "REMSRequest", value=examples.NCPDP_REMS_REQUEST, media_type=XML, request_only=True
            ),
            OpenApiExample(
                "REMSInitiationRequest",
                value=examples.NCPDP_INITIATION_REQUEST,
                media_type=XML,
                request_only=True,
            ),
        ],
        responses={
            (200, XML): OpenApiResponse(
                OpenApiTypes.STR,
                description="`REMSResponse` (Approved or Denied) or `REMSInitiationResponse` (Open or Closed).",
                examples=[
                    OpenApiExample("Approved", value=examples.NCPDP_APPROVED, media_type=XML),
                    OpenApiExample("Denied", value=examples.NCPDP_DENIED, media_type=XML),
                    OpenApiExample("Open", value=examples.NCPDP_INITIATION_OPEN, media_type=XML),
                    OpenApiExample("Closed", value=examples.NCPDP_INITIATION_CLOSED, media_type=XML),
                ],
            ),
            (400, XML): _error_doc(
                400,
                "Malformed XML, a DTD or entity declaration, a wrong root, a missing or invalid element, "
                "an unsupported transaction or a medication outside this REMS.",
            ),
            (401, XML): _error_doc(401, "No or bad API key."),
            (403, XML): _error_doc(
                403, "The caller may not send this transaction, or the message names another pharmacy."
            ),
            (405, XML): _error_doc(405, "Method not allowed."),
            (409, XML): _error_doc(
                409, "This MessageID was already used by this sender for another message."
            ),
            (413, XML): _error_doc(413, "The body exceeds NCPDP_MAX_BODY_BYTES (64 KiB)."),
            (415, XML): _error_doc(415, "Send `Content-Type: application/xml`."),
            (429, XML): _error_doc(429, "Throttled; see `Retry-After`."),
        },
    )
    def post(self, request: Request) -> Response:
        body: Any = request.data
        if not isinstance(body, bytes):
            body = b""  # an empty body parses to nothing
        envelope = message_parse(body, max_bytes=settings.NCPDP_MAX_BODY_BYTES)
        now = timezone.now()
        gate_data = None
        if envelope.transaction == NcpdpTransaction.REMS_REQUEST:
            raw = ncpdp.rems_request_data(actor=request.user, envelope=envelope)  # type: ignore[arg-type]
            serializer = AuthorizationRequestSerializer(data=raw)
            if not serializer.is_valid():
                field, messages = next(iter(serializer.errors.items()))
                raise NcpdpError(
                    ErrorCode.INVALID_ELEMENT,
                    f"Message/Body/REMSRequest/{_ELEMENTS.get(field, field)}: {' '.join(map(str, messages))}",
                    relates_to=envelope.message_id,
                    reply_to=envelope.header_from,
                )
            gate_data = dict(serializer.validated_data)
        answer = ncpdp.ncpdp_message_receive(
            actor=request.user,  # type: ignore[arg-type]
            envelope=envelope,
            now=now,
            gate_data=gate_data,
        )
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
        return _xml_response(answer.xml, answer.status, headers)

    def handle_exception(self, exc: Exception) -> Response:
        """Every refusal is an NCPDP `Error` message: a pharmacy system reads one format."""
        now = timezone.now()
        headers: dict[str, str] = {}
        if isinstance(exc, NcpdpError):
            error = exc
        elif isinstance(exc, RegistryError):
            error = NcpdpError(exc.code, exc.detail)
        elif isinstance(exc, exceptions.APIException):
            code, description_code = next(
                ((c, d) for cls, c, d in _HTTP_ERRORS if isinstance(exc, cls)),
                (TRANSACTION_REJECTED, None),
            )
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            # An exception naming its own code (401 `key_inactive`, ACT-5) keeps it.
            description_code = getattr(exc, "error_code", None) or description_code
            error = NcpdpError(description_code or ErrorCode.INVALID_REQUEST, str(detail), code=code)
            if description_code is None:
                error.status = exc.status_code  # an exception this view does not expect: keep its status
            if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
                headers["WWW-Authenticate"] = self.get_authenticate_header(self.request) or "Bearer"
            if getattr(exc, "wait", None):
                headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        else:
            return super().handle_exception(exc)  # a genuine server error
        return _xml_response(error_render(error, now=now).xml, error.status, headers)


__all__ = ["NcpdpRemsView"]
