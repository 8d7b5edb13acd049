# Two commands do all set-up (README): `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TEST_DATABASE_URL ?= postgres://registry:registry@127.0.0.1:5432/registry
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
# The tests run with production-like settings (DEBUG off) on PostgreSQL.
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) SECRET_KEY=test-only-secret-key-not-for-production \
	DEBUG=false SECURE_SSL_REDIRECT=false ALLOWED_HOSTS=testserver,localhost,127.0.0.1 \
	TEST_CELERY_BROKER_URL=$(TEST_BROKER_URL)
# The quick start: the embedded default (SQLite file in var/, eager Celery), whatever the shell exports.
RUN_ENV := env -u DATABASE_URL -u CELERY_BROKER_URL DEBUG=true

.PHONY: install run test test-sqlite lint typecheck schema migrations-check deploy-check services bench bench-http bench-profile bench-sweep clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(RUN_ENV) $(PY) manage.py migrate --noinput
	$(RUN_ENV) $(PY) manage.py seed_demo
	$(RUN_ENV) $(PY) manage.py sync_care_teams
	@$(RUN_ENV) $(PY) manage.py demo_admin_login admin
	@echo "Admin API key (shown once; use it as 'Authorization: Bearer <key>'):"
	@$(RUN_ENV) $(PY) manage.py issue_api_key --admin admin --name "make run" 2>/dev/null | tail -n 1
	@echo "Serving on http://127.0.0.1:8000  (API docs: http://127.0.0.1:8000/api/docs/)"
	$(RUN_ENV) $(PY) manage.py runserver 127.0.0.1:8000

services:
	@bash .ci/ensure-services

# The API and gate tests again on the quick start's database (SQLite), so `make run`'s path is tested too.
SQLITE_TESTS := tests/test_dispensing.py tests/test_rows.py tests/test_gate_safety.py tests/test_infusions.py tests/test_courses.py \
	tests/test_patients_api.py tests/test_gate_pipeline.py tests/test_walkthrough.py tests/test_api_conventions.py \
	tests/test_participants_api.py tests/test_patient_permissions.py tests/test_pregnancy_gate.py \
	tests/test_pregnancy_walkthrough.py tests/test_monitoring_schedule.py tests/test_access.py \
	tests/test_access_log.py tests/test_dob_guard.py tests/test_console.py \
	tests/test_seed_demo.py tests/test_assessment_report.py tests/test_console_admin.py
SQLITE_ENV := REGISTRY_TESTS_ON_SQLITE=1 DATABASE_URL=sqlite:///:memory: SECRET_KEY=test-only-secret-key-not-for-production \
	DEBUG=false SECURE_SSL_REDIRECT=false ALLOWED_HOSTS=testserver,localhost,127.0.0.1

test: install services
	$(TEST_ENV) $(VENV)/bin/pytest -n 2 -p no:cacheprovider
	$(MAKE) --no-print-directory test-sqlite lint typecheck schema migrations-check deploy-check

test-sqlite: install
	$(SQLITE_ENV) $(VENV)/bin/pytest -n 2 -p no:cacheprovider $(SQLITE_TESTS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(RUN_ENV) $(VENV)/bin/mypy

schema: install
	$(RUN_ENV) $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

migrations-check: install
	$(RUN_ENV) DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run

deploy-check: install
	SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') DEBUG=false \
	ALLOWED_HOSTS=registry.example.org DATABASE_URL=$(TEST_DATABASE_URL) \
	$(PY) manage.py check --deploy --fail-level WARNING

bench: install services
	$(TEST_ENV) $(PY) bench/bulk_labs.py
	$(TEST_ENV) $(PY) bench/authorization.py

# The gate over HTTP: gunicorn with production settings, wrk, small and 100,000-patient registries (issue 13).
bench-http: install services
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(TEST_ENV) $(PY) bench/wire.py

# Where the approved authorization's time goes, in process: database vs Python, per statement (issue 13).
bench-profile: install services
	$(TEST_ENV) $(PY) bench/gate_profile.py

# The daily monitoring sweep at scale (issue 10): BENCH_SWEEP_SIZES=10000,100000,1000000 for more sizes.
BENCH_SWEEP_SIZES ?= 20000
bench-sweep: install services
	$(TEST_ENV) $(PY) bench/sweep.py --sizes $(BENCH_SWEEP_SIZES)

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .mypy_cache .ruff_cache
