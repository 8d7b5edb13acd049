"""The Django admin as REMS administrators use it (ACT-5, ACT-8, GATE-2, GATE-5).

Every screen renders for a staff superuser with role admin; lifecycle actions go through the same services
as the API and are audited with the administrator as actor; audit events, decisions, dispenses and the
other records of the gates are read-only; participants and patients are never deleted; a user with role
admin who is not staff does not get in.
"""

from __future__ import annotations

import datetime as dt
import importlib
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib import admin as django_admin
from django.contrib import messages
from django.contrib.admin.models import ADDITION, LogEntry
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from registry.models import (
    ApiKey,
    AuditEvent,
    AuthorizationStatus,
    CertificationStatus,
    Contraindication,
    Course,
    Decision,
    DecisionKind,
    Digest,
    DigestLine,
    Dispense,
    DispenseAuthorization,
    Facility,
    Infusion,
    LabResult,
    MonitoringFlag,
    MonitoringSchedule,
    Patient,
    PatientStatus,
    Pharmacy,
    Prescriber,
    Screening,
    StatusForm,
    SweepRun,
    User,
)
from registry.services.accounts import admin_user_ensure
from registry.services.monitoring import status_form_record

from .console import console_client
from .factories import FacilityFactory, PharmacyFactory, PrescriberFactory, make_npi
from .gate_helpers import (
    BASELINE_LABS,
    DAY0,
    add_contraindication,
    approved_number,
    authorized_patient,
    frozen,
    infuse,
    moment,
    plan_course,
    record_labs,
    request_authorization,
)
from .monitoring_helpers import monitored_patient, sweep

pytestmark = pytest.mark.django_db

S = CertificationStatus
DISPENSES = "/api/v1/dispenses"
REGISTERED = sorted(django_admin.site._registry, key=lambda model: model._meta.label)
# The registry's own records: each must have at least one row in `world` for its screens to be exercised.
MAIN = (
    Prescriber,
    Facility,
    Pharmacy,
    Patient,
    Course,
    Infusion,
    Decision,
    DispenseAuthorization,
    Dispense,
    AuditEvent,
    ApiKey,
    User,
)
FACTORIES: dict[str, Any] = {
    "prescriber": PrescriberFactory,
    "facility": FacilityFactory,
    "pharmacy": PharmacyFactory,
}
MISSING_PRESCRIBER = {"knowledge_assessment_score": None, "enrollment_signed_on": None}
UNMET = "The participant does not yet meet the certification requirements."


def url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def shown(response: Any) -> list[Any]:
    """The rows of a changelist response, in display order."""
    return list(response.context["cl"].result_list)


def flashed(response: Any) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in response.context["messages"]]


def act(client: Client, model: type[Model], action: str, *objs: Model, **extra: Any) -> Any:
    """POST the changelist's action form for `objs`, following the redirect."""
    data = {"action": action, "_selected_action": [str(o.pk) for o in objs], **extra}
    return client.post(url(model, "changelist"), data, follow=True)


def events(subject: Model, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(subject_id=subject.pk, action=action).order_by("created_at"))


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """The tests run with DEBUG off, where static files go through whitenoise's manifest storage, whose
    manifest only exists after `collectstatic` (the Docker build); `make test` does not collect. The admin
    templates under test use `{% static %}`, so this module serves static names unhashed."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def operator(db: None) -> User:
    """A REMS administrator: staff superuser with role admin."""
    return admin_user_ensure(username="console-admin")


@pytest.fixture
def console(operator: User) -> Client:
    return console_client(operator)


@pytest.fixture
def world(prescriber, facility, pharmacy) -> SimpleNamespace:
    """One of everything, built through the services and the API on 2026-03-02: an authorized patient with
    labs, screening and a contraindication; course 1 planned; 5 doses authorized (GATE-1) and dispensed
    (GATE-2); day 1 infused (GATE-3)."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        course = plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
        dispensed = pharmacy.post(
            DISPENSES,
            {"authorization_number": number, "vials": 5, "ndc": "58468-0200-1", "lot_number": "L123"},
        )
        assert dispensed.status_code == 201, dispensed.json()
        assert infuse(facility, patient, DAY0, day=1).status_code == 201
        add_contraindication(patient, prescriber.user, on=DAY0, kind="hypersensitivity")
    patient.refresh_from_db()
    return SimpleNamespace(
        prescriber=prescriber.participant,
        facility=facility.participant,
        pharmacy=pharmacy.participant,
        patient=patient,
        course=course,
        authorization=DispenseAuthorization.objects.get(number=number),
    )


