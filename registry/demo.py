"""The living demo (issue 12 item 4): a coherent program with dates relative to today, written through the
same services as the API (`manage.py seed_demo`), and a set-based generator of a larger program
(`--patients N`) for benchmarks and for trying the console at scale.

Every service takes `now`, but some records are stamped by the database clock (`auto_now_add`), so each
step runs with the clock set to its moment (time-machine, a development dependency like the demo itself):
the dashboard's 90 days of decisions and the assessment report then read the history as it happened.
The steps are queued with their moments and run in time order, so a participant suspended on day T-20
is certified for every request before it and refuses every one after.

The demo program (T is today, in the registry's time zone):

- Prescribers: Ada Lovelace and Ben Carter (certified), Cora Diaz (pending: no knowledge assessment), Dan
  Evans (certified, suspended on T-20). Pharmacies and facilities: two certified, one pending, one
  suspended of each.
- Patients (REMS IDs are random; names are fixed): Mia Midcourse (course 1, doses 1-2 on T-2 and T-1),
  Otto Overdue (course 1 ended T-116, no monthly lab since: blocking), Paula Pregnant (exposed, open
  pregnancy reported T-10), Cole Complete (legacy course 49 months ago: monitoring complete), Erin
  Enrolled (not authorized), Sam Suspended, Dora Discontinued, Dean Deceased, Walt Waiting (authorized, no
  course), and ten patients treated over the last ten months, seven with every monthly lab.
- Denied requests over the last 90 days: the pending pharmacy, the not-authorized patient, the suspended
  prescriber, the overdue patient.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db import connection, transaction
from django.utils import timezone

from registry import rules
from registry.identifiers import new_authorization_number, new_registry_id
from registry.matching import patient_match_key
from registry.models import (
    AuditEvent,
    Course,
    CourseStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    Dispense,
    DispenseAuthorization,
    Facility,
    Infusion,
    LabResult,
    MonitoringSchedule,
    Patient,
    PatientStatus,
    Pharmacy,
    Prescriber,
    Screening,
    User,
)
from registry.services.accounts import admin_user_ensure, participant_user_ensure
from registry.services.certification import (
    participant_certify,
    participant_register,
    participant_suspend,
)
from registry.services.dispensing import authorization_request, dispense_record
from registry.services.enrollment import (
    lab_result_record,
    patient_authorize,
    patient_enroll,
    patient_status_change,
    screening_record,
)
from registry.services.monitoring import requirements_for, status_form_record
from registry.services.pregnancy import pregnancy_report_file
from registry.services.treatment import course_plan, infusion_record

DEMO_MARKER_NPI = "1003000126"  # Ada Lovelace's NPI: the demo is loaded when she exists
BASELINE = (
    "cbc_differential",
    "serum_creatinine",
    "urinalysis",
    "urine_protein_creatinine_ratio",
    "thyroid_function",
    "liver_function",
    "skin_exam",
)
MONTHLY = ("cbc_differential", "serum_creatinine", "urinalysis")


def _npi(seed: int) -> str:
    """A valid NPI (ID-1: Luhn over 80840 + the first 9 digits) from a number."""
    body = f"1{seed:08d}"[:9]
    total = 0
    for i, ch in enumerate(reversed("80840" + body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _clock(when: dt.datetime) -> Any:
    """The clock set to `when` for one step (auto_now_add stamps and services reading the time)."""
    try:
        import time_machine
    except ImportError as exc:  # pragma: no cover - the demo is installed with the dev dependencies
        raise RuntimeError("seed_demo needs the development dependencies: pip install -e '.[dev]'") from exc
    return time_machine.travel(when, tick=False)


@dataclass(order=True)
class _Step:
    at: dt.datetime
    seq: int
    run: Callable[[], Any] = field(compare=False)


@dataclass
class Demo:
    """A queue of steps, each run with the clock at its moment, in time order."""

    today: dt.date
    steps: list[_Step] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)
    people: dict[str, Any] = field(default_factory=dict)

    def moment(self, days_ago: int, hour: int = 10) -> dt.datetime:
        day = self.today - dt.timedelta(days=days_ago)
        return dt.datetime.combine(day, dt.time(hour), tzinfo=timezone.get_current_timezone())

    def at(self, days_ago: int, fn: Callable[[dt.datetime], Any], hour: int = 10) -> None:
        when = self.moment(days_ago, hour)
        heapq.heappush(self.steps, _Step(when, next(self.counter), lambda: fn(when)))

    def run(self) -> None:
        while self.steps:
            step = heapq.heappop(self.steps)
            with _clock(step.at):
                step.run()


# --- Participants ---------------------------------------------------------------------------------------


def _participant_data(
    model: type, n: int, name: str, on: dt.date, *, complete: bool = True
) -> dict[str, Any]:
    data: dict[str, Any] = {"npi": DEMO_MARKER_NPI if n == 0 else _npi(3000000 + n * 7919)}
    data["enrollment_signed_on"] = on
    if model is Prescriber:
        first, last = name.split(" ", 1)
        data.update(
            first_name=first,
            last_name=last,
            credentials="MD",
            email=f"{first.lower()}.{last.lower()}@example.org",
        )
        if complete:
            data.update(knowledge_assessment_score=8, knowledge_assessment_passed_on=on)
        return data
    data.update(
        name=name,
        address_line1=f"{100 + n} Main Street",
        city="Boston",
        state="MA",
        postal_code="02139",
        authorized_rep_name="Alex Rep",
        authorized_rep_email=f"rep{n}@example.org",
    )
    if model is Pharmacy:
        data["ncpdp_id"] = str(3100000 + n)
        if complete:
            data["staff_training_completed_on"] = on
    elif complete:
        data["infusion_reaction_readiness_attested_on"] = on
    return data


PARTICIPANTS = (
    # (key, model, name, state, n)
    ("ada", Prescriber, "Ada Lovelace", "certified", 0),
    ("ben", Prescriber, "Ben Carter", "certified", 1),
    ("cora", Prescriber, "Cora Diaz", "pending", 2),
    ("dan", Prescriber, "Dan Evans", "suspended", 3),
    ("central", Pharmacy, "Central Specialty Pharmacy", "certified", 10),
    ("harbor", Pharmacy, "Harbor Pharmacy", "certified", 11),
    ("lakeside", Pharmacy, "Lakeside Pharmacy", "pending", 12),
    ("northside", Pharmacy, "Northside Pharmacy", "suspended", 13),
    ("city", Facility, "City Infusion Center", "certified", 20),
    ("valley", Facility, "Valley Infusion Clinic", "certified", 21),
    ("riverside", Facility, "Riverside Clinic", "pending", 22),
    ("oldtown", Facility, "Old Town Infusion", "suspended", 23),
)


def _participants(demo: Demo, admin: User) -> None:
    start = 1530  # days ago (before the demo's oldest, imported course): everyone registers then

    for key, model, name, state, n in PARTICIPANTS:

        def register(
            now: dt.datetime,
            key: str = key,
            model: type = model,
            name: str = name,
            n: int = n,
            state: str = state,
        ) -> None:
            data = _participant_data(
                model, n, name, now.date() - dt.timedelta(days=1), complete=state != "pending"
            )
            participant = participant_register(model=model, actor=admin, data=data, now=now)
            demo.people[key] = participant
            demo.people[f"{key}_user"] = participant_user_ensure(participant=participant, actor=admin)

        def certify(now: dt.datetime, key: str = key) -> None:
            participant_certify(participant=_fresh(demo, key), actor=admin, now=now)

        def suspend(now: dt.datetime, key: str = key) -> None:
            participant_suspend(
                participant=_fresh(demo, key), actor=admin, reason="Demo: certification under review", now=now
            )

        demo.at(start, register, hour=9)
        if state != "pending":
            demo.at(start, certify, hour=11)
        if state == "suspended":
            demo.at(20, suspend)


def _actor(demo: Demo, key: str) -> User:
    """The participant's user as stored now (a cached user holds its participant as it was when fetched)."""
    return User.objects.get(pk=demo.people[f"{key}_user"].pk)


