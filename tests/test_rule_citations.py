"""The rule table cannot drift: docs/rules.md defines the program's rule IDs, and the code and the tests
cite them. Every rule is cited in `registry/` (where it is enforced) and in at least one test; nothing
cites an ID the rules document does not define; a rule marked "not built yet" is cited nowhere in the code.

A citation is a token such as `CRS-2`; a range such as `ACT-2..4` cites each ID in it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RULES_DOC = ROOT / "docs" / "rules.md"
FAMILIES = ("ACT", "CRS", "GATE", "MON", "PRG", "ID")

# Rules with no code on main yet. Each must be marked "not built yet" in docs/rules.md, and none may be
# cited in registry/: when a feature lands and its code cites the rule, take the ID out of this set and
# update its row in docs/rules.md. Empty now: monitoring (MON-1..5, issue 10) and pregnancy surveillance
# (PRG-1..5) have landed and are built.
NOT_BUILT_YET: frozenset[str] = frozenset()

_FAMILY = "|".join(FAMILIES)
_CITATION = re.compile(rf"\b({_FAMILY})-(\d+)(?:\.\.(\d+))?\b")
_RULE_ROW = re.compile(rf"^\|\s*(?P<id>(?:{_FAMILY})-\d+)\s*\|(?P<rest>.*)\|\s*$", re.MULTILINE)
_THIS_FILE = Path(__file__).resolve()


def citations(text: str) -> set[str]:
    """Every rule ID a text cites, ranges (`ACT-2..4`) expanded."""
    out: set[str] = set()
    for family, first, last in _CITATION.findall(text):
        for number in range(int(first), int(last or first) + 1):
            out.add(f"{family}-{number}")
    return out


def rules_document() -> dict[str, str]:
    """Rule ID -> its status cell ("built", "partly built" or "not built yet"), from docs/rules.md."""
    rules: dict[str, str] = {}
    for match in _RULE_ROW.finditer(RULES_DOC.read_text()):
        rule_id = match["id"]
        assert rule_id not in rules, f"{rule_id} is defined twice in docs/rules.md"
        rules[rule_id] = match["rest"].rsplit("|", 1)[-1].strip()
    return rules


def _files(folder: str, patterns: tuple[str, ...]) -> list[Path]:
    files = [path for pattern in patterns for path in sorted((ROOT / folder).rglob(pattern))]
    return [path for path in files if path.resolve() != _THIS_FILE and "__pycache__" not in path.parts]


def cited_in(folder: str, patterns: tuple[str, ...] = ("*.py",)) -> dict[str, set[str]]:
    """Rule ID -> the files under `folder` that cite it."""
    where: dict[str, set[str]] = {}
    for path in _files(folder, patterns):
        for rule_id in citations(path.read_text()):
            where.setdefault(rule_id, set()).add(str(path.relative_to(ROOT)))
    return where


CODE = cited_in("registry", ("*.py", "*.html"))
TESTS = cited_in("tests", ("test_*.py",))  # tests, not helpers or factories
RULES = rules_document()


def test_citation_tokens_expand_ranges_and_ignore_lookalikes() -> None:
    assert citations("ACT-2..4 and GATE-5; CRS-1/2") == {"ACT-2", "ACT-3", "ACT-4", "GATE-5", "CRS-1"}
    assert citations("UUID-4 MON-x rems_patient_id-3 XACT-1") == set()


def test_rules_document_numbers_each_family_from_one_without_gaps() -> None:
    """The rules document is what this test reads: a parsing slip must not make every check vacuous."""
    for family in FAMILIES:
        numbers = sorted(int(i.split("-")[1]) for i in RULES if i.startswith(f"{family}-"))
        assert numbers == list(range(1, len(numbers) + 1)), family
        assert numbers, family
    assert len(RULES) == 32
    assert set(RULES.values()) <= {"built", "partly built", "not built yet"}


@pytest.mark.parametrize("rule_id", sorted(set(RULES) - NOT_BUILT_YET))
def test_rule_is_cited_in_the_code(rule_id: str) -> None:
    assert CODE.get(rule_id), f"{rule_id} is in docs/rules.md but no module in registry/ cites it"


@pytest.mark.parametrize("rule_id", sorted(set(RULES) - NOT_BUILT_YET))
def test_rule_is_cited_in_a_test(rule_id: str) -> None:
    assert TESTS.get(rule_id), f"{rule_id} is in docs/rules.md but no test in tests/ cites it"


def test_no_cited_rule_id_is_unknown_to_the_rules_document() -> None:
    docs = cited_in("docs", ("*.md",))
    readme = {i: {"README.md"} for i in citations((ROOT / "README.md").read_text())}
    unknown = {
        rule_id: sorted(files)
        for source in (CODE, TESTS, docs, readme)
        for rule_id, files in source.items()
        if rule_id not in RULES
    }
    assert unknown == {}


def test_not_built_yet_rules_are_the_ones_the_rules_document_marks_so() -> None:
    assert {i for i, status in RULES.items() if status == "not built yet"} == NOT_BUILT_YET


def test_not_built_yet_rules_are_not_cited_in_the_code() -> None:
    """When a feature lands its code cites the rule: then this set must shrink (and docs/rules.md says so)."""
    landed = {rule_id: sorted(CODE[rule_id]) for rule_id in NOT_BUILT_YET if rule_id in CODE}
    assert landed == {}