@pytest.fixture
def active_authorization(prescriber, facility, pharmacy) -> DispenseAuthorization:
    """An active authorization issued on 2026-03-02 (valid 7 days)."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    return DispenseAuthorization.objects.get(number=number)


@pytest.fixture
def patient(prescriber) -> Patient:
    """Authorized on 2026-03-02."""
    with frozen(DAY0):
        return authorized_patient(prescriber)


# --- Every screen renders ---------------------------------------------------------------------------------


def test_world_has_a_row_of_every_main_record(world):
    """The fixture really populates the screens under test, including the patient's inlines."""
    assert {model._meta.label: model.objects.exists() for model in MAIN} == {
        model._meta.label: True for model in MAIN
    }
    assert LabResult.objects.filter(patient=world.patient).count() == len(BASELINE_LABS)
    assert Screening.objects.filter(patient=world.patient).count() == 1
    assert Contraindication.objects.filter(patient=world.patient).count() == 1
    assert Infusion.objects.filter(patient=world.patient).count() == 1


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_every_registered_changelist_and_change_page_renders(console, world, model):
    """Every admin changelist lists every row, and every row's change page renders (catches broken
    list_display, readonly_fields, fieldsets and inlines)."""
    changelist = console.get(url(model, "changelist"))

    assert changelist.status_code == 200
    assert changelist.context["cl"].result_count == model._default_manager.count()
    if model in MAIN:
        assert changelist.context["cl"].result_count >= 1
    for obj in model._default_manager.all():
        page = console.get(url(model, "change", obj.pk))
        assert (model._meta.label, str(obj.pk), page.status_code) == (model._meta.label, str(obj.pk), 200)


def test_patient_change_page_shows_its_records_read_only(console, world):
    """ACT-7, ACT-9: the patient's screen shows its labs, screening, contraindication, course and infusion
    inline, with nothing to add or edit in them."""
    page = console.get(url(Patient, "change", world.patient.pk))

    assert page.status_code == 200
    formsets = {fs.formset.model: fs for fs in page.context["inline_admin_formsets"]}
    assert {model: len(fs.formset.forms) for model, fs in formsets.items()} == {
        Screening: 1,
        LabResult: len(BASELINE_LABS),
        Contraindication: 1,
        Course: 1,
        Infusion: 1,
        MonitoringSchedule: 7,  # MON-1, MON-2, MON-4 from the first infusion (issue 10)
        StatusForm: 0,
        MonitoringFlag: 0,
    }
    assert {model: (fs.has_add_permission, fs.has_change_permission) for model, fs in formsets.items()} == {
        model: (False, False) for model in formsets
    }
    assert b"patient.enroll" in page.content  # the audit history


def test_gate5_authorization_page_shows_requirements_and_settings(console, world):
    """GATE-5: the authorization's screen lists every requirement evaluated with its result, and the
    program settings in force."""
    page = console.get(url(DispenseAuthorization, "change", world.authorization.pk))

    assert page.status_code == 200
    for requirement in world.authorization.decision.requirements:
        assert f"<div>{requirement['requirement']} — met</div>".encode() in page.content
    assert b"Program settings in force" in page.content


def test_search_by_npi_finds_the_participant(console, world):
    """The search box matches participants by NPI."""
    PrescriberFactory(certified=True)
    for model, participant in (
        (Prescriber, world.prescriber),
        (Facility, world.facility),
        (Pharmacy, world.pharmacy),
    ):
        response = console.get(url(model, "changelist"), {"q": participant.npi})
        assert response.status_code == 200
        assert shown(response) == [participant]


def test_search_by_rems_patient_id_finds_the_patient_and_its_records(console, world, prescriber):
    """ID-4: the REMS patient ID finds the patient, its courses, authorizations, dispenses and infusions."""
    with frozen(DAY0):
        authorized_patient(prescriber)  # a second patient that must not match
    rid = world.patient.rems_patient_id

    assert shown(console.get(url(Patient, "changelist"), {"q": rid})) == [world.patient]
    assert shown(console.get(url(Course, "changelist"), {"q": rid})) == [world.course]
    assert shown(console.get(url(DispenseAuthorization, "changelist"), {"q": rid})) == [world.authorization]
    assert shown(console.get(url(Dispense, "changelist"), {"q": rid})) == [world.authorization.dispense]
    assert shown(console.get(url(Infusion, "changelist"), {"q": rid})) == list(world.patient.infusions.all())


def test_search_audit_events_by_subject_id(console, world):
    """ACT-5: an administrator pastes a record's id into the audit search to see its trail."""
    response = console.get(url(AuditEvent, "changelist"), {"q": str(world.patient.pk)})

    assert response.status_code == 200
    expected = AuditEvent.objects.filter(subject_id=world.patient.pk)
    assert {e.action for e in expected} >= {"patient.enroll", "patient.authorize"}
    assert {e.pk for e in shown(response)} == {e.pk for e in expected}


