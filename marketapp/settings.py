"""Django settings for marketapp.

Everything comes from the environment (django-environ). With nothing set the project runs in
the embedded mode: SQLite under ``var/``, in-memory channel layer and tick store, a generated
development SECRET_KEY kept in ``var/secret_key``. ``DATABASE_URL`` and ``REDIS_URL`` switch
to the stack mode (PostgreSQL and Redis).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)


def _development_secret_key() -> str:
    """A random key generated once per checkout, so sessions and encrypted data survive restarts."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if not DEBUG:
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=false.")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG=false (comma-separated).")
else:
    SECRET_KEY = SECRET_KEY or _development_secret_key()
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]", "testserver"]

# Key for credentials encrypted at rest; derived from SECRET_KEY unless given.
CREDENTIALS_KEY = env.str("CREDENTIALS_KEY", default="")

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Browser apps on other origins (django-cors-headers). Empty = no cross-origin access. The same
# list admits those origins on the /ws WebSocket (marketdata.ws_middleware). Apps authenticate
# with a Bearer token; cookies cross only with CORS_ALLOW_CREDENTIALS=true.
CORS_ALLOWED_ORIGINS = [o.rstrip("/") for o in env.list("CORS_ALLOWED_ORIGINS", default=[])]
CORS_ALLOWED_ORIGIN_REGEXES = env.list("CORS_ALLOWED_ORIGIN_REGEXES", default=[])
CORS_ALLOW_CREDENTIALS = env.bool("CORS_ALLOW_CREDENTIALS", default=False)
CORS_PREFLIGHT_MAX_AGE = env.int("CORS_PREFLIGHT_MAX_AGE", default=600)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from here, not from a CDN
    "channels",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.google",
    "csp",
    "accounts",
    "exchanges",
    "instruments",
    "marketdata",
    "ingestion",
    "seedcompat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy (CONTENT_SECURITY_POLICY below)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # before CommonMiddleware: preflights answered first
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Sign-in provider routes without a configured app answer 404, not 500.
    "marketapp.middleware.ProviderNotConfiguredMiddleware",
]

ROOT_URLCONF = "marketapp.urls"

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

WSGI_APPLICATION = "marketapp.wsgi.application"
ASGI_APPLICATION = "marketapp.asgi.application"

# --- Database ---------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'marketapp.sqlite3'}")}
# Under ASGI every request's sync code runs in a fresh thread, so per-thread persistent
# connections pile up (PostgreSQL ran out of them at 16 concurrent requests in the history
# benchmark): no persistent connections. DB_POOL=true uses Django's pool on PostgreSQL
# (OPTIONS["pool"], psycopg-pool, on by default): work off the event loop gives its connection
# back after each call (core.db.db_sync_to_async) and a thread that ends holding one gives it
# back (core.db.connect_pool_guard); the pool checks a connection before handing it out
# (core.db_backend), so the ones the server dropped (a restart) are replaced, not failed on. SQLite
# has no pool. The hot history reads have their own async pool (HISTORY_POOL_MAX_SIZE).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DB_POOL = env.bool("DB_POOL", default=True)
if DB_POOL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django refuses both
    # Django's PostgreSQL backend with a pool check that recovers from a restart at once.
    DATABASES["default"]["ENGINE"] = "core.db_backend"
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        "timeout": env.float("DB_POOL_TIMEOUT_S", default=3.0),
    }
# The fast history route in front of Django (marketdata/api/history_route.py): its own async
# pool of at most HISTORY_POOL_MAX_SIZE connections per web process.
HISTORY_FAST_ROUTE = env.bool("HISTORY_FAST_ROUTE", default=True)
HISTORY_POOL_MAX_SIZE = env.int("HISTORY_POOL_MAX_SIZE", default=4)
HISTORY_POOL_TIMEOUT_S = env.float("HISTORY_POOL_TIMEOUT_S", default=5.0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (ASGI + engine) share one file; WAL keeps readers off the writer's back.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, channel layer, cache ------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
STACK_MODE = bool(REDIS_URL)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Pub/sub ignores Redis database numbers: the prefix keeps deployments apart.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNEL_LAYER_PREFIX", default="marketapp")},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "marketapp",
            # Never hang a request on a Redis that drops packets instead of refusing them.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/live/"
SITE_ID = 1

ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
SOCIALACCOUNT_LOGIN_ON_GET = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="")
GOOGLE_LOGIN_REDIRECT_URL = env.str("GOOGLE_LOGIN_REDIRECT_URL", default="")
SOCIALACCOUNT_PROVIDERS = {
    "google": {
        "SCOPE": ["profile", "email"],
        "AUTH_PARAMS": {"access_type": "online"},
        "OAUTH_PKCE_ENABLED": True,
        # The id_token may lack the picture; then allauth asks the userinfo endpoint for it.
        "FETCH_USERINFO": True,
        **(
            {"APPS": [{"client_id": GOOGLE_CLIENT_ID, "secret": GOOGLE_CLIENT_SECRET, "key": ""}]}
            if GOOGLE_CLIENT_ID
            else {}
        ),
    }
}

