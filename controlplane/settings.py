"""Settings for Backstop, read from the environment.

DATABASE_URL   default: a SQLite file under var/; a postgres:// URL for PostgreSQL
SECRET_KEY     required when BACKSTOP_ENV=production
ALLOWED_HOSTS  comma-separated
BACKSTOP_ENV   development (default) or production; policies see it as `env`
"""

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mutations.timestamps import UTC_FORMAT

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

BACKSTOP_ENV = os.environ.get("BACKSTOP_ENV", "development")
PRODUCTION = BACKSTOP_ENV == "production"
DEBUG = not PRODUCTION and os.environ.get("DEBUG", "1") == "1"


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(f"Set {name} in the environment: BACKSTOP_ENV is production.")
    return value


if PRODUCTION:
    SECRET_KEY = _required("SECRET_KEY")
    ALLOWED_HOSTS = [h.strip() for h in _required("ALLOWED_HOSTS").split(",") if h.strip()]
else:
    SECRET_KEY = os.environ.get("SECRET_KEY") or "dev-only-insecure-key-do-not-use-in-production"
    ALLOWED_HOSTS = [
        h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h
    ]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "controlplane",
    "runs",
    "mutations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "controlplane.pages.errors.BrandedMethodNotAllowed",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "controlplane.pages.context_processors.tenancy",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'backstop.sqlite3'}",
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Values bound by the server, apart from the statement; a statement run five times on a
    # connection is prepared there (docs/performance.md). Behind a connection pooler in
    # transaction mode, which cannot keep prepared statements, set BACKSTOP_PG_PREPARE=0.
    DATABASES["default"]["OPTIONS"] = {
        "server_side_binding": True,
        "prepare_threshold": 5 if os.environ.get("BACKSTOP_PG_PREPARE", "1") == "1" else None,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # WAL lets the web server read while the runner writes; IMMEDIATE avoids
    # deadlocking upgrades from read to write locks.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file (runner processes started by tests open it too), one per test session so
    # that two sessions in one checkout never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_backstop_{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
# whitenoise serves static files under any server: in production the collected ones, in
# development straight from the apps and static/ (the finders).
MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
if PRODUCTION:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

if PRODUCTION:
    # Served behind TLS: cookies only over HTTPS, HSTS, HTTPS redirects.
    SECURE_SSL_REDIRECT = os.environ.get("SECURE_SSL_REDIRECT", "1") == "1"
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = [f"https://{host}" for host in ALLOWED_HOSTS]

# A decision is a few kilobytes; refuse bodies far beyond that before parsing them.
DATA_UPLOAD_MAX_MEMORY_SIZE = 512 * 1024

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.access.tokens.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "controlplane.api.errors.handle_exception",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["controlplane.access.throttling.AgentRateThrottle"],
    "DATETIME_FORMAT": UTC_FORMAT,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Backstop API",
    "DESCRIPTION": "Decisions, policy outcomes, runs, the Mutation Log and drills.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],  # the schema is public
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1: its schemas are JSON Schema, which can say exactly what a decision may hold.
    "OAS_VERSION": "3.1.0",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.api.schema.exact_inputs",
    ],
}

# BACKSTOP_LOG_FORMAT=json: every line one JSON object (runs.jsonlog), Django's own too.
BACKSTOP_LOG_FORMAT = os.environ.get("BACKSTOP_LOG_FORMAT", "plain").strip().lower()
if BACKSTOP_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(
        f"BACKSTOP_LOG_FORMAT is plain or json, not {BACKSTOP_LOG_FORMAT!r}."
    )
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "runs.jsonlog.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": BACKSTOP_LOG_FORMAT},
    },
    "loggers": {
        "runs": {"handlers": ["console"], "level": os.environ.get("RUNNER_LOG_LEVEL", "INFO")},
    },
}
if BACKSTOP_LOG_FORMAT == "json":
    # Every logger through the one JSON handler: the root, and Django's (which has its own
    # plain handlers otherwise).
    LOGGING["root"] = {"handlers": ["console"], "level": "WARNING"}
    LOGGING["loggers"]["runs"]["propagate"] = False
    for name in ("django", "django.server", "uvicorn", "uvicorn.access", "uvicorn.error"):
        LOGGING["loggers"][name] = {"handlers": ["console"], "level": "INFO", "propagate": False}

