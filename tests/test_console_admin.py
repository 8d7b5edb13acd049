"""The administrators' console (issue 12): roles as groups, list columns, filters and searches, the patient
page, the program dashboard, and lifecycle actions that call the services with a reason and are audited.

Personas: `operator` is a staff superuser with role admin; `administrator` and `auditor` are staff users
with role admin who are not superusers and hold the "REMS administrator" and "read-only auditor" groups
(registry/console/roles.py, migration 0011_console_roles).
"""

from __future__ import annotations

import datetime as dt
import importlib
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib import admin as django_admin
from django.contrib import messages
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from registry.admin_site import RegistryAdminSite
from registry.console import roles
from registry.console.dashboard import dashboard_build
from registry.models import (
    AuditEvent,
    CertificationStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    DispenseAuthorization,
    Facility,
    Patient,
    PatientStatus,
    Pharmacy,
    PregnancyReport,
    Prescriber,
    Role,
    User,
)
from registry.services.accounts import admin_user_ensure

from .console import console_client
from .factories import FacilityFactory, PharmacyFactory, PrescriberFactory
from .gate_helpers import (
    DAY0,
    approved_number,
    authorized_patient,
    enroll_patient,
    frozen,
    infuse,
    moment,
    plan_course,
    request_authorization,
)
from .pregnancy_helpers import rp_patient

pytestmark = pytest.mark.django_db

S = CertificationStatus


def url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def page_url(patient: Patient) -> str:
    return reverse("admin:registry_patient_page", args=[patient.pk])


def shown(response: Any) -> list[Any]:
    return list(response.context["cl"].result_list)


def flashed(response: Any) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in response.context["messages"]]


def act(client: Client, model: type[Model], action: str, *objs: Model, **extra: Any) -> Any:
    data = {"action": action, "_selected_action": [str(o.pk) for o in objs], **extra}
    return client.post(url(model, "changelist"), data, follow=True)


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """DEBUG off serves static names through whitenoise's manifest, which `make test` does not build."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def console_user(username: str, group: str | None) -> User:
    """A staff user with role admin who is not a superuser, in `group`."""
    user = admin_user_ensure(username=username)
    User.objects.filter(pk=user.pk).update(is_superuser=False)
    user.refresh_from_db()
    if group:
        if not Group.objects.filter(name=group).exists():
            roles.roles_sync()  # a transactional test elsewhere flushed the rows migration 0011 wrote
        user.groups.add(Group.objects.get(name=group))
    return user


def logged_in(user: User) -> Client:
    """A console session verified by a second factor (ADMIN_REQUIRE_OTP is on in the tests)."""
    return console_client(user)


@pytest.fixture
def operator(db: None) -> User:
    return admin_user_ensure(username="console-admin")


@pytest.fixture
def console(operator: User) -> Client:
    return logged_in(operator)


@pytest.fixture
def administrator(db: None) -> User:
    return console_user("rems-administrator", roles.REMS_ADMINISTRATOR)


@pytest.fixture
def auditor(db: None) -> User:
    return console_user("auditor", roles.READ_ONLY_AUDITOR)


@pytest.fixture
def world(prescriber, facility, pharmacy) -> SimpleNamespace:
    """On 2026-03-02: an authorized patient with course 1 planned, 5 doses authorized and dispensed, day 1
    infused; a second, enrolled patient; one denied authorization (pharmacy not certified)."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        course = plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
        dispensed = pharmacy.post(
            "/api/v1/dispenses",
            {"authorization_number": number, "vials": 5, "ndc": "58468-0200-1", "lot_number": "L1"},
        )
        assert dispensed.status_code == 201, dispensed.json()
        assert infuse(facility, patient, DAY0, day=1).status_code == 201
        enrolled = enroll_patient(prescriber, first_name="Enid", last_name="Rolled")
    patient.refresh_from_db()
    return SimpleNamespace(
        prescriber=prescriber.participant,
        facility=facility.participant,
        pharmacy=pharmacy.participant,
        patient=patient,
        enrolled=enrolled,
        course=course,
        authorization=DispenseAuthorization.objects.get(number=number),
    )


# --- Roles (issue 12 item 1) ----------------------------------------------------------------------------