# --- Internationalisation: UTC inside, exchange time zones at the edges -----------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Front-end packages come from the npm registry (`make setup` runs `npm ci`), served as static
# files from this app: no CDN, nothing fetched by the browser from elsewhere.
STATICFILES_DIRS = [
    entry
    for entry in [
        BASE_DIR / "static",
        ("vendor/lightweight-charts", BASE_DIR / "node_modules" / "lightweight-charts" / "dist"),
    ]
    if (entry[1] if isinstance(entry, tuple) else entry).exists()
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- REST framework --------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # simplejwt's and DRF's session authentication, refusing users not approved (403 account_pending).
        "accounts.authentication.ApprovedJWTAuthentication",
        "accounts.authentication.ApprovedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.api.permissions.IsAdminRoleOrReadOnly"],
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
    # A JSON body must be an object: null, an array, a string or a number is a 400 (core/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "core.api.parsers.JSONObjectParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "marketapp.renderers.BrowsableAPIRenderer",  # DRF's, with inline styles allowed by its CSP
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"auth": env.str("AUTH_THROTTLE_RATE", default="20/min")},
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_LIFETIME_S", default=900)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_REFRESH_LIFETIME_S", default=7 * 86400)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "marketapp API",
    "DESCRIPTION": "Real-time market data: exchanges, instruments, providers and price history.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Two "status" enums: the health report's keeps its name, the user's approval status gets its own.
    "ENUM_NAME_OVERRIDES": {"StatusEnum": ["ok", "degraded"], "UserStatusEnum": "accounts.models.User.Status"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.postprocess_schema",
    ],
    # Swagger UI and ReDoc from the pinned drf-spectacular-sidecar package, served as static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
REGISTRATION_OPEN = env.bool("REGISTRATION_OPEN", default=True)
# New registrations wait as "pending" (403 account_pending, no data) until an admin approves them.
REGISTRATION_REQUIRES_APPROVAL = env.bool("REGISTRATION_REQUIRES_APPROVAL", default=False)
# Link in password-reset emails: a template with {uid} and {token} (a front end's page); empty =
# this server's own reset page on the host the admin's request came to.
PASSWORD_RESET_URL = env.str("PASSWORD_RESET_URL", default="")
# Outgoing mail (password-reset links): a django-environ email URL (smtp+tls://user:pw@host:587);
# empty = printed on the console.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="marketapp <noreply@localhost>")

# --- WebSocket /ws limits ------------------------------------------------------------------------
WS_MAX_SUBSCRIPTIONS = env.int("WS_MAX_SUBSCRIPTIONS", default=500)
WS_MAX_FRAME_BYTES = env.int("WS_MAX_FRAME_BYTES", default=65536)
WS_MAX_MESSAGES_PER_SECOND = env.float("WS_MAX_MESSAGES_PER_SECOND", default=50)
WS_AUTH_TIMEOUT_S = env.float("WS_AUTH_TIMEOUT_S", default=10)
WS_SEND_QUEUE = env.int("WS_SEND_QUEUE", default=1000)
WS_STUCK_TIMEOUT_S = env.float("WS_STUCK_TIMEOUT_S", default=10)
WS_TRANSPORT_BUFFER_BYTES = env.int("WS_TRANSPORT_BUFFER_BYTES", default=262144)
WS_SYMBOL_CACHE_TTL_S = env.float("WS_SYMBOL_CACHE_TTL_S", default=30)
# Names one subscribe frame may carry; each unknown name costs one message of the rate budget.
WS_MAX_NAMES_PER_FRAME = env.int("WS_MAX_NAMES_PER_FRAME", default=100)
# How often open sockets re-check their users (deactivated, rejected, tokens revoked).
WS_AUTH_RECHECK_S = env.float("WS_AUTH_RECHECK_S", default=2)
# /ws resume: each instrument's last quotes kept for reconnecting clients (0 turns resume off).
# Long-running processes (web with the lifespan protocol, ingest, runmarket, Celery streams)
# freeze their start-up objects out of the garbage collector's full passes (core/gcfreeze.py).
GC_FREEZE_AT_START = env.bool("GC_FREEZE_AT_START", default=True)
LIVE_RESUME_HISTORY_LEN = env.int("LIVE_RESUME_HISTORY_LEN", default=500)
LIVE_RESUME_HISTORY_AGE_S = env.float("LIVE_RESUME_HISTORY_AGE_S", default=300)

