"""Every machine code the API can answer, in one place, and the domain errors that carry them.

`ErrorCode` is the top-level `code` of an error body, each with its HTTP status; `ReasonCode` is the `code`
of one failed requirement inside `reasons` (denials, `do_not_infuse`, `course_not_allowed`,
`authorization_requirements_unmet`). One exception handler (registry/api/exceptions.py) renders a
`RegistryError` as `{"code", "detail", ...extra}`; clients branch on `code`. docs/api.md lists them all and
tests/test_docs.py keeps its tables and these enumerations equal (each error code with its HTTP status).
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    """Top-level error codes and their HTTP status."""

    http_status: int

    def __new__(cls, value: str, http_status: int) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.http_status = http_status
        return member

    # 400: the request itself is wrong.
    INVALID_REQUEST = "invalid_request", 400
    VALIDATION_ERROR = "validation_error", 400
    PARSE_ERROR = "parse_error", 400
    BAD_REQUEST = "bad_request", 400
    PATIENT_UNDER_MINIMUM_AGE = "patient_under_minimum_age", 400  # ACT-9
    # Standards endpoints (issue 14): an NCPDP message the registry cannot read (`Error/DescriptionCode`).
    MALFORMED_XML = "malformed_xml", 400
    XML_DECLARATIONS_REFUSED = "xml_declarations_refused", 400  # DTDs, entities: XXE, entity expansion
    WRONG_ROOT = "wrong_root", 400
    MISSING_ELEMENT = "missing_element", 400
    INVALID_ELEMENT = "invalid_element", 400
    UNSUPPORTED_TRANSACTION = "unsupported_transaction", 400
    MEDICATION_NOT_IN_PROGRAM = "medication_not_in_program", 400
    UNKNOWN_ENROLLMENT_ID = "unknown_enrollment_id", 400
    # 401: no key, or a key that does not authenticate.
    NOT_AUTHENTICATED = "not_authenticated", 401
    AUTHENTICATION_FAILED = "authentication_failed", 401
    KEY_INACTIVE = "key_inactive", 401  # ACT-5: the key's participant is deactivated
    # 403: the caller's role may not do this.
    PERMISSION_DENIED = "permission_denied", 403
    PARTICIPANT_SUSPENDED = "participant_suspended", 403  # ACT-5: suspended or expired: reads only
    PHARMACY_MISMATCH = "pharmacy_mismatch", 403  # an NCPDP message naming another pharmacy than the key's
    TRANSACTION_NOT_ALLOWED = "transaction_not_allowed", 403  # a facility's NCPDP REMSRequest
    # 404: unknown, or not visible to the caller.
    NOT_FOUND = "not_found", 404
    METHOD_NOT_ALLOWED = "method_not_allowed", 405
    NOT_ACCEPTABLE = "not_acceptable", 406
    PAYLOAD_TOO_LARGE = (
        "payload_too_large",
        413,
    )  # a body over DATA_UPLOAD_MAX_MEMORY_SIZE (or NCPDP/FHIR limit)
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415
    THROTTLED = "throttled", 429
    # 409: the request conflicts with the registry's state.
    CONFLICT = "conflict", 409
    DUPLICATE_IDENTIFIER = "duplicate_identifier", 409  # ACT-5
    IDENTIFIER_LOCKED = "identifier_locked", 409  # ACT-5
    CERTIFICATION_REQUIREMENTS_UNMET = "certification_requirements_unmet", 409  # ACT-2..4
    INVALID_STATUS_TRANSITION = "invalid_status_transition", 409  # ACT-5, ACT-8, CRS-3, GATE-2
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused", 409
    USER_ROLE_CONFLICT = "user_role_conflict", 409
    PRESCRIBER_NOT_CERTIFIED = "prescriber_not_certified", 409  # ACT-6, ACT-8
    ALREADY_PRESCRIBER_OF_RECORD = "already_prescriber_of_record", 409  # ACT-8
    AUTHORIZATION_REQUIREMENTS_UNMET = "authorization_requirements_unmet", 409  # ACT-7
    COURSE_NOT_ALLOWED = "course_not_allowed", 409  # CRS-2..4
    DO_NOT_INFUSE = "do_not_infuse", 409  # GATE-3
    AUTHORIZATION_NOT_FOUND = "authorization_not_found", 409  # GATE-2
    AUTHORIZATION_USED = "authorization_used", 409  # GATE-2
    AUTHORIZATION_EXPIRED = "authorization_expired", 409  # GATE-2
    AUTHORIZATION_REVOKED = "authorization_revoked", 409  # GATE-2
    VIALS_EXCEED_AUTHORIZATION = "vials_exceed_authorization", 409  # GATE-2
    POSSIBLE_DUPLICATE_PATIENT = "possible_duplicate_patient", 409  # ACT-6, CRS-2: one person, one record
    PARTICIPANT_DEACTIVATED = "participant_deactivated", 409  # ACT-5: no new keys or delegates
    DOB_LOCK_NOT_ACTIVE = "dob_lock_not_active", 409  # ID-4: lifting a lock that is not in force
    NO_REPRODUCTIVE_POTENTIAL = "no_reproductive_potential", 409  # PRG-2: no report for this patient
    PREGNANCY_REPORT_OPEN = "pregnancy_report_open", 409  # PRG-4: one open report per patient
    MESSAGE_ID_REUSED = "message_id_reused", 409  # an NCPDP MessageID reused for another message
    SERVER_ERROR = "server_error", 500


class ReasonCode(enum.StrEnum):
    """The code of one failed requirement (API.md "Reason codes", plus the registry's own, marked)."""

    PHARMACY_NOT_CERTIFIED = "pharmacy_not_certified"
    FACILITY_NOT_CERTIFIED = "facility_not_certified"
    PRESCRIBER_NOT_CERTIFIED = "prescriber_not_certified"
    PRESCRIBER_NOT_OF_RECORD = "prescriber_not_of_record"
    PATIENT_NOT_FOUND = "patient_not_found"
    PATIENT_NOT_AUTHORIZED = "patient_not_authorized"
    CONTRAINDICATION_RECORDED = "contraindication_recorded"
    NO_OPEN_COURSE = "no_open_course"
    OPEN_COURSE_EXISTS = "open_course_exists"  # registry's own: CRS-3 at course planning
    COURSE_DOSES_EXHAUSTED = "course_doses_exhausted"
    DOSES_EXCEED_REMAINING = "doses_exceed_remaining"
    COURSE_INTERVAL_NOT_MET = "course_interval_not_met"
    COURSE_DOSE_WINDOW_MISSED = "course_dose_window_missed"
    PRE_COURSE_LABS_STALE = "pre_course_labs_stale"
    BASELINE_INCOMPLETE = "baseline_incomplete"
    SCREENING_INCOMPLETE = "screening_incomplete"
    PREGNANCY_TEST_REQUIRED = "pregnancy_test_required"
    PREGNANCY_OPEN = "pregnancy_open"
    MONITORING_OVERDUE = "monitoring_overdue"
    STATUS_FORM_OVERDUE = "status_form_overdue"
    DUPLICATE_INFUSION_DAY = "duplicate_infusion_day"
    INVALID_DOSE = "invalid_dose"
    OBSERVATION_TOO_SHORT = "observation_too_short"
    PREMEDICATION_MISSING = "premedication_missing"
    NO_DISPENSE_FOR_FACILITY = "no_dispense_for_facility"
    # registry's own (issue 9): the newest screening withdraws HIV negative or no active infection.
    ATTESTATION_WITHDRAWN = "attestation_withdrawn"


class RegistryError(Exception):
    """A domain error: an `ErrorCode` (which fixes the HTTP status), a human detail, and extras rendered
    beside them (`errors`, `missing`, `reasons`, ...)."""

    code: ErrorCode = ErrorCode.INVALID_REQUEST
    default_detail = "The request could not be processed."

    def __init__(self, detail: str | None = None, *, code: ErrorCode | None = None, **extra: Any) -> None:
        self.detail = detail or self.default_detail
        if code is not None:
            self.code = code
        self.extra = extra
        super().__init__(self.detail)

    @property
    def status_code(self) -> int:
        return self.code.http_status


class ValidationFailed(RegistryError):
    """Input that a serializer cannot see is wrong (e.g. a date relative to another record)."""

    code = ErrorCode.VALIDATION_ERROR
    default_detail = "Invalid input."

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, errors=errors, **extra)


