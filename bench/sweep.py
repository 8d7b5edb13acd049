"""The daily monitoring sweep at scale (issue 10, MON-3, MON-5): a registry of N patients in monitoring is
seeded with set-based SQL (no factories, no services per row; the loaded tables' secondary indexes and
foreign keys are rebuilt after the load, then VACUUM ANALYZE, as autovacuum would leave a live registry),
then, for each size, it prints

- the first sweep ever (it opens every overdue flag and assembles the digests) and the next day's sweep
  (it also resolves, blocks and re-checks): wall time, statements issued, patients/s and schedule rows/s;
- the baseline: one hand-written SQL statement that finds the same overdue set, timed in the same run,
  and the ratio sweep / baseline;
- the write floor: one hand-written SQL statement that makes only the flag changes the sweep makes (opens,
  resolves, marks blocking; no audit rows, no digest lines, no completions), with its foreign-key checks,
  rolled back; and the ratio sweep / write floor: what the audit trail and the digests add to the writes
  no sweep can avoid;
- the same daily sweep split into 2 patient-id ranges run by two local workers at once (two threads, each
  with its own database connection, as two Celery workers would), checked to give the same counts;
- a second run for the same day (the database guard: nothing to do).

It never passes or fails on time. The seeded calendar, as of 2027-06-15: every patient had course 1 (a
spread of first infusions over the last 4 years, 1 in 100 past the 48-month window), 7 requirements (8 for
female patients), 1 in 10 with monthly labs overdue but not blocking, 1 in 25 blocking, 1 in 40 with an
overdue status form, and each day 1 in 50 whose monthly labs become overdue, 1 in 50 whose flags become
blocking and 1 in 50 whose results arrive; the other requirements are current. With `--history-months` each patient also gets
that many months of lab results (3 monthly tests, 2 quarterly, 1 yearly): the sweep never reads them, but
they make the tables and the buffer cache realistic.

    make bench-sweep                                   # 20,000 patients
    DATABASE_URL=postgres://… .venv/bin/python bench/sweep.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Digests are "sent" to memory: thousands of console e-mails would swamp the figures.
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")

from _harness import bench_database, drop_bench_database, median
from django.db import close_old_connections, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry import rules
from registry.models import Prescriber
from registry.selectors.monitoring import blocking_before, overdue_before
from registry.services.accounts import admin_user_ensure
from registry.services.monitoring import (
    _SWEEP_WORK_MEM,
    SweepResult,
    monitoring_sweep,
    monitoring_sweep_part,
    monitoring_sweep_split_start,
)

AS_OF = dt.date(2027, 6, 15)
PATIENTS_PER_PRESCRIBER = 100
# requirement, interval in months, days since last done for a patient that is current
REQUIREMENTS = (
    ("cbc_differential", 1, 20),
    ("serum_creatinine", 1, 20),
    ("urinalysis", 1, 20),
    ("thyroid_function", 3, 60),
    ("liver_function", 3, 60),
    ("skin_exam", 12, 200),
    ("hpv_screening", 12, 200),
    ("status_form", 6, 100),
)
# One SQL statement that finds the same overdue set the sweep flags (the baseline).
BASELINE_SQL = """
    SELECT count(*) FROM registry_monitoringschedule s JOIN registry_patient p ON p.id = s.patient_id
    WHERE s.next_due_on < %(overdue_before)s AND s.window_ends_on >= %(as_of)s
      AND p.status NOT IN ('deceased', 'monitoring_complete')
