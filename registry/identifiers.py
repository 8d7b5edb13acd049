"""Identifier rules: NPI (ID-1), NCPDP provider ID (ID-2), DEA number (ID-3), registry IDs (ID-4) and
dispense authorization numbers (GATE-2).

Registry IDs and authorization numbers use upper-case Crockford base32 (no I, L, O, U: unambiguous read
aloud) with a Damm check character over the same alphabet. The Damm quasigroup is x*y = 2x + y in GF(32)
(a totally anti-symmetric quasigroup), so every single-character error and every adjacent transposition
is caught before a lookup (a Luhn mod-32 check misses the 0<->Z transposition). The random part comes from `secrets`: the IDs
reveal no sequence and cannot be guessed.
"""

from __future__ import annotations

import re
import secrets

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_INDEX = {ch: i for i, ch in enumerate(CROCKFORD)}
# Crockford decoding: read-aloud confusions map to the canonical symbol.
_CROCKFORD_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})

# ASCII only, whole string only: `\d` would admit other scripts' digits and `$` a trailing newline.
_NPI_RE = re.compile(r"[12][0-9]{9}")
_NCPDP_RE = re.compile(r"[0-9]{7}")
_DEA_RE = re.compile(r"[A-Z]{2}[0-9]{7}")


def _luhn_digits_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def is_valid_npi(value: str) -> bool:
    """ID-1: 10 digits, first 1 or 2, Luhn check digit over the prefix 80840 plus the first 9 digits."""
    return isinstance(value, str) and bool(_NPI_RE.fullmatch(value)) and _luhn_digits_ok("80840" + value)


def is_valid_ncpdp_id(value: str) -> bool:
    """ID-2: exactly 7 digits (the check-digit rule is not public)."""
    return isinstance(value, str) and bool(_NCPDP_RE.fullmatch(value))


def is_valid_dea_number(value: str) -> bool:
    """ID-3: 2 letters + 7 digits; (d1+d3+d5) + 2*(d2+d4+d6) ends in d7."""
    if not isinstance(value, str) or not _DEA_RE.fullmatch(value):
        return False
    d = [int(c) for c in value[2:]]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]


# --- Crockford base32 with a Damm check character over GF(32) ---------------------------------------

_GF32_MODULUS = 0b100101  # x^5 + x^2 + 1, primitive


def _gf32_double(x: int) -> int:
    x <<= 1
    return x ^ _GF32_MODULUS if x & 0b100000 else x


def _damm_interim(code: str) -> int:
    interim = 0
    for ch in code:
        interim = _gf32_double(interim) ^ _CROCKFORD_INDEX[ch]
    return interim


def _check_symbol(payload: str) -> str:
    """The symbol c with 2*interim + c = 0 in GF(32), i.e. c = 2*interim (addition is XOR)."""
    return CROCKFORD[_gf32_double(_damm_interim(payload))]


def _check_valid(code: str) -> bool:
    return _damm_interim(code) == 0


def _random_symbols(count: int) -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(count))


def _group(code: str, size: int) -> str:
    return "-".join(code[i : i + size] for i in range(0, len(code), size))


def _normalise(value: str) -> str:
    return re.sub(r"[\s-]", "", value).upper().translate(_CROCKFORD_ALIASES)


REGISTRY_ID_SYMBOLS = 8  # 40 random bits
AUTHORIZATION_NUMBER_SYMBOLS = 12  # 60 random bits (GATE-2 asks for at least 40)


def new_registry_id() -> str:
    """ID-4: e.g. ``7KQ2-M9XD-4``: 8 random symbols and a check character."""
    payload = _random_symbols(REGISTRY_ID_SYMBOLS)
    return f"{_group(payload, 4)}-{_check_symbol(payload)}"


def new_authorization_number() -> str:
    """GATE-2: e.g. ``B3TX-9QKM-2HZR-7``: 12 random symbols and a check character."""
    payload = _random_symbols(AUTHORIZATION_NUMBER_SYMBOLS)
    return f"{_group(payload, 4)}-{_check_symbol(payload)}"


def _parse(value: str, symbols: int) -> str | None:
    if not isinstance(value, str):
        return None
    code = _normalise(value)
    if len(code) != symbols + 1 or any(ch not in _CROCKFORD_INDEX for ch in code):
        return None
    if not _check_valid(code):
        return None
    return f"{_group(code[:-1], 4)}-{code[-1]}"


def parse_registry_id(value: str) -> str | None:
    """The canonical form of a registry ID as typed or read aloud, or None if it cannot be one."""
    return _parse(value, REGISTRY_ID_SYMBOLS)


def parse_authorization_number(value: str) -> str | None:
    """The canonical form of an authorization number, or None if malformed or its check fails."""
    return _parse(value, AUTHORIZATION_NUMBER_SYMBOLS)


# --- Django validators (model fields, admin forms and serializers share them) ------------------------


def validate_npi(value: str) -> None:
    from django.core.exceptions import ValidationError

    if not is_valid_npi(value or ""):
        raise ValidationError(
            "Enter a valid NPI: 10 digits starting with 1 or 2, with a valid check digit.", code="invalid_npi"
        )


def validate_ncpdp_id(value: str) -> None:
    from django.core.exceptions import ValidationError

    if not is_valid_ncpdp_id(value or ""):
        raise ValidationError("Enter a valid NCPDP provider ID: exactly 7 digits.", code="invalid_ncpdp_id")


def validate_dea_number(value: str) -> None:
    from django.core.exceptions import ValidationError

    if value and not is_valid_dea_number(value):
        raise ValidationError(
            "Enter a valid DEA number: 2 letters and 7 digits with a valid check digit.",
            code="invalid_dea_number",
        )
