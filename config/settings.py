"""One env-driven settings module.

Secure by default: DEBUG is off unless asked for, there is no default SECRET_KEY outside DEBUG, and
SQLite is only the explicit quick-start default when DATABASE_URL is unset.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import environ
from celery.schedules import crontab
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set unless DEBUG=true.")
    SECRET_KEY = "insecure-local-development-key-only-used-with-DEBUG"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "registry.admin_apps.RegistryAdminConfig",  # django.contrib.admin with the registry's site (second factor)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_celery_beat",
    "axes",  # admin login lockout
    "django_otp",
    "django_otp.plugins.otp_totp",  # TOTP devices (authenticator apps)
    "django_otp.plugins.otp_static",  # single-use recovery codes
    "csp",
    "registry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "registry.middleware.RequestIdMiddleware",
    "registry.middleware_body.BodySizeLimitMiddleware",  # 413 payload_too_large before any read
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified() for the admin's second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out login
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
# DATABASE_URL unset means the quick-start SQLite file; production and the tests use PostgreSQL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'registry.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django 5.2's psycopg pool: one connection per request is ~8x slower (STACK.md pitfall 1).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        "timeout": env.int("DB_POOL_TIMEOUT", default=10),
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool owns connection reuse
    # Server-side binding lets psycopg prepare a statement on a connection once it has run
    # DB_PREPARE_THRESHOLD times there, so the gate's hot statements are planned once per pooled connection,
    # not once per request (issue 13). Behind a transaction-mode pooler without prepared-statement support,
    # set DB_PREPARE_THRESHOLD=0 to turn preparing off.
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = env.bool("DB_SERVER_SIDE_BINDING", default=True)
    _prepare = env.int("DB_PREPARE_THRESHOLD", default=5)
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = _prepare if _prepare > 0 else None
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "registry.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before the password check
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# guardian's anonymous user is not used: the API has no anonymous access beyond health.
ANONYMOUS_USER_NAME = None
GUARDIAN_USER_OBJ_PERMS_MODEL = "registry.PatientUserObjectPermission"
GUARDIAN_GROUP_OBJ_PERMS_MODEL = "registry.PatientGroupObjectPermission"

# --- Cache and the shared rate-limit store (issue 8) -------------------------------------------------
# CACHE_URL (or REDIS_URL) names a cache every worker shares, e.g. redis://redis:6379/1. The rate limit
# counts in THROTTLE_STORE: "cache" (atomic on Redis; the default when the cache is Redis) or "database"
# (one atomic upsert per request; the default, and what the quick start uses). Never a per-process store.
CACHES = {
    "default": env.cache("CACHE_URL", default=env.str("REDIS_URL", default="") or "locmemcache://registry")
}
THROTTLE_STORE = env.str(
    "THROTTLE_STORE",
    default="cache" if CACHES["default"]["BACKEND"].endswith("RedisCache") else "database",
)
if THROTTLE_STORE not in ("cache", "database"):
    raise ImproperlyConfigured("THROTTLE_STORE must be 'cache' or 'database'.")
if THROTTLE_STORE == "cache" and CACHES["default"]["BACKEND"].endswith(("LocMemCache", "DummyCache")):
    raise ImproperlyConfigured("THROTTLE_STORE=cache needs a cache shared by every worker (Redis).")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="America/New_York")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# whitenoise warns on every request while the collected-static folder does not exist; in a read-only
# image collectstatic made it at build time.
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security headers ------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/?$"]  # load balancer probes speak plain HTTP
# How many reverse proxies in front append to X-Forwarded-For (docker-compose: 1). 0 trusts no header:
# the caller is REMOTE_ADDR. The rate limit of unauthenticated calls and the admin login lockout both key
# on this address (registry/client_ip.py), so a client cannot pick its own by sending the header.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- The hardened console (issue 8 item 5; docs/access.md) ------------------------------------------
# Admin login lockout (django-axes): after ADMIN_LOGIN_FAILURE_LIMIT failed logins for one username, or
# from one address, further logins are refused (429) for ADMIN_LOGIN_LOCKOUT_MINUTES; a success resets the
# count. Counted in the database, so every worker sees the same count. `manage.py axes_reset_username
# <name>` lifts a lock early.
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.int("ADMIN_LOGIN_LOCKOUT_MINUTES", default=30) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "registry.client_ip.client_ip"
AXES_LOCKOUT_TEMPLATE = "admin/registry/locked_out.html"
AXES_VERBOSE = False  # failures are logged by the axes handler once, not by a warning per attempt
# Second factor (django-otp, TOTP): with ADMIN_REQUIRE_OTP the admin asks for a one-time code after the
# password, and a staff user without a confirmed device cannot enter (registry/admin_site.py). On by
# default outside DEBUG; `manage.py admin_totp_add <username>` enrols a device. The API is unaffected: API
# keys are machine credentials, revocable, and stop with their participant's certification.
ADMIN_REQUIRE_OTP = env.bool("ADMIN_REQUIRE_OTP", default=not DEBUG)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="LEMTRADA REMS registry")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # no administrator can read another's TOTP secret or QR code
# Content-Security-Policy (django-csp) on every response: the admin, the API docs and the API itself load
# nothing from elsewhere and run no inline script. The Swagger UI's own init script is served as a file
# (SpectacularSwaggerSplitView); its one inline style block carries the request's nonce.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

# --- REST framework --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["registry.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [
        "registry.permissions.IsAuthenticatedWithRole",
        "registry.permissions.ParticipantInStanding",  # ACT-5: access follows certification
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["registry.api.parsers.SafeJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "registry.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_THROTTLE_CLASSES": ["registry.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_THROTTLE_RATE", default="1200/min")},
    "DEFAULT_SCHEMA_CLASS": "registry.api.schema.RegistryAutoSchema",
    "EXCEPTION_HANDLER": "registry.api.exceptions.exception_handler",
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,  # the unauthenticated rate limit keys on registry/client_ip.py's rule
    "UNAUTHENTICATED_USER": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DATETIME_FORMAT": "iso-8601",
    "DATE_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "LEMTRADA REMS registry API",
    "DESCRIPTION": (
        "System of record for the LEMTRADA (alemtuzumab) REMS. Authenticate with "
        "`Authorization: Bearer <api key>`. Errors are `{code, detail, errors}`; clients branch on `code`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CertificationStatusEnum": "registry.models.parties.CertificationStatus",
        "PatientStatusEnum": "registry.models.patients.PatientStatus",
        "CourseStatusEnum": "registry.models.treatment.CourseStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "registry.api.schema.strip_trailing_slashes",
    ],
    "AUTHENTICATION_WHITELIST": ["registry.api.authentication.ApiKeyAuthentication"],
    "DISABLE_ERRORS_AND_WARNINGS": False,
}

# --- Celery ----------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task past its soft limit gets SoftTimeLimitExceeded (its transaction rolls back, acks_late requeues
# nothing it committed); past the hard limit the worker process is killed and replaced. The scheduled
# sweeps are set-based and take seconds, so minutes mean something is stuck.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
if not 0 < CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be positive and below CELERY_TASK_TIME_LIMIT."
    )
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # MON-5: the daily monitoring sweep (it also expires stale authorization numbers; reads treat a number
    # past its expiry as expired before then). Time of day in TIME_ZONE, from the environment.
    "sweep-monitoring": {
        "task": "registry.tasks.sweep_monitoring",
        "schedule": crontab(
            hour=env.int("MONITORING_SWEEP_HOUR", default=1),
            minute=env.int("MONITORING_SWEEP_MINUTE", default=30),
        ),
    },
    "purge-idempotency-records": {
        "task": "registry.tasks.purge_idempotency_records",
        "schedule": 60 * 60,
    },
    # The database rate-limit store's counters of callers not seen in their current window (one row per
    # caller ever seen otherwise); nothing to do when the limit counts in Redis (THROTTLE_STORE=cache).
    "purge-rate-limit-counters": {
        "task": "registry.tasks.purge_rate_limit_counters",
        "schedule": 60 * 60,
    },
}

# Console locally; in production EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend with the
# EMAIL_* settings below (digests, MON-5).
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="rems-registry@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Program settings (DOMAIN.md *settings*): overridable one by one from the environment -----------
# Names and defaults live in registry/rules.py; REMS_<NAME> in the environment overrides one.
REMS_SETTINGS = {
    key[len("REMS_") :].lower(): value for key, value in env.ENVIRON.items() if key.startswith("REMS_")
}

# --- Standards endpoints (issue 14): NCPDP SCRIPT REMS and FHIR $rems-etasu -------------------------
# A REMS message is a few kilobytes; anything far larger is refused (413) before it is parsed.
NCPDP_MAX_BODY_BYTES = env.int("NCPDP_MAX_BODY_BYTES", default=64 * 1024)
FHIR_MAX_BODY_BYTES = env.int("FHIR_MAX_BODY_BYTES", default=64 * 1024)

# --- Monitoring sweep (issue 10) --------------------------------------------------------------------
# Patient-id ranges the daily sweep is split into, as a Celery group over the running workers (1: one
# task does it all). See docs/monitoring.md.
MONITORING_SWEEP_PARTS = env.int("MONITORING_SWEEP_PARTS", default=1)
# The queue tasks are sent to and workers consume by default (one per deployment sharing a broker).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")

# --- Privacy and access (issue 8; docs/access.md) ----------------------------------------------------
# Bodies over this size answer 413 `payload_too_large` (registry/middleware_body.py), chunked ones too.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=5 * 1024 * 1024)