# --- sign-in limits (see docs/SECURITY.md) -------------------------------------------------------
# Failed logins per email (from any address) before that email answers 429 until the window ends.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_FAILURE_WINDOW_S = env.int("LOGIN_FAILURE_WINDOW_S", default=900)
# A sign-in's refresh chain ends this long after the sign-in, however often it is refreshed.
JWT_REFRESH_MAX_AGE_S = env.int("JWT_REFRESH_MAX_AGE_S", default=env.int("JWT_REFRESH_LIFETIME_S", default=7 * 86400))

# --- outbound fetches ----------------------------------------------------------------------------
# Hosts (host or host:port) the instrument import by URL may reach even though they are internal.
IMPORT_URL_ALLOWED_HOSTS = env.list("IMPORT_URL_ALLOWED_HOSTS", default=[])
IMPORT_URL_MAX_BYTES = env.int("IMPORT_URL_MAX_BYTES", default=512 * 1024 * 1024)  # before and after decompression
IMPORT_URL_MAX_LINE_BYTES = env.int("IMPORT_URL_MAX_LINE_BYTES", default=64 * 1024)
# Extra hosts a Dhan/Yahoo provider's URL settings may name (deployment only, never over the API).
PROVIDER_URL_ALLOWED_HOSTS = env.list("PROVIDER_URL_ALLOWED_HOSTS", default=[])
LIVE_PUBSUB_CLIENT = env.str("LIVE_PUBSUB_CLIENT", default="resp")  # the hub's Redis pub/sub client: resp | redis-py

# The seed service's API for its own front end and clients (seedcompat), under this prefix.
SEED_COMPAT = env.bool("SEED_COMPAT", default=False)
SEED_COMPAT_PREFIX = env.str("SEED_COMPAT_PREFIX", default="seed/").strip("/") + "/"
# The seed front end has no token refresh: its sign-in token lives this long (a working day).
SEED_COMPAT_ACCESS_LIFETIME_S = env.int("SEED_COMPAT_ACCESS_LIFETIME_S", default=8 * 3600)
# Unauthenticated /ws connections may read quotes (a public feed; the seed front end sends no token).
WS_ALLOW_ANONYMOUS = env.bool("WS_ALLOW_ANONYMOUS", default=False)

# --- Market data --------------------------------------------------------------------------------
FAILOVER_AFTER_S = env.float("FAILOVER_AFTER_S", default=30.0)
# Feed health and Dhan tokens (ingestion/providers/base.py, ingestion/dhan_tokens.py): a connected
# feed refusing every frame this long is degraded (its instruments fail over); a Dhan access token
# is renewed once less than DHAN_TOKEN_RENEW_BEFORE_S remains, checked every DHAN_TOKEN_CHECK_S.
FEED_REFUSED_UNHEALTHY_S = env.float("FEED_REFUSED_UNHEALTHY_S", default=30.0)
DHAN_TOKEN_RENEW_BEFORE_S = env.float("DHAN_TOKEN_RENEW_BEFORE_S", default=3600.0)
DHAN_TOKEN_CHECK_S = env.float("DHAN_TOKEN_CHECK_S", default=300.0)
PERSIST_INTERVAL_S = env.float("PERSIST_INTERVAL_S", default=5.0)
# How often the embedded mode (`runmarket`) rolls closed sessions up into daily bars; the stack
# mode does it from Celery beat (setup_periodic_tasks).
ROLLUP_INTERVAL_S = env.float("ROLLUP_INTERVAL_S", default=300.0)
# The simulator provider created by the seeding trades only in its exchanges' sessions.
SIM_FOLLOW_SESSIONS = env.bool("SIM_FOLLOW_SESSIONS", default=True)
# Past sessions of synthetic history `seed_demo` writes for the demo instruments (0: none).
DEMO_HISTORY_SESSIONS = env.int("DEMO_HISTORY_SESSIONS", default=5)
PERSIST_CLAIM_IDLE_MS = env.int("PERSIST_CLAIM_IDLE_MS", default=60_000)
PERSIST_LAG_ALERT_S = env.float("PERSIST_LAG_ALERT_S", default=120.0)
HISTORY_MAX_RANGE_DAYS = env.int("HISTORY_MAX_RANGE_DAYS", default=3660)
HISTORY_MAX_INTRADAY_DAYS = env.int("HISTORY_MAX_INTRADAY_DAYS", default=60)
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="")
DEMO_ADMIN_EMAIL = env.str("DEMO_ADMIN_EMAIL", default="")

