"""Program-wide aggregates for the console's dashboard (issue 12). Each function is one aggregate
statement (or one per participant table) whose count does not grow with the data; nothing here loads
rows to count them in Python. Administrators only: callers are the admin site and the report endpoint,
both of which check the role first."""

from __future__ import annotations

import datetime as dt
from typing import Any

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
    PatientStatus,
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


# --- Monitoring (MON-1..5) ---------------------------------------------------------------------------

# MON-1: the monthly labs, by the lab test that satisfies each.
MONTHLY_LAB_TESTS = ("cbc_differential", "serum_creatinine", "urinalysis")


def open_flag_counts() -> dict[tuple[str, bool], int]:
    """MON-3: open flags by (requirement, blocking): one grouped statement over the partial index."""
    from registry.models import FlagStatus, MonitoringFlag

    rows = (
        MonitoringFlag.objects.filter(status=FlagStatus.OPEN)
        .order_by()
        .values_list("requirement", "blocking")
        .annotate(n=Count("pk"))
    )
    return {(str(requirement), bool(blocking)): int(n) for requirement, blocking, n in rows}


def monitoring_due_q(
    state: str, *, as_of: dt.date, prefix: str = "", patient_status: str = "patient__status"
) -> Q:
    """Schedule rows overdue (`overdue`) or overdue beyond the blocking threshold (`blocking`) on `as_of`,
    inside the window (MON-3, GATE-4: the same days the gate blocks on, selectors/monitoring.py), of
    patients still monitored (ACT-8: not deceased). `patient_status` is the path to the patient's status
    from the queryset's model."""
    from registry import rules
    from registry.selectors.monitoring import blocking_before, overdue_before

    program = rules.current()
    before = blocking_before(program, as_of) if state == "blocking" else overdue_before(program, as_of)
    return Q(**{f"{prefix}next_due_on__lt": before, f"{prefix}window_ends_on__gte": as_of}) & ~Q(
        **{patient_status: PatientStatus.DECEASED}
    )


def patients_overdue_counts(*, as_of: dt.date) -> dict[str, int]:
    """Patients with at least one requirement overdue, and blocking, on `as_of`, read from the stored
    schedule (what the gate reads, whether or not the sweep has run): one aggregate statement."""
    return {
        state: int(n or 0)
        for state, n in Patient.objects.aggregate(
            overdue=Count(
                "pk",
                distinct=True,
                filter=monitoring_due_q(
                    "overdue", as_of=as_of, prefix="monitoring_schedule__", patient_status="status"
                ),
            ),
            blocking=Count(
                "pk",
                distinct=True,
                filter=monitoring_due_q(
                    "blocking", as_of=as_of, prefix="monitoring_schedule__", patient_status="status"
                ),
            ),
        ).items()
    }


def month_starts(last: dt.date, months: int) -> list[dt.date]:
    """The first days of the `months` calendar months ending with the month of `last`, oldest first."""
    out, year, month = [], last.year, last.month
    for _ in range(months):
        out.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """The first days of the calendar months from the month of `first` to the month of `last`."""
    out, start = [], first.replace(day=1)
    while start <= last:
        out.append(start)
        start = _month_end(start)
    return out


def _month_end(start: dt.date) -> dt.date:
    """The first day of the month after `start`."""
    return dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)


def in_monitoring_during(start: dt.date, *, prefix: str = "") -> Q:
    """A patient in monitoring during the month starting `start` (MON-1): a first infusion before the
    month began, and a monitoring window that had not ended when it began."""
    return Q(**{f"{prefix}first_infusion_on__lt": start}) & (
        Q(**{f"{prefix}monitoring_ends_on__isnull": True}) | Q(**{f"{prefix}monitoring_ends_on__gte": start})
    )


def monthly_compliance(*, months: list[dt.date]) -> list[tuple[dt.date, int, int]]:
    """MON-1 per calendar month: (month, patients in monitoring, of whom every monthly lab has a result
    collected in the month). Two statements whatever the number of months or patients: one aggregate for
    the denominators, one grouped statement for the numerators (a patient-month counts when all three
    monthly tests have a result in it)."""
    if not months:
        return []
    totals = Patient.objects.aggregate(
        **{f"m{i}": Count("pk", filter=in_monitoring_during(start)) for i, start in enumerate(months)}
    )
    if connection.vendor == "postgresql":
        month_expr = "date_trunc('month', l.collected_on)::date"
    else:
        month_expr = "strftime('%%Y-%%m-01', l.collected_on)"
    placeholders = ", ".join(["%s"] * len(MONTHLY_LAB_TESTS))
    sql = (
        f"SELECT m, COUNT(*) FROM (SELECT l.patient_id, {month_expr} AS m "  # noqa: S608 (constants only)
        "FROM registry_labresult l JOIN registry_patient p ON p.id = l.patient_id "
        f"WHERE l.test IN ({placeholders}) AND l.collected_on >= %s AND l.collected_on < %s "
        "AND p.first_infusion_on IS NOT NULL "
        f"AND p.first_infusion_on < {month_expr} "
        f"AND (p.monitoring_ends_on IS NULL OR p.monitoring_ends_on >= {month_expr}) "
        f"GROUP BY l.patient_id, {month_expr} HAVING COUNT(DISTINCT l.test) = %s) AS done GROUP BY m"
    )
    params: list[Any] = [*MONTHLY_LAB_TESTS, months[0], _month_end(months[-1]), len(MONTHLY_LAB_TESTS)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        done = {str(m)[:10]: int(n) for m, n in cursor.fetchall()}
    return [
        (start, int(totals[f"m{i}"] or 0), done.get(start.isoformat(), 0)) for i, start in enumerate(months)
    ]
