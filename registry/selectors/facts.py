"""Decision inputs (GATE-5): everything a gate decision needs, loaded in a constant number of queries
whatever the patient's history (one query for the patient with its latest labs, screening,
contraindications and pregnancy reports as annotations; one for its courses; one per named participant)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Count, F

from registry import rules
from registry.identifiers import parse_registry_id
from registry.models import (
    AuthorizationStatus,
    CertificationStatus,
    Dispense,
    Facility,
    LabOutcome,
    LabTest,
    LookupKind,
    Patient,
    PatientStatus,
    Pharmacy,
    Prescriber,
    User,
)
from registry.models.treatment import OPEN_COURSE_STATUSES

from .monitoring import blocking_before, monitoring_blocking_parse, monitoring_blocks_load
from .pregnancy import PREGNANCY_FACTS_COLUMNS, pregnancy_gate_facts

SCREENING_FIELDS = ("hiv_negative", "no_active_infection", "tb_screened_on", "vaccinations_completed_on")


@dataclass(frozen=True)
class ScreeningFacts:
    hiv_negative: bool
    no_active_infection: bool
    tb_screened_on: dt.date | None
    vaccinations_completed_on: dt.date | None


@dataclass(frozen=True)
class CourseFacts:
    id: Any
    number: int
    status: str
    planned_doses: int
    doses_given: int
    first_infusion_on: dt.date | None
    last_infusion_on: dt.date | None
    committed_doses: int  # doses under holding (active, unexpired, not lapsed) numbers plus vials dispensed
    lapsed_doses: int = 0  # doses under active, unexpired numbers that lapsed (not yet stored as revoked)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_COURSE_STATUSES

    @property
    def doses_remaining_to_infuse(self) -> int:
        return self.planned_doses - self.doses_given

    @property
    def available_doses(self) -> int:
        """Doses that a new authorization may still cover: planned minus what is given or already
        committed to an active authorization or a dispense, whichever is larger."""
        return max(0, self.planned_doses - max(self.doses_given, self.committed_doses))


@dataclass(frozen=True)
class DispenseFacts:
    """The dispense an infusion names (GATE-2: one dispense backs at most `vials` infusions)."""

    id: Any
    patient_id: Any
    facility_id: Any
    course_id: Any
    vials: int
    vials_infused: int


@dataclass(frozen=True)
class Facts:
    """What a decision is made from. Pure data: requirement functions never touch the database."""

    as_of: dt.date
    now: dt.datetime
    program: rules.ProgramSettings
    patient: Patient | None = None
    latest_lab_on: dict[str, dt.date] = field(default_factory=dict)
    latest_negative_pregnancy_on: dt.date | None = None
    latest_positive_pregnancy_on: dt.date | None = None
    screening: ScreeningFacts | None = None
    contraindication_kinds: tuple[str, ...] = ()
    infused_on_date: bool = False
    courses: tuple[CourseFacts, ...] = ()
    pharmacy: Pharmacy | None = None
    facility: Facility | None = None
    prescriber: Prescriber | None = None
    dispense: DispenseFacts | None = None
    # GATE-3 (issue 9): when the infusion names no dispense, how many dispenses to the facility for the
    # open course have a vial left (`dispense` is that one when there is exactly one).
    dispense_candidates: int = 0
    request: dict[str, Any] = field(default_factory=dict)
    # PRG-4 (selectors/pregnancy.py, columns of the one patient query): an open report, and the latest
    # recorded outcome date (a positive pregnancy test on or before it is resolved).
    pregnancy_report_open: bool = False
    pregnancy_latest_outcome_on: dt.date | None = None
    # MON-3, MON-4 (GATE-4): requirements overdue beyond the blocking threshold, from the stored schedule.
    monitoring_blocking: tuple[str, ...] = ()

    @property
    def open_course(self) -> CourseFacts | None:
        return next((c for c in self.courses if c.is_open), None)

    @property
    def prior_courses(self) -> list[CourseFacts]:
        """Courses that had at least one infusion, other than the open one."""
        open_course = self.open_course
        return [c for c in self.courses if c.doses_given > 0 and c is not open_course]


# The facts of the hot path (every dispense and infusion check) are read with two hand-written,
# parameterized statements: compiling the equivalent ORM expression (some twenty correlated subqueries)
# cost more than the database work itself (see bench/authorization.py). Every subquery is an indexed
# lookup on (patient, test, collected_on), (patient, created_at) or (patient, administered_on), so the cost
# does not grow with the patient's history. Literals inlined below are this module's own constants.
_CONTRAINDICATION_KINDS = ("hiv", "active_infection", "hypersensitivity")


# ACT-7 / CRS-4: the labs a gate reads (the pre-course labs are among them); pregnancy tests separately.
GATE_LAB_TESTS = (
    LabTest.CBC_DIFFERENTIAL,
    LabTest.SERUM_CREATININE,
    LabTest.URINALYSIS,
    LabTest.URINE_PROTEIN_CREATININE_RATIO,
    LabTest.THYROID_FUNCTION,
    LabTest.LIVER_FUNCTION,
    LabTest.SKIN_EXAM,
)


_PATIENT_FIELDS = Patient._meta.concrete_fields
_PATIENT_ATTNAMES = [f.attname for f in _PATIENT_FIELDS]
_PATIENT_SELECT = ", ".join(f"p.{f.column}" for f in _PATIENT_FIELDS)  # explicit: no `p.*` surprises
_LAB_PARAMS = len(GATE_LAB_TESTS) + 2  # each lab subquery takes the reference day


def _certified_sql(alias: str) -> str:
    return (
        f"{alias}.status = '{CertificationStatus.CERTIFIED}'"
        f" AND ({alias}.certification_expires_at IS NULL OR {alias}.certification_expires_at > %s)"
    )


# GATE-2, issue 9 item 4: the doses a course's numbers hold are those of numbers that are active, unexpired
# and not lapsed: its pharmacy, facility and prescriber still certified (ACT-5), the prescriber still the
# patient's prescriber of record and the patient still authorized (ACT-8). A lapsed number stops holding
# doses at once, before the daily sweep stores it as revoked (services/dispensing.py
# `authorizations_lapse`); selectors/authorizations.py `authorization_lapse` and `lapsed_q` state the same
# conditions for one number and for the sweep. `{patient}` is the alias of the course's patient row; the
# course is `c` and is open wherever these doses matter.
_HOLDING_DOSES_SQL = (
    "SELECT SUM(a.doses_authorized) FROM registry_dispenseauthorization a"
    " JOIN registry_pharmacy ph ON ph.id = a.pharmacy_id"
    " JOIN registry_facility fa ON fa.id = a.facility_id"
    " JOIN registry_prescriber pr ON pr.id = a.prescriber_id"
    f" WHERE a.course_id = c.id AND a.status = '{AuthorizationStatus.ACTIVE}' AND a.expires_at > %s"
    f" AND {_certified_sql('ph')} AND {_certified_sql('fa')} AND {_certified_sql('pr')}"
    f" AND {{patient}}.prescriber_id = a.prescriber_id AND {{patient}}.status = '{PatientStatus.AUTHORIZED}'"
)
# Every active, unexpired number's doses: more than the holding ones means some lapsed (the dispense
# authorization then stores them as revoked before it issues a number).
_ACTIVE_DOSES_SQL = (
    "SELECT SUM(a.doses_authorized) FROM registry_dispenseauthorization a"
    f" WHERE a.course_id = c.id AND a.status = '{AuthorizationStatus.ACTIVE}' AND a.expires_at > %s"
)
# `now` for the holding numbers' expiry and each of their three certifications, then the active numbers'.
_HOLDING_NOW_PARAMS = 5


def _facts_sql(*, on_date: bool, postgres: bool, parties: bool = False) -> str:
    labs = ", ".join(
        f"(SELECT MAX(l.collected_on) FROM registry_labresult l WHERE l.patient_id = p.id AND l.test = '{test}'"
        " AND l.collected_on <= %s)"
        f" AS lab_{test}"
        for test in GATE_LAB_TESTS
    )
    pregnancy = ", ".join(
        f"(SELECT MAX(l.collected_on) FROM registry_labresult l WHERE l.patient_id = p.id"
        f" AND l.test = '{LabTest.PREGNANCY_TEST}' AND l.result = '{result}' AND l.collected_on <= %s)"
        f" AS preg_{result}_on"
        for result in (LabOutcome.NEGATIVE, LabOutcome.POSITIVE)
    )
    latest_screening = (
        "SELECT s.id, {} FROM registry_screening s WHERE s.patient_id = p.id".format(
            ", ".join(f"s.{name}" for name in SCREENING_FIELDS)
        )
        + " ORDER BY s.created_at DESC LIMIT 1"
    )
    courses = ""
    if postgres:  # the courses ride along as one JSON array (saves a round trip); SQLite reads them apart
        courses = (
            "(SELECT json_agg(json_build_array(c.id, c.number, c.status, c.planned_doses, c.doses_given,"
            " c.first_infusion_on, c.last_infusion_on,"
            f" COALESCE(({_HOLDING_DOSES_SQL.format(patient='p')}), 0),"
            " COALESCE((SELECT SUM(d.vials) FROM registry_dispense d JOIN registry_dispenseauthorization a"
            " ON a.id = d.authorization_id WHERE a.course_id = c.id), 0),"
            f" COALESCE(({_ACTIVE_DOSES_SQL}), 0)) ORDER BY c.number, c.created_at)"
            " FROM registry_course c WHERE c.patient_id = p.id) AS courses_json, "
        )
    if postgres:  # one LATERAL row instead of one subquery per field
        screening = ", ".join(f"ls.{name} AS screening_{name}" for name in SCREENING_FIELDS)
        screening += ", ls.id IS NOT NULL AS screening_exists"
        joins = f" LEFT JOIN LATERAL ({latest_screening}) ls ON TRUE"
        kinds = "string_agg(DISTINCT c.kind, ',')"
    else:
        screening = ", ".join(
            f"(SELECT s.{name} FROM registry_screening s WHERE s.patient_id = p.id ORDER BY s.created_at DESC"
            f" LIMIT 1) AS screening_{name}"
            for name in SCREENING_FIELDS
        )
        screening += (
            ", EXISTS (SELECT 1 FROM registry_screening s WHERE s.patient_id = p.id) AS screening_exists"
        )
        joins = ""
        kinds = "group_concat(DISTINCT c.kind)"
    # GATE-4, MON-3, MON-4: the requirements overdue beyond the blocking threshold on the decision's day,
    # from the stored schedule (selectors/monitoring.py `monitoring_blocks_load` reads the same set alone).
    agg = "string_agg(ms.requirement, ',')" if postgres else "group_concat(ms.requirement)"
    monitoring = (
        f"(SELECT {agg} FROM registry_monitoringschedule ms WHERE ms.patient_id = p.id"
        " AND ms.next_due_on < %s AND ms.window_ends_on >= %s) AS monitoring_blocking_csv"
    )
    infused = (
        "EXISTS (SELECT 1 FROM registry_infusion i WHERE i.patient_id = p.id AND i.administered_on = %s)"
        if on_date
        else "FALSE"
    )
    party_columns = ""
    if parties:  # GATE-1's three parties, share-locked in this statement (`participants_for_authorization`)
        party_columns = ", " + ", ".join(f"gp.{name}" for name in _PARTY_COLUMNS)
        joins += f" LEFT JOIN ({_PARTIES_SQL} FOR SHARE) gp ON TRUE"
    return (
        f"SELECT {_PATIENT_SELECT}, {courses}{labs}, {pregnancy}, {PREGNANCY_FACTS_COLUMNS}, {monitoring}, "
        f"{screening}, "
        f"(SELECT {kinds} FROM registry_contraindication c WHERE c.patient_id = p.id) AS contraindication_kinds, "
        f"{infused} AS infused_on_date{party_columns} FROM registry_patient p{joins} WHERE "
    )


# GATE-1's three parties: the pharmacy by id, the facility and the prescriber by NPI, none deactivated; only
# what a gate reads (id, status, expiry) of each. Read alone (`participants_for_authorization`) or, for a
# dispense authorization, with the patient's facts (`patient_by_registry_id(parties=...)`).
_PARTY_COLUMNS = [
    f"party_{who}_{name}" for who in ("ph", "f", "pr") for name in ("id", "status", "expires_at")
]
_PARTIES_SQL = (
    "SELECT "
    + ", ".join(
        f"{who}.{column} AS party_{who}_{name}"
        for who in ("ph", "f", "pr")
        for column, name in (("id", "id"), ("status", "status"), ("certification_expires_at", "expires_at"))
    )
    + " FROM registry_pharmacy ph, registry_facility f, registry_prescriber pr"
    " WHERE ph.id = %s AND f.npi = %s AND f.status <> 'deactivated'"
    " AND pr.npi = %s AND pr.status <> 'deactivated'"
)


_FACTS_SQL = {
    (on_date, postgres, parties): _facts_sql(on_date=on_date, postgres=postgres, parties=parties)
    for on_date in (False, True)
    for postgres in (False, True)
    for parties in (False, True)
    if postgres or not parties
}


def _as_date(value: Any) -> dt.date | None:
    """SQLite (the quick-start database) returns raw columns as text."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _patient_with_facts(
    where: str,
    params: list[Any],
    *,
    now: dt.datetime,
    on_date: dt.date | None,
    labs_as_of: dt.date,
    parties: PartiesNamed | None = None,
) -> Patient | None:
    """The patient with its facts as extra attributes. Labs count only if collected on or before
    `labs_as_of` (the day the decision is about): a later lab must not hide one valid on that day.
    With `parties` (PostgreSQL), GATE-1's three parties are read and share-locked in the same statement:
    `patient.gate_parties` is (pharmacy, facility, prescriber), or None when one of them is missing."""
    postgres = connection.vendor == "postgresql"
    with_parties = parties is not None and postgres
    sql = _FACTS_SQL[(on_date is not None, postgres, with_parties)] + where
    db_date = connection.ops.adapt_datefield_value
    all_params = (
        ([connection.ops.adapt_datetimefield_value(now)] * _HOLDING_NOW_PARAMS if postgres else [])
        + [db_date(labs_as_of)] * _LAB_PARAMS
        + [db_date(blocking_before(rules.current(), labs_as_of)), db_date(labs_as_of)]
        + ([db_date(on_date)] if on_date is not None else [])
        + (_parties_params(parties) if parties is not None and postgres else [])
        + params
    )
    if not postgres:  # SQLite returns text: the raw queryset applies the model fields' converters
        found = next(iter(Patient.objects.raw(sql, all_params)), None)
        if found is not None:
            found.facts_as_of = labs_as_of  # type: ignore[attr-defined]
        return found
    with connection.cursor() as cursor:
        cursor.execute(sql, all_params)
        row = cursor.fetchone()
        if row is None:
            return None
        names = [column.name for column in cursor.description or ()]
    count = len(_PATIENT_ATTNAMES)
    patient = Patient.from_db(connection.alias, _PATIENT_ATTNAMES, list(row[:count]))
    end = len(row) - (len(_PARTY_COLUMNS) if with_parties else 0)
    for name, value in zip(names[count:end], row[count:end], strict=True):
        setattr(patient, name, value)
    patient.facts_as_of = labs_as_of  # type: ignore[attr-defined]
    if with_parties:
        party = list(row[end:])
        patient.gate_parties = (  # type: ignore[attr-defined]
            None
            if party[0] is None
            else (
                _partial(Pharmacy, party[0:3]),
                _partial(Facility, party[3:6]),
                _partial(Prescriber, party[6:9]),
            )
        )
    return patient


