"""Identifier rules: NPI (ID-1), NCPDP provider ID (ID-2), DEA number (ID-3), registry IDs (ID-4) and
authorization numbers (GATE-2), as pure functions and as the API applies them to participants."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.identifiers import (
    CROCKFORD,
    is_valid_dea_number,
    is_valid_ncpdp_id,
    is_valid_npi,
    new_authorization_number,
    new_registry_id,
    parse_authorization_number,
    parse_registry_id,
)
from registry.models import Facility, Pharmacy, Prescriber

from .factories import make_npi

pytestmark = pytest.mark.django_db

DIGITS = "0123456789"
# Deterministic property tests; no example database written into the work tree.
PROPERTY = settings(derandomize=True, database=None, max_examples=150, deadline=None)


# --- reference helpers (independent of registry/identifiers.py) -----------------------------------------


def luhn_ok(digits: str) -> bool:
    """The textbook Luhn check over ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def with_npi_check_digit(first_nine: str) -> str:
    """`first_nine` plus the digit that makes the Luhn check over 80840 + the number pass (ID-1)."""
    (digit,) = [d for d in DIGITS if luhn_ok("80840" + first_nine + d)]
    return first_nine + digit


def with_dea_check_digit(prefix: str) -> str:
    """Two letters + six digits, plus the check digit: (d1+d3+d5) + 2*(d2+d4+d6) ends in d7 (ID-3)."""
    d = [int(c) for c in prefix[2:]]
    return prefix + str((d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10)


npi_prefixes = st.builds(
    lambda first, rest: first + rest, st.sampled_from("12"), st.text(DIGITS, min_size=8, max_size=8)
)


# --- ID-1: NPI -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("npi", ["1558598797", "1993999998"])
def test_id1_published_npis_are_valid(npi):
    assert is_valid_npi(npi) is True


@pytest.mark.parametrize(
    ("npi", "why"),
    [
        ("1558598798", "wrong check digit"),
        ("1993999997", "wrong check digit"),
        ("155859879", "9 digits"),
        ("15585987970", "11 digits"),
        ("", "empty"),
        (with_npi_check_digit("355859879"), "first digit 3, check digit otherwise right"),
        (with_npi_check_digit("055859879"), "first digit 0, check digit otherwise right"),
        (with_npi_check_digit("955859879"), "first digit 9, check digit otherwise right"),
        ("155859879A", "a letter"),
        ("1558-98797", "a hyphen"),
        (" 1558598797", "leading space"),
        ("1558598797 ", "trailing space"),
        ("1558598797\n", "trailing newline"),
        ("1\u0665\u0665\u0668\u0665\u0669\u0668\u0667\u0669\u0667", "Arabic-Indic digits"),
        ("1\uff15\uff15\uff18\uff15\uff19\uff18\uff17\uff19\uff17", "full-width digits"),
    ],
)
def test_id1_invalid_npis_are_rejected(npi, why):
    assert is_valid_npi(npi) is False, why


@PROPERTY
@given(prefix=npi_prefixes)
def test_id1_exactly_one_check_digit_completes_every_npi_prefix(prefix):
    valid = [d for d in DIGITS if is_valid_npi(prefix + d)]
    assert valid == [with_npi_check_digit(prefix)[-1]]


@PROPERTY
@given(prefix=npi_prefixes)
def test_id1_every_single_digit_change_of_a_valid_npi_is_rejected(prefix):
    npi = with_npi_check_digit(prefix)
    assert is_valid_npi(npi)
    for position in range(10):
        for digit in DIGITS.replace(npi[position], ""):
            changed = npi[:position] + digit + npi[position + 1 :]
            assert is_valid_npi(changed) is False, changed


@PROPERTY
@given(value=st.text(max_size=12))
def test_id1_npi_check_never_raises_and_accepts_only_ten_ascii_digits(value):
    valid = is_valid_npi(value)
    assert valid is False or re.fullmatch(r"[12][0-9]{9}", value)


# --- ID-2: NCPDP provider ID ----------------------------------------------------------------------------


@pytest.mark.parametrize("ncpdp_id", ["1234567", "0000000", "9999999"])
def test_id2_seven_digits_are_a_valid_ncpdp_id(ncpdp_id):
    assert is_valid_ncpdp_id(ncpdp_id) is True


@pytest.mark.parametrize(
    "ncpdp_id",
    [
        "123456",
        "12345678",
        "",
        "123456A",
        "123-456",
        " 1234567",
        "1234567\n",
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667",
        "\uff11\uff12\uff13\uff14\uff15\uff16\uff17",
    ],
)
def test_id2_anything_but_seven_ascii_digits_is_rejected(ncpdp_id):
    assert is_valid_ncpdp_id(ncpdp_id) is False


# --- ID-3: DEA number -----------------------------------------------------------------------------------


def test_id3_published_dea_number_is_valid():
    assert is_valid_dea_number("AP5836727") is True


@pytest.mark.parametrize(
    ("dea", "why"),
    [
        ("AP5836728", "wrong check digit"),
        ("AP5836720", "wrong check digit"),
        ("A15836727", "one letter"),
        ("APX836727", "three letters"),
        ("AP583672", "six digits"),
        ("AP58367270", "eight digits"),
        ("5836727AP", "letters last"),
        ("", "empty"),
        ("AP5836727\n", "trailing newline"),
        ("AP\uff15836727", "a full-width digit"),
    ],
)
def test_id3_invalid_dea_numbers_are_rejected(dea, why):
    assert is_valid_dea_number(dea) is False, why


@PROPERTY
@given(
    letters=st.text("ABCDEFGHJKLMNPRSTUX", min_size=2, max_size=2),
    digits=st.text(DIGITS, min_size=6, max_size=6),
)
def test_id3_exactly_one_check_digit_completes_every_dea_prefix(letters, digits):
    prefix = letters + digits
    valid = [d for d in DIGITS if is_valid_dea_number(prefix + d)]
    assert valid == [with_dea_check_digit(prefix)[-1]]


# --- ID-4 registry IDs and GATE-2 authorization numbers -------------------------------------------------

CODES = [
    pytest.param(new_registry_id, parse_registry_id, 8, id="registry_id"),
    pytest.param(new_authorization_number, parse_authorization_number, 12, id="authorization_number"),
]
CROCKFORD_SYMBOL = "[0-9A-HJKMNP-TV-Z]"


def canonical(compact: str) -> str:
    """Groups of four, then the check character: `ABCD-EFGH-C`."""
    payload, check = compact[:-1], compact[-1]
    return "-".join(payload[i : i + 4] for i in range(0, len(payload), 4)) + "-" + check


def complete(payload: str, parse: Callable[[str], str | None]) -> str:
    """The one check character that makes `payload` parse, found by trying all 32 (the check must be
    unique: asserted here, so a scheme with two valid check characters fails loudly)."""
    (check,) = [c for c in CROCKFORD if parse(payload + c) is not None]
    return payload + check


def compact(code: str) -> str:
    return code.replace("-", "")


@pytest.mark.parametrize(("new", "parse", "symbols"), CODES)
def test_id4_generated_codes_have_the_documented_shape(new, parse, symbols):
    pattern = "-".join([f"{CROCKFORD_SYMBOL}{{4}}"] * (symbols // 4) + [CROCKFORD_SYMBOL])
    for _ in range(200):
        code = new()
        assert re.fullmatch(pattern, code), code


@pytest.mark.parametrize(("new", "parse", "symbols"), CODES)
def test_id4_generated_codes_round_trip_through_parse(new, parse, symbols):
    for _ in range(200):
        code = new()
        assert parse(code) == code


# --- Unguessable: a large sample shows no duplicates and no pattern ----------------------------------------
#
# Bounds are set so that a sound generator fails them with probability below about one in a million per run,
# while a counter, a timestamp prefix or a biased alphabet fails them outright. Chi-square critical values
# for 31 degrees of freedom: 90 is exceeded with p = 1.2e-7; for 1023, 1350 with p < 1e-9.

SAMPLE = 100_000


@pytest.fixture(scope="module")
def authorization_sample() -> list[str]:
    return [compact(new_authorization_number()) for _ in range(SAMPLE)]


@pytest.fixture(scope="module")
def registry_id_sample() -> list[str]:
    # 40 random bits: 20,000 draws collide with probability 1.8e-4 (birthday bound), 10,000 with 4.5e-5.
    return [compact(new_registry_id()) for _ in range(10_000)]


def chi_square(counts: Counter[str], bins: int, n: int) -> float:
    """Pearson's statistic for `n` draws into `bins` equally likely bins (empty bins count too)."""
    expected = n / bins
    return sum((c - expected) ** 2 / expected for c in counts.values()) + (bins - len(counts)) * expected


def test_gate2_100000_authorization_numbers_have_no_duplicates(authorization_sample):
    """GATE-2: unique and unguessable. 60 random bits: a duplicate among 100,000 has probability 4e-9."""
    assert len(authorization_sample) == SAMPLE
    assert len(set(authorization_sample)) == SAMPLE


@pytest.mark.parametrize("position", range(12))
def test_gate2_each_symbol_of_authorization_numbers_is_uniform(authorization_sample, position):
    """GATE-2: every payload position draws all 32 symbols evenly (chi-square, 31 degrees of freedom)."""
    counts = Counter(code[position] for code in authorization_sample)
    assert set(counts) == set(CROCKFORD)
    assert chi_square(counts, 32, SAMPLE) < 90


def test_gate2_first_two_symbols_of_authorization_numbers_are_jointly_uniform(authorization_sample):
    """GATE-2: no favoured leading pair (a date or shard prefix would be one): 1,024 bins, each ~98."""
    counts = Counter(code[:2] for code in authorization_sample)
    assert chi_square(counts, 32 * 32, SAMPLE) < 1350


def test_gate2_no_four_symbol_prefix_of_authorization_numbers_repeats_beyond_chance(authorization_sample):
    """GATE-2: 100,000 numbers over 32^4 = 1,048,576 prefixes average 0.1 each; by chance no prefix is
    shared by more than 7 (p = 2e-7). A counter or a clock in the number would share prefixes by the
    thousand."""
    counts = Counter(code[:4] for code in authorization_sample)
    assert max(counts.values()) <= 7


def test_gate2_consecutive_authorization_numbers_share_prefixes_only_by_chance(authorization_sample):
    """GATE-2: knowing one number says nothing about the next: consecutive draws share their first symbol
    1/32 of the time (3,125 of 99,999, sd 55) and their first two 1/1,024 of the time (98, sd 10)."""
    pairs = list(itertools.pairwise(authorization_sample))
    same_first = sum(a[0] == b[0] for a, b in pairs)
    same_two = sum(a[:2] == b[:2] for a, b in pairs)
    assert abs(same_first - len(pairs) / 32) < 7 * 55
    assert same_two < 98 + 7 * 10


def test_id4_10000_registry_ids_have_no_duplicates_and_uniform_symbols(registry_id_sample):
    """ID-4: reveals no sequence: no duplicates, every position uniform, no favoured 2-symbol prefix by
    more than chance (10,000 over 1,024 prefixes: about 10 each; a sound generator stays under 40)."""
    assert len(set(registry_id_sample)) == len(registry_id_sample)
    for position in range(8):
        counts = Counter(code[position] for code in registry_id_sample)
        assert chi_square(counts, 32, len(registry_id_sample)) < 90, position
    assert max(Counter(code[:2] for code in registry_id_sample).values()) < 40


@pytest.mark.parametrize("sample", ["authorization_sample", "registry_id_sample"])
def test_gate2_id4_check_character_catches_every_substitution_and_adjacent_transposition(request, sample):
    """GATE-2, ID-4: for 300 generated codes of each kind, exhaustively over every position (the check
    character included) and the whole alphabet: every single-symbol substitution and every transposition of
    two different adjacent symbols is refused by the parser."""
    codes = request.getfixturevalue(sample)[:300]
    parse = parse_authorization_number if sample == "authorization_sample" else parse_registry_id
    missed = []
    for code in codes:
        assert parse(code) is not None
        missed += [s for s in _single_substitutions(code) if parse(s) is not None]
        for i in range(len(code) - 1):
            if code[i] != code[i + 1]:
                swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
                if parse(swapped) is not None:
                    missed.append(swapped)
    assert missed == []


@pytest.mark.parametrize(("new", "parse", "symbols"), CODES)
def test_id4_parse_tolerates_lower_case_spaces_and_missing_hyphens(new, parse, symbols):
    for _ in range(50):
        code = new()
        bare = compact(code)
        assert parse(code.lower()) == code
        assert parse(bare) == code
        assert parse(bare.lower()) == code
        assert parse(" ".join(bare)) == code
        assert parse(f"  {code}  ") == code
        assert parse(code.replace("-", " - ")) == code


@pytest.mark.parametrize(("new", "parse", "symbols"), CODES)
def test_id4_parse_reads_o_as_zero_and_i_or_l_as_one(new, parse, symbols):
    code = canonical(complete(("01" * symbols)[:symbols], parse))
    assert parse(code.replace("0", "O")) == code
    assert parse(code.replace("0", "o")) == code
    assert parse(code.replace("1", "I")) == code
    assert parse(code.replace("1", "i")) == code
    assert parse(code.replace("1", "L")) == code
    assert parse(code.replace("1", "l")) == code


@pytest.mark.parametrize(("new", "parse", "symbols"), CODES)
def test_id4_parse_rejects_wrong_length_and_foreign_symbols(new, parse, symbols):
    bare = compact(new())
    assert parse("") is None
    assert parse(bare[:-1]) is None
    assert parse(bare + "0") is None
    assert parse(bare[:-1] + "U") is None  # U is not a Crockford symbol
    assert parse(bare[:-1] + "*") is None
    assert parse(None) is None  # type: ignore[arg-type]
    assert parse(12345678) is None  # type: ignore[arg-type]


def test_id4_registry_ids_and_authorization_numbers_do_not_parse_as_each_other():
    assert parse_authorization_number(new_registry_id()) is None
    assert parse_registry_id(new_authorization_number()) is None


def _single_substitutions(code: str) -> list[str]:
    return [
        code[:i] + symbol + code[i + 1 :]
        for i in range(len(code))
        for symbol in CROCKFORD
        if symbol != code[i]
    ]


@pytest.mark.parametrize(("new", "parse", "symbols"), CODES)
def test_id4_every_single_character_substitution_of_a_generated_code_is_rejected(new, parse, symbols):
    for _ in range(20):
        bare = compact(new())
        accepted = [s for s in _single_substitutions(bare) if parse(s) is not None]
        assert accepted == []


@PROPERTY
@given(payload=st.text(CROCKFORD, min_size=8, max_size=8))
def test_id4_every_single_character_substitution_of_any_registry_id_is_rejected(payload):
    bare = complete(payload, parse_registry_id)
    assert [s for s in _single_substitutions(bare) if parse_registry_id(s) is not None] == []


@PROPERTY
@given(payload=st.text(CROCKFORD, min_size=12, max_size=12))
def test_gate2_every_single_character_substitution_of_any_authorization_number_is_rejected(payload):
    bare = complete(payload, parse_authorization_number)
    assert [s for s in _single_substitutions(bare) if parse_authorization_number(s) is not None] == []


@PROPERTY
@given(payload=st.text(CROCKFORD, min_size=8, max_size=8))
def test_id4_adjacent_transpositions_of_random_registry_ids_are_rejected(payload):
    bare = complete(payload, parse_registry_id)
    for i in range(len(bare) - 1):
        swapped = bare[:i] + bare[i + 1] + bare[i] + bare[i + 2 :]
        if swapped != bare:
            assert parse_registry_id(swapped) is None, (bare, swapped)


@pytest.mark.parametrize(("new", "parse", "symbols"), CODES)
def test_id4_every_adjacent_transposition_is_rejected(new, parse, symbols):
    """The identifiers module promises that every adjacent transposition is caught. Exhaustive over every
    ordered pair of distinct symbols at every position (the check character included)."""
    undetected = set()
    for a in CROCKFORD:
        for b in CROCKFORD:
            if a == b:
                continue
            for i in range(symbols):
                payload = ["7"] * symbols
                payload[i] = a
                if i + 1 < symbols:
                    payload[i + 1] = b
                joined = "".join(payload)
                bare = joined + next(c for c in CROCKFORD if parse(joined + c) is not None)
                swapped = bare[:i] + bare[i + 1] + bare[i] + bare[i + 2 :]
                if swapped != bare and parse(swapped) is not None:
                    undetected.add(tuple(sorted((bare[i], bare[i + 1]))))
    assert sorted(undetected) == []


# --- the API applies ID-1..3 to participants ------------------------------------------------------------


def _prescriber_body(**overrides):
    return {
        "npi": make_npi(),
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.org",
        **overrides,
    }


def _site_body(**overrides):
    return {
        "npi": make_npi(),
        "name": "Site",
        "address_line1": "1 Main St",
        "city": "Boston",
        "state": "MA",
        "postal_code": "02139",
        "authorized_rep_name": "Rita Rep",
        "authorized_rep_email": "rita@example.org",
        **overrides,
    }


def _pharmacy_body(**overrides):
    return _site_body(ncpdp_id="1234567", **overrides)


BODIES = {
    "prescribers": (Prescriber, _prescriber_body),
    "facilities": (Facility, _site_body),
    "pharmacies": (Pharmacy, _pharmacy_body),
}

INVALID_NPIS = [
    "1558598798",
    "155859879",
    "15585987970",
    with_npi_check_digit("355859879"),
    "155859879A",
    "1\u0665\u0665\u0668\u0665\u0669\u0668\u0667\u0669\u0667",
]


@pytest.mark.parametrize("kind", list(BODIES))
@pytest.mark.parametrize("npi", INVALID_NPIS)
def test_id1_api_refuses_invalid_npi_on_create(admin, kind, npi):
    model, body = BODIES[kind]
    response = admin.post(f"/api/v1/{kind}", body(npi=npi))
    assert response.status_code == 400, response.json()
    data = response.json()
    assert data["code"] == "validation_error"
    assert set(data["errors"]) == {"npi"}
    assert model.objects.count() == 0


@pytest.mark.parametrize("kind", list(BODIES))
def test_id1_api_refuses_invalid_npi_on_update(admin, kind):
    model, body = BODIES[kind]
    created = admin.post(f"/api/v1/{kind}", body(npi="1558598797")).json()
    response = admin.patch(f"/api/v1/{kind}/{created['id']}", {"npi": "1558598798"})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert set(response.json()["errors"]) == {"npi"}
    assert model.objects.get(pk=created["id"]).npi == "1558598797"


@pytest.mark.parametrize("kind", list(BODIES))
def test_id1_api_accepts_published_npis(admin, kind):
    model, body = BODIES[kind]
    for index, npi in enumerate(("1558598797", "1993999998")):
        extra = {"ncpdp_id": f"765432{index}"} if kind == "pharmacies" else {}
        response = admin.post(f"/api/v1/{kind}", {**body(npi=npi), **extra})
        assert response.status_code == 201, response.json()
        assert response.json()["npi"] == npi
    assert sorted(model.objects.values_list("npi", flat=True)) == ["1558598797", "1993999998"]


@pytest.mark.parametrize(
    "ncpdp_id",
    ["123456", "12345678", "123456A", "", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667"],
)
def test_id2_api_refuses_invalid_ncpdp_id(admin, ncpdp_id):
    response = admin.post("/api/v1/pharmacies", _site_body(ncpdp_id=ncpdp_id))
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "validation_error"
    assert set(data["errors"]) == {"ncpdp_id"}
    assert Pharmacy.objects.count() == 0


def test_id2_api_requires_ncpdp_id_for_pharmacies(admin):
    response = admin.post("/api/v1/pharmacies", _site_body())
    assert response.status_code == 400
    assert response.json()["errors"] == {"ncpdp_id": ["This field is required."]}


@pytest.mark.parametrize("dea", ["AP5836728", "A15836727", "AP583672", "APX836727", "AP\uff15836727"])
def test_id3_api_refuses_invalid_dea_number(admin, dea):
    response = admin.post("/api/v1/prescribers", _prescriber_body(dea_number=dea))
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "validation_error"
    assert set(data["errors"]) == {"dea_number"}
    assert Prescriber.objects.count() == 0


def test_id3_api_accepts_valid_dea_number_and_no_dea_number(admin):
    with_dea = admin.post("/api/v1/prescribers", _prescriber_body(dea_number="AP5836727"))
    without = admin.post("/api/v1/prescribers", _prescriber_body())
    assert with_dea.status_code == 201
    assert with_dea.json()["dea_number"] == "AP5836727"
    assert without.status_code == 201
    assert without.json()["dea_number"] == ""


def test_id_errors_are_reported_for_every_bad_field_at_once(admin):
    response = admin.post("/api/v1/pharmacies", _site_body(npi="1558598798", ncpdp_id="12"))
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"npi", "ncpdp_id"}