def _fresh(demo: Demo, key: str) -> Any:
    obj = demo.people[key]
    obj.refresh_from_db()
    return obj


# --- Patients ----------------------------------------------------------------------------------------


@dataclass
class Story:
    """One patient's history, as steps relative to today."""

    key: str
    first: str
    last: str
    prescriber: str = "ada"
    sex: str = "male"
    reproductive_potential: bool = False
    born: dt.date = dt.date(1984, 6, 1)


def _enroll(demo: Demo, story: Story, days_ago: int) -> None:
    def step(now: dt.datetime) -> None:
        demo.people[story.key] = patient_enroll(
            actor=_actor(demo, story.prescriber),
            data={
                "first_name": story.first,
                "last_name": story.last,
                "date_of_birth": story.born,
                "sex": story.sex,
                "reproductive_potential": story.reproductive_potential,
                "enrollment_signed_on": now.date(),
            },
            now=now,
        )

    demo.at(days_ago, step, hour=9)


def _labs(demo: Demo, story: Story, days_ago: int, tests: tuple[str, ...]) -> None:
    def step(now: dt.datetime) -> None:
        for test in tests:
            lab_result_record(
                patient=_fresh(demo, story.key),
                actor=_actor(demo, story.prescriber),
                data={"test": test, "collected_on": now.date(), "result": "normal"},
                now=now,
            )
        if story.reproductive_potential and tests == BASELINE:
            lab_result_record(
                patient=_fresh(demo, story.key),
                actor=_actor(demo, story.prescriber),
                data={"test": "pregnancy_test", "collected_on": now.date(), "result": "negative"},
                now=now,
            )

    demo.at(days_ago, step, hour=9)