def _sqlite_datetime(value: Any) -> dt.datetime | None:
    """SQLite hands back naive UTC datetimes (or text); the registry compares aware ones."""
    if value is None:
        return None
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def participants_by_npi(
    *, facility_npi: str, prescriber_npi: str
) -> tuple[Facility | None, Prescriber | None]:
    """The registered (not deactivated) facility and prescriber with these NPIs, in one statement. Only
    what a gate needs is loaded (id, status, expiry); other fields load on access."""
    sql = (
        "SELECT 'facility', id, status, certification_expires_at FROM registry_facility"
        " WHERE npi = %s AND status <> 'deactivated'"
        " UNION ALL SELECT 'prescriber', id, status, certification_expires_at FROM registry_prescriber"
        " WHERE npi = %s AND status <> 'deactivated'"
    )
    found: dict[str, Any] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [facility_npi or "", prescriber_npi or ""])
        for kind, *values in cursor.fetchall():
            found.setdefault(kind, _partial(Facility if kind == "facility" else Prescriber, list(values)))
    return found.get("facility"), found.get("prescriber")


_GATE_FIELDS = ["id", "status", "certification_expires_at"]


def _partial(model: Any, values: list[Any]) -> Any:
    """A participant with only what a gate reads (id, status, expiry); other fields load on access."""
    if connection.vendor != "postgresql":
        values = [model._meta.pk.to_python(values[0]), values[1], _sqlite_datetime(values[2])]
    return model.from_db(connection.alias, _GATE_FIELDS, values)