# /metrics (controlplane.metrics): a bearer token, or the addresses (IPs or networks) that
# may scrape without one; with neither set, /metrics answers 404.
BACKSTOP_METRICS_TOKEN = os.environ.get("BACKSTOP_METRICS_TOKEN", "")
BACKSTOP_METRICS_ALLOWED_ADDRESSES = [
    a.strip()
    for a in os.environ.get("BACKSTOP_METRICS_ALLOWED_ADDRESSES", "").split(",")
    if a.strip()
]

# Requests per token (agents); people's sessions are not limited.
# Where people and agents reach this Backstop: links in MCP answers (approval pages).
BACKSTOP_PUBLIC_URL = os.environ.get("BACKSTOP_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
BACKSTOP_AGENT_RATE = os.environ.get("BACKSTOP_AGENT_RATE", "600/min")

# Runner tunables. Tests set the delay scale to 0 so that retries do not sleep.
BACKSTOP_RETRY_DELAY_SCALE = float(os.environ.get("BACKSTOP_RETRY_DELAY_SCALE", "1"))
BACKSTOP_RUNNER_POLL_SECONDS = float(os.environ.get("BACKSTOP_RUNNER_POLL_SECONDS", "1"))
# Platform calls a runner thread makes at the same time (PostgreSQL; SQLite makes one).
BACKSTOP_RUNNER_IN_FLIGHT = int(os.environ.get("BACKSTOP_RUNNER_IN_FLIGHT", "16"))
BACKSTOP_APPROVAL_TTL_SECONDS = float(os.environ.get("BACKSTOP_APPROVAL_TTL_SECONDS", "86400"))
BACKSTOP_LEASE_SECONDS = float(os.environ.get("BACKSTOP_LEASE_SECONDS", "30"))
BACKSTOP_ROLLBACK_LOCK_SECONDS = float(os.environ.get("BACKSTOP_ROLLBACK_LOCK_SECONDS", "120"))
# Webhooks: a multiplier of the retry backoff (0 in tests), and how long a runner holds a
# delivery it sends before another may.
BACKSTOP_WEBHOOK_BACKOFF_SCALE = float(os.environ.get("BACKSTOP_WEBHOOK_BACKOFF_SCALE", "1"))
BACKSTOP_WEBHOOK_CLAIM_SECONDS = float(os.environ.get("BACKSTOP_WEBHOOK_CLAIM_SECONDS", "30"))
# A team's own platforms and workflows, loaded at start-up by every process (README).
BACKSTOP_PLUGINS = [
    module.strip() for module in os.environ.get("BACKSTOP_PLUGINS", "").split(",") if module.strip()
]
BACKSTOP_PLATFORMS_FILE = os.environ.get("BACKSTOP_PLATFORMS_FILE", "")
BACKSTOP_WORKFLOWS_DIR = os.environ.get("BACKSTOP_WORKFLOWS_DIR", "")

# The engine new runs are executed by: builtin (Backstop's runners) or temporal (a Temporal
# cluster, `runworkflows --engine temporal`; pip install backstop[temporal]).
BACKSTOP_ENGINE = os.environ.get("BACKSTOP_ENGINE", "builtin").strip().lower()
if BACKSTOP_ENGINE not in ("builtin", "temporal"):
    raise ImproperlyConfigured(f"BACKSTOP_ENGINE is builtin or temporal, not {BACKSTOP_ENGINE!r}.")
TEMPORAL_ADDRESS = os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233")
TEMPORAL_NAMESPACE = os.environ.get("TEMPORAL_NAMESPACE", "default")
TEMPORAL_TASK_QUEUE = os.environ.get("TEMPORAL_TASK_QUEUE", "backstop")
# The Temporal Web UI (e.g. http://127.0.0.1:8233): run pages link to their workflow there.
TEMPORAL_UI_URL = os.environ.get("TEMPORAL_UI_URL", "").rstrip("/")

# Crash points for reliability tests (runs/crashpoints.py); never honoured in production.
BACKSTOP_TEST_CRASH_AT = (
    "" if BACKSTOP_ENV == "production" else os.environ.get("BACKSTOP_TEST_CRASH_AT", "")
)
