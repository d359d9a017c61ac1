"""Django settings for socialcrm.

Every deploy-specific value comes from the environment (see `.env.example`). Required values have no
default, so a missing one stops start-up. `./dev run` and `./dev test` supply local defaults.
"""

import re
import warnings
from pathlib import Path

import environ
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"), overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Keys for secrets stored in the database (channel tokens, webhook secrets). Comma-separated; the first
# encrypts, all decrypt, so keys can be rotated. Each is any string of 32+ characters.
FIELD_ENCRYPTION_KEYS = env.list("DJANGO_FIELD_ENCRYPTION_KEYS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served by us, not fetched from a CDN
    "django_htmx",
    "access",
    "contacts",
    "conversations",
    "channels.apps.ChannelsConfig",
    "hooks",
    "console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "console.middleware.ContentSecurityPolicyMiddleware",
    "console.middleware.AgentTimeZoneMiddleware",
]

ROOT_URLCONF = "socialcrm.urls"
WSGI_APPLICATION = "socialcrm.wsgi.application"

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
                "django.template.context_processors.i18n",
                "django.template.context_processors.tz",
            ],
        },
    },
]

# PostgreSQL through psycopg 3 is the only database.
DATABASES = {"default": env.db_url("DATABASE_URL")}
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
    raise environ.ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...)")
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
# A health check costs a round trip (SELECT 1) per request that uses the database; off, the first request on a
# connection that went stale (a database restart) fails instead.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DJANGO_CONN_HEALTH_CHECKS", default=True)
# The test database follows the database's name (test_socialcrm for socialcrm), so runs against different
# databases never share one.
DATABASES["default"].setdefault("TEST", {})["NAME"] = env(
    "DJANGO_TEST_DATABASE_NAME", default=f"test_{DATABASES['default']['NAME']}"
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("CACHE_URL", default=REDIS_URL),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
TIME_ZONE = env("DJANGO_TIME_ZONE", default="Europe/Berlin")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# WhiteNoise serves static files from the app server itself (no separate web server needed). A deployment that
# runs `collectstatic` may set DJANGO_STATICFILES_STORAGE=whitenoise.storage.CompressedManifestStaticFilesStorage
# for content-hashed names cached for a year; the default needs no collectstatic step.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env("DJANGO_STATICFILES_STORAGE",
                       default="django.contrib.staticfiles.storage.StaticFilesStorage"),
    },
}
# Without collectstatic (development, tests) WhiteNoise finds files through the finders, as runserver does, and
# a missing STATIC_ROOT is expected rather than worth a warning.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message=r"No directory at: .*staticfiles")

# The agent console (console/): Django's login, the agent's language from the browser or the switcher, and a
# strict Content-Security-Policy on every console page (console/middleware.py).
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:inbox"
LOGOUT_REDIRECT_URL = "console:login"
LOCALE_PATHS = [BASE_DIR / "console" / "locale"]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# The avatar proxy (console/avatars.py) may fetch from private, loopback and link-local addresses (development and
# tests only: it opens SSRF).
CONSOLE_AVATAR_ALLOW_PRIVATE = env.bool("CONSOLE_AVATAR_ALLOW_PRIVATE", default=False)

# The REST API under /api/v1/ (socialcrm/api/): bearer tokens (access app) or the console's session, a scope
# per request, keyset pagination, one error shape, a rate limit per token.
# Requests one API token (or session user) may make per window: "<n>/<second|minute|hour|day>"; empty: no limit.
API_RATE_LIMIT = env("API_RATE_LIMIT", default="1200/minute").strip()
if API_RATE_LIMIT and not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", API_RATE_LIMIT):
    raise environ.ImproperlyConfigured(
        f"API_RATE_LIMIT must look like 1200/minute (a count, then second, minute, hour or day): {API_RATE_LIMIT!r}")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "socialcrm.api.schema.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["access.permissions.HasScope"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "socialcrm.api.pagination.KeysetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["socialcrm.api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": API_RATE_LIMIT},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "socialcrm.api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "socialcrm API",
    "DESCRIPTION": (
        "The REST API of socialcrm, version 1. Authenticate with `Authorization: Bearer <token>`; every "
        "request needs a scope of the token (`read` for reads, `write` for writes, `admin` for channel "
        "accounts and webhook deliveries). Lists are keyset-paginated: follow `next`. Errors have one shape: "
        "`{code, detail, fields}`. Objects outside the caller's teams answer 404."
    ),
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "socialcrm.api.schema.strict_request_bodies",
        "socialcrm.api.schema.integer_path_ids",
    ],
}

