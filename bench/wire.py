"""The gate at wire speed (issue 13): the registry over HTTP, under gunicorn with production settings, driven
by wrk, with every case interleaved in one run.

A fresh PostgreSQL database is seeded through the services (one certified prescriber, facility and pharmacy,
a few hundred authorized patients with open courses, a few unauthorized ones); gunicorn (2 workers) serves it
and wrk (8 connections) drives, round after round:

    GET  /api/v1/health                      the framework floor (no key, no query)
    GET  /api/v1/me                          an authenticated one-row read
    POST /api/v1/dispense-authorizations     approved (authorized patients, 1 dose each)
    POST /api/v1/dispense-authorizations     denied (patients not authorized)
    POST /api/v1/dispenses                   the numbers the approved round issued, each once
    POST /api/v1/infusions/check             patients with a dispense to the facility
    POST /api/v1/lab-results/bulk            5,000 rows a request (sequential, not under wrk)

It prints requests/s, p50 and p99 per case (median over the rounds), queries per request (the same request
in process, counted), and the ratios to `/me` and to the floor. Then it adds filler patients up to a
100,000-patient registry and runs the rounds again, removes the filler and runs the small registry once
more: the large registry is compared with the mean of the two small runs around it (their ratio is the
machine's drift), and the figures should not move.

The server and the load share the machine: read the ratios, not the absolute figures. Nothing here passes or
fails on time.

    make bench-http     # or: DATABASE_URL=postgres://… .venv/bin/python bench/wire.py [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import ROOT, bench_database, drop_bench_database
from authorization import participants_seed, seed_patient
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from registry.identifiers import new_registry_id
from registry.matching import patient_match_key
from registry.models import (
    Decision,
    Dispense,
    DispenseAuthorization,
    LabResult,
    Patient,
    Prescriber,
)
from registry.selectors.facts import GATE_LAB_TESTS
from registry.services.accounts import admin_user_ensure, api_key_issue, participant_user_ensure
from registry.services.certification import participant_certify, participant_register

PORT = 8765
CONNECTIONS = 8
WORKERS = 2
APPROVE_PATIENTS = 300
DENY_PATIENTS = 20
LARGE_REGISTRY = 100_000
BULK_ROWS = 5_000
DOB = "1980-01-01"
PRESCRIBER_NPI = "1558598797"
FACILITY_NPI = "1993999998"
FILLER_NPI = "1679576722"  # the filler patients' prescriber


@dataclass
class Case:
    name: str
    method: str
    path: str
    key: str | None
    bodies: list[str] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    queries: str | None = None  # statements besides transaction control / all round trips


# --- wrk -------------------------------------------------------------------------------------------------

LUA = """
local bodies = { %(bodies)s }
local n = #bodies
local threads = {}
local counter = 0
wrk.method = "%(method)s"
%(headers)s
function setup(thread)
  counter = counter + 1
  thread:set("offset", counter)
  table.insert(threads, thread)
end
function init(args)
  i = offset
  statuses = {}
