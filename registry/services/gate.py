"""The one gate pipeline (GATE-1..5): lock, load facts, evaluate requirements, store the decision, act on
approval. Patient authorization, course planning, dispense authorization, the infusion and its check all
run through `gate_run`; a decision kind is a `Gate` (its requirement list) plus the approval action its
service passes in.

A requirement is a pure function of `Facts` returning a `Check` (registry/services/decisions.py holds them
and the gates). Adding a blocking condition (GATE-4) is one requirement function and one entry in a gate's
list (or `@blocking_condition(...)` on the function): nothing else changes.

Every check the registry answers stores exactly one decision, approved or denied, with every requirement
evaluated, the settings in force, the inputs and the actor (GATE-5). Refusals are returned, not raised, so
no enclosing transaction (an Idempotency-Key claim, say) can roll the stored decision back. An approval
action that is turned down by a race the locks cannot exclude (a unique index firing) raises `Refused`: its
writes roll back to a savepoint and the decision is stored as denied with that reason. A gate whose approval
writes everything, the approved decision included, in one all-or-nothing statement
(`Gate.one_statement_approval`, issue 13) runs it without the savepoint; should it refuse, that statement
wrote nothing, and the denial is stored the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Generic, TypeVar

from django.db import transaction

from registry.errors import ReasonCode
from registry.middleware import current_request_id
from registry.models import Decision, DecisionKind, DecisionOutcome, Role, User
from registry.selectors.facts import Facts

from .audit import _jsonable, audit_event
from .rows import rows_insert

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    """One requirement's result. `detail` is for the prescriber of record and administrators (it may name
    clinical facts); pharmacies and facilities read only `code` (registry/api/refusals.py)."""

    requirement: str
    met: bool
    code: str | None = None  # the reason code (errors.ReasonCode) when unmet
    detail: str = ""
    evaluated: bool = True
    # About the patient (gate.about_patient): its detail is never shown to a pharmacy or facility.
    private: bool = False

    def as_reason(self) -> dict[str, str]:
        return {"code": self.code or self.requirement, "detail": self.detail}


Requirement = Callable[[Facts], Check]


def requirement_code(requirement: Requirement) -> str:
    return str(getattr(requirement, "reason_code", "") or requirement.__name__)


def about_patient(requirement: Requirement) -> bool:
    """A requirement that reads a fact about the patient (ACT-7..9, CRS-2..4, GATE-4): never evaluated for
    a pharmacy or facility that is not itself certified (minimum necessary disclosure)."""
    return bool(getattr(requirement, "about_patient", False))


def not_evaluated(requirement: Requirement, why: str) -> Check:
    return Check(requirement.__name__, False, requirement_code(requirement), why, evaluated=False)


PENDING_DETAIL = (
    "Not checked at planning: checked at the dispense authorization (against its day) and at the first "
    "dose (against the infusion day)."
)


@dataclass(frozen=True)
class Evaluation:
    checks: tuple[Check, ...]
    # Requirements listed but not evaluated: checked at a later gate (Gate.pending).
    pending: tuple[dict[str, str], ...] = ()

    @property
    def approved(self) -> bool:
        return all(c.met for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """Every evaluated, unmet requirement, once per reason code, in requirement order."""
        seen: set[str] = set()
        out = []
        for c in self.checks:
            if not c.met and c.evaluated and (c.code or c.requirement) not in seen:
                seen.add(c.code or c.requirement)
                out.append(c)
        return out

    @property
    def reasons(self) -> list[dict[str, str]]:
        """The full reasons, as stored with the decision (GATE-5)."""
        return [c.as_reason() for c in self.failed]

    def requirements(self) -> list[dict[str, Any]]:
        return [
            {
                "requirement": c.requirement,
                "met": c.met,
                **({"code": c.code} if not c.met else {}),
                **({"detail": c.detail} if c.detail else {}),
                **({} if c.evaluated else {"evaluated": False}),
            }
            for c in self.checks
        ]

    def refused_by(self, check: Check) -> Evaluation:
        """This evaluation with `check` (from an approval action's `Refused`) in place of the requirement of
        the same name, or appended."""
        names = [c.requirement for c in self.checks]
        if check.requirement in names:
            return Evaluation(
                tuple(check if c.requirement == check.requirement else c for c in self.checks), self.pending
            )
        return Evaluation((*self.checks, check), self.pending)


@dataclass
class Gate:
    """A decision kind: its requirements, in the order they are reported. `caller` names the requirement
    that says whether the calling pharmacy or facility is itself certified; when it fails, nothing about
    the patient is evaluated (GATE-1, GATE-3, minimum necessary disclosure)."""

    kind: DecisionKind
    requirements: list[Requirement]
    caller: str | None = None
    # Whether an approved decision gets an audit event of its own; the dispense authorization's approval is
    # audited once, as the number's issue.
    audit_approval: bool = True
    extensions: list[Requirement] = field(default_factory=list)
    # Requirements this gate lists without evaluating, because they depend on a later day (course planning
    # lists the labs; issue 9 item 5). A requirement with `applies_to(facts)` is listed only where it
    # applies (the course 1 baseline for course 1).
    pending: list[Requirement] = field(default_factory=list)
    # The approval action runs in a savepoint, so that a `Refused` rolls its writes back, and the decision
    # is written after it. An action that writes in one all-or-nothing statement (`rows.rows_insert` with
    # `conflict_on`) sets this: it is called as `approve(facts, decision_id, decision_rows)` and
    # writes the approved decision and its audit event in that same statement, with no savepoint (issue
    # 13: three round trips fewer). Should it refuse, nothing was written and the denial is stored here.
    one_statement_approval: bool = False

    def all_requirements(self) -> list[Requirement]:
        return [*self.requirements, *self.extensions]

    def pending_for(self, facts: Facts) -> tuple[dict[str, str], ...]:
        if facts.patient is None:
            return ()
        return tuple(
            {"requirement": r.__name__, "code": requirement_code(r), "detail": PENDING_DETAIL}
            for r in self.pending
            if getattr(r, "applies_to", None) is None or r.applies_to(facts)  # type: ignore[attr-defined]
        )

    def evaluate(self, facts: Facts, *, caller_role: str | None = None) -> Evaluation:
        """Runs every requirement: pure, no database access. Party requirements (not about the patient) run
        first; a pharmacy or facility caller that fails its own certification learns nothing else."""
        requirements = self.all_requirements()
        party = [r for r in requirements if not about_patient(r)]
        checks = {r.__name__: r(facts) for r in party}
        caller_check = checks.get(self.caller) if self.caller else None
        hide = (
            caller_role in (Role.PHARMACY, Role.FACILITY)
            and caller_check is not None
            and not caller_check.met
        )
        for r in requirements:
            if r.__name__ not in checks:
                checks[r.__name__] = (
                    not_evaluated(r, "Not evaluated: the caller is not certified.") if hide else r(facts)
                )
        return Evaluation(
            tuple(
                replace(checks[r.__name__], private=True) if about_patient(r) else checks[r.__name__]
                for r in requirements
            ),
            self.pending_for(facts),
        )


def blocking_condition(*gates: Gate) -> Callable[[Requirement], Requirement]:
    """GATE-4's extension point: registers a requirement with each named gate (after its listed ones)."""

    def register(requirement: Requirement) -> Requirement:
        for gate in gates:
            gate.extensions.append(requirement)
        return requirement

    return register


def blocking_condition_remove(requirement: Requirement, gates: Iterable[Gate]) -> None:
    for gate in gates:
        if requirement in gate.extensions:
            gate.extensions.remove(requirement)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a gated service returns: the stored decision, its evaluation and facts, and what the approval
    action created. `decision` is None only when nothing was asked (`AlreadyDone`)."""

    decision: Decision | None
    evaluation: Evaluation
    facts: Facts | None = None
    created: T | None = None

    @property
    def approved(self) -> bool:
        return self.evaluation.approved

    @property
    def kind(self) -> str | None:
        return self.decision.kind if self.decision is not None else None


class Refused(Exception):
    """Raised by an approval action when the database turns it down (a race the locks cannot exclude)."""

    def __init__(self, check: Check) -> None:
        self.check = check
        super().__init__(check.detail)


class AlreadyDone(Exception):
    """Raised by a load step when what is asked already holds: nothing is decided or stored."""

    def __init__(self, result: Any) -> None:
        self.result = result
        super().__init__("already done")


# (facts, decision_id), or (facts, decision_id, decision_rows) for a one-statement approval
Approve = Callable[..., T]


def gate_run(
    gate: Gate,
    *,
    actor: User,
    load: Callable[[], Facts],
    inputs: Callable[[Facts], dict[str, Any]] | dict[str, Any],
    approve: Approve[T] | None = None,
) -> Outcome[T]:
    """Lock and load (`load` takes the locks and reads the facts, in the registry's lock order: patient,
    then participants, then authorization or dispense), evaluate, store the decision (GATE-5), and on
    approval run `approve(facts, decision_id)` in a savepoint. One transaction; the decision's row is
    written after the approval so that a `Refused` approval is stored as the denial it became (foreign keys
    to the decision are checked at commit). A gate with `one_statement_approval` has its approval write
    the approved decision in the same statement as its own rows, with no savepoint. `inputs`, when a
    callable, is called once, before the approval."""
    with transaction.atomic():
        try:
            facts = load()
        except AlreadyDone as done:
            return Outcome(None, Evaluation(()), None, done.result)
        evaluation = gate.evaluate(facts, caller_role=actor.role)
        decision_id = uuid.uuid4()
        created: T | None = None
        record: dict[str, Any] = {
            "id": decision_id,
            "kind": gate.kind,
            "facts": facts,
            "actor": actor,
            "inputs": inputs(facts) if callable(inputs) else inputs,
        }
        if evaluation.approved and approve is not None:
            approved: Decision | None = None
            try:
                if gate.one_statement_approval:
                    # No atomic(savepoint=False) either: a Refused leaving it would doom the transaction.
                    approved, rows = decision_rows(evaluation=evaluation, audit=gate.audit_approval, **record)
                    created = approve(facts, decision_id, rows)
                    if approved._state.adding:
                        raise RuntimeError(f"{gate.kind}: the approval did not write its decision")
                    return Outcome(approved, evaluation, facts, created)
                with transaction.atomic():
                    created = approve(facts, decision_id)
            except Refused as refused:
                # A one-statement approval may refuse only before its statement: once the decision is
                # written, or once the transaction is doomed (a Refused out of an atomic(savepoint=False)
                # block), the denial cannot be stored, and the request fails whole.
                written = approved is not None and not approved._state.adding
                if written or transaction.get_connection().needs_rollback:
                    raise
                evaluation = evaluation.refused_by(refused.check)
        decision = decision_record(
            evaluation=evaluation, audit=gate.audit_approval or not evaluation.approved, **record
        )
    return Outcome(decision, evaluation, facts, created)


def decision_rows(
    *,
    kind: DecisionKind,
    evaluation: Evaluation,
    facts: Facts,
    actor: User,
    inputs: dict[str, Any],
    audit: bool = True,
    id: uuid.UUID | None = None,
) -> tuple[Decision, list[Any]]:
    """GATE-5: the decision with every requirement, the settings in force, inputs and actor, and its audit
    event (unless the approval action's own event covers it), not yet written: the rows `decision_record`
    writes, or a one-statement approval writes with its own."""
    decision = Decision(
        id=id or uuid.uuid4(),
        kind=kind,
        outcome=DecisionOutcome.APPROVED if evaluation.approved else DecisionOutcome.DENIED,
        patient=facts.patient,
        actor=actor,
        inputs=_jsonable(inputs),
        requirements=evaluation.requirements(),
        reasons=evaluation.reasons,
        pending=list(evaluation.pending),
        program_settings=asdict(facts.program),
        request_id=current_request_id(),
    )
    rows: list[Any] = [decision]
    if audit:
        rows.append(
            audit_event(
                actor=actor,
                action=f"decision.{kind}",
                subject=decision,
                changes={"outcome": decision.outcome, "reasons": [r["code"] for r in evaluation.reasons]},
            )
        )
    return decision, rows


def decision_record(**kwargs: Any) -> Decision:
    """GATE-5: stores the decision and its audit event (`decision_rows`, same keywords) in one statement
    (`rows.rows_insert`). Runs in the caller's transaction."""
    decision, rows = decision_rows(**kwargs)
    rows_insert(*rows)
    return decision


__all__ = [
    "PENDING_DETAIL",
    "AlreadyDone",
    "Check",
    "Evaluation",
    "Gate",
    "Outcome",
    "ReasonCode",
    "Refused",
    "Requirement",
    "blocking_condition",
    "decision_record",
    "decision_rows",
    "gate_run",
]
