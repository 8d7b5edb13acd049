"""Reads scoped to a user (STYLE.md 3), and the gate's decision inputs. Every queryset an endpoint touches
starts in one of these modules: what a caller may not see does not exist for it (404). Views and services
read through here; they do not query models for what a caller may see."""

from .authorizations import (
    authorization_lapse,
    authorization_public_state,
    authorization_revoke_category,
    authorization_state,
    authorization_visible,
    authorizations_visible_to,
)
from .certifications import CertificationState, certification_lookup
from .monitoring import monitoring_flags_visible_to, monitoring_state, patient_status_forms
from .participants import (
    delegates_of,
    identifier_in_use,
    participant_by_enrollment_id,
    participant_by_npi,
    participants_visible_to,
)
from .patients import (
    CARE_TEAM_PERMISSIONS,
    PATIENT_ACT_PERMISSION,
    PATIENT_VIEW_PERMISSION,
    courses_visible_to,
    patient_courses,
    patient_lab_results,
    patient_of_record_by_demographics,
    patient_visible,
    patient_visible_by_registry_id,
    patients_visible_to,
)
from .pregnancy import pregnancy_report_visible, pregnancy_reports_visible_to

__all__ = [
    "CARE_TEAM_PERMISSIONS",
    "PATIENT_ACT_PERMISSION",
    "PATIENT_VIEW_PERMISSION",
    "CertificationState",
    "authorization_lapse",
    "authorization_public_state",
    "authorization_revoke_category",
    "authorization_state",
    "authorization_visible",
    "authorizations_visible_to",
    "certification_lookup",
    "courses_visible_to",
    "delegates_of",
    "identifier_in_use",
    "monitoring_flags_visible_to",
    "monitoring_state",
    "participant_by_enrollment_id",
    "participant_by_npi",
    "participants_visible_to",
    "patient_courses",
    "patient_lab_results",
    "patient_of_record_by_demographics",
    "patient_status_forms",
    "patient_visible",
    "patient_visible_by_registry_id",
    "patients_visible_to",
    "pregnancy_report_visible",
    "pregnancy_reports_visible_to",
]
