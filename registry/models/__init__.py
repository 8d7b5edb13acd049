"""Models, one module per aggregate; re-exported here."""

from .accounts import ApiKey, IdempotencyRecord, Role, User
from .audit import AuditEvent
from .parties import CertificationStatus, Facility, ParticipantKind, Pharmacy, Prescriber
from .patients import (
    Contraindication,
    ContraindicationKind,
    LabOutcome,
    LabResult,
    LabTest,
    Patient,
    PatientGroupObjectPermission,
    PatientStatus,
    PatientUserObjectPermission,
    Screening,
    Sex,
)
from .treatment import (
    OPEN_COURSE_STATUSES,
    AuthorizationStatus,
    Course,
    CourseStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    Dispense,
    DispenseAuthorization,
    Infusion,
)

__all__ = [
    "OPEN_COURSE_STATUSES",
    "ApiKey",
    "AuditEvent",
    "AuthorizationStatus",
    "CertificationStatus",
    "Contraindication",
    "ContraindicationKind",
    "Course",
    "CourseStatus",
    "Decision",
    "DecisionKind",
    "DecisionOutcome",
    "Dispense",
    "DispenseAuthorization",
    "Facility",
    "IdempotencyRecord",
    "Infusion",
    "LabOutcome",
    "LabResult",
    "LabTest",
    "ParticipantKind",
    "Patient",
    "PatientGroupObjectPermission",
    "PatientStatus",
    "PatientUserObjectPermission",
    "Pharmacy",
    "Prescriber",
    "Role",
    "Screening",
    "Sex",
    "User",
]