"""

# The write floor: the flag changes alone, as one hand-written statement (no audit, no digest lines).
WRITE_FLOOR_SQL = """
    WITH od AS MATERIALIZED (
        SELECT s.patient_id, s.requirement, s.next_due_on
        FROM registry_monitoringschedule s JOIN registry_patient p ON p.id = s.patient_id
        WHERE s.next_due_on < %(overdue_before)s AND s.window_ends_on >= %(as_of)s
          AND p.status NOT IN ('deceased', 'monitoring_complete')
    ), fl AS MATERIALIZED (
        SELECT f.id, f.patient_id, f.requirement, f.due_on, f.blocking, od.patient_id IS NOT NULL AS overdue
        FROM registry_monitoringflag f
        LEFT JOIN od ON od.patient_id = f.patient_id AND od.requirement = f.requirement
        WHERE f.status = 'open'
    ), r AS (
        UPDATE registry_monitoringflag f SET status = 'resolved', resolved_on = %(as_of)s, resolution = 'result'
        FROM fl WHERE f.id = fl.id AND NOT fl.overdue RETURNING f.id
    ), b AS (
        UPDATE registry_monitoringflag f SET blocking = TRUE, blocking_since = %(as_of)s
        FROM fl WHERE f.id = fl.id AND fl.overdue AND NOT fl.blocking AND fl.due_on < %(blocking_before)s
        RETURNING f.id
    ), o AS (
        INSERT INTO registry_monitoringflag
            (id, created_at, patient_id, requirement, due_on, opened_on, status, blocking, blocking_since,
             resolved_on, resolution, sweep_id)
        SELECT gen_random_uuid(), now(), od.patient_id, od.requirement, od.next_due_on, %(as_of)s, 'open',
               od.next_due_on < %(blocking_before)s,
               CASE WHEN od.next_due_on < %(blocking_before)s THEN %(as_of)s END, NULL, '', NULL
        FROM od WHERE NOT EXISTS (SELECT 1 FROM fl WHERE fl.patient_id = od.patient_id
                                  AND fl.requirement = od.requirement)
        RETURNING id
    )
    SELECT (SELECT count(*) FROM o), (SELECT count(*) FROM r), (SELECT count(*) FROM b)
