"""Outside-In settings: one file, read from the environment.

Defaults run the embedded mode (SQLite, Celery on Kombu's filesystem transport, e-mail to the
console), so `make run` works on a bare machine. `DATABASE_URL`, `REDIS_URL` and `EMAIL_URL`
switch to the real services.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("OUTSIDE_IN_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None


def env_positive_int(name: str, default: int) -> int:
    value = env_int(name, default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1, not {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def mailer_from_url(url: str) -> dict:
    """`smtp://user:pass@host:port?tls=1`, `smtps://…`, `console://` or `locmem://`."""
    parts = urlsplit(url)
    if parts.scheme == "console":
        return {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if parts.scheme == "locmem":
        return {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    if parts.scheme not in {"smtp", "smtps"}:
        raise ImproperlyConfigured(
            f"EMAIL_URL must start with smtp://, smtps://, console:// or locmem://, not {url!r}"
        )
    query = parse_qs(parts.query)
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError:
        raise ImproperlyConfigured(f"EMAIL_URL has a bad port: {url!r}") from None
    return {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": parts.hostname or "localhost",
            "port": port,
            "username": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "use_ssl": parts.scheme == "smtps",
            "use_tls": query.get("tls", ["0"])[0] in {"1", "true"},
            "timeout": 10,
        },
    }


DEBUG = env_bool("DEBUG", default=True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-embedded-mode-only-never-use-in-production"  # noqa: S105
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "lifecycle",
    "planning",
    "insights",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads a parameter: PostgreSQL text cannot hold a NUL byte.
    "planning.middleware.refuse_nul_bytes",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Says so when a background job had to wait for the broker (planning/jobs.py).
    "planning.jobs.middleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["django_htmx.templatetags.django_htmx"],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

REDIS_URL = env_str("REDIS_URL")
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    try:
        _default_db: dict[str, Any] = dict(
            dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
        )
    except ValueError as error:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {error}") from None
    # A web process serves each request (and each open board) in a thread of its own: without
    # a pool, a burst of requests opens as many connections and can exhaust the server's
    # `max_connections` for everyone. With psycopg's pool, a process never holds more than
    # DB_POOL_MAX_SIZE; a request past it waits up to DB_POOL_TIMEOUT seconds for one.
    DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 8)
    if _default_db["ENGINE"] == "django.db.backends.postgresql" and DB_POOL_MAX_SIZE > 0:
        _default_db.update({"CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False})
        _default_db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 0,
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": env_int("DB_POOL_TIMEOUT", 20),
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _default_db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(VAR_DIR / "outside-in.sqlite3"),
        # WAL lets the web server and the Celery worker read while the other writes.
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out sign-in before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "planning:plan_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# The cache carries import progress between the worker and the web server: Redis, or files
# under var/ in the embedded mode (both are shared between processes).
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# E-mail: Django 6.1 mailers. The embedded default prints e-mails on the console.
EMAIL_URL = env_str("EMAIL_URL", "console://")
MAILERS = {"default": mailer_from_url(EMAIL_URL)}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Outside-In <noreply@outside-in.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Celery: Redis when REDIS_URL is set, else Kombu's filesystem transport under var/.
CELERY_QUEUE_DIR = VAR_DIR / "celery"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 2 * 3600}
else:
    CELERY_BROKER_URL = "filesystem://"
    for _sub in ("in", "processed"):
        (CELERY_QUEUE_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR / "in"),
        "data_folder_out": str(CELERY_QUEUE_DIR / "in"),
        "processed_folder": str(CELERY_QUEUE_DIR / "processed"),
        # Kombu's default is a folder relative to the working directory.
        "control_folder": str(CELERY_QUEUE_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 3600)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# One static schedule; what is due (a plan's re-test, a stalled import) is decided from the data.
CELERY_BEAT_SCHEDULE = {
    "mark-stalled-imports": {"task": "insights.tasks.mark_stalled_imports", "schedule": 60.0},
    "dispatch-due-retests": {"task": "insights.tasks.dispatch_due_retests", "schedule": 60.0},
    "send-pending-jobs": {"task": "planning.tasks.send_pending_jobs", "schedule": 60.0},
}
CELERY_TIMEZONE = "UTC"

# Security. Strict CSP from day one: scripts only from us, or inline with the request's nonce.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    # plotly.js injects its own <style>; everything else of ours is in static CSS.
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads nothing from it; the token travels in hx-headers.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Live boards (planning/live/): open event streams per web process and per person, and the
# threads (each with one database connection) that do every stream's reads.
LIVE_MAX_STREAMS = env_int("LIVE_MAX_STREAMS", 2000)
LIVE_MAX_STREAMS_PER_USER = env_int("LIVE_MAX_STREAMS_PER_USER", 8)
LIVE_DB_THREADS = env_int("LIVE_DB_THREADS", 2)

# Uploads: Django has no overall limit of its own; the import view enforces this one.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 2 * 1024**3)
# What one file may hold, checked by the column preview and by the import alike: reading stays
# bounded in time and memory whatever the file (the preview reads only the file's start).
IMPORT_PREVIEW_MAX_BYTES = env_positive_int("IMPORT_PREVIEW_MAX_BYTES", 1024**2)
IMPORT_MAX_LINE_BYTES = env_positive_int("IMPORT_MAX_LINE_BYTES", 1024**2)
IMPORT_MAX_COLUMNS = env_positive_int("IMPORT_MAX_COLUMNS", 500)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Invitations to join a plan: how long a link works, and how many a person may send in 24 hours
# (new ones and resent ones, across all plans): each is an e-mail to an address they chose.
INVITATION_DAYS = env_int("INVITATION_DAYS", 14)
INVITATIONS_PER_DAY = env_int("INVITATIONS_PER_DAY", 50)
# A plan file (DOMAIN §6) is read whole, in the web request too: its size and nesting are checked
# before it is parsed, its counts before anything is checked item by item or written.
PLANFILE_MAX_BYTES = env_int("PLANFILE_MAX_BYTES", 5 * 1024**2)
PLANFILE_MAX_DEPTH = env_int("PLANFILE_MAX_DEPTH", 20)
PLANFILE_MAX_STAGES = env_int("PLANFILE_MAX_STAGES", 50)
PLANFILE_MAX_EVENT_TYPES = env_int("PLANFILE_MAX_EVENT_TYPES", 1000)
PLANFILE_MAX_MEMBERS = env_int("PLANFILE_MAX_MEMBERS", 200)
PLANFILE_MAX_CHOICES = env_int("PLANFILE_MAX_CHOICES", 500)
PLANFILE_MAX_ASSUMPTIONS = env_int("PLANFILE_MAX_ASSUMPTIONS", 2000)
PLANFILE_MAX_INITIATIVES = env_int("PLANFILE_MAX_INITIATIVES", 500)

# Sign-in throttling (django-axes). Failures count per user name *and* network address together:
# a lock on the name alone would let anyone lock a member out before a workshop, and a lock on
# the address alone would lock a whole office behind one proxy. The address is REMOTE_ADDR only;
# behind a proxy, bin/web's uvicorn sets it from X-Forwarded-For when the proxy is one of
# FORWARDED_ALLOW_IPS, so a client can never choose it by sending a header.
LOGIN_FAILURE_LIMIT = env_positive_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_COOLOFF_MINUTES = env_positive_int("LOGIN_COOLOFF_MINUTES", 15)
# Password-reset e-mails per hour, per address asked for and per network address asking.
PASSWORD_RESET_LIMIT_PER_ADDRESS = env_positive_int("PASSWORD_RESET_LIMIT_PER_ADDRESS", 3)
PASSWORD_RESET_LIMIT_PER_IP = env_positive_int("PASSWORD_RESET_LIMIT_PER_IP", 20)
# The database handler works the same on SQLite and PostgreSQL; axes' cache handler does not
# work on the file-based cache of the embedded mode.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
AXES_LOCKOUT_CALLABLE = "planning.views.accounts.locked_out"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # axes logs every sign-in and sign-out at INFO (they are in its access log table anyway);
    # failed sign-ins and lockouts are warnings.
    # WeasyPrint logs each step of every PDF (a session summary) at INFO.
    "loggers": {"axes": {"level": "WARNING"}, "weasyprint": {"level": "WARNING"}},
}
