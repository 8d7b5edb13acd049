"""The one error contract (API.md): `{"code", "detail", "errors"?}` plus rule-specific extras
(`missing`, `reasons`). Every error the API can answer passes through `exception_handler`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from registry.errors import ErrorCode, PayloadTooLarge, RegistryError

_DRF_CODES: dict[type[exceptions.APIException], ErrorCode] = {
    exceptions.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    exceptions.AuthenticationFailed: ErrorCode.AUTHENTICATION_FAILED,
    exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    exceptions.NotFound: ErrorCode.NOT_FOUND,
    exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.Throttled: ErrorCode.THROTTLED,
    exceptions.ParseError: ErrorCode.PARSE_ERROR,
    exceptions.ValidationError: ErrorCode.VALIDATION_ERROR,
}


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Nested serializer errors as `{"field": [...]}` / `{"results.3.test": [...]}`."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            out.update(flatten_errors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(detail, list) and detail and all(not isinstance(v, dict | list) for v in detail):
        out[prefix or "non_field_errors"] = [str(v) for v in detail]
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if value:
                out.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "detail": detail, **extra}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):  # issue 8: the JSON contract, no traceback
        exc = PayloadTooLarge()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)

    if isinstance(exc, RegistryError):
        set_rollback()
        return Response(error_body(exc.code, exc.detail, **exc.extra), status=exc.status_code)

    if not isinstance(exc, exceptions.APIException):
        return None  # a genuine server error: let Django log it and answer 500

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
    # A DRF exception may name its own `ErrorCode` (`error_code`, e.g. 401 `key_inactive`, which keeps
    # DRF's WWW-Authenticate header); otherwise its class decides.
    code: ErrorCode = getattr(exc, "error_code", None) or next(
        (c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), ErrorCode.INVALID_REQUEST
    )
    set_rollback()
    if isinstance(exc, exceptions.ValidationError):
        body = error_body(code, "Invalid input.", errors=flatten_errors(exc.detail))
    else:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        body = error_body(code, str(detail))
    return Response(body, status=exc.status_code, headers=headers)


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body(ErrorCode.NOT_FOUND, "Not found."), status=status.HTTP_404_NOT_FOUND)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body(
            ErrorCode.SERVER_ERROR, "The registry could not complete the request; nothing was changed."
        ),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body(ErrorCode.BAD_REQUEST, "Bad request."), status=status.HTTP_400_BAD_REQUEST)