def test_roles_migration_and_roles_table_agree():
    """The groups the migration creates hold exactly the permissions registry/console/roles.py lists."""
    migration = importlib.import_module("registry.migrations.0011_console_roles")
    table = {name: sorted(c for _, c in perms) for name, perms in roles.GROUP_PERMISSIONS.items()}
    assert {name: sorted(codes) for name, codes in migration.GROUPS.items()} == table
    # The migration's own function, run on the current registry (a transactional test elsewhere in the
    # session may have flushed the rows the migration wrote), gives the groups exactly that table.
    Group.objects.filter(name__in=list(table)).delete()
    state = MigrationLoader(connection).project_state(("registry", "0011_console_roles"))
    migration.create_groups(state.apps, None)
    stored = {
        group.name: sorted(group.permissions.values_list("codename", flat=True))
        for group in Group.objects.filter(name__in=list(table))
    }
    assert stored == table


def test_roles_cover_every_registered_model():
    """Each model the console registers is viewable by both roles, so an auditor sees every screen."""
    registered = {m._meta.model_name for m in django_admin.site._registry if m._meta.app_label == "registry"}
    assert registered - set(roles.VIEWABLE) == set()


def test_roles_sync_is_idempotent_and_repairs_a_group():
    roles.roles_sync()
    group = Group.objects.get(name=roles.READ_ONLY_AUDITOR)
    group.permissions.clear()

    assert roles.roles_sync() == {name: len(p) for name, p in roles.GROUP_PERMISSIONS.items()}
    assert roles.roles_sync() == {name: len(p) for name, p in roles.GROUP_PERMISSIONS.items()}
    assert group.permissions.count() == len(roles.GROUP_PERMISSIONS[roles.READ_ONLY_AUDITOR])


def test_the_admin_site_is_the_registry_console():
    assert isinstance(django_admin.site, RegistryAdminSite)


@pytest.mark.parametrize("role", [Role.PRESCRIBER, Role.PHARMACY, Role.FACILITY])
def test_a_participant_user_never_gets_into_the_console_whatever_its_flags(
    role, prescriber, pharmacy, facility
):
    """Only role admin gets in: a participant's user made staff (and superuser) is sent to the login."""
    user = {Role.PRESCRIBER: prescriber, Role.PHARMACY: pharmacy, Role.FACILITY: facility}[role].user
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    client = logged_in(User.objects.get(pk=user.pk))

    for target in (reverse("admin:index"), reverse("admin:dashboard"), url(Patient, "changelist")):
        response = client.get(target)
        assert (response.status_code, response["Location"]) == (
            302,
            f"{reverse('admin:login')}?next={target}",
        )


def test_auditor_sees_every_list_the_dashboard_and_the_patient_page(auditor, world):
    client = logged_in(auditor)

    for model in django_admin.site._registry:
        if model._meta.app_label != "registry":
            continue  # Django's groups: superusers only
        assert client.get(url(model, "changelist")).status_code == 200, model
    assert client.get(reverse("admin:dashboard")).status_code == 200
    page = client.get(page_url(world.patient))
    assert page.status_code == 200
    assert page.context["can_change"] is False
    assert page.context["can_change_prescriber"] is False
    assert b'id="patient-suspend"' not in page.content
    assert b'id="prescriber-suspend"' not in page.content


@pytest.mark.parametrize("model", [Prescriber, Facility, Pharmacy, Patient, DispenseAuthorization])
def test_auditor_gets_no_action_and_no_add_or_change(auditor, world, model):
    """Read-only auditor: the lists offer no action; adding and editing are forbidden."""
    client = logged_in(auditor)
    obj = model._default_manager.first()

    assert client.get(url(model, "changelist")).context["action_form"] is None
    assert client.get(url(model, "add")).status_code == 403
    assert client.post(url(model, "change", obj.pk), {}).status_code == 403


def test_auditor_cannot_suspend_by_posting_the_action(auditor, world):
    """A hand-made POST of the suspend action changes nothing: the action is not offered to the auditor."""
    response = act(
        logged_in(auditor), Prescriber, "suspend", world.prescriber, apply="1", reason="Not mine to do"
    )

    assert response.status_code == 200
    assert Prescriber.objects.get(pk=world.prescriber.pk).status == S.CERTIFIED
    assert not AuditEvent.objects.filter(action="prescriber.suspend").exists()


def test_auditor_cannot_edit_pregnancy_reports_or_recompute_exposure(auditor, prescriber):
    with frozen(DAY0):
        patient = rp_patient(prescriber)
    from registry.services.pregnancy import pregnancy_report_file

    report = pregnancy_report_file(
        patient=patient,
        actor=prescriber.user,
        data={"reported_on": DAY0, "estimated_conception_on": DAY0 - dt.timedelta(days=20)},
        now=moment(DAY0),
    )
    client = logged_in(auditor)

    listing = client.get(url(PregnancyReport, "changelist"))
    choices = [value for value, _ in listing.context["action_form"].fields["action"].choices]
    assert "recompute_exposure" not in choices
    assert client.post(url(PregnancyReport, "change", report.pk), {}).status_code == 403


