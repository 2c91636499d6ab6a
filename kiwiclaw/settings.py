"""KiwiClaw settings, read from the environment with one reader (django-environ).

Every value has a safe local default except secrets, which have one only when DJANGO_DEBUG is on.
`make dev` exports DATABASE_URL / REDIS_URL for the embedded servers it starts.
"""

from pathlib import Path

import environ
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-local-development-key-do-not-deploy-0123456789")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants",
    "billing",
    "alerts",
    "routing",
    "proxy",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tenants.middleware.TenantMiddleware",
]

ROOT_URLCONF = "kiwiclaw.urls"

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
                "tenants.context_processors.tenancy",
            ],
        },
    },
]

WSGI_APPLICATION = "kiwiclaw.wsgi.application"
ASGI_APPLICATION = "kiwiclaw.asgi.application"

# --- Database: PostgreSQL only, through Django's psycopg 3 connection pool. ---
from infra.db import check_connection  # noqa: E402 - imports psycopg_pool only, no Django

# infra.db is Django's PostgreSQL backend that survives Postgres going away (a restart, a failover): a broken
# connection is replaced and a lost read retried once, in every thread (infra/db/__init__.py).
DATABASES = {"default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/kiwiclaw")}
DATABASES["default"]["ENGINE"] = "infra.db"
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"]["pool"] = {
    "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
    "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
    "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    # Each checkout is checked (psycopg_pool's empty query); a dead one has the other idle ones checked too.
    "check": check_connection,
    # psycopg_pool retries a failed connect with a doubling back-off until this timeout, then gives the slot up;
    # the next checkout starts a fresh attempt at once. Short, so a pool that tried while Postgres was down
    # does not sleep through its return (the default, 300 s, let back-offs reach minutes).
    "reconnect_timeout": env.float("DB_POOL_RECONNECT_TIMEOUT", default=2.0),
}
# The pool owns connection lifetime; persistent connections must stay off with it.
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["TEST"] = {"NAME": env.str("DJANGO_TEST_DATABASE", default=None)}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Celery broker, rate limits, budgets, token streams. ---
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# infra.redis's clients (one sync per process, one async per event loop): the connect and reply timeout, and
# the connections each one opens at most (a caller past it waits up to the timeout for a free one).
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", default=5.0)
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=256)
# A pooled connection idle longer than this (seconds) is PINGed before it is used again (infra/redis.py).
REDIS_HEALTH_CHECK_INTERVAL = env.int("REDIS_HEALTH_CHECK_INTERVAL", default=30)

CACHES = {
    "default": {
        "BACKEND": "infra.cache.SharedRedisCache",  # Django's, sharing one client per process
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "kc",
    }
}

# Sessions live in Postgres and are read through the Redis cache: every page and form post loads one.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTH_USER_MODEL = "tenants.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic writes here (the image does it at build); the web server serves it at /static/ (docs/operations.md).
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "var" / "staticfiles")))
# Hashed names (app.3f2a9c.css) from collectstatic's manifest, so the server can let browsers cache them for a
# year. With DEBUG on the plain names are used and served from the source folders (kiwiclaw/urls.py).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": env.str("DJANGO_STATICFILES_STORAGE",
                                       default="django.contrib.staticfiles.storage.ManifestStaticFilesStorage")},
}

# No outgoing mail: password reset links are shown on screen in debug and logged otherwise.
# MAILERS replaces the deprecated EMAIL_BACKEND in Django 6.1. The backend logs instead of sending; it is not
# one of Django's development-only backends, so `check --deploy` has nothing to flag.
MAILERS = {"default": {"BACKEND": "tenants.mail.LogEmailBackend"}}

# --- Security: production values unless debugging locally. ---
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy on every Django response: scripts, styles, fonts and images from our own origin only,
# no inline code at all (no <script>/<style> blocks, style="" or on* attributes; htmx is told not to inject its
# indicator styles nor to eval, templates/base.html), no plugins, not framed. Django's own middleware. No nonce:
# nothing inline needs one (tests/ops/test_csp.py keeps it so).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
# /healthz is probed, and /metrics scraped, over plain HTTP by load balancers and Prometheus inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