def test_status_list_filter_returns_only_certified(console, world):
    """ACT-5: the status filter returns exactly the participants in that status."""
    pending = PrescriberFactory()
    suspended = PrescriberFactory(status=S.SUSPENDED)

    certified = console.get(url(Prescriber, "changelist"), {"status__exact": "certified"})
    assert certified.status_code == 200
    assert shown(certified) == [world.prescriber]
    assert shown(console.get(url(Prescriber, "changelist"), {"status__exact": "pending"})) == [pending]
    assert shown(console.get(url(Prescriber, "changelist"), {"status__exact": "suspended"})) == [suspended]


def test_decision_filters_by_kind(console, world):
    """GATE-5: decisions filter by kind."""
    response = console.get(url(Decision, "changelist"), {"kind__exact": DecisionKind.DISPENSE_AUTHORIZATION})

    assert response.status_code == 200
    assert shown(response) == [world.authorization.decision]


# --- ACT-5: participant lifecycle actions --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["prescriber", "facility", "pharmacy"])
def test_act5_certify_action_certifies_and_audits_with_admin_as_actor(console, operator, kind):
    """ACT-5: certify runs participant_certify and records who and when."""
    participant = FACTORIES[kind]()
    model = type(participant)

    response = act(console, model, "certify", participant)

    assert response.status_code == 200
    assert response.redirect_chain == [(url(model, "changelist"), 302)]
    assert flashed(response) == [(messages.SUCCESS, "Certify: 1 done.")]
    participant.refresh_from_db()
    assert participant.status == S.CERTIFIED
    assert participant.certified_at == participant.status_changed_at
    [event] = events(participant, f"{kind}.certify")
    assert (event.actor, event.actor_role, event.subject_type) == (operator, "admin", kind)
    assert event.changes["status"] == ["pending", "certified"]


def test_act5_certify_with_missing_requirements_shows_error_and_stays_pending(console):
    """ACT-2, ACT-5: certifying a prescriber who lacks requirements lists them and changes nothing."""
    participant = PrescriberFactory(**MISSING_PRESCRIBER)

    response = act(console, Prescriber, "certify", participant)

    assert response.status_code == 200
    assert flashed(response) == [
        (
            messages.ERROR,
            f"{participant}: {UNMET} (knowledge_assessment_passed, enrollment_form_signed) "
            "[certification_requirements_unmet]",
        )
    ]
    participant.refresh_from_db()
    assert (participant.status, participant.certified_at) == (S.PENDING, None)
    assert events(participant, "prescriber.certify") == []


def test_act5_certify_selection_certifies_the_eligible_and_reports_the_rest(console):
    """ACT-5: one failure does not block the others in a selection."""
    ready, lacking = PrescriberFactory(), PrescriberFactory(**MISSING_PRESCRIBER)

    response = act(console, Prescriber, "certify", ready, lacking)

    assert sorted(flashed(response)) == sorted(
        [
            (
                messages.ERROR,
                f"{lacking}: {UNMET} (knowledge_assessment_passed, enrollment_form_signed) "
                "[certification_requirements_unmet]",
            ),
            (messages.SUCCESS, "Certify: 1 done."),
        ]
    )
    assert Prescriber.objects.get(pk=ready.pk).status == S.CERTIFIED
    assert Prescriber.objects.get(pk=lacking.pk).status == S.PENDING


def test_act5_suspend_without_reason_asks_for_one_and_changes_nothing(console):
    """ACT-5: suspension needs a reason; the action first renders the reason form."""
    participant = PrescriberFactory(certified=True)

    response = console.post(
        url(Prescriber, "changelist"), {"action": "suspend", "_selected_action": [str(participant.pk)]}
    )

    assert response.status_code == 200
    assert response.templates[0].name == "admin/registry/transition.html"
    assert response.context["title"] == "Suspend — reason required"
    assert response.context["objects"] == [participant]
    assert response.context["action"] == "suspend"
    assert response.context["form"].is_bound is False
    participant.refresh_from_db()
    assert participant.status == S.CERTIFIED
    assert events(participant, "prescriber.suspend") == []