def _authorize(demo: Demo, story: Story, days_ago: int) -> None:
    """ACT-7: baseline labs three days before, screening and authorization on the day."""
    _enroll(demo, story, days_ago + 5)
    _labs(demo, story, days_ago + 3, BASELINE)

    def step(now: dt.datetime) -> None:
        user = _actor(demo, story.prescriber)
        screening_record(
            patient=_fresh(demo, story.key),
            actor=user,
            data={
                "hiv_negative": True,
                "no_active_infection": True,
                "tb_screened_on": now.date() - dt.timedelta(days=30),
                "vaccinations_completed_on": now.date() - dt.timedelta(days=60),
            },
            now=now,
        )
        outcome = patient_authorize(patient=_fresh(demo, story.key), actor=user, now=now)
        assert outcome.approved, outcome.evaluation.reasons

    demo.at(days_ago, step, hour=10)


def _request(
    demo: Demo,
    story: Story,
    days_ago: int,
    *,
    pharmacy: str,
    facility: str,
    prescriber: str | None = None,
    doses: int,
) -> None:
    def step(now: dt.datetime) -> None:
        patient = _fresh(demo, story.key)
        outcome = authorization_request(
            actor=_actor(demo, pharmacy),
            pharmacy=_fresh(demo, pharmacy),
            data={
                "rems_patient_id": patient.rems_patient_id,
                "date_of_birth": patient.date_of_birth,
                "prescriber_npi": demo.people[prescriber or story.prescriber].npi,
                "facility_npi": demo.people[facility].npi,
                "doses_requested": doses,
            },
            now=now,
        )
        if outcome.created is not None:
            dispense_record(
                actor=_actor(demo, pharmacy),
                data={"authorization_number": outcome.created.number, "vials": doses, "lot_number": "DEMO-1"},
                now=now,
            )

    demo.at(days_ago, step, hour=11)


def _infuse(demo: Demo, story: Story, days_ago: int, *, facility: str, day: int) -> None:
    def step(now: dt.datetime) -> None:
        patient = _fresh(demo, story.key)
        outcome = infusion_record(
            actor=_actor(demo, facility),
            data={
                "rems_patient_id": patient.rems_patient_id,
                "date_of_birth": patient.date_of_birth,
                "administered_on": now.date(),
                "dose_mg": 12,
                "corticosteroid_premedication": day <= 3,
                "antiviral_prophylaxis": True,
                "observation_minutes": 120,
            },
            now=now,
        )
        if not outcome.approved:
            raise RuntimeError(
                f"demo: {story.key}'s infusion on {now.date()} refused: {outcome.evaluation.reasons}"
            )

    demo.at(days_ago, step, hour=14)


def _course_1(
    demo: Demo,
    story: Story,
    start_ago: int,
    *,
    doses: int = 5,
    pharmacy: str = "central",
    facility: str = "city",
) -> None:
    """Authorized 1 day before the start, course 1 planned, 5 doses dispensed on day 1, `doses` infused."""
    _authorize(demo, story, start_ago + 1)
    _plan_on_the_day(demo, story, start_ago)
    _request(demo, story, start_ago, pharmacy=pharmacy, facility=facility, doses=5)
    for day in range(1, doses + 1):
        _infuse(demo, story, start_ago - day + 1, facility=facility, day=day)


