"""Domain errors. Each carries an HTTP status and a stable machine code; one exception handler
(registry/api/exceptions.py) renders them as `{"code", "detail", ...extra}`. Clients branch on `code`."""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    status_code = 400
    code = "invalid_request"
    default_detail = "The request could not be processed."

    def __init__(self, detail: str | None = None, *, code: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.default_detail
        if code:
            self.code = code
        self.extra = extra
        super().__init__(self.detail)


class ValidationFailed(RegistryError):
    """Input that a serializer cannot see is wrong (e.g. a date relative to another record)."""

    status_code = 400
    code = "validation_error"
    default_detail = "Invalid input."

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, errors=errors, **extra)


class NotFound(RegistryError):
    status_code = 404
    code = "not_found"
    default_detail = "Not found."


class PermissionDenied(RegistryError):
    status_code = 403
    code = "permission_denied"
    default_detail = "Your role may not do this."


class Conflict(RegistryError):
    status_code = 409
    code = "conflict"
    default_detail = "The request conflicts with the current state."


class DuplicateIdentifier(Conflict):
    code = "duplicate_identifier"
    default_detail = "A participant with this identifier is already registered."


class InvalidTransition(Conflict):
    code = "invalid_status_transition"
    default_detail = "This status change is not allowed from the current status."


class CertificationRequirementsUnmet(Conflict):
    """ACT-2..4: `missing` lists every unmet requirement."""

    code = "certification_requirements_unmet"
    default_detail = "The participant does not yet meet the certification requirements."


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was already used with a different request."


# --- Access follows certification (ACT-1, ACT-5; API.md "Access, duplicates and lookups") ---------------


class KeyInactive(RegistryError):
    """ACT-5: a key of a deactivated participant (or of a deactivated prescriber's delegate) no longer
    authenticates."""

    status_code = 401
    code = "key_inactive"
    default_detail = "This API key is inactive: its participant is deactivated."


class ParticipantSuspended(PermissionDenied):
    """ACT-5: a suspended (or certification-expired) participant keeps its reads, and a prescriber and its
    delegates keep recording monitoring labs and status forms; every other write is refused."""

    code = "participant_suspended"
    default_detail = (
        "The participant is suspended or its certification has expired: only reads (and, for a "
        "prescriber's care team, monitoring labs and status forms) are allowed."
    )


class PayloadTooLarge(RegistryError):
    status_code = 413
    code = "payload_too_large"
    default_detail = "The request body is larger than the registry accepts."