@dataclass(frozen=True)
class PartiesNamed:
    """GATE-1's three parties as a dispense authorization names them."""

    pharmacy_id: Any
    facility_npi: str
    prescriber_npi: str


def _parties_params(parties: PartiesNamed) -> list[Any]:
    return [
        Pharmacy._meta.pk.get_db_prep_value(parties.pharmacy_id, connection),
        parties.facility_npi or "",
        parties.prescriber_npi or "",
    ]


def participants_for_authorization(
    *, pharmacy_id: Any, facility_npi: str, prescriber_npi: str
) -> tuple[Pharmacy | None, Facility | None, Prescriber | None]:
    """GATE-1's three parties, read and share-locked in one statement (the common, approvable case), so
    a suspension cannot commit between this read and the issue of a number; the suspension waits, and its
    revocation then sees the number. When one is missing nothing can be approved: they are read unlocked.
    The dispense authorization reads the same statement with the patient's facts (`_patient_with_facts`)
    and comes here only when that found no row."""
    sql = _PARTIES_SQL
    if connection.vendor == "postgresql":
        sql += " FOR SHARE"
    named = PartiesNamed(pharmacy_id, facility_npi, prescriber_npi)
    with connection.cursor() as cursor:
        cursor.execute(sql, _parties_params(named))
        row = cursor.fetchone()
    if row is not None:
        return (
            _partial(Pharmacy, list(row[0:3])),
            _partial(Facility, list(row[3:6])),
            _partial(Prescriber, list(row[6:9])),
        )
    pharmacy = Pharmacy.objects.filter(pk=pharmacy_id).first() if pharmacy_id else None
    facility, prescriber = participants_by_npi(facility_npi=facility_npi, prescriber_npi=prescriber_npi)
    return pharmacy, facility, prescriber