def _monthly_labs(demo: Demo, story: Story, last_infusion_ago: int, *, every: int = 28) -> None:
    """MON-1 every `every` days after the last infusion; with the usual 28 days, the whole follow-up a
    careful prescriber keeps: thyroid and liver every 12 weeks (MON-2) and a status form every 24 weeks
    (MON-4)."""
    ago, n = last_infusion_ago - every, 1
    while ago >= 0:
        quarterly = every <= 28 and n % 3 == 0
        _labs(demo, story, ago, MONTHLY + (("thyroid_function", "liver_function") if quarterly else ()))
        if every <= 28 and n % 6 == 0:
            demo.at(
                ago,
                lambda now: status_form_record(
                    patient=_fresh(demo, story.key),
                    actor=_actor(demo, story.prescriber),
                    data={
                        "completed_on": now.date(),
                        "still_under_care": True,
                        "labs_reviewed": True,
                        "adverse_events": [],
                        "notes": "",
                    },
                    now=now,
                ),
                hour=12,
            )
        ago -= every
        n += 1


def _status(demo: Demo, story: Story, days_ago: int, verb: str, reason: str, admin: User) -> None:
    demo.at(
        days_ago,
        lambda now: patient_status_change(
            patient=_fresh(demo, story.key), actor=admin, verb=verb, reason=reason, now=now
        ),
        hour=16,
    )


def _plan_on_the_day(demo: Demo, story: Story, days_ago: int) -> None:
    """The prescriber plans the course to start that same day, at 9 in the morning."""
    demo.at(
        days_ago,
        lambda now: course_plan(
            patient=_fresh(demo, story.key),
            actor=_actor(demo, story.prescriber),
            planned_start_on=now.date(),
            now=now,
        ),
        hour=9,
    )


def _legacy_course(demo: Demo, story: Story, admin: User, months_ago: int) -> None:
    """Imported history: course 1 infused long ago, recorded by an administrator (legacy, no dispense)."""
    first = demo.today - relativedelta(months=months_ago)
    first_ago = (demo.today - first).days
    _authorize(demo, story, first_ago + 1)
    _plan_on_the_day(demo, story, first_ago)
    for day in range(1, 6):

        def step(now: dt.datetime, day: int = day) -> None:
            patient = _fresh(demo, story.key)
            infusion_record(
                actor=admin,
                data={
                    "rems_patient_id": patient.rems_patient_id,
                    "date_of_birth": patient.date_of_birth,
                    "administered_on": now.date(),
                    "facility_npi": demo.people["valley"].npi,
                    "dose_mg": 12,
                    "corticosteroid_premedication": day <= 3,
                    "antiviral_prophylaxis": True,
                    "observation_minutes": 120,
                },
                now=now,
            )

        demo.at(first_ago - day + 1, step, hour=14)


