"""The program dashboard (issue 12): a list of panels, each a function of the moment returning a `Panel`
(its chart, its figures, the admin list behind each figure). Every panel runs a fixed number of aggregate
statements (registry/selectors/program.py): the dashboard's query count does not grow with the data
(tests/test_console_dashboard.py asserts it on small and larger programs).

Extension point: `DASHBOARD_PANELS` (or `@dashboard_panel` on a builder). Monitoring (open flags by
requirement and blocking, monthly compliance over 12 months) and pregnancy surveillance (pregnancies by
exposure and status) add one builder each, drawing with `charts.hbar_chart` / `charts.column_chart`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from registry.models import (
    PLURAL,
    DecisionKind,
    DecisionOutcome,
    Exposure,
    FlagStatus,
    MonitoringRequirement,
    ParticipantKind,
    PatientStatus,
    PregnancyStatus,
)

from . import charts
from .charts import Row, Segment


@dataclass(frozen=True)
class Figure:
    label: str
    value: int | float
    href: str
    display: str = ""
    listed: int | None = None  # the rows of the list behind it, when the figure is not a count (a share)

    @property
    def text(self) -> str:
        return self.display or f"{self.value:g}"

    @property
    def rows(self) -> int | float:
        return self.value if self.listed is None else self.listed


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    chart: SafeString
    figures: list[Figure]
    note: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class DashboardContext:
    now: dt.datetime

    @property
    def today(self) -> dt.date:
        return timezone.localdate(self.now)


PanelBuilder = Callable[[DashboardContext], Panel]
DASHBOARD_PANELS: list[PanelBuilder] = []


def dashboard_panel(builder: PanelBuilder) -> PanelBuilder:
    """Registers a panel (shown in registration order)."""
    DASHBOARD_PANELS.append(builder)
    return builder


def changelist(model_name: str, **params: str) -> str:
    url = reverse(f"admin:registry_{model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


AUTHORIZATION_WINDOW_DAYS = 90  # issue 12: approvals and denials over the last 90 days

_STATE_TONES = {
    "certified": "good",
    "lapsed": "warn",
    "pending": "sky",
    "suspended": "bad",
    "deactivated": "muted",
}
_PATIENT_TONES = {
    PatientStatus.ENROLLED: "sky",
    PatientStatus.AUTHORIZED: "good",
    PatientStatus.SUSPENDED: "bad",
    PatientStatus.DISCONTINUED: "warn",
    PatientStatus.MONITORING_COMPLETE: "info",
    PatientStatus.DECEASED: "muted",
}


def participant_list_params(state: str, at: dt.datetime) -> dict[str, str]:
    """The changelist filter behind one participant state (the console's `state` filter)."""
    return {"state": state}


@dashboard_panel
def participants_panel(ctx: DashboardContext) -> Panel:
    """ACT-1..5: participants of each kind by state; lapsed = certified but past its expiry."""
    from registry.selectors.program import PARTICIPANT_STATES, participant_state_counts

    counts = participant_state_counts(at=ctx.now)
    rows, figures = [], []
    for kind in ParticipantKind:
        segments = []
        for state in PARTICIPANT_STATES:
            n = counts[kind][state]
            href = changelist(kind.value, **participant_list_params(state, ctx.now))
            segments.append(Segment(state, n, href, _STATE_TONES[state]))
            figures.append(Figure(f"{PLURAL[kind]} {state}", n, href))
        rows.append(Row(PLURAL[kind], segments))
    return Panel(
        "participants",
        "Participants by kind and certification state",
        charts.hbar_chart(rows, title="Participants by kind and state"),
        figures,
        note="Lapsed: certified, but the certification's expiry has passed (fails every gate, ACT-5).",
    )


@dashboard_panel
def patients_panel(ctx: DashboardContext) -> Panel:
    """ACT-8: patients by status."""
    from registry.selectors.program import patient_status_counts

    counts = patient_status_counts()
    segments, figures = [], []
    for status in PatientStatus:
        n = counts.get(status.value, 0)
        href = changelist("patient", status__exact=status.value)
        segments.append(Segment(status.value, n, href, _PATIENT_TONES[status]))
        figures.append(Figure(status.label, n, href))
    rows = [Row(s.label, [s]) for s in segments]
    return Panel(
        "patients",
        "Patients by status",
        charts.hbar_chart(rows, title="Patients by status", legend=False),
        figures,
    )


def _decisions_href(outcome: str = "", reason: str = "", decided: str = "") -> str:
    params = {"kind__exact": DecisionKind.DISPENSE_AUTHORIZATION.value, "decided": decided}
    if outcome:
        params["outcome__exact"] = outcome
    if reason:
        params["reason"] = reason
    return changelist("decision", **params)


@dashboard_panel
def authorizations_panel(ctx: DashboardContext) -> Panel:
    """GATE-1: dispense authorizations approved and denied over the last 90 days, per week, and the denials
    by reason code (a denial counts under each of its reasons)."""
    from registry.selectors.program import (
        dispense_denial_reason_counts,
        dispense_outcome_counts,
        dispense_outcomes_by_week,
    )

    since = ctx.now - dt.timedelta(days=AUTHORIZATION_WINDOW_DAYS)
    window = f"{AUTHORIZATION_WINDOW_DAYS}d"
    outcomes = dispense_outcome_counts(since=since, until=ctx.now)
    reasons = dispense_denial_reason_counts(since=since, until=ctx.now)
    weekly = dispense_outcomes_by_week(since=since, until=ctx.now)
    by_week: dict[dt.date, dict[str, int]] = {}
    for week, outcome, n in weekly:
        by_week.setdefault(week, {})[outcome] = n
    columns = []
    for week, split in sorted(by_week.items()):
        decided = f"{week.isoformat()}..{(week + dt.timedelta(days=7)).isoformat()}"
        columns.append(
            Row(
                f"{week:%m-%d}",
                [
                    Segment(
                        "approved",
                        split.get("approved", 0),
                        _decisions_href("approved", decided=decided),
                        "good",
                    ),
                    Segment(
                        "denied", split.get("denied", 0), _decisions_href("denied", decided=decided), "bad"
                    ),
                ],
            )
        )
    reason_rows = [
        Row(code, [Segment("denials", n, _decisions_href(DecisionOutcome.DENIED, code, window), "bad")])
        for code, n in reasons.items()
    ]
    figures = [
        Figure("Approved", outcomes["approved"], _decisions_href("approved", decided=window)),
        Figure("Denied", outcomes["denied"], _decisions_href("denied", decided=window)),
        *(
            Figure(f"Denied: {code}", n, _decisions_href("denied", code, window))
            for code, n in reasons.items()
        ),
    ]
    chart = charts.column_chart(columns, title="Dispense authorizations per week")
    chart = SafeString(chart + charts.hbar_chart(reason_rows, title="Denials by reason code", legend=False))
    return Panel(
        "authorizations",
        f"Dispense authorizations, last {AUTHORIZATION_WINDOW_DAYS} days",
        chart,
        figures,
        note="Weeks start on Monday; a denial counts under each of its reason codes.",
    )


@dashboard_panel
def flags_panel(ctx: DashboardContext) -> Panel:
    """MON-3, GATE-4: open flags by requirement, split into blocking and not yet blocking (the sweep's
    records), and the patients overdue and blocked today read from the stored schedule (what the gate
    reads, so it is current even before today's sweep)."""
    from registry.selectors.program import open_flag_counts, patients_overdue_counts

    counts = open_flag_counts()
    rows, figures = [], []
    for requirement in MonitoringRequirement:
        segments = []
        for blocking, label, tone in ((True, "blocking", "bad"), (False, "not yet blocking", "warn")):
            n = counts.get((requirement.value, blocking), 0)
            href = changelist(
                "monitoringflag",
                requirement__exact=requirement.value,
                blocking__exact="1" if blocking else "0",
                status__exact=FlagStatus.OPEN,
            )
            segments.append(Segment(label, n, href, tone))
            if n:
                figures.append(Figure(f"Open flags: {requirement.label}, {label}", n, href))
        if any(seg.value for seg in segments):
            rows.append(Row(requirement.label, segments))
    total_open = sum(counts.values())
    total_blocking = sum(n for (_, blocking), n in counts.items() if blocking)
    patients = patients_overdue_counts(as_of=ctx.today)
    figures = [
        Figure("Open flags", total_open, changelist("monitoringflag", status__exact=FlagStatus.OPEN)),
        Figure(
            "Open flags blocking",
            total_blocking,
            changelist("monitoringflag", status__exact=FlagStatus.OPEN, blocking__exact="1"),
        ),
        Figure("Patients overdue today", patients["overdue"], changelist("patient", monitoring="overdue")),
        Figure(
            "Patients blocked by overdue monitoring",
            patients["blocking"],
            changelist("patient", monitoring="blocking"),
        ),
        *figures,
    ]
    return Panel(
        "flags",
        "Open monitoring flags by requirement",
        charts.hbar_chart(rows, title="Open monitoring flags by requirement and blocking"),
        figures,
        note="A flag opens when a requirement is overdue (due date + 7-day grace) and blocks new courses and "
        "dispense authorizations 30 days after that (MON-3, settings). Patients overdue and blocked are read "
        "from the stored schedule, as the gate reads it.",
    )


COMPLIANCE_MONTHS = 12  # issue 12: monthly monitoring compliance over the last 12 months


@dashboard_panel
def compliance_panel(ctx: DashboardContext) -> Panel:
    """MON-1: per calendar month, the share of patients in monitoring (a first infusion before the month,
    window not ended) with a result of every monthly lab collected in the month; the current month is
    partial."""
    from registry.selectors.program import month_starts, monthly_compliance

    months = monthly_compliance(months=month_starts(ctx.today, COMPLIANCE_MONTHS))
    columns, figures = [], []
    for start, total, done in months:
        share = 100.0 * done / total if total else 0.0
        display = f"{share:.0f}% ({done}/{total})"
        href = changelist("patient", in_monitoring=f"{start:%Y-%m}")
        columns.append(Row(f"{start:%b}", [Segment("compliant", share, href, "good", display)]))
        figures.append(Figure(f"{start:%Y-%m}", share, href, display=display, listed=total))
    return Panel(
        "compliance",
        f"Monthly monitoring compliance, last {COMPLIANCE_MONTHS} months",
        charts.column_chart(columns, title="Monthly lab compliance (%)", unit_max=100),
        figures,
        note="Share of patients in monitoring with every monthly lab (CBC with differential, serum creatinine, "
        "urinalysis, MON-1) collected in the month. Each month opens the patients in monitoring then.",
    )


_PREGNANCY_TONES = {
    PregnancyStatus.OPEN: "warn",
    PregnancyStatus.OUTCOME_RECORDED: "sky",
    PregnancyStatus.CLOSED: "muted",
}


@dashboard_panel
def pregnancies_panel(ctx: DashboardContext) -> Panel:
    """PRG-2..4: pregnancy reports by exposure (computed from the infusions, PRG-2) and status; an open
    report holds the gate (PRG-4)."""
    from registry.selectors.program import pregnancy_counts

    counts = pregnancy_counts()
    rows, figures = [], []
    for exposure in Exposure:
        segments = []
        for status in PregnancyStatus:
            n = counts.get((exposure.value, status.value), 0)
            href = changelist("pregnancyreport", exposure__exact=exposure.value, status__exact=status.value)
            segments.append(Segment(status.label, n, href, _PREGNANCY_TONES[status]))
            figures.append(Figure(f"{exposure.label}, {status.label.lower()}", n, href))
        rows.append(Row(exposure.label, segments))
    return Panel(
        "pregnancies",
        "Pregnancies by exposure and status",
        charts.hbar_chart(rows, title="Pregnancies by exposure and status"),
        figures,
        note="Exposed: conception during a course or within 4 months after its last infusion (PRG-2). "
        "An open report holds every gate for the patient (PRG-4).",
        links=[("Outcome or follow-up overdue", changelist("pregnancyreport", overdue="any"))],
    )


def dashboard_build(*, now: dt.datetime) -> list[Panel]:
    ctx = DashboardContext(now=now)
    return [builder(ctx) for builder in DASHBOARD_PANELS]