def test_rems_administrator_suspends_a_prescriber_with_a_reason_audited(administrator, world):
    """ACT-5 through participant_suspend: reason asked, status changed, audited with the administrator."""
    client = logged_in(administrator)

    asked = client.post(
        url(Prescriber, "changelist"), {"action": "suspend", "_selected_action": [str(world.prescriber.pk)]}
    )
    assert asked.context["title"] == "Suspend — reason required"
    done = act(client, Prescriber, "suspend", world.prescriber, apply="1", reason="License lapsed")

    assert flashed(done) == [(messages.SUCCESS, "Suspend: 1 done.")]
    world.prescriber.refresh_from_db()
    assert (world.prescriber.status, world.prescriber.status_reason) == (S.SUSPENDED, "License lapsed")
    [event] = AuditEvent.objects.filter(subject_id=world.prescriber.pk, action="prescriber.suspend")
    assert (event.actor, event.actor_role, event.changes["status"], event.changes["reason"]) == (
        administrator,
        "admin",
        ["certified", "suspended"],
        "License lapsed",
    )


def test_rems_administrator_discontinues_a_patient_through_the_service(administrator, world):
    """ACT-8: discontinue asks for a reason and runs patient_status_change, audited."""
    response = act(
        logged_in(administrator), Patient, "discontinue", world.patient, apply="1", reason="Moved abroad"
    )

    assert flashed(response) == [(messages.SUCCESS, "Discontinue: 1 done.")]
    world.patient.refresh_from_db()
    assert (world.patient.status, world.patient.status_reason) == (PatientStatus.DISCONTINUED, "Moved abroad")
    [event] = AuditEvent.objects.filter(subject_id=world.patient.pk, action="patient.discontinue")
    assert (event.actor, event.changes["reason"]) == (administrator, "Moved abroad")


def test_rems_administrator_cannot_delete(administrator, world):
    client = logged_in(administrator)
    assert client.get(url(Prescriber, "delete", world.prescriber.pk)).status_code == 403


def test_console_user_without_a_group_sees_nothing(db):
    client = logged_in(console_user("no-group", None))

    assert client.get(url(Patient, "changelist")).status_code == 403
    assert client.get(reverse("admin:dashboard")).status_code == 403


# --- Lists: columns, filters, searches (issue 12 item 1) -----------------------------------------------


def test_list_columns_per_model(console, world):
    expected = {
        Prescriber: [
            "last_name",
            "first_name",
            "npi",
            "status",
            "certified_at",
            "certification_expires_at",
            "patient_count",
        ],
        Pharmacy: [
            "name",
            "npi",
            "ncpdp_id",
            "city",
            "state",
            "status",
            "certified_at",
            "certification_expires_at",
        ],
        Patient: [
            "rems_patient_id",
            "last_name",
            "first_name",
            "date_of_birth",
            "status",
            "prescriber",
            "last_infusion_on",
            "monitoring_ends_on",
            "patient_page_link",
        ],
        DispenseAuthorization: [
            "number",
            "current_status",
            "pharmacy",
            "facility",
            "patient",
            "doses_authorized",
            "issued_at",
            "expires_at",
        ],
        Decision: ["created_at", "kind", "outcome", "patient", "actor", "reason_codes"],
    }
    for model, columns in expected.items():
        response = console.get(url(model, "changelist"))
        assert [c for c in response.context["cl"].list_display if c != "action_checkbox"] == columns, model


def test_prescriber_patient_count_links_to_the_patients(console, world):
    response = console.get(url(Prescriber, "changelist"))
    href = f"{url(Patient, 'changelist')}?prescriber__id__exact={world.prescriber.pk}"
    assert f'<a href="{href}">2</a>'.encode() in response.content
    assert set(shown(console.get(href))) == {world.patient, world.enrolled}


def test_participant_state_filter_splits_certified_and_lapsed(console):
    """ACT-5: `certified` is still valid; `lapsed` is certified with a certification expiry passed."""
    valid = PrescriberFactory(certified=True, certification_expires_at=timezone.now() + dt.timedelta(days=10))
    lapsed = PrescriberFactory(certified=True, certification_expires_at=timezone.now() - dt.timedelta(days=1))
    pending = PrescriberFactory()

    listing = url(Prescriber, "changelist")
    assert shown(console.get(listing, {"state": "certified"})) == [valid]
    assert shown(console.get(listing, {"state": "lapsed"})) == [lapsed]
    assert shown(console.get(listing, {"state": "pending"})) == [pending]
    assert shown(console.get(listing, {"expiry": "expired"})) == [lapsed]
    assert shown(console.get(listing, {"expiry": "30d"})) == [valid]
    assert set(shown(console.get(listing, {"expiry": "none"}))) == {pending}