def _stories(demo: Demo, admin: User) -> None:
    mia = Story("mia", "Mia", "Midcourse", sex="female")
    _course_1(demo, mia, 2, doses=2)

    otto = Story("otto", "Otto", "Overdue")
    _course_1(demo, otto, 120)
    _request(demo, otto, 5, pharmacy="central", facility="city", doses=3)  # denied: monitoring overdue

    paula = Story(
        "paula", "Paula", "Pregnant", sex="female", reproductive_potential=True, born=dt.date(1990, 2, 3)
    )
    _course_1(demo, paula, 100, pharmacy="harbor", facility="valley")
    _monthly_labs(demo, paula, 96)
    demo.at(
        10,
        lambda now: pregnancy_report_file(
            patient=_fresh(demo, "paula"),
            actor=_actor(demo, "ada"),
            data={"reported_on": now.date(), "estimated_conception_on": now.date() - dt.timedelta(days=30)},
            now=now,
        ),
    )

    cole = Story("cole", "Cole", "Complete", prescriber="ben", born=dt.date(1970, 9, 9))
    _legacy_course(demo, cole, admin, 49)

    erin = Story("erin", "Erin", "Enrolled")
    _enroll(demo, erin, 6)
    _request(demo, erin, 3, pharmacy="central", facility="city", doses=5)  # denied: not authorized

    sam = Story("sam", "Sam", "Suspended", prescriber="ben")
    _authorize(demo, sam, 40)
    _status(demo, sam, 15, "suspend", "Demo: safety review after a reported infection", admin)

    dora = Story("dora", "Dora", "Discontinued", prescriber="ben", sex="female")
    _course_1(demo, dora, 150, pharmacy="harbor", facility="valley")
    _monthly_labs(demo, dora, 146)
    _status(demo, dora, 40, "discontinue", "Demo: treatment stopped by the patient's choice", admin)

    dean = Story("dean", "Dean", "Deceased", prescriber="ben", born=dt.date(1958, 1, 1))
    _authorize(demo, dean, 200)
    _status(demo, dean, 60, "record_death", "Demo: death reported by the prescriber", admin)

    walt = Story("walt", "Walt", "Waiting", prescriber="dan")
    _authorize(demo, walt, 30)
    _request(demo, walt, 8, pharmacy="central", facility="city", doses=5)  # denied: prescriber suspended

    rng = random.Random(12)
    names = (
        "Avery",
        "Blake",
        "Casey",
        "Devon",
        "Ellis",
        "Finley",
        "Gray",
        "Harper",
        "Indy",
        "Jordan",
        "Kai",
        "Lane",
    )
    for i, first in enumerate(names):
        story = Story(
            f"bg{i}", first, "Demo", prescriber="ada" if i % 2 else "ben", sex=rng.choice(["male", "female"])
        )
        start = 320 - i * 27
        pharmacy, facility = ("central", "city") if i % 2 else ("harbor", "valley")
        _course_1(demo, story, start, pharmacy=pharmacy, facility=facility)
        if i < 7 or i > 9:
            _monthly_labs(demo, story, start - 4)
        else:
            _monthly_labs(demo, story, start - 4, every=45)
        if i < 4:  # the pending pharmacy asks too: denied pharmacy_not_certified
            _request(demo, story, 10 + i * 15, pharmacy="lakeside", facility=facility, doses=1)


def demo_loaded() -> bool:
    return Prescriber.objects.filter(npi=DEMO_MARKER_NPI).exists()


def demo_seed(*, today: dt.date, admin_username: str = "admin") -> dict[str, Any]:
    """Writes the demo program (module docstring) through the services; then, on PostgreSQL, today's
    monitoring sweep (flags, completed monitoring). Returns the people by key."""
    admin = admin_user_ensure(username=admin_username)
    demo = Demo(today=today)
    _participants(demo, admin)
    _stories(demo, admin)
    demo.run()
    monitoring_catch_up(today=today)
    return demo.people


def monitoring_catch_up(*, today: dt.date) -> None:
    """MON-5 for the demo's last days. On PostgreSQL, the daily sweep itself (services/monitoring.py) for
    the last three days and today. The sweep is PostgreSQL SQL and refuses SQLite; on the quick start's
    SQLite the demo writes what today's sweep would (the flags of requirements overdue today, blocking ones
    marked; monitoring complete for patients past their window, audited as the sweep audits it)."""
    from registry.services.monitoring import monitoring_sweep

    if connection.vendor == "postgresql":
        for ago in (3, 2, 1, 0):
            day = today - dt.timedelta(days=ago)
            when = dt.datetime.combine(day, dt.time(6), tzinfo=timezone.get_current_timezone())
            with _clock(when):
                monitoring_sweep(as_of=day, now=when)
        return
    _sqlite_sweep(today=today)