"""


def npi(n: int) -> str:
    """A valid NPI (Luhn check digit over the 80840 prefix) for bench prescriber `n`."""
    body = f"{100000000 + n:09d}"
    digits = [int(c) for c in "80840" + body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


@contextmanager
def loading(cursor: Any, tables: tuple[str, ...]) -> Iterator[None]:
    """Loads as a restore would: the tables' secondary indexes and foreign keys are dropped for the bulk
    insert and rebuilt (sorted, validated in one pass each) after it; primary keys and unique constraints
    stay. Inside the seeding transaction, so an interrupted seed leaves the schema whole."""
    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
    rebuild: list[str] = []
    for table in tables:
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " WHERE i.indrelid = %s::regclass"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            [table],
        )
        for name, definition in cursor.fetchall():
            cursor.execute(f"DROP INDEX {name}")
            rebuild.append(definition)
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'f'",
            [table],
        )
        for name, definition in cursor.fetchall():
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    yield
    for statement in rebuild:
        cursor.execute(statement)


def seed(patients: int, history_months: int) -> dict[str, float]:
    """Prescribers with the ORM's bulk insert, everything else with INSERT … SELECT generate_series."""
    now = timezone.now()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    admin = admin_user_ensure(username="bench-sweep")
    count = max(1, patients // PATIENTS_PER_PRESCRIBER)
    Prescriber.objects.bulk_create(
        [
            Prescriber(
                npi=npi(n),
                first_name="Bench",
                last_name=f"Prescriber {n}",
                email=f"prescriber{n}@bench.example.org",
                status="certified",
                certified_at=now,
                certification_expires_at=now + dt.timedelta(days=730),
                enrollment_signed_on=AS_OF - dt.timedelta(days=2000),
                knowledge_assessment_score=8,
                knowledge_assessment_passed_on=AS_OF - dt.timedelta(days=2000),
            )
            for n in range(count)
        ],
        batch_size=5000,
    )
    params: dict[str, Any] = {
        "n": patients,
        "as_of": AS_OF,
        "now": now,
        "admin": admin.pk,
        "per": PATIENTS_PER_PRESCRIBER,  # each prescriber has a run of consecutive patients
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_prescriber ON COMMIT DROP AS"
            " SELECT row_number() OVER (ORDER BY npi) - 1 AS n, id FROM registry_prescriber"
        )
        # i: the patient's number; lag: how overdue its requirements are (see the module docstring).
        cursor.execute(
            """
            CREATE TEMP TABLE bench_seed ON COMMIT DROP AS
            SELECT i, gen_random_uuid() AS id,
                   CASE WHEN i %% 100 = 0 THEN 1500 ELSE (30 + (i::bigint * 7919) %% 1380)::int END AS since_first,
                   CASE WHEN i %% 25 = 0 THEN 'blocking' WHEN i %% 10 = 0 THEN 'overdue'
                        WHEN i %% 50 = 3 THEN 'overdue today' WHEN i %% 50 = 5 THEN 'blocking today'
                        WHEN i %% 50 = 7 THEN 'resolves today'
                        WHEN i %% 40 = 1 THEN 'form' ELSE 'current' END AS lag
            FROM generate_series(1, %(n)s) AS i
            """,
            params,
        )
        with loading(cursor, ("registry_patient", "registry_monitoringschedule", "registry_labresult")):
            cursor.execute(
                """
                INSERT INTO registry_patient
                    (id, created_at, rems_patient_id, first_name, last_name, date_of_birth, match_key, sex,
                     reproductive_potential, enrollment_signed_on, status, status_reason, status_changed_at,
                     status_before_suspension, prescriber_id, authorized_at, first_infusion_on,
                     last_infusion_on, monitoring_ends_on, updated_at)
                SELECT s.id, %(now)s, 'BN' || lpad(s.i::text, 9, '0'), 'P' || s.i, 'Bench ' || s.lag,
                       DATE '1970-01-01' + (s.i %% 15000), 'bench|' || s.i,
                       CASE WHEN s.i %% 2 = 0 THEN 'female' ELSE 'male' END, FALSE,
                       %(as_of)s::date - s.since_first - 30, 'authorized', '', %(now)s, '', pr.id, %(now)s,
                       %(as_of)s::date - s.since_first, %(as_of)s::date - s.since_first + 4,
                       (%(as_of)s::date - s.since_first + 4 + interval '48 months')::date, %(now)s
                FROM bench_seed s
                JOIN bench_prescriber pr ON pr.n = ((s.i - 1) / %(per)s) %% (SELECT count(*) FROM bench_prescriber)
                """,
                params,
            )
            values = ", ".join(f"('{r}', {m}, {d})" for r, m, d in REQUIREMENTS)
            cursor.execute(
                f"""
                INSERT INTO registry_monitoringschedule
                    (patient_id, requirement, last_done_on, next_due_on, window_ends_on, updated_at)
                SELECT p.id, r.requirement, (d.due_on - r.months * interval '1 month')::date, d.due_on,
                       p.monitoring_ends_on, %(now)s
                FROM bench_seed s JOIN registry_patient p ON p.id = s.id
                CROSS JOIN (VALUES {values}) AS r(requirement, months, current_days)
                CROSS JOIN LATERAL (SELECT CASE
                    WHEN r.months = 1 AND s.lag IN ('blocking', 'resolves today') THEN %(as_of)s::date - 60
                    WHEN r.months = 1 AND s.lag = 'overdue' THEN %(as_of)s::date - 15
                    -- overdue from today (due + 7 days of grace passed), blocking from today (30 days more)
                    WHEN r.months = 1 AND s.lag = 'overdue today' THEN %(as_of)s::date - 8
                    WHEN r.months = 1 AND s.lag = 'blocking today' THEN %(as_of)s::date - 38
                    WHEN r.requirement = 'status_form' AND s.lag = 'form' THEN %(as_of)s::date - 20
                    ELSE (%(as_of)s::date - r.current_days + r.months * interval '1 month')::date
                    END AS due_on) AS d
                WHERE r.requirement <> 'hpv_screening' OR p.sex = 'female'
                """,
                params,
            )
            timings["patients and schedule"] = time.perf_counter() - start
            if history_months:
                start = time.perf_counter()
                cursor.execute(
                    """
                    INSERT INTO registry_labresult
                        (id, created_at, patient_id, test, collected_on, result, value, unit, notes, recorded_by_id)
                    SELECT gen_random_uuid(), %(now)s, s.id, t.test, %(as_of)s::date - 20 - 30 * m, 'normal', '', '',
                           '', %(admin)s
                    FROM bench_seed s
                    CROSS JOIN generate_series(0, %(months)s - 1) AS m
                    CROSS JOIN (VALUES ('cbc_differential', 1), ('serum_creatinine', 1), ('urinalysis', 1),
                                       ('thyroid_function', 3), ('liver_function', 3), ('skin_exam', 12)) AS t(test, every)
                    WHERE m %% t.every = 0
                    """,
                    {**params, "months": history_months},
                )
                timings[f"{history_months} months of lab history"] = time.perf_counter() - start
            start = time.perf_counter()
        timings["indexes and foreign keys rebuilt"] = time.perf_counter() - start
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # as autovacuum would have done on a live registry
    timings["vacuum analyze"] = time.perf_counter() - start
    return timings


def day_passes() -> None:
    """What a day of autovacuum leaves: the tables vacuumed and their statistics current."""
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(
        f"  a day passes: VACUUM ANALYZE (autovacuum's work, outside the measurement) {time.perf_counter() - start:.1f} s"
    )


def results_arrive(as_of: dt.date) -> int:
    """Between two sweeps the 'resolves today' patients' monthly labs arrive (as an import that rebuilds
    the schedule would leave them, without closing their flags): the next sweep resolves those flags."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE registry_monitoringschedule s
            SET last_done_on = %(done)s, next_due_on = (%(done)s::date + interval '1 month')::date
            FROM registry_patient p
            WHERE p.id = s.patient_id AND p.last_name = 'Bench resolves today'
              AND s.requirement IN ('cbc_differential', 'serum_creatinine', 'urinalysis')
            """,
            {"done": as_of - dt.timedelta(days=1)},
        )
        return cursor.rowcount


