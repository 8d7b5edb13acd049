"""The project's documentation (docs/) stays in step with the code: every setting the settings module reads,
every program setting and constant with its value, every API path and method, every error code and every
reason code the registry can answer is written down, and nothing links outside the repository."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
from drf_spectacular.generators import SchemaGenerator

from registry import rules
from registry.api.refusals import PUBLIC_DETAIL
from registry.errors import ErrorCode, ReasonCode
from registry.services import decisions

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SETTINGS_MODULE = (ROOT / "config" / "settings.py").read_text()
RULES_DOC = (DOCS / "rules.md").read_text()
API_DOC = (DOCS / "api.md").read_text()
SETTINGS_DOC = (DOCS / "settings.md").read_text()
FIELDS = {f.name: f for f in dataclasses.fields(rules.ProgramSettings)}


def _table(text: str, header_starts: str) -> list[list[str]]:
    """The body rows of the first markdown table whose header row starts with `header_starts`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_starts}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _number(cell: str) -> int | None:
    match = re.match(r"`?(\d+)`?", cell)
    return int(match[1]) if match else None


# --- Settings -------------------------------------------------------------------------------------------


def test_every_environment_variable_the_settings_module_reads_is_documented():
    read = set(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", SETTINGS_MODULE))
    assert len(read) >= 20  # the pattern still finds them
    assert sorted(name for name in read if f"`{name}`" not in SETTINGS_DOC) == []


def test_program_settings_table_in_rules_md_matches_rules_py():
    rows = _table(RULES_DOC, "Setting (`ProgramSettings` field)")
    documented = {row[0].strip("`"): row for row in rows}
    assert set(documented) == set(FIELDS)
    for name, row in documented.items():
        default = FIELDS[name].default
        assert _number(row[1]) == default, name
        assert row[2] == f"`REMS_{name.upper()}`", name


def test_program_settings_table_in_settings_md_matches_rules_py():
    rows = _table(SETTINGS_DOC, "Variable | Default | Rule")
    documented = {row[0].strip("`"): row for row in rows}
    assert set(documented) == {f"REMS_{name.upper()}" for name in FIELDS}
    for name, field in FIELDS.items():
        assert _number(documented[f"REMS_{name.upper()}"][1]) == field.default, name


def test_fixed_constants_table_in_rules_md_matches_rules_py():
    constants = {
        name: value
        for name, value in vars(rules).items()
        if name.isupper() and isinstance(value, int) and not name.startswith("_")
    }
    rows = _table(RULES_DOC, "Constant | Value")
    documented = {row[0].strip("`"): _number(row[1]) for row in rows}
    assert documented == constants


# --- API ------------------------------------------------------------------------------------------------

_DOC_ENDPOINT = re.compile(r"`(GET|POST|PATCH|PUT|DELETE)((?:/[A-Z]+)*) (/api/[^`?\s]*)")
_PARTICIPANT_KINDS = ("prescribers", "facilities", "pharmacies")


def _normalise(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "{}", path.rstrip("/"))


def documented_endpoints() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(method, path) pairs in docs/api.md: (built, not built yet). A line saying "not built yet", or a
    section whose heading says so, holds endpoints that are not built yet."""
    built: set[tuple[str, str]] = set()
    pending: set[tuple[str, str]] = set()
    section_pending = False
    for line in API_DOC.splitlines():
        if line.startswith("#"):
            section_pending = "not built yet" in line
        for first, more, path in _DOC_ENDPOINT.findall(line):
            methods = [first, *more.split("/")[1:]]
            paths = (
                [path.replace("{kind}", kind) for kind in _PARTICIPANT_KINDS] if "{kind}" in path else [path]
            )
            target = pending if section_pending or "not built yet" in line else built
            target.update((m, _normalise(p)) for m in methods for p in paths)
    return built, pending


@pytest.fixture(scope="module")
def schema_endpoints() -> set[tuple[str, str]]:
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return {(method.upper(), _normalise(path)) for path, ops in paths.items() for method in ops}


def test_every_api_endpoint_is_documented(schema_endpoints):
    built, _ = documented_endpoints()
    assert len(schema_endpoints) >= 30
    assert sorted(schema_endpoints - built - {("GET", "/api/schema")}) == []


def test_every_endpoint_documented_as_built_exists(schema_endpoints):
    built, pending = documented_endpoints()
    assert sorted(built - schema_endpoints - {("GET", "/api/schema"), ("GET", "/api/docs")}) == []
    # Every endpoint of the contract is built now (the assessment report was the last, issue 12); a
    # section marked "not built yet" may list new ones again.
    assert pending & schema_endpoints == set(), "built now: update docs/api.md"


# --- Codes: the enumerations in registry/errors.py, both ways -------------------------------------------

_NOT_BUILT = "not built yet"


def _codes_in(cell: str) -> list[str]:
    return re.findall(r"`([a-z_0-9]+)`", cell)


def test_every_error_code_is_documented_with_its_http_status_and_no_other():
    """Every `ErrorCode` member is a row of the errors table with its HTTP status, and every row of the
    table is an `ErrorCode` member: the docs cannot name a code the registry does not have."""
    rows = _table(API_DOC, "HTTP | `code` | When")
    documented: dict[str, int] = {}
    for row in rows:
        (code,) = _codes_in(row[1])
        assert code not in documented, f"{code} is documented twice"
        documented[code] = int(row[0])
    assert len(ErrorCode) >= 30
    assert documented == {member.value: member.http_status for member in ErrorCode}


def _not_built_codes() -> set[str]:
    """Codes docs/api.md names as part of the contract but not built yet (the paragraph under the errors
    table that starts "Not built yet"; none since issue 8 built the last ones, `key_inactive`,
    `participant_suspended` and the JSON 413)."""
    paragraphs = [p for p in API_DOC.split("\n\n") if p.startswith("Not built yet (contract codes")]
    return {code for p in paragraphs for code in re.findall(r"`(?:\d{3} )?([a-z_]+)`", p)}


def test_contract_codes_marked_not_built_yet_are_not_in_the_enumerations():
    pending = _not_built_codes()
    assert sorted(pending & {*ErrorCode, *ReasonCode}) == [], "built now: move them into the tables"


def _own_function(requirement):
    """A wrapped requirement's own function (found in its closure by name), else the requirement."""
    cells = [c.cell_contents for c in requirement.__closure__ or ()]
    return next(
        (c for c in cells if callable(c) and getattr(c, "__name__", None) == requirement.__name__),
        requirement,
    )


def _requirement_name(requirement) -> str:
    """The name a requirement reports in `requirements[].requirement`: the literal of its `_ok("...")`,
    else its function name."""
    names = set(re.findall(r"_ok\(\"([a-z_0-9]+)\"\)", inspect.getsource(_own_function(requirement))))
    return names.pop() if len(names) == 1 else requirement.__name__


def _reason_code(requirement) -> str:
    """The reason code a requirement answers when unmet: its declared one (`needs_patient`), else the one
    `ReasonCode` member its source fails with."""
    declared = getattr(requirement, "reason_code", None)
    if declared:
        return str(declared)
    (member,) = set(re.findall(r"\bR\.([A-Z_]+)\b", inspect.getsource(_own_function(requirement))))
    return ReasonCode[member].value


_KINDS = {
    "Patient authorization": decisions.PATIENT_AUTHORIZATION_GATE,
    "Course planning": decisions.COURSE_PLAN_GATE,
    "Dispense authorization": decisions.DISPENSE_GATE,
    "Infusion": decisions.INFUSION_GATE,
}


def _requirements_table() -> tuple[list[str], list[list[str]]]:
    lines = API_DOC.splitlines()
    header = next(line for line in lines if line.startswith("| Requirement | Reason code |"))
    columns = [cell.strip() for cell in header.strip().strip("|").split("|")]
    return columns, _table(API_DOC, "Requirement | Reason code |")


def test_requirements_table_matches_the_gates():
    """Each gate's requirement list (registry/services/decisions.py) is the requirements table's column of
    ticks, each with the reason code it answers; course planning's pending ones are marked `pending`."""
    columns, rows = _requirements_table()
    assert columns[2:] == list(_KINDS)
    assert decisions.INFUSION_CHECK_GATE.requirements is decisions.INFUSION_GATE.requirements
    documented_codes = {}
    for row in rows:
        (name,) = _codes_in(row[0])
        (code,) = _codes_in(row[1])
        documented_codes[name] = code
    for column, (kind, gate) in enumerate(_KINDS.items(), start=2):
        ticked = {_codes_in(row[0])[0] for row in rows if row[column] == "✓"}
        pending = {_codes_in(row[0])[0] for row in rows if row[column] == "pending"}
        assert ticked == {_requirement_name(r) for r in gate.requirements}, kind
        assert pending == {_requirement_name(r) for r in gate.pending}, kind
        for r in [*gate.requirements, *gate.pending]:
            assert documented_codes[_requirement_name(r)] == _reason_code(r), r.__name__
    assert len(rows) >= 25
    assert all(row[column] in ("", "✓", "pending") for row in rows for column in range(2, 6))


def test_every_reason_code_is_documented_and_built_ones_are_answered_by_a_gate():
    """Every `ReasonCode` member is a row of the reason codes table and every row is a member; a code not
    marked "not built yet" is answered by a requirement of some gate, and a code marked so by none."""
    rows = _table(API_DOC, "Code | Meaning | Rule")
    documented = {_codes_in(row[0])[0]: row for row in rows}
    assert len(documented) == len(rows), "a reason code is documented twice"
    assert set(documented) == {member.value for member in ReasonCode}
    answered = {_reason_code(r) for gate in decisions.GATES for r in [*gate.requirements, *gate.pending]}
    pending = {code for code, row in documented.items() if _NOT_BUILT in row[1]}
    assert sorted(pending & answered) == [], "answered now: take off its not-built-yet mark"
    assert sorted(set(documented) - pending - answered) == []


def test_every_reason_code_has_a_neutral_text_for_pharmacies_and_facilities():
    """docs/api.md promises that pharmacies and facilities read a neutral text for each reason code."""
    assert sorted(set(ReasonCode) - set(PUBLIC_DETAIL)) == []


def test_registry_raises_no_bare_error_code_strings():
    """Every code the API answers is an enumeration member: no `code="..."` string outside the Django
    field validators (identifiers.py, localtime.py) and the admin's form errors, which the API renders as
    `validation_error`."""
    skip = {"migrations", "identifiers.py", "localtime.py", "admin.py"}
    sources = "\n".join(
        p.read_text() for p in sorted((ROOT / "registry").rglob("*.py")) if not skip & set(p.parts)
    )
    assert re.findall(r"\bcode\s*=\s*\"[a-z_]+\"", sources) == []


# --- References into the code -------------------------------------------------------------------------

_MODULE_REF = re.compile(r"`((?:[a-z_0-9]+/)*[a-z_0-9]+\.py)`((?:,? `[A-Za-z_][\w.]*`)*)")
_PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))]