def test_act5_suspend_with_apply_but_blank_reason_is_refused(console):
    """ACT-5: a blank reason is a form error, not a suspension."""
    participant = PrescriberFactory(certified=True)

    response = console.post(
        url(Prescriber, "changelist"),
        {"action": "suspend", "_selected_action": [str(participant.pk)], "apply": "1", "reason": ""},
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert Prescriber.objects.get(pk=participant.pk).status == S.CERTIFIED


def test_act5_suspend_with_reason_suspends_and_records_the_reason(console, operator):
    """ACT-5: certified -> suspended, with who, when and why in the record and the audit trail."""
    participant = PrescriberFactory(certified=True)

    response = act(console, Prescriber, "suspend", participant, apply="1", reason="License under review")

    assert flashed(response) == [(messages.SUCCESS, "Suspend: 1 done.")]
    participant.refresh_from_db()
    assert (participant.status, participant.status_reason) == (S.SUSPENDED, "License under review")
    [event] = events(participant, "prescriber.suspend")
    assert (event.actor, event.changes) == (
        operator,
        {"status": ["certified", "suspended"], "reason": "License under review"},
    )


def test_act5_audit_event_is_stamped_with_the_transition_time(console):
    """ACT-5 "who, when and why": the event's time is the transition's `now` (status_changed_at), not a
    later clock reading."""
    participant = PrescriberFactory(certified=True)

    act(console, Prescriber, "suspend", participant, apply="1", reason="License under review")

    participant.refresh_from_db()
    [event] = events(participant, "prescriber.suspend")
    assert event.created_at == participant.status_changed_at


def test_act5_reinstate_and_deactivate_actions(console, operator):
    """ACT-5: suspended -> certified (reinstate) -> deactivated (terminal), each with its reason."""
    participant = PrescriberFactory(status=S.SUSPENDED)

    act(console, Prescriber, "reinstate", participant, apply="1", reason="Review closed")
    participant.refresh_from_db()
    assert (participant.status, participant.status_reason) == (S.CERTIFIED, "Review closed")

    act(console, Prescriber, "deactivate", participant, apply="1", reason="Retired")
    participant.refresh_from_db()
    assert (participant.status, participant.status_reason) == (S.DEACTIVATED, "Retired")
    assert [
        (e.action, e.actor, e.changes["status"])
        for e in AuditEvent.objects.filter(subject_id=participant.pk).order_by("created_at")
    ] == [
        ("prescriber.reinstate", operator, ["suspended", "certified"]),
        ("prescriber.deactivate", operator, ["certified", "deactivated"]),
    ]


def test_act5_invalid_transition_is_reported_not_applied(console):
    """ACT-5: a pending participant cannot be suspended; the admin says so."""
    participant = PrescriberFactory()

    response = act(console, Prescriber, "suspend", participant, apply="1", reason="Why not")

    assert flashed(response) == [
        (
            messages.ERROR,
            f"{participant}: A prescriber that is pending cannot be suspended. [invalid_status_transition]",
        )
    ]
    assert Prescriber.objects.get(pk=participant.pk).status == S.PENDING
    assert events(participant, "prescriber.suspend") == []


def test_act5_participant_added_through_admin_is_registered_and_audited(console, operator):
    """ACT-1, ACT-5: the add form registers a pending participant through participant_register."""
    npi = make_npi()
    response = console.post(
        url(Prescriber, "add"),
        {
            "npi": npi,
            "first_name": "Grace",
            "last_name": "Hopper",
            "credentials": "MD",
            "email": "grace@example.org",
            "phone": "",
            "dea_number": "",
            "knowledge_assessment_score": "8",
            "knowledge_assessment_passed_on": "2026-10-01",
            "enrollment_signed_on": "2026-10-02",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert response["Location"] == url(Prescriber, "changelist")
    [created] = Prescriber.objects.filter(npi=npi)
    assert (created.status, created.last_name, created.email) == (S.PENDING, "Hopper", "grace@example.org")
    [event] = events(created, "prescriber.register")
    assert (event.actor, event.actor_role) == (operator, "admin")
    assert event.changes == {
        "npi": npi,
        "first_name": "Grace",
        "last_name": "Hopper",
        "credentials": "MD",
        "email": "grace@example.org",
        "phone": "",
        "dea_number": "",
        "knowledge_assessment_score": 8,
        "knowledge_assessment_passed_on": "2026-10-01",
        "enrollment_signed_on": "2026-10-02",
    }
    [entry] = LogEntry.objects.filter(user=operator, action_flag=ADDITION)
    assert entry.object_id == str(created.pk)


def test_act1_invalid_npi_in_admin_form_is_a_form_error(console):
    """ACT-1, ID-1: an NPI with a bad check digit is refused by the form; nothing is registered."""
    response = console.post(
        url(Prescriber, "add"),
        {
            "npi": "1234567890",
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": "grace@example.org",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["npi"] == [
        "Enter a valid NPI: 10 digits starting with 1 or 2, with a valid check digit."
    ]
    assert Prescriber.objects.count() == 0
    assert AuditEvent.objects.filter(action="prescriber.register").count() == 0


def test_act1_duplicate_npi_in_admin_form_is_an_error_not_a_crash(console):
    """ACT-1: an NPI already held by a participant that is not deactivated is refused with an error shown
    to the administrator (the API answers 409 duplicate_identifier); no second row."""
    existing = PrescriberFactory(certified=True)

    response = console.post(
        url(Prescriber, "add"),
        {"npi": existing.npi, "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.org"},
        follow=True,
    )

    assert response.status_code == 200
    assert b"already registered" in response.content
    assert Prescriber.objects.filter(npi=existing.npi).count() == 1


def test_act5_change_form_updates_through_the_service_and_audits(console, operator):
    """ACT-5: editing registration details is participant_update, audited with old and new values;
    the status is not editable here."""
    participant = PrescriberFactory(certified=True, email="old@example.org")

    response = console.post(
        url(Prescriber, "change", participant.pk),
        {
            "npi": participant.npi,
            "first_name": participant.first_name,
            "last_name": participant.last_name,
            "credentials": participant.credentials,
            "email": "new@example.org",
            "phone": "",
            "dea_number": "",
            "knowledge_assessment_score": "8",
            "knowledge_assessment_passed_on": participant.knowledge_assessment_passed_on.isoformat(),
            "enrollment_signed_on": participant.enrollment_signed_on.isoformat(),
            "status": "suspended",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    participant.refresh_from_db()
    assert (participant.email, participant.status) == ("new@example.org", S.CERTIFIED)
    [event] = events(participant, "prescriber.update")
    assert (event.actor, event.changes) == (operator, {"email": ["old@example.org", "new@example.org"]})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"npi": "1993999998"}, "identifiers of a certified or suspended participant cannot change"),
        ({"knowledge_assessment_score": "3"}, "would undo a certification requirement"),
    ],
)
def test_act5_change_form_refuses_breaking_edits_of_a_certified_participant(console, edit, message):
    """ACT-5: the admin form applies the service's refusal (identifiers locked, requirements kept) as a
    form error: 200 with the message, nothing saved, nothing audited (not a 500)."""
    participant = PrescriberFactory(certified=True)
    before = (participant.npi, participant.knowledge_assessment_score)
    form = {
        "npi": participant.npi,
        "first_name": participant.first_name,
        "last_name": participant.last_name,
        "credentials": participant.credentials,
        "email": participant.email,
        "phone": "",
        "dea_number": "",
        "knowledge_assessment_score": "8",
        "knowledge_assessment_passed_on": participant.knowledge_assessment_passed_on.isoformat(),
        "enrollment_signed_on": participant.enrollment_signed_on.isoformat(),
        **edit,
    }

    response = console.post(url(Prescriber, "change", participant.pk), form)

    assert response.status_code == 200
    assert message in response.content.decode()
    participant.refresh_from_db()
    assert (participant.npi, participant.knowledge_assessment_score) == before
    assert events(participant, "prescriber.update") == []


# --- ACT-8: patient suspension --------------------------------------------------------------------------


def test_act8_patient_suspend_requires_a_reason(console, patient):
    """ACT-8: the suspend action first asks for a reason; the patient is untouched until given one."""
    response = console.post(
        url(Patient, "changelist"), {"action": "suspend", "_selected_action": [patient.pk]}
    )

    assert response.status_code == 200
    assert response.context["title"] == "Suspend — reason required"
    assert response.context["objects"] == [patient]
    assert Patient.objects.get(pk=patient.pk).status == PatientStatus.AUTHORIZED
    assert events(patient, "patient.suspend") == []


def test_act8_patient_suspend_and_reinstate_go_through_the_service(console, operator, patient):
    """ACT-8: an administrator suspends with a reason, then reinstates to the status held before."""
    suspended = act(console, Patient, "suspend", patient, apply="1", reason="Safety review")

    assert flashed(suspended) == [(messages.SUCCESS, "Suspend: 1 done.")]
    patient.refresh_from_db()
    assert (patient.status, patient.status_reason, patient.status_before_suspension) == (
        PatientStatus.SUSPENDED,
        "Safety review",
        PatientStatus.AUTHORIZED,
    )
    [event] = events(patient, "patient.suspend")
    assert (event.actor, event.actor_role, event.changes) == (
        operator,
        "admin",
        {"status": ["authorized", "suspended"], "reason": "Safety review"},
    )

    reinstated = act(console, Patient, "reinstate", patient, apply="1", reason="Review closed")

    assert flashed(reinstated) == [(messages.SUCCESS, "Reinstate: 1 done.")]
    patient.refresh_from_db()
    assert (patient.status, patient.status_reason, patient.status_before_suspension) == (
        PatientStatus.AUTHORIZED,
        "Review closed",
        "",
    )
    [event] = events(patient, "patient.reinstate")
    assert (event.actor, event.changes) == (
        operator,
        {"status": ["suspended", "authorized"], "reason": "Review closed"},
    )


def test_act8_reinstating_a_patient_who_is_not_suspended_is_reported(console, patient):
    """ACT-8: reinstate applies only to a suspended patient."""
    response = act(console, Patient, "reinstate", patient, apply="1", reason="Oops")

    assert flashed(response) == [
        (
            messages.ERROR,
            f"{patient}: A patient who is authorized cannot be reinstated. [invalid_status_transition]",
        )
    ]
    assert Patient.objects.get(pk=patient.pk).status == PatientStatus.AUTHORIZED


# --- GATE-2: authorization revocation -------------------------------------------------------------------


def test_gate2_admin_revokes_an_active_authorization_with_reason(console, operator, active_authorization):
    """GATE-2: an administrator revokes an active number, with a reason, through authorization_revoke."""
    changelist = url(DispenseAuthorization, "changelist")
    selected = {"action": "revoke", "_selected_action": [str(active_authorization.pk)]}
    with frozen(DAY0 + dt.timedelta(days=1)):
        asked = console.post(changelist, selected)
        assert asked.status_code == 200
        assert asked.context["title"] == "Revoke — reason required"
        assert (
            DispenseAuthorization.objects.get(pk=active_authorization.pk).status == AuthorizationStatus.ACTIVE
        )

        done = console.post(
            changelist, {**selected, "apply": "1", "reason": "Prescription changed"}, follow=True
        )

    assert flashed(done) == [(messages.SUCCESS, "Revoke: 1 done.")]
    active_authorization.refresh_from_db()
    assert (
        active_authorization.status,
        active_authorization.revoke_reason,
        active_authorization.revoked_by,
        active_authorization.revoked_at,
    ) == (AuthorizationStatus.REVOKED, "Prescription changed", operator, moment(DAY0 + dt.timedelta(days=1)))
    [event] = events(active_authorization, "authorization.revoke")
    assert (event.actor, event.changes) == (
        operator,
        {"status": ["active", "revoked"], "reason": "Prescription changed"},
    )


def test_gate2_used_authorization_is_not_revoked_by_the_admin(console, world):
    """GATE-2: a used number stays used."""
    act(console, DispenseAuthorization, "revoke", world.authorization, apply="1", reason="Too late")

    assert DispenseAuthorization.objects.get(pk=world.authorization.pk).status == AuthorizationStatus.USED
    assert events(world.authorization, "authorization.revoke") == []


def test_api_key_revoke_action_is_audited(console, operator, prescriber):
    """API keys are revoked from the console, audited with the administrator as actor."""
    key = ApiKey.objects.get(user=prescriber.user)

    response = act(console, ApiKey, "revoke", key)

    assert flashed(response) == [(messages.SUCCESS, "Keys revoked.")]
    key.refresh_from_db()
    assert key.revoked_at is not None
    [event] = events(key, "api_key.revoke")
    assert event.actor == operator
    assert prescriber.get("/api/v1/prescribers").status_code == 401


# --- Read-only records and no deletion -------------------------------------------------------------------

READ_ONLY = (AuditEvent, Decision, Dispense, DispenseAuthorization, Course, Infusion, ApiKey, User)
NEVER_DELETED = (Prescriber, Facility, Pharmacy, Patient, *READ_ONLY)


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda model: model._meta.label)
def test_gate5_read_only_records_cannot_be_added_or_edited(console, world, model):
    """GATE-5, ACT-5: audit events, decisions, dispenses and the other records of the gates are written by
    the services only: no add screen, and their change pages are view-only."""
    obj = model._default_manager.first()
    count = model._default_manager.count()

    assert console.get(url(model, "add")).status_code == 403
    assert console.post(url(model, "add"), {}).status_code == 403
    assert console.post(url(model, "change", obj.pk), {}).status_code == 403
    assert model._default_manager.count() == count


@pytest.mark.parametrize("model", NEVER_DELETED, ids=lambda model: model._meta.label)
def test_nothing_is_deleted_from_the_console(console, world, model):
    """ACT-5: records of a REMS are deactivated, never deleted: the delete screen is forbidden and the
    changelist offers no delete action."""
    obj = model._default_manager.first()
    count = model._default_manager.count()

    assert console.get(url(model, "delete", obj.pk)).status_code == 403
    assert console.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    changelist = console.get(url(model, "changelist"))
    action_form = changelist.context["action_form"]
    choices = [] if action_form is None else [value for value, _ in action_form.fields["action"].choices]
    assert "delete_selected" not in choices
    console.post(url(model, "changelist"), {"action": "delete_selected", "_selected_action": [str(obj.pk)]})
    assert model._default_manager.count() == count


@pytest.mark.parametrize("model", [AuditEvent, Decision, Dispense], ids=lambda model: model._meta.label)
def test_gate5_audit_decision_and_dispense_screens_have_no_actions(console, world, model):
    """GATE-5: these screens offer no bulk action at all."""
    assert console.get(url(model, "changelist")).context["action_form"] is None


def test_patients_cannot_be_added_from_the_console(console):
    """ACT-6: enrollment is the prescriber's act, through the API."""
    assert console.get(url(Patient, "add")).status_code == 403


# --- Access -------------------------------------------------------------------------------------------------


def test_admin_role_without_staff_cannot_log_in_to_the_console(db):
    """A user with role admin but is_staff False is sent to the login page."""
    user = admin_user_ensure(username="api-only-admin")
    User.objects.filter(pk=user.pk).update(is_staff=False)
    user.refresh_from_db()
    client = Client()
    client.force_login(user)

    for target in (reverse("admin:index"), url(Prescriber, "changelist")):
        response = client.get(target)
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('admin:login')}?next={target}"