end
function request()
  if n == 0 then return wrk.format() end
  i = i + %(threads)d
  return wrk.format(nil, nil, nil, bodies[(i %% n) + 1])
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for code, count in pairs(t:get("statuses")) do
      all[tostring(code)] = (all[tostring(code)] or 0) + count
    end
  end
  local parts = {}
  for code, count in pairs(all) do table.insert(parts, string.format('"%%s": %%d', code, count)) end
  io.write(string.format('WRK {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"socket_errors": %%d, "statuses": {%%s}}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", ")))
end
"""

WRK_THREADS = 2


def wrk_run(case: Case, seconds: float, workdir: Path) -> dict[str, Any]:
    headers = []
    if case.key:
        headers.append(f'wrk.headers["Authorization"] = "Bearer {case.key}"')
    if case.method == "POST":
        headers.append('wrk.headers["Content-Type"] = "application/json"')
    script = workdir / "case.lua"
    script.write_text(
        LUA
        % {
            "bodies": ", ".join(f"[[{body}]]" for body in case.bodies),
            "method": case.method,
            "headers": "\n".join(headers),
            "threads": WRK_THREADS,
        }
    )
    out = subprocess.run(  # noqa: S603 - our own fixed command line
        [
            shutil.which("wrk") or "wrk",
            f"-t{WRK_THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{PORT}{case.path}",
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"wrk failed: {out.stderr or out.stdout}")
    line = next(line for line in out.stdout.splitlines() if line.startswith("WRK "))
    figures = json.loads(line[4:])
    case.rps.append(figures["requests"] / (figures["duration_us"] / 1e6))
    case.p50.append(figures["p50_us"] / 1000)
    case.p99.append(figures["p99_us"] / 1000)
    for code, count in figures["statuses"].items():
        case.statuses[code] = case.statuses.get(code, 0) + count
    if figures["socket_errors"]:
        case.statuses["socket errors"] = case.statuses.get("socket errors", 0) + figures["socket_errors"]
    return figures


# --- gunicorn --------------------------------------------------------------------------------------------


def database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def gunicorn_start(workdir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789abcdef",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        # The limiter runs, as in production (docker-compose): counted in Redis, with a rate that the load
        # does not reach.
        "API_THROTTLE_RATE": "100000000/min",
        "CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/13"),
    }
    server = subprocess.Popen(  # noqa: S603 - our own fixed command line
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "config.wsgi:application",
            f"--workers={WORKERS}",
            f"--bind=127.0.0.1:{PORT}",
            "--log-level=warning",
            f"--pid={workdir / 'gunicorn.pid'}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "gunicorn.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=0.5):
                pass
            if http_call("GET", "/api/v1/health")[0] == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit(f"gunicorn did not start: {(workdir / 'gunicorn.log').read_text()[-2000:]}")


def gunicorn_stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def http_call(method: str, path: str, body: str | None = None, key: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


# --- the registry ----------------------------------------------------------------------------------------


@dataclass
class Program:
    prescriber: Prescriber
    prescriber_key: str
    pharmacy_key: str
    facility_key: str
    approve: list[Patient]
    deny: list[Patient]


def program_seed(now: dt.datetime) -> Program:
    admin = admin_user_ensure(username="bench")
    prescriber, facility, pharmacy = participants_seed(admin, now)
    prescriber_user = participant_user_ensure(participant=prescriber, actor=admin)
    _, prescriber_key = api_key_issue(user=prescriber_user, actor=admin)
    _, pharmacy_key = api_key_issue(
        user=participant_user_ensure(participant=pharmacy, actor=admin), actor=admin
    )
    _, facility_key = api_key_issue(
        user=participant_user_ensure(participant=facility, actor=admin), actor=admin
    )
    started = time.perf_counter()
    approve = [
        seed_patient(prescriber_user, facility, now, history=False, first_name=f"Approve{i:04d}")
        for i in range(APPROVE_PATIENTS)
    ]
    deny = [
        seed_patient(
            prescriber_user, facility, now, history=False, first_name=f"Deny{i:04d}", authorize=False
        )
        for i in range(DENY_PATIENTS)
    ]
    print(
        f"seeded {len(approve) + len(deny)} patients through the services in {time.perf_counter() - started:.0f} s"
    )
    return Program(prescriber, prescriber_key, pharmacy_key, facility_key, approve, deny)


def registry_fill(admin_now: dt.datetime, target: int) -> None:
    """Filler patients (another prescriber's, one lab each) up to `target`, set-based: a registry of that
    size for the gate's indexes to search, not patients the load touches."""
    admin = admin_user_ensure(username="bench")
    today = timezone.localdate(admin_now)
    other = participant_register(
        model=Prescriber,
        actor=admin,
        data={
            "npi": FILLER_NPI,
            "first_name": "Fill",
            "last_name": "Er",
            "email": "f@example.org",
            "knowledge_assessment_score": 8,
            "knowledge_assessment_passed_on": today,
            "enrollment_signed_on": today - dt.timedelta(days=30),
        },
    )
    participant_certify(participant=other, actor=admin, now=admin_now)
    user = participant_user_ensure(participant=other, actor=admin)
    missing = target - Patient.objects.count()
    started = time.perf_counter()
    batch = 10_000
    for start in range(0, missing, batch):
        patients = [
            Patient(
                rems_patient_id=new_registry_id(),
                first_name=f"Filler{start + i}",
                last_name="Patient",
                match_key=patient_match_key(f"Filler{start + i}", "Patient"),
                date_of_birth=dt.date(1950, 1, 1) + dt.timedelta(days=(start + i) % 18000),
                sex="female" if i % 2 else "male",
                reproductive_potential=False,
                enrollment_signed_on=today - dt.timedelta(days=400),
                status="authorized",
                prescriber=other,
            )
            for i in range(min(batch, missing - start))
        ]
        Patient.objects.bulk_create(patients)
        LabResult.objects.bulk_create(
            LabResult(
                patient=patient,
                test=GATE_LAB_TESTS[n % len(GATE_LAB_TESTS)],
                collected_on=today - dt.timedelta(days=1 + n % 300),
                result="normal",
                recorded_by=user,
            )
            for n, patient in enumerate(patients)
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"filled the registry to {Patient.objects.count():,} patients in {time.perf_counter() - started:.0f} s"
    )


def registry_unfill() -> None:
    """The filler removed again (and the tables vacuumed, as autovacuum would), so the small registry can
    be measured a second time after the large one: drift on a shared machine shows as the difference
    between the two small runs, and the large run is compared with their mean."""
    started = time.perf_counter()
    filler = (
        "SELECT p.id FROM registry_patient p JOIN registry_prescriber pr ON pr.id = p.prescriber_id"
        " WHERE pr.npi = %s"
    )
    with connection.cursor() as cursor:  # set-based, as the filler was made (it has labs and nothing else)
        cursor.execute(f"DELETE FROM registry_labresult WHERE patient_id IN ({filler})", [FILLER_NPI])  # noqa: S608
        cursor.execute(f"DELETE FROM registry_patient WHERE id IN ({filler})", [FILLER_NPI])  # noqa: S608
        cursor.execute("VACUUM ANALYZE registry_patient, registry_labresult")
    print(
        f"\nremoved the filler: back to {Patient.objects.count():,} patients in {time.perf_counter() - started:.0f} s"
    )


def authorization_body(patient: Patient) -> str:
    return json.dumps(
        {
            "rems_patient_id": patient.rems_patient_id,
            "date_of_birth": DOB,
            "prescriber_npi": PRESCRIBER_NPI,
            "facility_npi": FACILITY_NPI,
            "doses_requested": 1,
        }
    )


def infusion_body(patient: Patient, today: dt.date) -> str:
    return json.dumps(
        {
            "rems_patient_id": patient.rems_patient_id,
            "date_of_birth": DOB,
            "administered_on": today.isoformat(),
            "dose_mg": 12,
            "corticosteroid_premedication": True,
            "antiviral_prophylaxis": True,
            "observation_minutes": 120,
        }
    )


def housekeeping() -> None:
    """Between rounds, outside the measurement: the round's dispenses and numbers are removed so that every
    round starts with every course's doses free (the approval path, not `course_doses_exhausted`)."""
    Dispense.objects.all().delete()
    DispenseAuthorization.objects.all().delete()
    statistics_refresh()


def statistics_refresh() -> None:
    """This machine's PostgreSQL runs with autovacuum off, so nothing would refresh the planner's
    statistics while the rounds churn these tables (a live registry's autovacuum does): planned against
    an emptied table's statistics, the dispensed-doses subquery scanned every dispense for every course and
    the infusion check fell to 0.4-0.6 of its small-registry rate. Outside the measurement."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE registry_dispense, registry_dispenseauthorization, registry_decision")


def queries_per_request(case: Case) -> str:
    client = APIClient()
    if case.key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {case.key}")
    body = case.bodies[0] if case.bodies else None
    with CaptureQueriesContext(connection) as ctx:
        if case.method == "GET":
            response = client.get(case.path)
        else:
            response = client.post(case.path, body, content_type="application/json")
    assert response.status_code < 300, (case.name, response.status_code, response.content[:500])
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")
    work = [q for q in ctx.captured_queries if not q["sql"].upper().startswith(control)]
    return f"{len(work)}/{len(ctx.captured_queries)}"


def bulk_labs_round(program: Program, today: dt.date, round_number: int, samples: list[float]) -> None:
    rows = [
        {
            "rems_patient_id": program.approve[i % len(program.approve)].rems_patient_id,
            "test": GATE_LAB_TESTS[i % len(GATE_LAB_TESTS)],
            "collected_on": (today - dt.timedelta(days=3 + (i + round_number) % 20)).isoformat(),
            "result": "normal",
        }
        for i in range(BULK_ROWS)
    ]
    body = json.dumps({"results": rows})
    started = time.perf_counter()
    status, data = http_call("POST", "/api/v1/lab-results/bulk", body, program.prescriber_key)
    samples.append(time.perf_counter() - started)
    assert status == 201, (status, data[:500])


def rounds(program: Program, args: argparse.Namespace, workdir: Path, label: str) -> dict[str, Case]:
    now = timezone.now()
    today = timezone.localdate(now)
    cases = {
        "health": Case("GET /api/v1/health (floor)", "GET", "/api/v1/health", None),
        "me": Case("GET /api/v1/me", "GET", "/api/v1/me", program.pharmacy_key),
        "approve": Case(
            "POST dispense-authorizations, approved",
            "POST",
            "/api/v1/dispense-authorizations",
            program.pharmacy_key,
            [authorization_body(p) for p in program.approve],
        ),
        "deny": Case(
            "POST dispense-authorizations, denied",
            "POST",
            "/api/v1/dispense-authorizations",
            program.pharmacy_key,
            [authorization_body(p) for p in program.deny],
        ),
        "dispense": Case("POST dispenses", "POST", "/api/v1/dispenses", program.pharmacy_key),
        "check": Case("POST infusions/check", "POST", "/api/v1/infusions/check", program.facility_key),
    }
    bulk_samples: list[float] = []
    approved_share: list[float] = []
    for round_number in range(args.rounds):
        housekeeping()
        for name in ("health", "me", "approve", "deny"):
            before = Decision.objects.filter(outcome="approved").count()
            figures = wrk_run(cases[name], args.seconds, workdir)
            if name == "approve":
                approved_share.append(
                    (Decision.objects.filter(outcome="approved").count() - before) / figures["requests"]
                )
        numbers = list(DispenseAuthorization.objects.filter(status="active").values_list("number", flat=True))
        cases["dispense"].bodies = [json.dumps({"authorization_number": n, "vials": 1}) for n in numbers]
        # Each number once: the round is shorter than the approvals' so the numbers last (any 409 shows).
        wrk_run(cases["dispense"], args.seconds / 2, workdir)
        statistics_refresh()
        dispensed = set(Dispense.objects.values_list("patient_id", flat=True))
        cases["check"].bodies = [infusion_body(p, today) for p in program.approve if p.pk in dispensed]
        wrk_run(cases["check"], args.seconds, workdir)
        bulk_labs_round(program, today, round_number, bulk_samples)

    # Queries per request, counted in process on the same database and the same request bodies.
    housekeeping()
    for name in ("health", "me", "approve", "deny"):
        cases[name].queries = queries_per_request(cases[name])
    number = DispenseAuthorization.objects.filter(status="active").values_list("number", flat=True).first()
    cases["dispense"].bodies = [json.dumps({"authorization_number": number, "vials": 1})]
    cases["dispense"].queries = queries_per_request(cases["dispense"])
    cases["check"].bodies = [infusion_body(program.approve[0], today)]
    cases["check"].queries = queries_per_request(cases["check"])
    housekeeping()

    report(cases, label, bulk_samples, approved_share)
    return cases


def report(cases: dict[str, Case], label: str, bulk: list[float], approved_share: list[float]) -> None:
    me = statistics.median(cases["me"].rps)
    floor = statistics.median(cases["health"].rps)
    print(f"\n{label}: {Patient.objects.count():,} patients, {len(cases['me'].rps)} interleaved rounds")
    print(
        f"  {'case':<42} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99/p50':>7} {'stmts':>7}"
        f" {'/me':>6} {'floor':>6}  statuses"
    )
    for case in cases.values():
        rps = statistics.median(case.rps)
        p50 = statistics.median(case.p50)
        p99 = statistics.median(case.p99)
        print(
            f"  {case.name:<42} {rps:7.0f} {p50:7.2f} {p99:7.2f} {p99 / p50:7.2f} {case.queries!s:>7}"
            f" {me / rps:5.2f}x {floor / rps:5.2f}x  {dict(sorted(case.statuses.items()))}"
        )
    print(
        f"  POST lab-results/bulk ({BULK_ROWS:,} rows, sequential)   median {statistics.median(bulk) * 1000:.0f} ms"
        f" = {BULK_ROWS / statistics.median(bulk):,.0f} rows/s"
    )
    print(
        "  stmts: statements besides transaction control / every round trip (in process, database rate limit)"
    )
    print(
        f"  approved share of the approval round: {min(approved_share):.3f} (1.000 = every request approved)"
    )
    print(
        f"  targets: authorization /me ratio {me / statistics.median(cases['approve'].rps):.2f} (<= 2.0), "
        f"/me floor ratio {floor / me:.2f} (<= 2.0), authorization p99/p50 "
        f"{statistics.median(cases['approve'].p99) / statistics.median(cases['approve'].p50):.2f} (<= 3.0)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4, help="wrk duration of each case in each round")
    parser.add_argument(
        "--large", type=int, default=LARGE_REGISTRY, help="patients in the large registry (0: skip)"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    bench_database("registry_bench_http")
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    try:
        program = program_seed(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        server = gunicorn_start(workdir)
        try:
            small = rounds(program, args, workdir, "small registry")
            if args.large:
                registry_fill(timezone.now(), args.large)
                large = rounds(program, args, workdir, "large registry")
                registry_unfill()
                again = rounds(program, args, workdir, "small registry again")
                print(
                    "\nlarge registry / small registry (the mean of the runs before and after it), throughput:"
                )
                print(f"  {'case':<42} {'large':>6} {'drift':>6}  within 10%")
                for name in ("me", "approve", "deny", "dispense", "check"):
                    before, after = (statistics.median(run[name].rps) for run in (small, again))
                    ratio = statistics.median(large[name].rps) / ((before + after) / 2)
                    print(
                        f"  {small[name].name:<42} {ratio:6.2f} {after / before:6.2f}  {abs(1 - ratio) <= 0.10}"
                    )
                print("  drift: the second small run / the first (the machine's own variation)")
        finally:
            gunicorn_stop(server)
    finally:
        connection.close()
        drop_bench_database()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