# --- Celery ---
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Tasks are acknowledged when they start. Every task is idempotent and what carries work through a dead worker is
# the database (the chat's sweeper, beat's next run), not a redelivery; and a message still unacknowledged when
# the broker connection drops (a Redis restart) makes kombu restore it on a released connection, which ends the
# worker's consumer for good (conversations/tasks.py, bench/drills/redis_restart.py).
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {}
# Billing (billing/tasks.py): drafts follow the ledger every few minutes; an ended month is finalized once the
# grace period has passed (requests begun before midnight have committed); budget counters are reconciled.
CELERY_BEAT_SCHEDULE["billing-rollup-current-month"] = {
    "task": "billing.rollup_current_month",
    "schedule": env.float("BILLING_ROLLUP_INTERVAL", default=300.0),
}
CELERY_BEAT_SCHEDULE["billing-finalize-ended-months"] = {"task": "billing.finalize_ended_months", "schedule": 900.0}
CELERY_BEAT_SCHEDULE["billing-reconcile-budgets"] = {"task": "billing.reconcile_budgets", "schedule": 300.0}
# The outbox (billing/outbox.py): usage rows and chat turn ends the database could not take when their answers
# ended, kept in a local spool and in Redis. The process that kept one retries every OUTBOX_RETRY_INTERVAL; beat
# drains what dead processes left every OUTBOX_DRAIN_INTERVAL.
CELERY_BEAT_SCHEDULE["billing-drain-outbox"] = {
    "task": "billing.drain_outbox",
    "schedule": env.float("OUTBOX_DRAIN_INTERVAL", default=5.0),
}
OUTBOX_SPOOL_DIR = env.str("OUTBOX_SPOOL_DIR", default=str(BASE_DIR / "var" / "outbox"))
OUTBOX_RETRY_INTERVAL = env.float("OUTBOX_RETRY_INTERVAL", default=1.0)
BILLING_FINALIZE_GRACE_SECONDS = env.int("BILLING_FINALIZE_GRACE_SECONDS", default=3600)
# Longer than any request's deadline: a hold outliving its request only means a crashed request's hold lapses.
BILLING_RESERVATION_TTL_SECONDS = env.float("BILLING_RESERVATION_TTL_SECONDS", default=600.0)
# The proxy's usage rows (billing/usage_writer.py): an idle writer waits this long for the rows of other calls
# ending meanwhile, so they share one commit (group commit); 0 writes each at once.
BILLING_USAGE_LINGER_MS = env.float("BILLING_USAGE_LINGER_MS", default=2.0)

# --- Budget alerts (alerts/) ---
# Webhook calls: seconds per try, tries in all, and the first retry's delay (doubled per try, at most an hour).
ALERTS_WEBHOOK_TIMEOUT = env.float("ALERTS_WEBHOOK_TIMEOUT", default=5.0)
ALERTS_WEBHOOK_MAX_ATTEMPTS = env.int("ALERTS_WEBHOOK_MAX_ATTEMPTS", default=6)
ALERTS_WEBHOOK_BACKOFF_SECONDS = env.float("ALERTS_WEBHOOK_BACKOFF_SECONDS", default=30.0)
# Webhook URLs must be https; plain http only in debug (or when this is set, e.g. for tests on loopback).
ALERTS_WEBHOOK_ALLOW_HTTP = env.bool("ALERTS_WEBHOOK_ALLOW_HTTP", default=DEBUG)
# Webhooks never reach private, loopback, link-local, multicast or reserved addresses, unless this is set (a
# development or test receiver on loopback; alerts/addresses.py).
ALERTS_WEBHOOK_ALLOW_PRIVATE = env.bool("ALERTS_WEBHOOK_ALLOW_PRIVATE", default=False)
# Chat turns are long, I/O-bound streams: Celery's thread pool with many threads, each handing its stream to
# one asyncio loop per process (conversations/turns.py, docs/architecture.md "Chat").
CELERY_WORKER_POOL = env.str("CELERY_WORKER_POOL", default="threads")
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=200)
# A task unacknowledged this long is redelivered. Longer than the longest turn (an answer may stream for many
# minutes), so a healthy turn is not handed out twice; a dead worker's turns are recovered far sooner by the
# heartbeat sweeper, and a redelivery of a claimed turn is a no-op anyway.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_BEAT_SCHEDULE["chat-sweep-stale-turns"] = {
    "task": "conversations.tasks.sweep_stale_turns",
    "schedule": env.float("CHAT_SWEEP_INTERVAL", default=30.0),
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # /api/: an API key (acts as its creator) or the browser session; see proxy/drf.py.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "proxy.drf.ApiKeyAuthentication",
        "proxy.drf.TenantSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["proxy.drf.IsTenantMember"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "KiwiClaw API",
    "DESCRIPTION": "Dashboard data API and the OpenAI/Anthropic-compatible LLM proxy.",
    "VERSION": "1.0.0",
    # Swagger UI from the drf-spectacular-sidecar package, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"InvoiceStatusEnum": "billing.models.Invoice.STATUS_CHOICES"},
    # The /v1 proxy endpoints are plain async views, described by hand (proxy/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "proxy.openapi.add_proxy_paths",
    ],
}