# Largest webhook body accepted (an inbound e-mail with attachments is the biggest); larger is a 413.
WEBHOOK_MAX_BODY = env.int("WEBHOOK_MAX_BODY", default=10 * 1024 * 1024)
# Seconds a web process reuses a channel account (and its decrypted secrets) for webhook intake: disabling an
# account or rotating its webhook secret takes effect within this time. 0 reads it on every request.
WEBHOOK_ACCOUNT_CACHE_SECONDS = env.float("WEBHOOK_ACCOUNT_CACHE_SECONDS", default=5.0)
DATA_UPLOAD_MAX_MEMORY_SIZE = WEBHOOK_MAX_BODY

# Duplicate suggestions (contacts.dedupe): link without a human when a strong identifier, agreeing names and no
# contrary evidence say so. Off unless this deployment switches it on.
DEDUPE_AUTO_LINK = env.bool("DEDUPE_AUTO_LINK", default=False)

# Key of the GDPR erasure ledger's hashes (contacts.gdpr); empty: SECRET_KEY. Set a dedicated one in production:
# rotating the key that hashed the ledger makes its entries unmatchable, and erased people could come back.
GDPR_LEDGER_KEY = env("GDPR_LEDGER_KEY", default="")

# Outbound webhooks may target private, loopback and link-local addresses (development only: it opens SSRF).
HOOKS_ALLOW_PRIVATE_TARGETS = env.bool("HOOKS_ALLOW_PRIVATE_TARGETS", default=False)

# Celery: JSON only, late acks (every task is idempotent), one message prefetched at a time.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
# Above the longest countdown (retry backoff is capped at 600 s) plus the hard time limit.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [Queue("sync"), Queue("ingest"), Queue("outbound"), Queue("default")]
CELERY_TASK_ROUTES = {
    "channels.sync_due_accounts": {"queue": "sync"},
    "channels.sync_account": {"queue": "sync"},
    "channels.process_deliveries": {"queue": "ingest"},
    "channels.send_outbound": {"queue": "outbound"},
    "channels.sweep_outbound": {"queue": "outbound"},
    "contacts.score_new_customers": {"queue": "default"},
    "hooks.deliver": {"queue": "outbound"},
    "hooks.sweep": {"queue": "outbound"},
}
CELERY_BEAT_SCHEDULE = {
    # Fans out one sync_account task per due channel account.
    "sync-due-accounts": {"task": "channels.sync_due_accounts", "schedule": 30.0},
    # The sweeper: re-drives webhook deliveries a lost task left pending (the database is the queue of record).
    "sweep-deliveries": {"task": "channels.process_deliveries", "schedule": 60.0},
    # Re-drives replies a lost task left queued or a dead worker left half-sent.
    "sweep-outbound": {"task": "channels.sweep_outbound", "schedule": 60.0},
    # Scores customers left in the dedupe outbox (ingest enqueues a run per batch that created customers).
    "score-new-customers": {"task": "contacts.score_new_customers", "schedule": 60.0},
    # Re-drives outbound webhook deliveries that are due (retries, lost tasks).
    "sweep-webhooks": {"task": "hooks.sweep", "schedule": 60.0},
}

# How often a polled channel account is synced when nothing else is configured on it (seconds).
CHANNEL_SYNC_INTERVAL = env.int("CHANNEL_SYNC_INTERVAL", default=60)
# How long one sync run may hold an account's lease (seconds).
CHANNEL_SYNC_LEASE = env.int("CHANNEL_SYNC_LEASE", default=300)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    # httpx logs every request URL at INFO; some platforms (Telegram) put the bot token in the path.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