def test_anonymous_is_sent_to_login(db):
    target = url(AuditEvent, "changelist")
    response = Client().get(target)
    assert (response.status_code, response["Location"]) == (302, f"{reverse('admin:login')}?next={target}")


# --- Monitoring screens (issue 10: flags, schedules, status forms, digests, sweep runs) -------------------

MONITORING_DAY = dt.date(2026, 5, 12)
MONITORING_SCREENS = (MonitoringFlag, MonitoringSchedule, StatusForm, Digest, SweepRun)


@pytest.fixture
def monitoring_world(prescriber, facility, django_capture_on_commit_callbacks) -> SimpleNamespace:
    """Course 1 of 2026-03-02..06 with the baseline of 2026-02-27 and nothing since: a status form filed on
    2026-04-01; the sweep of 2026-05-10 opens the three monthly flags (MON-1), already blocking (due
    2026-03-27, blocking after 2026-05-03) and sends their digest; a CBC of 2026-05-12 closes its flag."""
    patient = monitored_patient(prescriber, facility)
    form_day = dt.date(2026, 4, 1)
    with frozen(form_day):
        form = status_form_record(
            patient=patient,
            actor=prescriber.user,
            data={"completed_on": form_day, "labs_reviewed": True, "adverse_events": ["infection"]},
            now=moment(form_day),
        )
    with django_capture_on_commit_callbacks(execute=True):
        run = sweep(dt.date(2026, 5, 10))
    with frozen(MONITORING_DAY):
        record_labs(patient, prescriber.user, collected_on=MONITORING_DAY, tests=["cbc_differential"])
    return SimpleNamespace(patient=patient, form=form, run=run, digest=Digest.objects.get())


