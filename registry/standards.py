"""Identifiers and code systems the standards endpoints speak (DOMAIN.md "Standards to stay close to"):
the drug's codes, the NCPDP SCRIPT namespace, the FHIR identifier system of our registry ID, and the
mapping of our reason codes onto the four REMS categories with a note that names no clinical fact.

Constants, not program settings: the drug's codes are facts about the product, not rules the sponsor
tunes."""

from __future__ import annotations

import re

from registry.errors import ReasonCode as R

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
# `ReasonCode`/`DeniedReasonCode`; the precise reason code (API.md) is kept in `REMSNote`, with the text
# the JSON API gives a pharmacy or facility for it (registry/api/refusals.py: no clinical fact).

CATEGORY_PATIENT = "PATIENT"
CATEGORY_PRESCRIBER = "PRESCRIBER"
CATEGORY_PHARMACY = "PHARMACY"
CATEGORY_CASE = "CASE"

# Every reason code (tests/test_ncpdp.py checks that none is missing).
REASON_CATEGORY: dict[str, str] = {
    R.PHARMACY_NOT_CERTIFIED: CATEGORY_PHARMACY,
    R.FACILITY_NOT_CERTIFIED: CATEGORY_PHARMACY,
    R.PRESCRIBER_NOT_CERTIFIED: CATEGORY_PRESCRIBER,
    R.PRESCRIBER_NOT_OF_RECORD: CATEGORY_PRESCRIBER,
    R.PATIENT_NOT_FOUND: CATEGORY_PATIENT,
    R.PATIENT_NOT_AUTHORIZED: CATEGORY_PATIENT,
    R.CONTRAINDICATION_RECORDED: CATEGORY_PATIENT,
    R.ATTESTATION_WITHDRAWN: CATEGORY_PATIENT,
    R.BASELINE_INCOMPLETE: CATEGORY_PATIENT,
    R.SCREENING_INCOMPLETE: CATEGORY_PATIENT,
    R.PREGNANCY_TEST_REQUIRED: CATEGORY_PATIENT,
    R.PREGNANCY_OPEN: CATEGORY_PATIENT,
    R.MONITORING_OVERDUE: CATEGORY_PATIENT,
    R.STATUS_FORM_OVERDUE: CATEGORY_PATIENT,
    R.PRE_COURSE_LABS_STALE: CATEGORY_PATIENT,
    R.NO_OPEN_COURSE: CATEGORY_CASE,
    R.OPEN_COURSE_EXISTS: CATEGORY_CASE,
    R.COURSE_DOSES_EXHAUSTED: CATEGORY_CASE,
    R.DOSES_EXCEED_REMAINING: CATEGORY_CASE,
    R.COURSE_INTERVAL_NOT_MET: CATEGORY_CASE,
    R.COURSE_DOSE_WINDOW_MISSED: CATEGORY_CASE,
    R.NO_DISPENSE_FOR_FACILITY: CATEGORY_CASE,
    # The infusion's own (GATE-3, CRS-1): never in a dispense answer, listed for completeness.
    R.DUPLICATE_INFUSION_DAY: CATEGORY_CASE,
    R.INVALID_DOSE: CATEGORY_CASE,
    R.OBSERVATION_TOO_SHORT: CATEGORY_CASE,
    R.PREMEDICATION_MISSING: CATEGORY_CASE,
}


def reason_category(code: str) -> str:
    """The REMS category of one of our reason codes (a code added later falls under `CASE`)."""
    return REASON_CATEGORY.get(code, CATEGORY_CASE)


def reason_note(reason: dict[str, str]) -> str:
    """`<code>: <detail>` for one reason as the JSON API renders it for the caller
    (registry/api/refusals.py `reasons_for`)."""
    return f"{reason['code']}: {reason['detail']}"


def disclosed_reasons(reasons: list[dict[str, str]], *, caller_code: str) -> list[dict[str, str]]:
    """Minimum necessary disclosure (API.md): when the calling pharmacy or facility is itself not certified
    (`caller_code` among the reasons), nothing about the patient or the prescription is answered: only
    that one reason."""
    own = [reason for reason in reasons if reason["code"] == caller_code]
    return own or reasons
