"""ChittyAuth settings: everything comes from the environment, with embedded defaults for development.

Unset `DATABASE_URL` means a SQLite file under `var/`; unset `REDIS_URL` means an in-memory channel layer,
a local-memory cache and a filesystem Celery broker, so one command runs the whole service with no servers.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chittyauth_site.configuration import (
    ENVIRONMENTS,
    SIGNING_ALGORITHMS,
    check_fernet_keys,
    check_webhook_sink,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_url,
    prometheus_multiprocess_dir,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CHITTYAUTH_VAR_DIR", BASE_DIR / "var"))

DEVELOPMENT_SECRET_KEY = "insecure-development-secret-key-do-not-use-in-production"  # noqa: S105
DEVELOPMENT_JWT_SECRET = "insecure-development-jwt-secret-do-not-use-in-production"  # noqa: S105
MIN_JWT_SECRET_BYTES = 32

# `development` and `test` (DEBUG off) run on loopback with the published development secrets if no real ones
# are set; `production` insists on real ones. Anything else is a typo and refuses to start.
ENVIRONMENT = env_choice("ENVIRONMENT", "development", ENVIRONMENTS)
IS_PRODUCTION = ENVIRONMENT == "production"


SECRET_KEY = os.environ.get("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
JWT_SECRET = os.environ.get("JWT_SECRET", DEVELOPMENT_JWT_SECRET)
# Encrypts private JWT signing keys at rest; it lives in the environment, never in the database.
SIGNING_KEY_ENCRYPTION_KEY = os.environ.get("SIGNING_KEY_ENCRYPTION_KEY", "")
check_fernet_keys("SIGNING_KEY_ENCRYPTION_KEY", SIGNING_KEY_ENCRYPTION_KEY)
DEBUG = env_bool("DEBUG", ENVIRONMENT == "development")
# Error reports hide settings that hold credentials in URLs as well as those named like secrets.
DEFAULT_EXCEPTION_REPORTER_FILTER = "chittyauth_site.error_reports.SettingsFilter"
# Secrets still at their published development values. They are refused in production, and anywhere else
# served only to connections on a loopback address (chittyauth_site/listen_guard.py).
DEVELOPMENT_SECRETS_IN_USE = [
    name
    for name, value, development in (
        ("SECRET_KEY", SECRET_KEY, DEVELOPMENT_SECRET_KEY),
        ("JWT_SECRET", JWT_SECRET, DEVELOPMENT_JWT_SECRET),
    )
    if value in ("", development)
]

if IS_PRODUCTION:
    problems = []
    if SECRET_KEY in ("", DEVELOPMENT_SECRET_KEY) or len(SECRET_KEY) < 50:
        problems.append("SECRET_KEY must be set to a random value of at least 50 characters")
    if JWT_SECRET in ("", DEVELOPMENT_JWT_SECRET) or len(JWT_SECRET.encode()) < MIN_JWT_SECRET_BYTES:
        problems.append(f"JWT_SECRET must be set to a random value of at least {MIN_JWT_SECRET_BYTES} bytes")
    if not SIGNING_KEY_ENCRYPTION_KEY:
        problems.append("SIGNING_KEY_ENCRYPTION_KEY must be set")
    if DEBUG:
        problems.append("DEBUG must be off")
    if not env_list("ALLOWED_HOSTS", []):
        problems.append(
            "ALLOWED_HOSTS must name this service's host names (without it every request gets 400)"
        )
    if problems:
        raise ImproperlyConfigured("Refusing to start in production: " + "; ".join(problems))
elif len(JWT_SECRET.encode()) < MIN_JWT_SECRET_BYTES:
    raise ImproperlyConfigured(f"JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if IS_PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)

INSTALLED_APPS = [
    "daphne",
    "console.apps.AdminConsoleConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.forms",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "channels",
    "django_celery_beat",
    "axes",
    "kernel",
    "identities",
    "audit",
    "keys",
    "grants",
    "sessions.apps.AuthSessionsConfig",
    "mcp_endpoint",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes requires: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chittyauth_site.urls"

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
            ],
        },
    },
]

FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

# Served by daphne only: the loopback guard for development secrets lives in the ASGI application.
WSGI_APPLICATION = None
ASGI_APPLICATION = "chittyauth_site.asgi.application"

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'chittyauth.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
except ValueError as exc:  # an unknown scheme; the message names it, never the URL (it may hold a password)
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL Django can use: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so concurrent writers queue instead of failing.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that stops answering (a cut link, a host gone without a word) fails the request in bounded
    # time, as 503 DATABASE_UNAVAILABLE, instead of hanging on the kernel's TCP retries for minutes: connecting
    # gives up after this long, and so does a connection whose data goes unacknowledged (libpq's
    # tcp_user_timeout; a slow query is not cut short).
    DB_NETWORK_TIMEOUT_SECONDS = env_int("DB_NETWORK_TIMEOUT_SECONDS", 5, minimum=2, maximum=600)
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", DB_NETWORK_TIMEOUT_SECONDS)
    options.setdefault("tcp_user_timeout", DB_NETWORK_TIMEOUT_SECONDS * 1000)
    # The server's side of such a partition: it probes a silent client after the same time and drops it (a
    # query waiting on a lock too, checked every second), so the locks that client's transaction held (the
    # audit chain's head, which every audited change takes) are not held for the hours default keepalives
    # take, freezing every other node's changes. Options in DATABASE_URL's query string come later and win.
    # Off for a pooler that refuses startup options (PgBouncer); set them on the role there instead.
    DB_SERVER_SIDE_TIMEOUTS = env_bool("DB_SERVER_SIDE_TIMEOUTS", True)
    if DB_SERVER_SIDE_TIMEOUTS:
        server_side = {
            "tcp_keepalives_idle": DB_NETWORK_TIMEOUT_SECONDS,
            "tcp_keepalives_interval": 1,
            "tcp_keepalives_count": 3,
            "tcp_user_timeout": DB_NETWORK_TIMEOUT_SECONDS * 1000,
            "client_connection_check_interval": 1000,
        }
        options["options"] = " ".join(
            [*(f"-c {name}={value}" for name, value in server_side.items()), options.get("options", "")]
        ).strip()
# Under daphne every request's thread holds a connection of its own, so DB_CONN_MAX_AGE leaks them as threads
# come and go; a pool (psycopg_pool, through Django) keeps a process's connections at DB_POOL_MAX_SIZE instead.
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 0, minimum=0, maximum=1000)
if DB_POOL_MAX_SIZE:
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DB_POOL_MAX_SIZE needs PostgreSQL (a postgres:// DATABASE_URL)")
    if DATABASES["default"]["CONN_MAX_AGE"]:
        raise ImproperlyConfigured(
            "DB_POOL_MAX_SIZE and DB_CONN_MAX_AGE exclude each other; unset DB_CONN_MAX_AGE"
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_MAX_SIZE,
        # A request waiting longer for a connection is answered 503 DATABASE_UNAVAILABLE.
        "timeout": env_float("DB_POOL_TIMEOUT_SECONDS", 10.0),
    }

REDIS_URL = env_url("REDIS_URL", "", schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    # Bounded waits: with Redis unreachable the service answers from the database instead of hanging.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    # channels_redis blocks up to 5 s per read (`brpop_timeout`) and redis-py 8 times a read out after 5 s by
    # default, so an idle reader failed every few seconds (a socket then missed its session's end).
    from channels_redis.core import RedisChannelLayer

    CHANNEL_LAYER_SOCKET_TIMEOUT_SECONDS = RedisChannelLayer.brpop_timeout + 10
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT_SECONDS}]
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_DIR = VAR_DIR / "celery-broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR),
        "data_folder_out": str(CELERY_BROKER_DIR),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }

CELERY_TASK_SERIALIZER = "json"
# Workers log through LOGGING (masked, LOG_FORMAT) rather than Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
FORMAT_MODULE_PATH = ["chittyauth_site.formats"]  # times to the second, with the zone
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The console's app config stands in for django.contrib.admin, so the app finder never looks in console/.
STATICFILES_DIRS = [BASE_DIR / "console" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ChittyID authority: remote when an endpoint is set, otherwise the identities registered here.
CHITTYID_ENDPOINT = env_url("CHITTYID_ENDPOINT", "")
CHITTYID_API_KEY = os.environ.get("CHITTYID_API_KEY", "")
CHITTYID_TIMEOUT_SECONDS = env_float("CHITTYID_TIMEOUT_SECONDS", 3.0)
CHITTYID_RETRIES = env_int("CHITTYID_RETRIES", 2)
CHITTYID_CACHE_SECONDS = env_int("CHITTYID_CACHE_SECONDS", 60)

SESSION_TIMEOUT = env_int("SESSION_TIMEOUT", 3600)
# Live sessions one principal may hold (0: no limit); past it, end the oldest or refuse the newest.
# Entries per hot-path cache in each process (keys, tokens, principals' grants, REST sessions); least
# recently used go first. README "Caches" gives the memory an entry costs.
HOT_CACHE_MAX_ENTRIES = env_int("HOT_CACHE_MAX_ENTRIES", 50_000)
# An API key's use count and "last used" reach the database at most this long (plus a second) after the use,
# while the process runs; a clean stop writes what is pending.
API_KEY_USAGE_WRITE_SECONDS = env_int("API_KEY_USAGE_WRITE_SECONDS", 60, minimum=0)
MAX_SESSIONS_PER_PRINCIPAL = env_int("MAX_SESSIONS_PER_PRINCIPAL", 0, minimum=0)
SESSION_LIMIT_POLICY = env_choice("SESSION_LIMIT_POLICY", "end_oldest", ("end_oldest", "refuse_newest"))

# JWTs: HS256 with JWT_SECRET as the seed documents, or EdDSA / ES256 with rotating keys published as JWKS.
JWT_ISSUER = os.environ.get("JWT_ISSUER", "chittyauth")
JWT_AUDIENCE = os.environ.get("JWT_AUDIENCE", "chittyos")
JWT_SIGNING_ALGORITHM = env_choice("JWT_SIGNING_ALGORITHM", "HS256", SIGNING_ALGORITHMS)
JWT_MAX_LIFETIME_SECONDS = env_int("JWT_MAX_LIFETIME_SECONDS", 7 * 24 * 3600, minimum=1)
JWT_DEFAULT_LIFETIME_SECONDS = env_int(
    "JWT_DEFAULT_LIFETIME_SECONDS",
    min(3600, JWT_MAX_LIFETIME_SECONDS),
    minimum=1,
    maximum=JWT_MAX_LIFETIME_SECONDS,
)
JWT_LEEWAY_SECONDS = env_int("JWT_LEEWAY_SECONDS", 30, minimum=0)

API_KEY_ROTATION_OVERLAP_SECONDS = env_int(
    "API_KEY_ROTATION_OVERLAP_SECONDS", 300, minimum=0, maximum=7 * 24 * 3600
)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["keys.authentication.BearerCredentialAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["kernel.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "kernel.errors.rest_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Warm POST /api/v1/keys/validate and /api/v1/tokens/validate answered without Django's request machinery
# (keys/fast_path.py); off sends every request through Django.
REST_FAST_PATH = env_bool("REST_FAST_PATH", True)
SPECTACULAR_SETTINGS = {
    "TITLE": "ChittyAuth API",
    "DESCRIPTION": "Authentication and authorization for the ChittyOS ecosystem.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from this service (drf-spectacular-sidecar), so /api/docs/ works offline and
    # under the Content-Security-Policy below.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chittyauth_site.openapi.document_errors",
    ],
}
# Every page may load scripts, styles, images and fonts only from this service, and no inline script runs.
# Inline styles are allowed: Django's admin and Swagger UI set style attributes.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

if IS_PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Load balancers probe nodes over plain HTTP; a redirect would mark every node unhealthy.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
    for trusted_origin in CSRF_TRUSTED_ORIGINS:
        if not trusted_origin.startswith(("https://", "http://")):
            raise ImproperlyConfigured(
                f"CSRF_TRUSTED_ORIGINS entries must start with https:// (or http://), got {trusted_origin!r}"
            )

# One event per line, as text or JSON, each with its request id, principal and credential id; secrets masked.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request": {"()": "chittyauth_site.log_records.RequestContextFilter"}},
    "formatters": {
        "text": {
            "()": "chittyauth_site.log_records.TextLogFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {"()": "chittyauth_site.log_records.JsonLogFormatter"},
    },
    "handlers": {
        "console": {
            "class": "chittyauth_site.log_records.ConsoleHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request"],
        }
    },
    # Django's own console handler would print its request warnings a second time, unformatted.
    # httpx logs every request's full URL at INFO, and a webhook URL may carry a password or a token.
    "loggers": {"django": {"handlers": [], "propagate": True}, "httpx": {"level": "WARNING"}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
}

# Prometheus metrics at /metrics, for a bearer holding `metrics:read` (kernel/metrics.py lists every series).
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
# Where every process (daphne, mcp_stdio, Celery workers) writes its values for /metrics to add up; empty, each
# process counts for itself. It must exist and be emptied before the processes start (`./dev run` does both).
METRICS_MULTIPROCESS_DIR = prometheus_multiprocess_dir()

# Scheduled jobs
# Keys, grants and sessions that expired, were revoked or ended longer ago than this are deleted.
CLEANUP_RETENTION_DAYS = env_int("CLEANUP_RETENTION_DAYS", 30)
# Rows per cleanup transaction: small enough that no transaction holds its locks for long.
CLEANUP_BATCH_SIZE = env_int("CLEANUP_BATCH_SIZE", 5000)
# Identities per revalidation batch.
REVALIDATION_BATCH_SIZE = env_int("REVALIDATION_BATCH_SIZE", 200)
if min(CLEANUP_RETENTION_DAYS, CLEANUP_BATCH_SIZE, REVALIDATION_BATCH_SIZE) < 1:
    raise ImproperlyConfigured(
        "CLEANUP_RETENTION_DAYS, CLEANUP_BATCH_SIZE and REVALIDATION_BATCH_SIZE must each be at least 1"
    )

# Audit export: every audit event, and every signed checkpoint once the events it covers are out, delivered
# in sequence order, at least once, by the Celery worker (`audit/export.py`, README "Audit export").
# A webhook: HTTPS (plain HTTP to a loopback address only), each batch signed as Standard Webhooks specifies
# with AUDIT_WEBHOOK_SECRET (`whsec_` and base64 of at least 24 random bytes; required with the URL).
AUDIT_WEBHOOK_URL = env_url("AUDIT_WEBHOOK_URL", "")
AUDIT_WEBHOOK_SECRET = os.environ.get("AUDIT_WEBHOOK_SECRET", "")
check_webhook_sink("AUDIT_WEBHOOK_URL", AUDIT_WEBHOOK_URL, "AUDIT_WEBHOOK_SECRET", AUDIT_WEBHOOK_SECRET)
# Syslog (RFC 5424) over TCP (`tcp://host:port`, RFC 6587 octet counting) or TLS (`tls://host:port`, RFC 5425,
# the server's certificate checked against the system's CAs or SSL_CERT_FILE). Not UDP: it cannot tell a
# delivered message from a lost one.
AUDIT_SYSLOG_URL = env_url("AUDIT_SYSLOG_URL", "", schemes=("tcp", "tls"))
# Events per delivery (one webhook POST, one run of syslog writes), and the wait for one sink's answer.
AUDIT_EXPORT_BATCH_SIZE = env_int("AUDIT_EXPORT_BATCH_SIZE", 100, minimum=1, maximum=10_000)
AUDIT_EXPORT_TIMEOUT_SECONDS = env_float("AUDIT_EXPORT_TIMEOUT_SECONDS", 10.0)
# After a failed delivery a sink waits this long, doubling with each failure in a row up to the maximum.
AUDIT_EXPORT_RETRY_SECONDS = env_float("AUDIT_EXPORT_RETRY_SECONDS", 5.0)
AUDIT_EXPORT_RETRY_MAX_SECONDS = env_float("AUDIT_EXPORT_RETRY_MAX_SECONDS", 600.0)

# OpenTelemetry traces (chittyauth_site/tracing.py): on when an OTLP endpoint is set, unless OTEL_SDK_DISABLED.
# Every other OTEL_* variable (headers, service name, sampler, batch delays) is read by the SDK itself.
TRACING_ENABLED = bool(
    env_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") or env_url("OTEL_EXPORTER_OTLP_ENDPOINT", "")
) and not env_bool("OTEL_SDK_DISABLED", False)

# MCP
# This service's public base URL: the authorization server named in the MCP resource metadata (RFC 9728).
CHITTYAUTH_BASE_URL = env_url("CHITTYAUTH_BASE_URL", "http://127.0.0.1:8000", origin=True)
# The Streamable HTTP endpoint's public URL, as clients reach it.
MCP_RESOURCE_URL = env_url("MCP_RESOURCE_URL", f"{CHITTYAUTH_BASE_URL}/mcp")
# Largest WebSocket text frame handled; bigger ones get a JSON-RPC error. Keep it within daphne's
# --websocket-max-message-size (1 MiB by default), above which daphne closes the connection itself.
MCP_MAX_FRAME_BYTES = env_int("MCP_MAX_FRAME_BYTES", 1024 * 1024)
# Threads running MCP tool calls in each server process; each may hold a database connection during a call.
MCP_WORKER_THREADS = env_int("MCP_WORKER_THREADS", 32)
# How often an MCP WebSocket joins its session's channel-layer group again (channel layers forget memberships
# after a day, Redis all of them in a flush or failover), so ending the session keeps closing the socket at once.
MCP_SESSION_GROUP_REFRESH_SECONDS = env_int("MCP_SESSION_GROUP_REFRESH_SECONDS", 3600)
# The MCP SDK opens an OpenTelemetry span for every request. With tracing off those spans go nowhere yet cost
# ~50 µs a call, so they follow TRACING_ENABLED unless set.
MCP_OPENTELEMETRY = env_bool("MCP_OPENTELEMETRY", TRACING_ENABLED)
# A warm read-only tool call on a WebSocket (one answered from memory) skips the SDK's per-request pipeline,
# answered as the SDK would answer it (mcp_endpoint/warm_calls.py). Off sends every call through the SDK.
MCP_WARM_CALLS = env_bool("MCP_WARM_CALLS", True)
if min(MCP_MAX_FRAME_BYTES, MCP_WORKER_THREADS, MCP_SESSION_GROUP_REFRESH_SECONDS) < 1:
    raise ImproperlyConfigured(
        "MCP_MAX_FRAME_BYTES, MCP_WORKER_THREADS and MCP_SESSION_GROUP_REFRESH_SECONDS must each be at least 1"
    )

# Admin console
# Every login is checked by django-axes first: a locked-out address or account never reaches the password check.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "console.staff_permissions.GrantsBackend",
]
# After this many failed staff logins from one address, or for one username, further attempts are refused
# for ADMIN_LOCKOUT_MINUTES (each attempt while locked starts the wait again). Superusers unlock early with
# `manage.py axes_reset_username <name>` or in the admin under Axes.
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("ADMIN_LOCKOUT_MINUTES", 15) / 60  # hours, as django-axes reads a float
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
# Beyond the lockout: past this many failed staff logins in the window from one address or for one username,
# logins get 429 before axes or the password check touch the database, and one audit event per window.
ADMIN_LOGIN_RATE_LIMIT = env_int("ADMIN_LOGIN_RATE_LIMIT", 10)
ADMIN_LOGIN_RATE_WINDOW_SECONDS = env_int("ADMIN_LOGIN_RATE_WINDOW_SECONDS", 60)
AXES_VERBOSE = False  # lockouts and failures are in the audit trail; no banner on every management command
if min(AXES_FAILURE_LIMIT, AXES_COOLOFF_TIME, ADMIN_LOGIN_RATE_LIMIT, ADMIN_LOGIN_RATE_WINDOW_SECONDS) <= 0:
    raise ImproperlyConfigured(
        "ADMIN_LOGIN_FAILURE_LIMIT, ADMIN_LOCKOUT_MINUTES, ADMIN_LOGIN_RATE_LIMIT and "
        "ADMIN_LOGIN_RATE_WINDOW_SECONDS must each be at least 1"
    )

# OAuth 2.1
# ChittyAuth is the authorization server for MCP clients and services (django-oauth-toolkit, the `oauth` app).
# Its access tokens are JWTs signed like every other token here, so `keys.credentials.authenticate_bearer` and
# `validate_jwt` accept them through the one path.
INSTALLED_APPS += ["oauth2_provider", "oauth"]
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth.Client"
# The toolkit's own token model, named so migrations can depend on it as the swappable model it is.
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"  # noqa: S105 - a model name
# The issuer is CHITTYAUTH_BASE_URL (an origin, no path) with its trailing slash, exactly as the /mcp resource
# metadata renders it: RFC 8414, RFC 9207 and MCP clients compare issuers as plain strings.
OAUTH_ISSUER = f"{CHITTYAUTH_BASE_URL}/"
OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS = env_int("OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS", 3600)
# A refresh token dies this long after its last access token expired; each use rotates it.
OAUTH_REFRESH_TOKEN_LIFETIME_SECONDS = env_int("OAUTH_REFRESH_TOKEN_LIFETIME_SECONDS", 30 * 24 * 3600)
# Off: anyone may register an interactive client (MCP clients register themselves). On: registration needs
# `Authorization: Bearer <API key or JWT>` whose effective permissions include `oauth_clients:register`.
OAUTH_DCR_REQUIRE_INITIAL_ACCESS_TOKEN = env_bool("OAUTH_DCR_REQUIRE_INITIAL_ACCESS_TOKEN", False)
# How long the RFC 7592 registration access token handed to a dynamically registered client lives.
OAUTH_DCR_REGISTRATION_TOKEN_LIFETIME_SECONDS = env_int(
    "OAUTH_DCR_REGISTRATION_TOKEN_LIFETIME_SECONDS", 30 * 24 * 3600
)
# Resource indicators (RFC 8707) of other ChittyOS services tokens may be minted for. Their tokens carry that
# resource as `aud` and are refused here; this service itself (CHITTYAUTH_BASE_URL and MCP_RESOURCE_URL, and
# anything under them) is the audience JWT_AUDIENCE, like every other token it accepts.
OAUTH_EXTERNAL_RESOURCES = env_list("OAUTH_EXTERNAL_RESOURCES", [])
if not 0 < OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS <= JWT_MAX_LIFETIME_SECONDS:
    raise ImproperlyConfigured(
        "OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS must be between 1 and JWT_MAX_LIFETIME_SECONDS"
    )
if min(OAUTH_REFRESH_TOKEN_LIFETIME_SECONDS, OAUTH_DCR_REGISTRATION_TOKEN_LIFETIME_SECONDS) < 1:
    raise ImproperlyConfigured(
        "OAUTH_REFRESH_TOKEN_LIFETIME_SECONDS and OAUTH_DCR_REGISTRATION_TOKEN_LIFETIME_SECONDS must each be at least 1"
    )
OAUTH2_PROVIDER = {
    "OAUTH2_VALIDATOR_CLASS": "oauth.validators.ChittyAuthValidator",
    "CLIENT_SECRET_HASHER": "chittyauth_client_sha256",
    "SCOPES_BACKEND_CLASS": "oauth.scopes.PermissionScopes",
    # django-oauth-toolkit registers the client model in the admin with this class.
    "APPLICATION_ADMIN_CLASS": "oauth.admin.ClientAdmin",
    "OIDC_ISS_ENDPOINT": OAUTH_ISSUER,
    "ACCESS_TOKEN_EXPIRE_SECONDS": OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS,
    "REFRESH_TOKEN_EXPIRE_SECONDS": OAUTH_REFRESH_TOKEN_LIFETIME_SECONDS,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ROTATE_REFRESH_TOKEN": True,
    # A rotated refresh token presented again revokes its whole family (RFC 9700 §4.14.2); no grace period.
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": True,
    "REQUEST_APPROVAL_PROMPT": "force",
    # `http` only for loopback redirect URIs (RFC 8252), which `oauth.models.Client.clean` enforces.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http"],
    "ALLOW_LOCALHOST_LOOPBACK": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "DCR_ENABLED": True,
    # Who may register is decided by oauth.views.RegistrationView (OAUTH_DCR_REQUIRE_INITIAL_ACCESS_TOKEN).
    "DCR_REGISTRATION_PERMISSION_CLASSES": ("oauth2_provider.dcr.AllowAllDCRPermission",),
    "DCR_REGISTRATION_TOKEN_EXPIRE_SECONDS": OAUTH_DCR_REGISTRATION_TOKEN_LIFETIME_SECONDS,
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "client_credentials", "refresh_token"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post", "none"],
}
# Django's default hashers for staff passwords (the first signs new ones), and SHA-256 for high-entropy OAuth
# client secrets (see oauth/hashers.py).
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "oauth.hashers.ClientSecretHasher",
]
# W008 flags `http` among the redirect schemes; it is allowed for loopback redirect URIs only (see above).
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008"]