@pytest.mark.postgres_only  # the sweep's statements are PostgreSQL
@pytest.mark.parametrize("model", MONITORING_SCREENS, ids=lambda model: model._meta.label)
def test_monitoring_changelists_and_change_pages_render_read_only(console, monitoring_world, model):
    """Issue 10 item 9: every monitoring screen lists its rows and every row's page renders, view-only:
    flags, schedules, status forms and digests change only through the services (no add, no edit, no
    delete)."""
    with frozen(MONITORING_DAY):
        changelist = console.get(url(model, "changelist"))
        assert changelist.status_code == 200
        assert changelist.context["cl"].result_count == model._default_manager.count() >= 1
        for obj in model._default_manager.all():
            page = console.get(url(model, "change", obj.pk))
            assert (str(obj.pk), page.status_code) == (str(obj.pk), 200)
            assert page.context["has_change_permission"] is False
        obj = model._default_manager.first()
        assert console.get(url(model, "add")).status_code == 403
        assert console.post(url(model, "change", obj.pk), {}).status_code == 403
        assert console.get(url(model, "delete", obj.pk)).status_code == 403


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"cbc_differential": "resolved", "serum_creatinine": "open", "urinalysis": "open"}),
        ("requirement__exact=urinalysis", {"urinalysis": "open"}),
        ("status__exact=open", {"serum_creatinine": "open", "urinalysis": "open"}),
        (
            "blocking__exact=1",
            {"cbc_differential": "resolved", "serum_creatinine": "open", "urinalysis": "open"},
        ),
        ("blocking__exact=0", {}),
        ("age=0-7", {"cbc_differential": "resolved", "serum_creatinine": "open", "urinalysis": "open"}),
        ("age=8-30", {}),
    ],
    ids=["all", "requirement", "status", "blocking", "not-blocking", "age-0-7", "age-8-30"],
)
def test_flag_changelist_filters_by_requirement_status_blocking_and_age(
    console, monitoring_world, query, expected
):
    """Issue 10 item 9: flags filter by requirement, status, blocking and age (days since opened; opened
    2026-05-10, read on 2026-05-12)."""
    with frozen(MONITORING_DAY):
        response = console.get(f"{url(MonitoringFlag, 'changelist')}?{query}")
    assert response.status_code == 200
    assert {flag.requirement: flag.status for flag in shown(response)} == expected


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("due=overdue", {"serum_creatinine", "urinalysis"}),
        ("due=blocking", {"serum_creatinine", "urinalysis"}),
        ("due=soon", {"thyroid_function", "liver_function"}),
        ("requirement__exact=status_form", {"status_form"}),
    ],
    ids=["overdue", "blocking", "due-soon", "requirement"],
)
def test_schedule_changelist_filters_by_what_is_due_today(console, monitoring_world, query, expected):
    """MON-1..4: on 2026-05-12 creatinine and urinalysis (due 2026-03-27) are overdue and blocking, the CBC
    was just done, thyroid and liver are due on 2026-05-27."""
    with frozen(MONITORING_DAY):
        response = console.get(f"{url(MonitoringSchedule, 'changelist')}?{query}")
    assert response.status_code == 200
    assert {row.requirement for row in shown(response)} == expected
    assert b"Overdue today" in response.content
    assert b"Blocking today" in response.content