def _sqlite_sweep(*, today: dt.date) -> None:
    from registry.models import FlagStatus, MonitoringFlag
    from registry.selectors.program import monitoring_due_q

    program = rules.current()
    now = dt.datetime.combine(today, dt.time(6), tzinfo=timezone.get_current_timezone())
    grace = dt.timedelta(days=program.monitoring_grace_days)
    with _clock(now), transaction.atomic():
        done = Patient.objects.filter(
            status__in=[PatientStatus.AUTHORIZED, PatientStatus.DISCONTINUED], monitoring_ends_on__lt=today
        )
        events = [
            AuditEvent(
                actor=None,
                actor_role="system",
                action="patient.monitoring_complete",
                subject_type="patient",
                subject_id=p.pk,
                changes={
                    "status": [p.status, PatientStatus.MONITORING_COMPLETE],
                    "monitoring_ends_on": str(p.monitoring_ends_on),
                },
                created_at=now,
            )
            for p in done
        ]
        AuditEvent.objects.bulk_create(events)
        done.update(status=PatientStatus.MONITORING_COMPLETE, status_changed_at=now)
        rows = MonitoringSchedule.objects.filter(monitoring_due_q("overdue", as_of=today)).exclude(
            patient__status__in=[PatientStatus.DECEASED, PatientStatus.MONITORING_COMPLETE]
        )
        blocking = set(
            MonitoringSchedule.objects.filter(monitoring_due_q("blocking", as_of=today)).values_list(
                "pk", flat=True
            )
        )
        flags = [
            MonitoringFlag(
                patient_id=r.patient_id,
                requirement=r.requirement,
                due_on=r.next_due_on,
                opened_on=r.next_due_on + grace + dt.timedelta(days=1),
                status=FlagStatus.OPEN,
                blocking=r.pk in blocking,
                blocking_since=r.next_due_on + grace + dt.timedelta(days=program.monitoring_blocking_days + 1)
                if r.pk in blocking
                else None,
            )
            for r in rows
        ]
        MonitoringFlag.objects.bulk_create(flags, ignore_conflicts=True)


# --- At scale (set-based) --------------------------------------------------------------------------------


