"""The console's monitoring views (issue 12 with issue 10): the dashboard's flags panel and monthly
compliance chart, the patient page's schedule, flags and status forms, and the report's monitoring
figures, on the calendar of tests/monitoring_helpers.py.

Two patients finish course 1 on 2026-03-06 (monthly labs next due 2026-03-27, overdue from 2026-04-04,
blocking from 2026-05-04). Yves has his three monthly labs on 2026-04-20; Xavier has none. The sweep runs
on 2026-04-04 (six flags open: three each) and on 2026-05-10 (Xavier's three now block).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from registry.models import FlagStatus, MonitoringFlag, MonitoringRequirement
from registry.services.accounts import admin_user_ensure

from .console import console_client
from .gate_helpers import frozen, record_labs
from .monitoring_helpers import MONTHLY, monitored_patient, sweep

pytestmark = pytest.mark.django_db

MONTHLY_LABELS = [MonitoringRequirement(test).label for test in MONTHLY]
APRIL = {"from": "2026-04-01", "to": "2026-04-30"}
TODAY = dt.date(2026, 5, 10)


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def console(db: None) -> Client:
    return console_client(admin_user_ensure(username="console-admin"))


@pytest.fixture
def monitored(prescriber, facility) -> dict[str, Any]:
    xavier = monitored_patient(prescriber, facility, first_name="Xavier")
    yves = monitored_patient(prescriber, facility, first_name="Yves")
    assert sweep(dt.date(2026, 4, 4)).opened == 6
    with frozen(dt.date(2026, 4, 20)):
        record_labs(yves, prescriber.user, collected_on=dt.date(2026, 4, 20), tests=MONTHLY)
    sweep(TODAY)
    return {"xavier": xavier, "yves": yves}


def figures(response: Any) -> dict[str, Any]:
    return {f.label: f for panel in response.context["panels"] for f in panel.figures}


def test_dashboard_flags_and_blocked_patients(console, monitored):
    with frozen(TODAY):
        response = console.get(reverse("admin:dashboard"))
        shown = figures(response)

        assert shown["Open flags"].value == 3
        assert shown["Open flags blocking"].value == 3
        assert shown["Patients overdue today"].value == 1
        assert shown["Patients blocked by overdue monitoring"].value == 1
        assert sorted(
            (label, f.value) for label, f in shown.items() if label.startswith("Open flags: ")
        ) == sorted((f"Open flags: {label}, blocking", 1) for label in MONTHLY_LABELS)
        for figure in shown.values():
            listing = console.get(figure.href)
            assert listing.status_code == 200, figure
            assert listing.context["cl"].result_count == figure.rows, figure.label


def test_two_clicks_from_the_dashboard_to_the_blocked_patient(console, monitored):
    """Issue 12 "done when": the blocked figure opens the patient list; its row opens the patient page,
    which says what blocks."""
    with frozen(TODAY):
        dashboard = console.get(reverse("admin:dashboard"))
        listing = console.get(figures(dashboard)["Patients blocked by overdue monitoring"].href)
        assert list(listing.context["cl"].result_list) == [monitored["xavier"]]
        page_link = reverse("admin:registry_patient_page", args=[monitored["xavier"].pk])
        assert f'href="{page_link}"'.encode() in listing.content
        page = console.get(page_link)

    text = page.content.decode()
    assert 'id="monitoring-blocking"' in text
    assert "cbc_differential" in text
    assert "monitoring_overdue" in text  # the dispense gate's answer, in "status and why"


def test_patient_page_monitoring_section(console, monitored):
    with frozen(TODAY):
        page = console.get(reverse("admin:registry_patient_page", args=[monitored["yves"].pk]))
    [section] = [s for s in page.context["sections"] if s.key == "monitoring"]

    assert section.context["blocking"] == []
    assert {f.requirement: f.status for f in section.context["flags"]} == {
        test: FlagStatus.RESOLVED for test in MONTHLY
    }
    assert [r.requirement for r in section.context["state"].requirements][:3] == list(MONTHLY)


def test_compliance_chart_month_by_month(console, monitored):
    with frozen(TODAY):
        response = console.get(reverse("admin:dashboard"))
    shown = figures(response)

    assert shown["2026-04"].display == "50% (1/2)"  # both in monitoring, Yves compliant
    assert shown["2026-03"].display == "0% (0/0)"  # first infusions in March: not yet in monitoring
    assert shown["2026-05"].display == "0% (0/2)"
    assert response.context["panels"][[p.key for p in response.context["panels"]].index("compliance")].chart


def test_report_monitoring_figures_match_a_hand_count(admin, monitored):
    response = admin.client.get("/api/v1/reports/assessment", APRIL)

    assert response.status_code == 200
    got = {
        f["key"]: f["value"]
        for g in response.json()["goals"]
        for s in g["sections"]
        for f in s["figures"]
        if g["key"] == "monitoring"
    }
    hand = {
        "monitoring_patient_months": 2,
        "monitoring_patient_months_compliant": 1,
        "monitoring_compliance_percent": 50.0,
        "monitoring_flags_opened": 6,
        "monitoring_flags_opened_cbc_differential": 2,
        "monitoring_flags_opened_status_form": 0,
        "monitoring_flags_open_at_end": 3,  # Xavier's; Yves's closed on 04-20
        "monitoring_flags_blocking_at_end": 0,  # blocking from 05-04
        "patients_overdue_at_end": 1,
        "status_forms_filed": 0,
    }
    assert {key: got[key] for key in hand} == hand
    assert MonitoringFlag.objects.filter(opened_on__month=4).count() == got["monitoring_flags_opened"]