def test_pharmacy_search_by_ncpdp_id(console, world):
    other = PharmacyFactory(certified=True)
    assert shown(console.get(url(Pharmacy, "changelist"), {"q": world.pharmacy.ncpdp_id})) == [world.pharmacy]
    assert other not in shown(console.get(url(Pharmacy, "changelist"), {"q": world.pharmacy.ncpdp_id}))


def test_patient_search_by_name_date_of_birth_and_prescriber(console, world, other_prescriber):
    with frozen(DAY0):
        stranger = enroll_patient(other_prescriber, date_of_birth=dt.date(1970, 1, 1), last_name="Stranger")
    listing = url(Patient, "changelist")

    assert shown(console.get(listing, {"q": "Rolled"})) == [world.enrolled]
    assert shown(console.get(listing, {"q": "1970-01-01"})) == [stranger]
    assert set(shown(console.get(listing, {"q": world.prescriber.npi}))) == {world.patient, world.enrolled}
    assert shown(console.get(listing, {"q": "2026-02-30"})) == []  # shaped like a date, not one: no 500


def test_patient_filters_by_status_and_prescriber(console, world, other_prescriber):
    with frozen(DAY0):
        stranger = enroll_patient(other_prescriber)
    listing = url(Patient, "changelist")

    assert shown(console.get(listing, {"status__exact": "authorized"})) == [world.patient]
    assert shown(console.get(listing, {"prescriber__id__exact": str(other_prescriber.participant.pk)})) == [
        stranger
    ]


def test_authorization_search_by_number_and_filter_by_pharmacy(console, world):
    listing = url(DispenseAuthorization, "changelist")

    assert shown(console.get(listing, {"q": world.authorization.number})) == [world.authorization]
    assert shown(console.get(listing, {"pharmacy__id__exact": str(world.pharmacy.pk)})) == [
        world.authorization
    ]
    assert shown(console.get(listing, {"status__exact": "used"})) == [world.authorization]


def test_decision_filters_by_reason_code_and_decided_window(console, world, prescriber, facility):
    """GATE-5: a denial is found by a reason code it names, and within the decided window."""
    uncertified = PharmacyFactory()
    from .conftest import participant_persona

    caller = participant_persona(uncertified)
    with frozen(DAY0):
        denied = request_authorization(caller, world.patient, prescriber, facility, doses=1)
    assert denied.json()["decision"] == "denied", denied.json()
    [denial] = Decision.objects.filter(
        outcome=DecisionOutcome.DENIED, kind=DecisionKind.DISPENSE_AUTHORIZATION
    )
    listing = url(Decision, "changelist")

    assert shown(console.get(listing, {"reason": "pharmacy_not_certified"})) == [denial]
    assert shown(console.get(listing, {"reason": "patient_not_authorized"})) == []
    window = f"{DAY0.isoformat()}..{(DAY0 + dt.timedelta(days=1)).isoformat()}"
    assert denial in shown(console.get(listing, {"decided": window, "outcome__exact": "denied"}))
    assert shown(console.get(listing, {"decided": "2020-01-01..2020-01-02"})) == []
    assert console.get(listing, {"decided": "not-a-window"}).status_code == 200


# --- The patient page (issue 12 item 1) -----------------------------------------------------------------


def test_patient_page_shows_every_section(console, world):
    with frozen(DAY0):
        response = console.get(page_url(world.patient))

    assert response.status_code == 200
    keys = [s.key for s in response.context["sections"]]
    assert keys[:1] == ["status"]
    assert {
        "status",
        "screening",
        "labs",
        "courses",
        "decisions",
        "authorizations",
        "pregnancy",
        "audit",
    } <= set(keys)
    text = response.content.decode()
    assert f'<strong id="patient-status">{PatientStatus.AUTHORIZED}</strong>' in text
    assert world.authorization.number in text
    assert "nothing about the patient blocks it" in text
    assert "patient.authorize" in text
    assert "infusion.record" in text
    assert b'id="patient-suspend"' in response.content
    assert b'id="prescriber-suspend"' in response.content