def program_generate(*, patients: int, today: dt.date, seed: int = 7, cohorts: int = 24) -> int:
    """`--patients N`: N more treated patients in `cohorts` cohorts spread over the last year, written with
    a fixed number of multi-row inserts per cohort (never a statement per patient): enrollment,
    screening, baseline labs, the patient authorization decision, course 1 planned and completed with its
    dispense authorization decision, number, dispense and five infusions with their decisions, the monthly
    labs since (most patients keep up, some do not), the stored monitoring schedule and the audit events
    the services would have written. Uses the demo's certified participants. Returns N."""
    prescribers = list(Prescriber.objects.filter(status="certified").order_by("npi"))
    pharmacy = Pharmacy.objects.filter(status="certified").order_by("name").first()
    facility = Facility.objects.filter(status="certified").order_by("name").first()
    if not prescribers or pharmacy is None or facility is None:
        raise RuntimeError("--patients needs certified participants: run seed_demo without --patients first")
    people: dict[str, Any] = {"prescribers": prescribers, "pharmacy": pharmacy, "facility": facility}
    rng = random.Random(seed)
    program = rules.current()
    settings_dict = program.as_dict()
    users = {
        "pharmacy": participant_user_ensure(participant=pharmacy, actor=None),
        "facility": participant_user_ensure(participant=facility, actor=None),
    }
    prescriber_users = {p.pk: participant_user_ensure(participant=p, actor=None) for p in prescribers}
    sizes = [patients // cohorts + (1 if i < patients % cohorts else 0) for i in range(cohorts)]
    for index, size in enumerate(sizes):
        if size:
            start_ago = 360 - index * (330 // cohorts)
            _cohort(
                size=size,
                start=today - dt.timedelta(days=start_ago),
                today=today,
                rng=rng,
                people=people,
                users=users,
                prescriber_users=prescriber_users,
                settings_dict=settings_dict,
                program=program,
            )
    return patients


def _cohort(
    *,
    size: int,
    start: dt.date,
    today: dt.date,
    rng: random.Random,
    people: dict[str, Any],
    users: dict[str, User],
    prescriber_users: dict[Any, User],
    settings_dict: dict[str, Any],
    program: rules.ProgramSettings,
) -> None:
    tz = timezone.get_current_timezone()

    def at(day: dt.date, hour: int) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour), tzinfo=tz)

    pharmacy, facility = people["pharmacy"], people["facility"]
    enrolled_at, authorized_at = at(start - dt.timedelta(days=5), 9), at(start - dt.timedelta(days=1), 10)
    last_infusion = start + dt.timedelta(days=4)
    window_ends = last_infusion + relativedelta(months=program.monitoring_months_after_last_infusion)
    batch = 1000
    audit: list[AuditEvent] = []

    def event(
        action: str, subject_type: str, subject_id: Any, when: dt.datetime, actor: User | None, **changes: Any
    ) -> None:
        audit.append(
            AuditEvent(
                actor=actor,
                actor_role=actor.role if actor else "system",
                action=action,
                subject_type=subject_type,
                subject_id=subject_id,
                changes={k: str(v) if isinstance(v, dt.date | uuid.UUID) else v for k, v in changes.items()},
                created_at=when,
            )
        )

    with transaction.atomic():
        prescribers = people["prescribers"]
        patients = []
        for i in range(size):
            prescriber = prescribers[i % len(prescribers)]
            first, last = f"Gen{rng.randrange(10**6):06d}", f"Scale{start:%m%d}"
            born = dt.date(1960 + rng.randrange(40), 1 + rng.randrange(12), 1 + rng.randrange(28))
            patients.append(
                Patient(
                    rems_patient_id=new_registry_id(),
                    first_name=first,
                    last_name=last,
                    match_key=patient_match_key(first, last),
                    date_of_birth=born,
                    sex=rng.choice(["male", "female"]),
                    reproductive_potential=False,
                    enrollment_signed_on=enrolled_at.date(),
                    prescriber=prescriber,
                    status=PatientStatus.AUTHORIZED,
                    status_changed_at=authorized_at,
                    authorized_at=authorized_at,
                    first_infusion_on=start,
                    last_infusion_on=last_infusion,
                    monitoring_ends_on=window_ends,
                )
            )
        with _clock(enrolled_at):
            Patient.objects.bulk_create(patients, batch_size=batch)
        for p in patients:
            actor = prescriber_users[p.prescriber_id]
            event("patient.enroll", "patient", p.pk, enrolled_at, actor, prescriber=p.prescriber_id)
            event(
                "patient.authorize", "patient", p.pk, authorized_at, actor, status=["enrolled", "authorized"]
            )
        labs_on = start - dt.timedelta(days=4)
        with _clock(at(labs_on, 9)):
            LabResult.objects.bulk_create(
                [
                    LabResult(
                        patient=p,
                        test=t,
                        collected_on=labs_on,
                        result="normal",
                        recorded_by=prescriber_users[p.prescriber_id],
                    )
                    for p in patients
                    for t in BASELINE
                ],
                batch_size=batch,
            )
        with _clock(authorized_at):
            Screening.objects.bulk_create(
                [
                    Screening(
                        patient=p,
                        hiv_negative=True,
                        no_active_infection=True,
                        tb_screened_on=start - dt.timedelta(days=30),
                        vaccinations_completed_on=start - dt.timedelta(days=60),
                        recorded_by=prescriber_users[p.prescriber_id],
                    )
                    for p in patients
                ],
                batch_size=batch,
            )
            Decision.objects.bulk_create(
                [
                    Decision(
                        kind=DecisionKind.PATIENT_AUTHORIZATION,
                        outcome=DecisionOutcome.APPROVED,
                        patient=p,
                        actor=prescriber_users[p.prescriber_id],
                        requirements=[{"requirement": "baseline_labs_complete", "met": True}],
                        reasons=[],
                        program_settings=settings_dict,
                        inputs={"generated": True},
                    )
                    for p in patients
                ],
                batch_size=batch,
            )
        planned_at, issued_at = at(start - dt.timedelta(days=1), 11), at(start, 9)
        courses = [
            Course(
                patient=p,
                number=1,
                status=CourseStatus.COMPLETED,
                planned_doses=5,
                doses_given=5,
                planned_start_on=start,
                first_infusion_on=start,
                last_infusion_on=last_infusion,
                planned_by=prescriber_users[p.prescriber_id],
            )
            for p in patients
        ]
        with _clock(planned_at):
            Course.objects.bulk_create(courses, batch_size=batch)
        for c in courses:
            event(
                "course.plan", "course", c.pk, planned_at, prescriber_users[c.patient.prescriber_id], number=1
            )
        decisions = [
            Decision(
                id=uuid.uuid4(),
                kind=DecisionKind.DISPENSE_AUTHORIZATION,
                outcome=DecisionOutcome.APPROVED,
                patient=c.patient,
                actor=users["pharmacy"],
                requirements=[{"requirement": "pharmacy_certified", "met": True}],
                reasons=[],
                program_settings=settings_dict,
                inputs={"generated": True, "doses_requested": 5},
            )
            for c in courses
        ]
        with _clock(issued_at):
            Decision.objects.bulk_create(decisions, batch_size=batch)
            authorizations = [
                DispenseAuthorization(
                    id=d.id,
                    decision=d,
                    number=new_authorization_number(),
                    pharmacy=pharmacy,
                    facility=facility,
                    prescriber=c.patient.prescriber,
                    patient=c.patient,
                    course=c,
                    doses_authorized=5,
                    issued_at=issued_at,
                    expires_at=issued_at + dt.timedelta(days=program.authorization_validity_days),
                    status="used",
                    used_at=issued_at,
                )
                for d, c in zip(decisions, courses, strict=True)
            ]
            DispenseAuthorization.objects.bulk_create(authorizations, batch_size=batch)
            dispenses = [
                Dispense(
                    authorization=a,
                    pharmacy=pharmacy,
                    patient=a.patient,
                    vials=5,
                    ndc="58468-0200-1",
                    lot_number="GEN",
                    dispensed_by=users["pharmacy"],
                )
                for a in authorizations
            ]
            Dispense.objects.bulk_create(dispenses, batch_size=batch)
        for a, d in zip(authorizations, dispenses, strict=True):
            event(
                "authorization.issue",
                "dispenseauthorization",
                a.pk,
                issued_at,
                users["pharmacy"],
                outcome="approved",
            )
            event(
                "dispense.record", "dispense", d.pk, issued_at, users["pharmacy"], authorization=a.pk, vials=5
            )
        for day in range(1, 6):
            on = start + dt.timedelta(days=day - 1)
            when = at(on, 14)
            infusion_decisions = [
                Decision(
                    id=uuid.uuid4(),
                    kind=DecisionKind.INFUSION,
                    outcome=DecisionOutcome.APPROVED,
                    patient=d.patient,
                    actor=users["facility"],
                    requirements=[{"requirement": "facility_certified", "met": True}],
                    reasons=[],
                    program_settings=settings_dict,
                    inputs={"generated": True, "administered_on": on.isoformat()},
                )
                for d in dispenses
            ]
            with _clock(when):
                Decision.objects.bulk_create(infusion_decisions, batch_size=batch)
                infusions = [
                    Infusion(
                        patient=d.patient,
                        course=c,
                        facility=facility,
                        dispense=d,
                        decision=dec,
                        administered_on=on,
                        day_in_course=day,
                        dose_mg=12,
                        corticosteroid_premedication=day <= 3,
                        antiviral_prophylaxis=True,
                        observation_minutes=120,
                        recorded_by=users["facility"],
                    )
                    for d, c, dec in zip(dispenses, courses, infusion_decisions, strict=True)
                ]
                Infusion.objects.bulk_create(infusions, batch_size=batch)
            for inf in infusions:
                event("infusion.record", "infusion", inf.pk, when, users["facility"], day_in_course=day)
        # Monthly labs: most patients keep up (every 28 days), one in five stops after a few months.
        labs: list[LabResult] = []
        last_done: dict[Any, dt.date] = {}
        for p in patients:
            keeps_up = rng.random() > 0.2
            on = last_infusion + dt.timedelta(days=28)
            stop = today if keeps_up else last_infusion + dt.timedelta(days=28 * rng.randrange(1, 4))
            while on <= min(stop, today):
                labs.extend(
                    LabResult(
                        patient=p,
                        test=t,
                        collected_on=on,
                        result="normal",
                        recorded_by=prescriber_users[p.prescriber_id],
                    )
                    for t in MONTHLY
                )
                last_done[p.pk] = on
                on += dt.timedelta(days=28)
        with _clock(at(today, 8)):
            LabResult.objects.bulk_create(labs, batch_size=batch)
            AuditEvent.objects.bulk_create(audit, batch_size=batch)
            from registry.services.monitoring import next_due

            MonitoringSchedule.objects.bulk_create(
                [
                    MonitoringSchedule(
                        patient=p,
                        requirement=r,
                        last_done_on=last_done.get(p.pk) if r in MONTHLY else None,
                        next_due_on=next_due(
                            program, r, (last_done.get(p.pk) if r in MONTHLY else None) or start
                        ),
                        window_ends_on=window_ends,
                        updated_at=at(today, 8),
                    )
                    for p in patients
                    for r in requirements_for(p.sex)
                ],
                batch_size=batch,
            )
