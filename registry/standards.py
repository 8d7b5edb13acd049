"""Identifiers and code systems the standards endpoints speak (DOMAIN.md "Standards to stay close to"):
the drug's codes, the NCPDP SCRIPT namespace, the FHIR identifier system of our registry ID, and the
mapping of our reason codes onto the four REMS categories with a note that names no clinical fact.

Constants, not program settings: the drug's codes are facts about the product, not rules the sponsor
tunes."""

from __future__ import annotations

import re

# LEMTRADA (alemtuzumab) 12 mg/1.2 mL single-dose vial.
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
RXNORM_LEMTRADA = "1594660"
NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"
# NDC 58468-0200-1 (labeler 58468, product 0200, package 1) in its 11-digit 5-4-2 form.
LEMTRADA_NDCS = frozenset({"58468020001"})

NCPDP_NAMESPACE = "http://www.ncpdp.org/schema/SCRIPT"
# The name this registry answers under in NCPDP headers (`From` of our answers).
NCPDP_REMS_ADMINISTRATOR = "LEMTRADA-REMS"

# Our registry ID (ID-4) as a FHIR identifier, and our reason codes as a FHIR code system.
FHIR_REMS_PATIENT_ID_SYSTEM = "urn:lemtrada-rems:rems-patient-id"
FHIR_REASON_CODE_SYSTEM = "urn:lemtrada-rems:reason-code"
FHIR_REQUIREMENT_SYSTEM = "urn:lemtrada-rems:requirement"
# The HL7 US Medication REMS IG's module URI, as its examples and reference implementation use it.
FHIR_REMS_MODULE_URI = "https://build.fhir.org/ig/HL7/fhir-medication-rems-ig/"

_NDC_HYPHENATED = re.compile(r"([0-9]{4,5})-([0-9]{3,4})-([0-9]{1,2})")
_NDC_PLAIN = re.compile(r"[0-9]{11}")


def ndc_normalize(value: str) -> str | None:
    """The 11-digit (5-4-2) form of an NDC: hyphenated 4-4-2, 5-3-2 and 5-4-1 forms are zero-padded
    segment by segment; an unhyphenated 11-digit code is taken as is. An unhyphenated 10-digit code is
    ambiguous (which segment lacks its zero?) and is not recognised."""
    value = value.strip()
    if _NDC_PLAIN.fullmatch(value):
        return value
    match = _NDC_HYPHENATED.fullmatch(value)
    if match is None:
        return None
    labeler, product, package = match.groups()
    if len(labeler) + len(product) + len(package) != 10:
        return None
    return labeler.zfill(5) + product.zfill(4) + package.zfill(2)


def is_lemtrada_ndc(value: str) -> bool:
    return ndc_normalize(value) in LEMTRADA_NDCS


# --- Reason codes onto the REMS categories -------------------------------------------------------------
# NCPDP SCRIPT REMS transactions sort unmet requirements into patient, prescriber, pharmacy (dispensing
# or healthcare setting) and case requirements. The category names below are the registry's values for
# `ReasonCode`/`DeniedReasonCode`; the precise reason code (API.md) is kept in `REMSNote`.

CATEGORY_PATIENT = "PATIENT"
CATEGORY_PRESCRIBER = "PRESCRIBER"
CATEGORY_PHARMACY = "PHARMACY"
CATEGORY_CASE = "CASE"

# Notes a pharmacy or facility may read (API.md: reason codes and a detail that names no clinical fact:
# no contraindication kind, no patient status, no treatment dates). The engine's own details name those
# facts for the care team; they never reach a pharmacy or facility through the standards endpoints.
_REASONS: dict[str, tuple[str, str]] = {
    "pharmacy_not_certified": (CATEGORY_PHARMACY, "The pharmacy is not certified in the REMS."),
    "facility_not_certified": (CATEGORY_PHARMACY, "The healthcare setting is not certified in the REMS."),
    "prescriber_not_certified": (CATEGORY_PRESCRIBER, "The prescriber is not certified in the REMS."),
    "prescriber_not_of_record": (
        CATEGORY_PRESCRIBER,
        "The prescriber is not the patient's prescriber of record.",
    ),
    "patient_not_found": (CATEGORY_PATIENT, "No patient matches the identification given."),
    "patient_not_authorized": (CATEGORY_PATIENT, "The patient is not authorized to receive the drug."),
    "contraindication_recorded": (
        CATEGORY_PATIENT,
        "A patient requirement is not met; contact the prescriber.",
    ),
    "baseline_incomplete": (CATEGORY_PATIENT, "Baseline requirements are incomplete."),
    "screening_incomplete": (CATEGORY_PATIENT, "Screening requirements are incomplete."),
    "pregnancy_test_required": (CATEGORY_PATIENT, "A pregnancy testing requirement is not met."),
    "pregnancy_open": (CATEGORY_PATIENT, "A patient requirement is not met; contact the prescriber."),
    "monitoring_overdue": (CATEGORY_PATIENT, "Required monitoring is overdue."),
    "status_form_overdue": (CATEGORY_PATIENT, "The patient status form is overdue."),
    "pre_course_labs_stale": (CATEGORY_PATIENT, "Pre-course labs are missing or out of date."),
    "no_open_course": (CATEGORY_CASE, "No course is planned or in progress."),
    "open_course_exists": (CATEGORY_CASE, "A course is already open."),
    "course_doses_exhausted": (CATEGORY_CASE, "The course has no doses left to authorize."),
    "doses_exceed_remaining": (CATEGORY_CASE, "More doses were requested than the course has left."),
    "course_interval_not_met": (CATEGORY_CASE, "The course timing requirement is not met."),
    "course_dose_window_missed": (CATEGORY_CASE, "The course timing requirement is not met."),
    "no_dispense_for_facility": (CATEGORY_CASE, "No dispense to this healthcare setting is on record."),
}
_DEFAULT_REASON = (CATEGORY_CASE, "A REMS requirement is not met.")


def reason_category(code: str) -> str:
    """The REMS category of one of our reason codes (a code added later falls under `CASE`)."""
    return _REASONS.get(code, _DEFAULT_REASON)[0]


def reason_note(code: str) -> str:
    """`<code>: <note>`: the precise code and a note that names no clinical fact."""
    return f"{code}: {_REASONS.get(code, _DEFAULT_REASON)[1]}"


def disclosed_reason_codes(codes: list[str], *, caller_code: str) -> list[str]:
    """Minimum necessary disclosure (API.md): when the calling pharmacy or facility is itself not certified
    (`caller_code` among the reasons), nothing about the patient or the prescription is answered: only
    that one reason."""
    return [caller_code] if caller_code in codes else codes