class NotFound(RegistryError):
    code = ErrorCode.NOT_FOUND
    default_detail = "Not found."


class PermissionDenied(RegistryError):
    code = ErrorCode.PERMISSION_DENIED
    default_detail = "Your role may not do this."


class Conflict(RegistryError):
    code = ErrorCode.CONFLICT
    default_detail = "The request conflicts with the current state."


class DuplicateIdentifier(Conflict):
    code = ErrorCode.DUPLICATE_IDENTIFIER
    default_detail = "A participant with this identifier is already registered."


class InvalidTransition(Conflict):
    code = ErrorCode.INVALID_STATUS_TRANSITION
    default_detail = "This status change is not allowed from the current status."


class CertificationRequirementsUnmet(Conflict):
    """ACT-2..4: `missing` lists every unmet requirement."""

    code = ErrorCode.CERTIFICATION_REQUIREMENTS_UNMET
    default_detail = "The participant does not yet meet the certification requirements."


class IdempotencyKeyReused(Conflict):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    default_detail = "This Idempotency-Key was already used with a different request."


class PrescriberNotCertified(Conflict):
    code = ErrorCode.PRESCRIBER_NOT_CERTIFIED
    default_detail = "Only a certified prescriber may do this."


# --- Access follows certification (ACT-1, ACT-5; API.md "Access, duplicates and lookups") ---------------


class KeyInactive(RegistryError):
    """ACT-5: a key of a deactivated participant (or of a deactivated prescriber's delegate) no longer
    authenticates."""

    code = ErrorCode.KEY_INACTIVE
    default_detail = "This API key is inactive: its participant is deactivated."


class ParticipantSuspended(PermissionDenied):
    """ACT-5: a suspended (or certification-expired) participant keeps its reads, and a prescriber and its
    delegates keep recording monitoring labs and status forms; every other write is refused."""

    code = ErrorCode.PARTICIPANT_SUSPENDED
    default_detail = (
        "The participant is suspended or its certification has expired: only reads (and, for a "
        "prescriber's care team, monitoring labs and status forms) are allowed."
    )


class PayloadTooLarge(RegistryError):
    code = ErrorCode.PAYLOAD_TOO_LARGE
    default_detail = "The request body is larger than the registry accepts."