def _module(path: str) -> Path | None:
    """A module named in the docs: from the repository root, or (the docs' shorthand) from registry/, or
    the one file of that name under registry/ (`refusals.py` in a sentence about registry/api/)."""
    found = next((c for c in (ROOT / path, ROOT / "registry" / path) if c.is_file()), None)
    if found is None and "/" not in path:
        matches = [p for p in (ROOT / "registry").rglob(path) if "migrations" not in p.parts]
        found = matches[0] if len(matches) == 1 else None
    return found


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^\s*(?:def|class) {name}\b|^\s*{name}\s*[:=]", source, re.MULTILINE) is not None


@pytest.mark.parametrize("page", _PAGES)
def test_modules_and_names_the_documentation_points_to_exist(page):
    """`services/decisions.py` `no_contraindication`: the module exists and defines each name after it, so
    "where a rule lives" cannot point at code that moved."""
    text = (ROOT / page).read_text()
    refs = _MODULE_REF.findall(text)
    missing = []
    for path, names in refs:
        module = _module(path)
        if module is None:
            missing.append(path)
            continue
        source = module.read_text()
        for name in re.findall(r"`([\w.]+)`", names):
            if name.endswith(".py"):  # a list of modules: `refusals.py`, `exceptions.py`
                missing += [] if _module(name) else [name]
            elif not _defines(source, name.split(".")[-1]):
                missing.append(f"{path} {name}")
    assert missing == []


def test_the_reference_check_reads_the_rules_page():
    refs = _MODULE_REF.findall(RULES_DOC)
    assert len(refs) >= 30
    assert sum(len(re.findall(r"`", names)) // 2 for _, names in refs) >= 60


# --- Links ----------------------------------------------------------------------------------------------


# Pages linked to before they are written (by another branch). Remove a page from this set when it lands:
# the test below fails once it exists. Empty now: docs/architecture.md and docs/gate.md have landed.
PAGES_BEING_WRITTEN: frozenset[str] = frozenset()


@pytest.mark.parametrize("page", _PAGES)
def test_documentation_links_stay_inside_the_repository_and_resolve(page):
    path = ROOT / page
    text = path.read_text()
    assert "../shared" not in text
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), target
        assert resolved.exists() or str(resolved.relative_to(ROOT)) in PAGES_BEING_WRITTEN, target


def test_pages_being_written_do_not_exist_yet():
    assert sorted(page for page in PAGES_BEING_WRITTEN if (ROOT / page).exists()) == []