# --- Proxy API (/v1) ---
# Largest accepted request body; bigger ones get 413 without being read further. 32 MiB, Anthropic's own request
# limit, so a request can carry images of PROXY_MAX_IMAGE_BYTES each (base64 is 4/3 of the bytes).
PROXY_MAX_BODY_BYTES = env.int("PROXY_MAX_BODY_BYTES", default=32 * 1024 * 1024)
# Largest image (decoded bytes) a request may carry: 5 MiB, Anthropic's per-image limit.
PROXY_MAX_IMAGE_BYTES = env.int("PROXY_MAX_IMAGE_BYTES", default=5 * 1024 * 1024)
# How long a process trusts its cached API key lookup (revocation is immediate through Redis; see
# proxy/auth.py).
PROXY_KEY_CACHE_TTL = env.float("PROXY_KEY_CACHE_TTL", default=10.0)

# Login and password-reset throttles (tenants/throttle.py), django-ratelimit rates ("5/15m" = 5 per 15 minutes),
# counted in the Redis cache per account (the email typed) and per client address (REMOTE_ADDR). Login counts
# failed attempts; a password reset counts every request.
AUTH_THROTTLE_LOGIN_ACCOUNT = env.str("AUTH_THROTTLE_LOGIN_ACCOUNT", default="5/15m")
AUTH_THROTTLE_LOGIN_ADDRESS = env.str("AUTH_THROTTLE_LOGIN_ADDRESS", default="50/15m")
AUTH_THROTTLE_RESET_ACCOUNT = env.str("AUTH_THROTTLE_RESET_ACCOUNT", default="5/h")
AUTH_THROTTLE_RESET_ADDRESS = env.str("AUTH_THROTTLE_RESET_ADDRESS", default="20/h")

# --- Logging: one JSON object per line (python-json-logger), or plain text for a terminal. ---
# LOG_FORMAT=json|plain, default json with DEBUG off and plain with it on (`make dev`). Every line carries the
# request id of the HTTP request (the X-Request-ID header; infra/requestid.py) or the Celery task it was written
# for, as `request_id`; JSON lines also carry `client_request_id` (a client's own X-Request-ID on /v1) and
# `task_id` when set.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ValueError(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "infra.requestid.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        "json": {
            "()": "infra.requestid.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                             "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # httpx logs every upstream request at INFO: that is a line per proxied call on the hot path.
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
# Celery's worker keeps the LOGGING above (JSON, request ids) instead of installing its own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Metrics (kiwiclaw/metrics.py): GET /metrics, Prometheus text format. ---
# The bearer token a scraper sends (`Authorization: Bearer ...`); empty = only staff sessions may read it.
# PROMETHEUS_MULTIPROC_DIR (read by prometheus-client itself) names the directory every process writes its
# counters to; it must be emptied before they start (make dev does; a tmpfs in containers; docs/operations.md).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# kiwiclaw_turns_recent counts the states of this many newest chat turns.
METRICS_RECENT_TURNS = env.int("METRICS_RECENT_TURNS", default=10000)
# The month's ledger aggregate (about 0.2 s at a million rows) is shared by scrapes for this long; 0 = every scrape.
METRICS_LEDGER_CACHE_SECONDS = env.float("METRICS_LEDGER_CACHE_SECONDS", default=30.0)
# Each scrape-time query ends after this long (the series it feeds are left out of that scrape).
METRICS_QUERY_TIMEOUT_MS = env.int("METRICS_QUERY_TIMEOUT_MS", default=5000)

# --- Tenancy ---
INVITE_TTL_HOURS = env.int("INVITE_TTL_HOURS", default=72)