def _course_facts(row: Any) -> CourseFacts:
    return CourseFacts(
        id=row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0])),
        number=row[1],
        status=row[2],
        planned_doses=row[3],
        doses_given=row[4],
        first_infusion_on=_as_date(row[5]),
        last_infusion_on=_as_date(row[6]),
        committed_doses=int(row[7]) + int(row[8]),
        lapsed_doses=int(row[9]) - int(row[7]),
    )


def _courses(patient: Patient, now: dt.datetime) -> tuple[CourseFacts, ...]:
    """The patient's courses with, for each, the doses committed to active authorizations and dispenses
    (on PostgreSQL they came with the patient's facts)."""
    if hasattr(patient, "courses_json"):
        loaded: list[Any] = getattr(patient, "courses_json", None) or []
        return tuple(_course_facts(row) for row in loaded)
    sql = (
        "SELECT c.id, c.number, c.status, c.planned_doses, c.doses_given, c.first_infusion_on, c.last_infusion_on,"
        f" COALESCE(({_HOLDING_DOSES_SQL.format(patient='pa')}), 0),"
        " COALESCE((SELECT SUM(d.vials) FROM registry_dispense d JOIN registry_dispenseauthorization a"
        " ON a.id = d.authorization_id WHERE a.course_id = c.id), 0),"
        f" COALESCE(({_ACTIVE_DOSES_SQL}), 0)"
        " FROM registry_course c JOIN registry_patient pa ON pa.id = c.patient_id"
        " WHERE c.patient_id = %s ORDER BY c.number, c.created_at"
    )
    params = [connection.ops.adapt_datetimefield_value(now)] * _HOLDING_NOW_PARAMS + [_db_pk(patient.pk)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return tuple(_course_facts(row) for row in rows)


def _db_pk(pk: Any) -> Any:
    return Patient._meta.pk.get_db_prep_value(pk, connection)


def _patient_facts(p: Patient) -> dict[str, Any]:
    a: Any = p
    screening = None
    if a.screening_exists:
        screening = ScreeningFacts(
            hiv_negative=bool(a.screening_hiv_negative),
            no_active_infection=bool(a.screening_no_active_infection),
            tb_screened_on=_as_date(a.screening_tb_screened_on),
            vaccinations_completed_on=_as_date(a.screening_vaccinations_completed_on),
        )
    labs = {t: _as_date(getattr(a, f"lab_{t}")) for t in GATE_LAB_TESTS}
    return {
        "patient": p,
        "latest_lab_on": {t: on for t, on in labs.items() if on},
        "latest_negative_pregnancy_on": _as_date(a.preg_negative_on),
        "latest_positive_pregnancy_on": _as_date(a.preg_positive_on),
        "screening": screening,
        "contraindication_kinds": tuple(
            k for k in _CONTRAINDICATION_KINDS if k in (a.contraindication_kinds or "").split(",")
        ),
        "infused_on_date": bool(getattr(a, "infused_on_date", False)),
        **pregnancy_gate_facts(p),  # PRG-4
    }


# ID-4: a caller locked out of a registry ID (services/dob_guard.py) finds no patient by it: one condition on
# the lookup's own statement, so the guessing lock costs no extra round trip.
_NOT_LOCKED_OUT = (
    " AND NOT EXISTS (SELECT 1 FROM registry_doblookupguard g WHERE g.user_id = %s"
    f" AND g.lookup = '{LookupKind.REGISTRY_ID}'"
    " AND g.rems_patient_id = {table}.rems_patient_id AND g.locked_until > %s)"
)


def patient_by_registry_id(
    rems_patient_id: str,
    date_of_birth: dt.date,
    *,
    now: dt.datetime,
    labs_as_of: dt.date,
    on_date: dt.date | None = None,
    lock: bool = False,
    locked_out_for: Any = None,
    parties: PartiesNamed | None = None,
) -> Patient | None:
    """ID-4: a pharmacy or facility names a patient by registry ID and date of birth. An unknown ID, a
    malformed one and a date-of-birth mismatch are indistinguishable to the caller; so is a lock: with
    `locked_out_for` (a user id), a caller whose date-of-birth lock on this ID is in force finds nothing.
    Services answering a caller go through `services.dob_guard.patient_lookup_guarded`, which counts the
    mismatches and sets the lock."""
    canonical = parse_registry_id(rems_patient_id)
    if canonical is None:
        return None
    params: list[Any] = [canonical, connection.ops.adapt_datefield_value(date_of_birth)]
    guard = ""
    if locked_out_for is not None:
        user_id = User._meta.pk.get_db_prep_value(locked_out_for, connection)
        params += [user_id, connection.ops.adapt_datetimefield_value(now)]
        guard = _NOT_LOCKED_OUT.format(table="p" if not lock else "registry_patient")
    if not lock:
        return _patient_with_facts(
            "p.rems_patient_id = %s AND p.date_of_birth = %s" + guard,
            params,
            now=now,
            labs_as_of=labs_as_of,
            on_date=on_date,
            parties=parties,
        )
    # Lock first, in a statement of its own, then read the facts in a new statement: under READ COMMITTED
    # a statement that waited for the lock still returns the subqueries of the snapshot it started with,
    # so locking and reading in one statement would decide on facts from before the lock holder's commit.
    # Every writer that changes a gate's facts (course planning and cancelling, infusions, authorizations,
    # status changes, contraindications) holds this lock.
    lock_sql = "SELECT id FROM registry_patient WHERE rems_patient_id = %s AND date_of_birth = %s" + guard
    if connection.features.has_select_for_update:
        lock_sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(lock_sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    # `parties` (a dispense authorization): GATE-1's parties are share-locked in this statement too. It
    # starts after the patient lock is held, so a party's suspension committed while this request waited
    # for that lock is seen; one committing later waits for this transaction (and its revocation then sees
    # the number issued). A locking read returns the party rows' latest committed versions in any case.
    return _patient_with_facts(
        "p.id = %s", [row[0]], now=now, on_date=on_date, labs_as_of=labs_as_of, parties=parties
    )


def facts_load(
    *,
    patient: Patient | None,
    now: dt.datetime,
    as_of: dt.date,
    annotated: bool = False,
    pharmacy: Pharmacy | None = None,
    facility: Facility | None = None,
    prescriber: Prescriber | None = None,
    request: dict[str, Any] | None = None,
    on_date: dt.date | None = None,
    dispense: DispenseFacts | None = None,
    dispense_candidates: int = 0,
) -> Facts:
    """Facts for a decision. `patient` may already carry the annotations (`annotated=True`), saving the
    reload; otherwise it is reloaded with them in one query."""
    values: dict[str, Any] = {}
    if patient is not None and prescriber is not None and prescriber.pk == patient.prescriber_id:
        patient.prescriber = prescriber  # the prescription names the prescriber of record: no second read
    if patient is not None:
        if not annotated:
            labs_as_of = (
                (request or {}).get("administered_on") or (request or {}).get("planned_start_on") or as_of
            )
            loaded = _patient_with_facts(
                "p.id = %s", [_db_pk(patient.pk)], now=now, on_date=on_date, labs_as_of=labs_as_of
            )
            assert loaded is not None
            if Patient.prescriber.is_cached(patient):
                loaded.prescriber = patient.prescriber  # already read under the caller's lock
            patient = loaded
        values.update(_patient_facts(patient))
        values["courses"] = _courses(patient, now)
        values["monitoring_blocking"] = (
            monitoring_blocking_parse(patient.monitoring_blocking_csv)  # type: ignore[attr-defined]
            if getattr(patient, "facts_as_of", None) == as_of
            else monitoring_blocks_load(patient_id=patient.pk, as_of=as_of)
        )
    return Facts(
        as_of=as_of,
        now=now,
        program=rules.current(),
        pharmacy=pharmacy,
        facility=facility,
        prescriber=prescriber,
        dispense=dispense,
        dispense_candidates=dispense_candidates,
        request=request or {},
        **values,
    )


_DISPENSE_COLUMNS = (
    "id",
    "patient_id",
    "authorization__facility_id",
    "authorization__course_id",
    "vials",
    "infused",
)


def dispense_facts(dispense_id: Any, *, lock: bool) -> DispenseFacts | None:
    """The dispense with this id and how many of its vials are infused, in one statement; with `lock`, the
    dispense row is locked (after the patient's: the registry's lock order), so two infusions cannot both
    take its last vial."""
    if not dispense_id:
        return None
    qs = Dispense.objects.filter(pk=dispense_id)
    if lock:  # its own statement: PostgreSQL does not lock a grouped row
        list(qs.select_for_update(of=("self",)).values_list("pk"))
    row = qs.annotate(infused=Count("infusions")).values_list(*_DISPENSE_COLUMNS).first()
    return DispenseFacts(*row) if row is not None else None


def dispense_backing(*, patient_id: Any, facility_id: Any, lock: bool) -> tuple[DispenseFacts | None, int]:
    """GATE-3 (issue 9): for an infusion that names no dispense, the dispenses to this facility for the
    patient's open course with a vial left, in one statement: (the dispense when exactly one, how many).
    The caller holds the patient lock, so the count cannot change under it; with `lock` the one found is
    locked too (lock order: patient, dispense)."""
    if patient_id is None or facility_id is None:
        return None, 0
    rows = list(
        Dispense.objects.filter(
            patient_id=patient_id,
            authorization__facility_id=facility_id,
            authorization__course__status__in=OPEN_COURSE_STATUSES,
        )
        .annotate(infused=Count("infusions"))
        .filter(infused__lt=F("vials"))
        .values_list(*_DISPENSE_COLUMNS)[:2]
    )
    if len(rows) != 1:
        return None, len(rows)
    if lock:
        list(Dispense.objects.filter(pk=rows[0][0]).select_for_update(of=("self",)).values_list("pk"))
    return DispenseFacts(*rows[0]), 1


__all__ = [
    "DispenseFacts",
    "Facts",
    "dispense_backing",
    "dispense_facts",
    "facts_load",
    "patient_by_registry_id",
]