# --- Celery --------------------------------------------------------------------------------------
# Two queues: "streams" holds long-running provider streams (workers started with
# --prefetch-multiplier 1, one stream per pool slot), "default" the short jobs. The embedded
# mode needs no Celery: the in-memory broker only keeps imports and `manage.py check` working.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"ingestion.run_stream": {"queue": "streams"}}
# Short jobs are idempotent: acknowledged after they ran, so a killed worker's job runs again.
# Stream tasks override this (acks on receipt): the watchdog restarts a dead stream, and a
# redelivered stream message would only find the lease taken. No global time limit: it would
# apply to the streams too; each short task declares its own.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Take a message only when a pool slot is free: a worker whose slots all hold streams must not
# sit on a start that another worker could run now (Redis broker only).
CELERY_WORKER_DISABLE_PREFETCH = True
# An unacknowledged message returns to the queue after this; longer than any task's time limit.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Provider streams in Celery workers (ingestion/streams/): a Redis lease per provider, renewed
# every TTL/3; a stream that cannot renew stops, and the watchdog restarts lapsed ones elsewhere:
# a lost worker's streams run again within TTL + the watchdog period (10 + 15 s by default).
STREAM_LEASE_TTL_S = env.float("STREAM_LEASE_TTL_S", default=10.0)
STREAM_STATUS_INTERVAL_S = env.float("STREAM_STATUS_INTERVAL_S", default=2.0)
STREAM_REFRESH_S = env.float("STREAM_REFRESH_S", default=10.0)
STREAM_WATCHDOG_INTERVAL_S = env.int("STREAM_WATCHDOG_INTERVAL_S", default=15)
STREAM_START_DEDUPE_S = env.int("STREAM_START_DEDUPE_S", default=30)
STREAM_REDIS_TIMEOUT_S = env.float("STREAM_REDIS_TIMEOUT_S", default=1.0)

# --- Prometheus metrics (/metrics; marketapp/metrics.py) -----------------------------------------
# Open to these client addresses (IPs or CIDRs, the address as TRUSTED_PROXIES resolves it) ...
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1/32", "::1"])
# ... or to a request with "Authorization: Bearer <METRICS_TOKEN>" (empty: no token is accepted).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Stack mode: how often each process publishes its figures to Redis for /metrics to export.
METRICS_SNAPSHOT_INTERVAL_S = env.float("METRICS_SNAPSHOT_INTERVAL_S", default=5.0)

# --- Security (production) -----------------------------------------------------------------------
# Addresses of the reverse proxies in front of the server (comma-separated); empty = none, so
# no forwarded header (X-Forwarded-For, X-Forwarded-Proto) is believed.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # X-Forwarded-Proto says "this came over HTTPS" only when a proxy in front sets it: trusted
    # when TRUSTED_PROXIES names that proxy, or SECURE_PROXY_SSL_HEADER=true says so (false wins).
    if env.bool("SECURE_PROXY_SSL_HEADER", default=bool(TRUSTED_PROXIES)):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Content-Security-Policy (django-csp 4) ------------------------------------------------------
# Every page runs only this app's own scripts and styles: no inline or eval'd script anywhere, and
# inline styles only on ReDoc (its renderer injects <style>; see marketapp/urls.py). 'self' in
# connect-src covers the same-origin /ws WebSocket. Violations can be reported to CSP_REPORT_URI.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # + the one <style> lightweight-charts (5.2.1) injects for its attribution logo, by hash; an
        # upgrade that changes it shows as a violation in marketdata/tests/browser/test_content_security_policy.py.
        "style-src": ["'self'", "'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        **({"report-uri": [env.str("CSP_REPORT_URI")]} if env.str("CSP_REPORT_URI", default="") else {}),
    }
}

# Log lines: "text" (human-readable) or "json" (one JSON object per line with timestamp, level,
# logger, message, request_id inside a request, exc_info; core/log_format.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="text").lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING_CONFIG = "core.log_format.configure" if LOG_FORMAT == "json" else "logging.config.dictConfig"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "core.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "filters": {"redact_token": {"()": "marketdata.ws_logging.RedactTokenFilter"}},
    "loggers": {
        # Django's default handlers would print its lines a second time, unformatted: root's only.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": ["console"], "propagate": False},
        # The Dhan feed URL carries the access token; websockets logs request lines at DEBUG.
        "websockets": {"level": "INFO"},
        # uvicorn logs a WebSocket handshake's path with its query string (?token=): redacted.
        "uvicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False, "filters": ["redact_token"]},
        "uvicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False, "filters": ["redact_token"]},
    },
}