def test_patient_page_says_why_a_dispense_would_be_denied(console, world, prescriber):
    """ACT-8 "status and why": a suspended patient's page names the blocking requirement."""
    act(console, Patient, "suspend", world.patient, apply="1", reason="Safety review")

    text = console.get(page_url(world.patient)).content.decode()
    assert "would be denied" in text
    assert "patient_not_authorized" in text
    assert "Safety review" in text


def test_patient_page_lists_pregnancy_reports(console, prescriber):
    from registry.services.pregnancy import pregnancy_report_file

    with frozen(DAY0):
        patient = rp_patient(prescriber)
    pregnancy_report_file(
        patient=patient,
        actor=prescriber.user,
        data={"reported_on": DAY0, "estimated_conception_on": DAY0 - dt.timedelta(days=20)},
        now=moment(DAY0),
    )
    [section] = [s for s in console.get(page_url(patient)).context["sections"] if s.key == "pregnancy"]
    assert [(r.status, r.exposure) for r in section.context["reports"]] == [("open", "not_exposed")]


def test_patient_page_buttons_post_the_console_actions(console, operator, world):
    """The page's suspend button posts the patient changelist's action; the reason form follows; applying
    it suspends through the service (audited)."""
    asked = console.post(
        url(Patient, "changelist"), {"action": "suspend", "_selected_action": [str(world.patient.pk)]}
    )
    assert asked.templates[0].name == "admin/registry/transition.html"
    act(console, Patient, "suspend", world.patient, apply="1", reason="Pharmacy called: duplicate")

    world.patient.refresh_from_db()
    assert world.patient.status == PatientStatus.SUSPENDED
    assert AuditEvent.objects.filter(
        subject_id=world.patient.pk, action="patient.suspend", actor=operator
    ).exists()


def test_patient_page_query_count_does_not_grow_with_history(console, world, facility):
    """The page's statements are a fixed number: more infusions and audit events do not add queries."""
    with CaptureQueriesContext(connection) as small:
        assert console.get(page_url(world.patient)).status_code == 200
    for day in range(2, 5):
        assert infuse(facility, world.patient, DAY0 + dt.timedelta(days=day - 1), day=day).status_code == 201
    with CaptureQueriesContext(connection) as larger:
        assert console.get(page_url(world.patient)).status_code == 200
    assert len(larger) == len(small)


def test_unknown_patient_page_is_404(console):
    assert (
        console.get(
            reverse("admin:registry_patient_page", args=["00000000-0000-0000-0000-000000000000"])
        ).status_code
        == 404
    )


# --- The dashboard (issue 12 item 2) --------------------------------------------------------------------


def test_dashboard_is_linked_from_the_index(console):
    index = console.get(reverse("admin:index"))
    assert f'href="{reverse("admin:dashboard")}"'.encode() in index.content


def figures(response: Any) -> dict[str, Any]:
    return {f.label: f for panel in response.context["panels"] for f in panel.figures}


def test_dashboard_figures_and_the_lists_behind_them_count_the_same_rows(
    console, world, prescriber, facility
):
    uncertified = PharmacyFactory()
    from .conftest import participant_persona

    with frozen(timezone.now() - dt.timedelta(days=1)):
        request_authorization(participant_persona(uncertified), world.patient, prescriber, facility, doses=1)
    PrescriberFactory(certified=True, certification_expires_at=timezone.now() - dt.timedelta(days=1))
    response = console.get(reverse("admin:dashboard"))

    assert response.status_code == 200
    shown_figures = figures(response)
    assert shown_figures["Prescribers lapsed"].value == 1
    assert shown_figures["Enrolled"].value == 1
    assert shown_figures["Denied"].value == 1
    assert shown_figures["Denied: pharmacy_not_certified"].value == 1
    for figure in shown_figures.values():
        listing = console.get(figure.href)
        assert listing.status_code == 200, figure
        assert listing.context["cl"].result_count == figure.rows, figure.label
    assert response.content.count(b"<svg") >= 4


def test_dashboard_query_count_does_not_grow_with_the_data(console, world, prescriber, facility, pharmacy):
    """Issue 12: the dashboard's queries are aggregates; their number is the same on a small and a larger
    program."""
    with CaptureQueriesContext(connection) as small:
        dashboard_build(now=timezone.now())
    for n in range(4):
        with frozen(DAY0 + dt.timedelta(days=n)):
            authorized_patient(prescriber, first_name=f"More {n}")
        PrescriberFactory(status=S.SUSPENDED)
        PharmacyFactory(certified=True)
        FacilityFactory()
    with CaptureQueriesContext(connection) as larger:
        dashboard_build(now=timezone.now())
    assert len(larger) == len(small)
    assert len(small) <= 12