# --- Routing core (routing/) -------------------------------------------------------------------------------
# Provider URLs and keys come only from the environment, never from the database. With no keys set, `make dev`
# runs the fake provider and points both base URLs at it.
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="https://api.anthropic.com")
MOONSHOT_API_KEY = env.str("MOONSHOT_API_KEY", default="")
MOONSHOT_BASE_URL = env.str("MOONSHOT_BASE_URL", default="https://api.moonshot.ai/v1")
# Upstream HTTP: connect timeout, and the longest silence allowed between bytes of a provider call that names
# no timeout of its own (dispatch's calls name the three below).
ROUTING_CONNECT_TIMEOUT = env.float("ROUTING_CONNECT_TIMEOUT", default=5.0)
ROUTING_READ_TIMEOUT = env.float("ROUTING_READ_TIMEOUT", default=60.0)
# Per endpoint call, how long a provider may stay silent before the call moves on to the next endpoint: a JSON
# call's answer must start within FIRST_BYTE (a JSON answer's first byte comes once it is fully generated, so
# this also bounds its generation), a stream's first text delta within FIRST_DELTA. A stream that has started
# and then sends nothing for STREAM_IDLE ends with the text so far (billed as delivered).
ROUTING_FIRST_BYTE_TIMEOUT = env.float("ROUTING_FIRST_BYTE_TIMEOUT", default=10.0)
ROUTING_FIRST_DELTA_TIMEOUT = env.float("ROUTING_FIRST_DELTA_TIMEOUT", default=10.0)
ROUTING_STREAM_IDLE_TIMEOUT = env.float("ROUTING_STREAM_IDLE_TIMEOUT", default=30.0)
# Upstream connections per process: one per streaming answer, so above the turns one worker carries (200+);
# idle ones are kept (up to MAX_KEEPALIVE, for KEEPALIVE_EXPIRY) so the next turn skips the TCP/TLS handshake.
ROUTING_POOL_MAX_CONNECTIONS = env.int("ROUTING_POOL_MAX_CONNECTIONS", default=1000)
ROUTING_POOL_MAX_KEEPALIVE = env.int("ROUTING_POOL_MAX_KEEPALIVE", default=500)
ROUTING_POOL_KEEPALIVE_EXPIRY = env.float("ROUTING_POOL_KEEPALIVE_EXPIRY", default=30.0)
# Overall deadline for an answer to start (all fallbacks and retries), and the retries on the last endpoint.
ROUTING_DEADLINE_SECONDS = env.float("ROUTING_DEADLINE_SECONDS", default=90.0)
ROUTING_RETRY_ATTEMPTS = env.int("ROUTING_RETRY_ATTEMPTS", default=3)
ROUTING_BACKOFF_BASE_SECONDS = env.float("ROUTING_BACKOFF_BASE_SECONDS", default=0.5)
ROUTING_BACKOFF_MAX_SECONDS = env.float("ROUTING_BACKOFF_MAX_SECONDS", default=10.0)
# Circuit breaker per endpoint: N consecutive failures open it for the cool-down, then one trial goes through.
ROUTING_BREAKER_THRESHOLD = env.int("ROUTING_BREAKER_THRESHOLD", default=5)
ROUTING_BREAKER_COOLDOWN_SECONDS = env.float("ROUTING_BREAKER_COOLDOWN_SECONDS", default=30.0)
ROUTING_BREAKER_TRIAL_SECONDS = env.float("ROUTING_BREAKER_TRIAL_SECONDS", default=60.0)
# Request limits and the reservation default when a request names no max_tokens.
ROUTING_DEFAULT_MAX_TOKENS = env.int("ROUTING_DEFAULT_MAX_TOKENS", default=4096)
ROUTING_MAX_TOKENS_LIMIT = env.int("ROUTING_MAX_TOKENS_LIMIT", default=64000)
# How long a process keeps its in-memory copy of the model catalog (admin edits show up within this time).
ROUTING_CATALOG_TTL_SECONDS = env.float("ROUTING_CATALOG_TTL_SECONDS", default=10.0)
ROUTING_EVAL_DATA = Path(env.str("ROUTING_EVAL_DATA", default=str(BASE_DIR.parent / "shared" / "data" / "routing-eval" / "mmlu.jsonl.gz")))
# --- end Routing core ---

# --- Chat (conversations/): kiwiclaw/settings_chat.py ---
from .settings_chat import *  # noqa: E402, F403
