"""Program-wide aggregates for the console's dashboard (issue 12). Each function is one aggregate
statement (or one per participant table) whose count does not grow with the data; nothing here loads
rows to count them in Python. Administrators only: callers are the admin site and the report endpoint,
both of which check the role first."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncWeek

from registry.models import (
    PARTICIPANT_MODELS,
    CertificationStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    Patient,
)

# The states an administrator reads for a participant: ACT-5's statuses, with `certified` split into
# still valid and `lapsed` (certified, but its certification expired).
PARTICIPANT_STATES = ("certified", "lapsed", "pending", "suspended", "deactivated")


def participant_state_q(state: str, at: dt.datetime) -> Q:
    """The filter for one of PARTICIPANT_STATES at `at` (ACT-5 `is_certified_at`, as a query)."""
    certified = Q(status=CertificationStatus.CERTIFIED)
    if state == "certified":
        return certified & (Q(certification_expires_at__isnull=True) | Q(certification_expires_at__gt=at))
    if state == "lapsed":
        return certified & Q(certification_expires_at__lte=at)
    return Q(status=state)


def participant_state_counts(*, at: dt.datetime) -> dict[str, dict[str, int]]:
    """Participants of each kind by state at `at`: one aggregate statement per kind (three in all)."""
    out: dict[str, dict[str, int]] = {}
    for kind, model in PARTICIPANT_MODELS.items():
        row = model.objects.aggregate(
            **{state: Count("pk", filter=participant_state_q(state, at)) for state in PARTICIPANT_STATES}
        )
        out[str(kind)] = {state: int(row[state] or 0) for state in PARTICIPANT_STATES}
    return out


def patient_status_counts() -> dict[str, int]:
    """Patients by status (ACT-8): one grouped statement."""
    rows = Patient.objects.order_by().values_list("status").annotate(n=Count("pk"))
    return dict(rows)


def _dispense_decisions(since: dt.datetime, until: dt.datetime) -> QuerySet[Decision]:
    return Decision.objects.filter(
        kind=DecisionKind.DISPENSE_AUTHORIZATION, created_at__gte=since, created_at__lt=until
    )


def dispense_outcome_counts(*, since: dt.datetime, until: dt.datetime) -> dict[str, int]:
    """GATE-1: dispense authorization decisions by outcome in [since, until): one statement."""
    rows = _dispense_decisions(since, until).order_by().values_list("outcome").annotate(n=Count("pk"))
    counts = {str(DecisionOutcome.APPROVED): 0, str(DecisionOutcome.DENIED): 0}
    counts.update(dict(rows))
    return counts


def _reason_codes_sql() -> tuple[str, str]:
    """(FROM clause expanding `reasons`, expression of one element's code) for this database."""
    if connection.vendor == "postgresql":
        return "jsonb_array_elements(d.reasons) AS r", "r ->> 'code'"
    return "json_each(d.reasons) AS r", "json_extract(r.value, '$.code')"


def dispense_denial_reason_counts(*, since: dt.datetime, until: dt.datetime) -> dict[str, int]:
    """GATE-1, GATE-5: denied dispense authorizations by reason code in [since, until), one statement. A
    denial names every failed requirement, so one denial counts under each of its reason codes."""
    source, code = _reason_codes_sql()
    sql = (
        f"SELECT {code} AS code, COUNT(DISTINCT d.id) FROM registry_decision d, {source} "  # noqa: S608
        "WHERE d.kind = %s AND d.outcome = %s AND d.created_at >= %s AND d.created_at < %s "
        "GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [DecisionKind.DISPENSE_AUTHORIZATION, DecisionOutcome.DENIED, since, until])
        return {str(c): int(n) for c, n in cursor.fetchall()}


def dispense_outcomes_by_week(*, since: dt.datetime, until: dt.datetime) -> list[tuple[dt.date, str, int]]:
    """Dispense authorization decisions per calendar week (in the registry's time zone) and outcome: one
    grouped statement."""
    rows = (
        _dispense_decisions(since, until)
        .annotate(week=TruncWeek("created_at"))
        .order_by()
        .values_list("week", "outcome")
        .annotate(n=Count("pk"))
        .order_by("week")
    )
    out = []
    for week, outcome, n in rows:
        day = week.date() if isinstance(week, dt.datetime) else week
        out.append((day, str(outcome), int(n)))
    return out


def decisions_with_reason(qs: QuerySet[Decision], code: str) -> QuerySet[Decision]:
    """Decisions whose stored reasons include `code` (the dashboard's links into the decision list)."""
    source, expr = _reason_codes_sql()
    return qs.filter(
        pk__in=RawSQL(  # noqa: S611 (inlined parts are this module's constants; the code is a parameter)
            f"SELECT d.id FROM registry_decision d, {source} WHERE {expr} = %s",  # noqa: S608
            [code],
        )
    )


def pregnancy_counts() -> dict[tuple[str, str], int]:
    """PRG-2..3: pregnancy reports by (exposure, status): one grouped statement."""
    from registry.models import PregnancyReport

    rows = PregnancyReport.objects.order_by().values_list("exposure", "status").annotate(n=Count("pk"))
    return {(str(exposure), str(status)): int(n) for exposure, status, n in rows}