def scalar(sql: str, params: Any = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def baseline(as_of: dt.date, repeat: int = 5) -> tuple[float, int]:
    """The median time of the one-statement overdue scan, and the size of the set it finds."""
    params = {"as_of": as_of, "overdue_before": overdue_before(rules.current(), as_of)}
    samples, found = [], 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{_SWEEP_WORK_MEM}'")  # as the sweep runs
        for _ in range(repeat):
            start = time.perf_counter()
            cursor.execute(BASELINE_SQL, params)
            found = cursor.fetchone()[0]
            samples.append(time.perf_counter() - start)
    return median(samples), found


def write_floor(as_of: dt.date) -> tuple[float, tuple[int, int, int]]:
    """The time of the flag changes alone (one hand-written statement and its foreign-key checks), rolled
    back so that the sweep measured next starts from the same state; and (opened, resolved, blocked)."""
    program = rules.current()
    params = {
        "as_of": as_of,
        "overdue_before": overdue_before(program, as_of),
        "blocking_before": blocking_before(program, as_of),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{_SWEEP_WORK_MEM}'")
        start = time.perf_counter()
        cursor.execute(WRITE_FLOOR_SQL, params)
        counts = cursor.fetchone()
        constraints_checked()
        seconds = time.perf_counter() - start
        transaction.set_rollback(True)
    with connection.cursor() as cursor:  # the rolled-back rows' dead versions, gone before the sweep runs
        cursor.execute("VACUUM registry_monitoringflag")
    return seconds, tuple(counts)


def constraints_checked() -> None:
    """Runs the deferred foreign-key checks now, as the commit would: they are part of the sweep's cost."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def sweep_once(as_of: dt.date, *, keep: bool) -> tuple[SweepResult, float, int]:
    """One in-process sweep, timed with its deferred constraint checks but without the digest sends that
    follow its commit (a separate Celery task in production); `keep=False` rolls it back, so the next
    measurement starts from the same state."""
    with transaction.atomic():
        start = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            result = monitoring_sweep(as_of=as_of, now=timezone.now())
        constraints_checked()
        seconds = time.perf_counter() - start
        if not keep:
            transaction.set_rollback(True)
    return result, seconds, len(queries.captured_queries)


def sweep_split(as_of: dt.date, workers: int) -> tuple[list[SweepResult], float, int]:
    """The sweep split into `workers` patient-id ranges, each run at once by its own thread and database
    connection (as Celery workers would); the part that finishes last assembles the digests."""
    run, pending = monitoring_sweep_split_start(as_of=as_of, now=timezone.now(), parts=workers)
    results: list[SweepResult] = []
    queries: list[int] = []
    errors: list[BaseException] = []
    ended: list[float] = []
    barrier = threading.Barrier(len(pending))

    def part(index: int) -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                with CaptureQueriesContext(connection) as captured:
                    results.append(monitoring_sweep_part(run_id=run.pk, index=index, worker=f"bench-{index}"))
                constraints_checked()
                ended.append(time.perf_counter())  # before the commit's digest sends
            queries.append(len(captured.captured_queries))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=part, args=(index,)) for index in pending]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    seconds = max(ended) - start
    return results, seconds, sum(queries)


def figures(
    name: str,
    result: SweepResult,
    seconds: float,
    queries: int,
    patients: int,
    rows: int,
    base: float,
    floor: float,
):
    print(
        f"  {name:<34} {seconds:8.3f} s  {queries:3d} statements  {patients / seconds:11,.0f} patients/s"
        f"  {rows / seconds:12,.0f} rows/s  ratio {seconds / base:6.1f}x  / write floor {seconds / floor:5.2f}x"
        f"   opened={result.opened} resolved={result.resolved} blocking={result.blocking}"
        f" completed={result.completed} digests={result.digests}"
    )


def write_floor_line(seconds: float, counts: tuple[int, ...]) -> str:
    opened, resolved, blocked = counts
    return (
        f"  write floor: one statement makes the flag changes alone (opens {opened:,}, resolves {resolved:,},"
        f" blocks {blocked:,}; no audit, no digest) in {seconds * 1000:.1f} ms"
    )


def run_size(patients: int, history_months: int, workers: int) -> None:
    timings = seed(patients, history_months)
    rows = scalar("SELECT count(*) FROM registry_monitoringschedule")
    labs = scalar("SELECT count(*) FROM registry_labresult")
    print(
        f"\n{patients:,} patients in monitoring, {rows:,} schedule rows, {labs:,} lab results; seeded in "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    )
    yesterday = AS_OF - dt.timedelta(days=1)

    base_first, found_first = baseline(yesterday)
    floor_first, floor_counts = write_floor(yesterday)
    first, first_s, first_q = sweep_once(yesterday, keep=True)
    print(
        f"  baseline: one statement finds the overdue set ({found_first:,} rows) in {base_first * 1000:.1f} ms"
    )
    print(write_floor_line(floor_first, floor_counts))
    figures(
        "first sweep ever (" + yesterday.isoformat() + ")",
        first,
        first_s,
        first_q,
        patients,
        rows,
        base_first,
        floor_first,
    )

    # A day passes: on a live server autovacuum would have vacuumed and analyzed the tables the first
    # sweep filled (this machine's PostgreSQL runs with autovacuum off, so the bench does it, outside the
    # measurement); without it the next sweep reads the schedule's heap for every overdue row (the
    # visibility map is stale) and plans against statistics of empty flag and digest tables.
    day_passes()
    arrived = results_arrive(AS_OF)
    print(f"  then {arrived:,} monthly results arrive for patients whose flags are open")
    base_daily, found_daily = baseline(AS_OF)
    floor_daily, floor_counts = write_floor(AS_OF)
    daily, daily_s, daily_q = sweep_once(AS_OF, keep=False)
    print(
        f"  baseline: one statement finds the overdue set ({found_daily:,} rows) in {base_daily * 1000:.1f} ms"
    )
    print(write_floor_line(floor_daily, floor_counts))
    figures(
        "next day's sweep (" + AS_OF.isoformat() + ")",
        daily,
        daily_s,
        daily_q,
        patients,
        rows,
        base_daily,
        floor_daily,
    )

    parts, split_s, split_q = sweep_split(AS_OF, workers)
    total = SweepResult(
        as_of=AS_OF,
        opened=sum(r.opened for r in parts),
        resolved=sum(r.resolved for r in parts),
        blocking=sum(r.blocking for r in parts),
        completed=sum(r.completed for r in parts),
        expired=sum(r.expired for r in parts),
        lapsed=sum(r.lapsed for r in parts),
        digests=sum(r.digests for r in parts),
    )
    figures(
        f"same day split over {workers} workers",
        total,
        split_s,
        split_q,
        patients,
        rows,
        base_daily,
        floor_daily,
    )
    same = total.counts() == daily.counts()
    print(f"  split result equals one run: {'yes' if same else 'NO: ' + str(total.counts())}")
    print(f"  speed-up of the split: {daily_s / split_s:.2f}x")

    again, again_s, again_q = sweep_once(AS_OF, keep=True)
    print(
        f"  second run for {AS_OF.isoformat()}: already_ran={again.already_ran}, {again_s * 1000:.1f} ms,"
        f" {again_q} statements"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SWEEP_SIZES", "20000"))
    parser.add_argument(
        "--history-months",
        type=int,
        default=12,
        help="months of lab history per patient for sizes up to 100,000 (0: none)",
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the sweep's and the digest tasks' own log lines
    sizes = [int(size.replace("_", "")) for size in args.sizes.split(",") if size]
    print(f"monitoring sweep benchmark on PostgreSQL, as of {AS_OF.isoformat()}, sizes {sizes}")
    for size in sizes:
        bench_database(f"registry_bench_sweep_{size}")
        try:
            run_size(size, args.history_months if size <= 100_000 else 0, args.workers)
        finally:
            close_old_connections()
            drop_bench_database()


if __name__ == "__main__":
    main()
