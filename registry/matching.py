"""One person, one record (ACT-6, CRS-2): the normalized name a possible duplicate is found by.

A second record for a person already enrolled would reset the 12-month course interval (CRS-2), the
contraindications (ACT-9) and the dose history, so enrollment looks for an existing patient with the same
normalized first name, last name and date of birth (services/enrollment.py `patient_enroll`).
"""

from __future__ import annotations

import unicodedata

# Normalized first + last name; the column is indexed with the date of birth (models/patients.py).
MATCH_KEY_MAX_LENGTH = 201

# Latin letters that Unicode does not decompose into a base letter and an accent, folded as systems that
# keep names in ASCII write them ("Søren Łukasz Æbelø" arrives as "Soren Lukasz Aebelo"). Applied after
# casefolding, so only the lowercase forms are listed (casefold already writes ß as "ss").
_LATIN_FOLDS = str.maketrans(
    {
        "ø": "o",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "ħ": "h",
        "\u0131": "i",  # dotless i
        "ŧ": "t",
        "æ": "ae",
        "œ": "oe",
        "þ": "th",
    }
)


def name_normalize(value: str) -> str:
    """Casefolded, accents removed, whitespace and punctuation dropped: "  José  O'Brien-Smith " and
    "jose obriensmith" read the same, as do "Søren Łukasz" and "soren lukasz" (`_LATIN_FOLDS`). Letters
    of any script and digits are kept."""
    decomposed = unicodedata.normalize("NFKD", value or "")
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    folded = unicodedata.normalize("NFKD", stripped.casefold().translate(_LATIN_FOLDS))
    return "".join(ch for ch in folded if ch.isalnum() and not unicodedata.combining(ch))


def patient_match_key(first_name: str, last_name: str) -> str:
    """The key two records of one person share: normalized first and last name, separated so that
    ("Ann", "Marie") and ("Annm", "Arie") differ."""
    return f"{name_normalize(first_name)}|{name_normalize(last_name)}"[:MATCH_KEY_MAX_LENGTH]
