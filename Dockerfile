# One image for every process of the registry: the API (gunicorn), the Celery worker and Celery beat
# (see docker-compose.yml). Configuration comes from the environment at run time (config/settings.py).
FROM python:3.11-slim

# PYTHONPATH: the source tree in /app is what runs (manage.py, gunicorn and celery alike); the built
# package carries only Python files, not registry/templates.
# WEB_CONCURRENCY: gunicorn's worker count (gunicorn reads it itself); further flags via GUNICORN_CMD_ARGS.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings \
    WEB_CONCURRENCY=3

WORKDIR /app

# Dependencies first, from pyproject.toml alone (exact pins), so that a code change does not reinstall
# them: install the project with empty packages, then again with the real code below.
COPY pyproject.toml ./
RUN mkdir -p registry config \
    && touch registry/__init__.py config/__init__.py \
    && pip install . \
    && rm -rf registry config build *.egg-info

COPY manage.py ./
COPY config ./config
COPY registry ./registry
RUN pip install --no-deps . \
    && rm -rf build *.egg-info

# Static files (admin, Swagger UI) collected into /app/staticfiles, served by whitenoise. Settings refuse
# to load without a SECRET_KEY when DEBUG is off: a throwaway one, used for this step only. An in-memory
# database keeps the build from creating the quick-start SQLite directory.
RUN SECRET_KEY=collectstatic-build-only DEBUG=false DATABASE_URL=sqlite:///:memory: \
    python manage.py collectstatic --noinput

RUN groupadd --system --gid 10001 registry \
    && useradd --system --uid 10001 --gid registry --home-dir /home/registry --create-home registry
USER registry

EXPOSE 8000

# WSGI, not ASGI (STACK.md: the views are synchronous). Logs to stdout/stderr.
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "--error-logfile", "-"]