@pytest.mark.postgres_only
def test_patient_page_shows_schedule_status_forms_and_flags(console, monitoring_world):
    """Issue 10 item 9: the patient's page shows its stored schedule with today's meaning, its status forms
    and its flags, read-only."""
    with frozen(MONITORING_DAY):
        page = console.get(url(Patient, "change", monitoring_world.patient.pk))
    assert page.status_code == 200
    formsets = {fs.formset.model: fs for fs in page.context["inline_admin_formsets"]}
    assert {model: len(formsets[model].formset.forms) for model in (MonitoringSchedule, StatusForm)} == {
        MonitoringSchedule: 7,
        StatusForm: 1,
    }
    assert len(formsets[MonitoringFlag].formset.forms) == 3
    assert all(not formsets[m].has_add_permission for m in (MonitoringSchedule, StatusForm, MonitoringFlag))


@pytest.mark.postgres_only
def test_digest_page_lists_what_it_sent(console, monitoring_world, mailoutbox):
    """MON-5: the digest history shows each digest's recipient, status and the lines it listed (registry ID,
    requirement, due date, blocking)."""
    digest = monitoring_world.digest
    with frozen(MONITORING_DAY):
        page = console.get(url(Digest, "change", digest.pk))
    assert page.status_code == 200
    lines = {fs.formset.model: fs for fs in page.context["inline_admin_formsets"]}[DigestLine]
    assert sorted(form.instance.kind for form in lines.formset.forms) == [
        "cbc_differential",
        "serum_creatinine",
        "urinalysis",
    ]
    assert (digest.status, digest.recipient) == ("sent", monitoring_world.patient.prescriber.email)
    assert monitoring_world.patient.rems_patient_id.encode() in page.content


def test_act6_patients_sharing_name_and_date_of_birth_are_listed_for_review(console, prescriber, patient):
    """ACT-6: the admin lists the pairs enrollment would refuse today, and only those. Here a "Søren"
    enrolled before the key folded ø (his key was "søren|ient") let a "Soren" of the same date of birth
    in; migration 0014 gives both the same key, and the pair shows up for an administrator to review."""
    from django.apps import apps

    with frozen(DAY0):
        twin = authorized_patient(prescriber, first_name="Søren", last_name="Ient")
        Patient.objects.filter(pk=twin.pk).update(match_key="søren|ient")  # the key before 0014
        other = authorized_patient(prescriber, first_name="Soren", last_name="Ient")
    importlib.import_module("registry.migrations.0014_match_key_latin_folds").forward(apps, None)

    response = console.get(url(Patient, "changelist"), {"possible_duplicate": "yes"})

    assert response.status_code == 200
    assert {p.pk for p in shown(response)} == {twin.pk, other.pk}
    assert patient.pk not in {p.pk for p in shown(response)}
