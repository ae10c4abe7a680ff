"""recsite settings: one module, driven by environment variables.

With no variables set, everything runs embedded: SQLite (WAL) and a filesystem
Celery broker under ``var/``, so ``make run`` needs no server. Every variable is
documented in docs/configuration.md; keep the two in step.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return [part.strip() for part in value.split(",") if part.strip()]


VAR_DIR = Path(os.environ.get("RECSITE_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    """SECRET_KEY from the environment; embedded installs keep a generated one in var/."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
PORT = env_int("PORT", 8000)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "treebeard",
    "django_celery_beat",
    "django_celery_results",
    "recsite",
    "catalog",
    "personalization",
    "experiments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "recsite.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "recsite.middleware.LoginRequiredMiddleware",
    "recsite.middleware.UserTimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "recsite.urls"
WSGI_APPLICATION = "recsite.wsgi.application"

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
                "recsite.context_processors.navigation",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "recsite.sqlite3"
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            # WAL lets the web server read while the worker writes; IMMEDIATE
            # transactions take the write lock up front instead of failing mid-way.
            "OPTIONS": {
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # A file (not memory) so a real worker process can share the test database.
            "TEST": {"NAME": str(VAR_DIR / "test-recsite.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ---------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "recsite.staticfiles.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Not the manifest variant: pages must render even before collectstatic.
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
# Serve straight from the finders when collectstatic has not run (tests, dev).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security -------------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG and bool(os.environ.get("SECRET_KEY")))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER", False) else None
)
# Content security policy (recsite.security): no inline or third-party scripts. Styles allow
# 'unsafe-inline' because Plotly sets inline styles on the charts it draws (docs/security.md).
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: https:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
CONTENT_SECURITY_POLICY_REPORT_ONLY = env_bool("CSP_REPORT_ONLY", False)
# Login throttling: this many failures per user name + IP lock that pair out for the window.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)

# --- REST framework / OpenAPI -------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # API tokens stored hashed (recsite.tokens), "Authorization: Token KEY".
        "recsite.tokens.HashedTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["recsite.permissions.RoleModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "recsite.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Scoped per client: anonymous by IP, users by id. The tracking endpoints are exempt
    # (write keys are limited by TRACKING_MAX_REQUEST_BYTES, and batching is expected).
    "DEFAULT_THROTTLE_CLASSES": [
        "recsite.security.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("API_THROTTLE_ANON", "100/minute") or None,
        "user": os.environ.get("API_THROTTLE_USER", "2000/minute") or None,
    },
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "recsite API",
    "DESCRIPTION": "Personalization studio: catalog, behaviour, recommendations and experiments.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery ---------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.5,
    }
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_CACHE_BACKEND = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# A task is acknowledged after it ran, so a worker killed mid-task hands it back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Bound worker memory: a pool process whose resident memory passed this after a task (a
# training run on a large catalogue leaves big arenas behind) is replaced by a fresh one.
# 0 turns the check off. Per-process limit in MiB.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("WORKER_MAX_MEMORY_MB", 2048) * 1024 or None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True

# Two queues: "heavy" for training, imports and analysis; "default" for the rest.
# Each can be served by its own pool of workers (see docs/deployment.md).
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "personalization.tasks.training_run_execute": {"queue": "heavy"},
    "experiments.tasks.experiment_analyze": {"queue": "heavy"},
    "personalization.tasks.events_import": {"queue": "heavy"},
    "catalog.tasks.suggestion_model_train": {"queue": "heavy"},
    "catalog.tasks.import_job_execute": {"queue": "heavy"},
    "personalization.tasks.segment_discovery_execute": {"queue": "heavy"},
}
# With Redis, served impressions are buffered there and moved into the table in bulk this
# often (recsite/impact.py, docs/impact.md); 0 inserts them on each request instead.
IMPACT_IMPRESSION_FLUSH_SECONDS = env_int("IMPACT_IMPRESSION_FLUSH_SECONDS", 5)
# The one place where the periodic schedule is declared.
CELERY_BEAT_SCHEDULE = {
    "training-runs-reap-stale": {
        "task": "personalization.tasks.training_runs_reap_stale",
        "schedule": crontab(minute="*/5"),
    },
    "recommenders-retrain-due": {
        "task": "personalization.tasks.recommenders_retrain_due",
        "schedule": crontab(minute="*/10"),
    },
    "experiments-analyze-running": {
        "task": "experiments.tasks.experiments_analyze_running",
        "schedule": crontab(minute=5),
    },
    "bandits-update-running": {
        "task": "experiments.tasks.bandits_update_running",
        "schedule": crontab(minute="*/10"),
    },
    "events-retention-apply": {
        "task": "personalization.tasks.events_retention_apply",
        "schedule": crontab(hour=3, minute=17),
    },
    "segments-refresh-due": {
        "task": "personalization.tasks.segments_refresh_due",
        "schedule": crontab(minute="*/5"),
    },
    "segment-webhooks-retry-due": {
        "task": "personalization.tasks.segment_webhooks_retry_due",
        "schedule": crontab(minute="*/5"),
    },
    "impact-refresh": {
        "task": "recsite.tasks.impact_refresh",
        "schedule": crontab(minute="*/15"),
    },
    **(
        {
            "impressions-flush": {
                "task": "recsite.tasks.impressions_flush",
                "schedule": IMPACT_IMPRESSION_FLUSH_SECONDS,
                # Runs missed while no worker was up are dropped: the next one flushes all.
                "options": {"expires": IMPACT_IMPRESSION_FLUSH_SECONDS},
            }
        }
        if REDIS_URL and IMPACT_IMPRESSION_FLUSH_SECONDS > 0
        else {}
    ),
    "outbox-resend": {
        "task": "recsite.tasks.outbox_resend",
        "schedule": crontab(minute="*"),
    },
}

# --- Product settings -------------------------------------------------------------------
# A running training run that has not reported progress for this long is marked failed.
TRAINING_STALE_AFTER_SECONDS = env_int("TRAINING_STALE_AFTER_SECONDS", 3600)
# The dashboard flags an active model without a retraining schedule as stale after this long.
MODEL_STALE_AFTER_HOURS = env_int("MODEL_STALE_AFTER_HOURS", 168)
# A run still queued after this long is sent to the broker again (its message was lost).
TRAINING_REQUEUE_AFTER_SECONDS = env_int("TRAINING_REQUEUE_AFTER_SECONDS", 600)
# A task message still in the outbox after this long (the broker was down when its request
# committed) is sent again by beat's outbox-resend (recsite/outbox.py).
OUTBOX_RESEND_AFTER_SECONDS = env_int("OUTBOX_RESEND_AFTER_SECONDS", 60)
DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "")
# Fitted models kept in memory per web process (least recently used are dropped).
SERVING_MODELS_PER_PROCESS = env_int("SERVING_MODELS_PER_PROCESS", 8)
# Serving caches (personalization/servecache.py): how stale the serving configuration and
# API tokens may get per web process, how many precomputed lists a process keeps, and how
# long the shared cache keeps each list (lists never change once a run stored them).
SERVING_CACHE_SECONDS = env_int("SERVING_CACHE_SECONDS", 1)
SERVING_LISTS_PER_PROCESS = env_int("SERVING_LISTS_PER_PROCESS", 20_000)
SERVING_LIST_CACHE_SECONDS = env_int("SERVING_LIST_CACHE_SECONDS", 86_400)
# The recommender used when a request names none.
DEFAULT_RECOMMENDER = os.environ.get("DEFAULT_RECOMMENDER", "trending")
# Experiments: CUPED uses each profile's behaviour in this many days before its first exposure.
EXPERIMENTS_CUPED_LOOKBACK_DAYS = env_int("EXPERIMENTS_CUPED_LOOKBACK_DAYS", 14)
# Always-valid confidence sequences are tightest around this many profiles (both arms together).
EXPERIMENTS_SEQUENTIAL_TUNING_N = env_int("EXPERIMENTS_SEQUENTIAL_TUNING_N", 5000)
# The report warns of low power when the test cannot detect this relative lift (0.05 = 5%).
EXPERIMENTS_TARGET_MDE = float(os.environ.get("EXPERIMENTS_TARGET_MDE") or 0.05)
# Dotted path to f(profile_id, segment_ids) -> bool for segment targeting; empty = none yet.
EXPERIMENTS_SEGMENT_RESOLVER = os.environ.get(
    "EXPERIMENTS_SEGMENT_RESOLVER", "personalization.segments.segment_resolver"
)
# A segment refresh still "running" after this long is marked failed (its worker died).
SEGMENTS_REFRESH_STALE_SECONDS = env_int("SEGMENTS_REFRESH_STALE_SECONDS", 3600)
# Segment webhooks: profiles per payload, attempts before giving up, first retry delay (doubling
# each time), request timeout, and whether URLs may resolve to private or loopback addresses.
SEGMENT_WEBHOOK_BATCH = env_int("SEGMENT_WEBHOOK_BATCH", 1000)
SEGMENT_WEBHOOK_MAX_ATTEMPTS = env_int("SEGMENT_WEBHOOK_MAX_ATTEMPTS", 6)
SEGMENT_WEBHOOK_BACKOFF_SECONDS = env_int("SEGMENT_WEBHOOK_BACKOFF_SECONDS", 30)
SEGMENT_WEBHOOK_TIMEOUT_SECONDS = env_int("SEGMENT_WEBHOOK_TIMEOUT_SECONDS", 10)
SEGMENT_WEBHOOK_ALLOW_PRIVATE = env_bool("SEGMENT_WEBHOOK_ALLOW_PRIVATE", False)
# PostgreSQL work_mem for the analysis transaction (e.g. "256MB"); empty keeps the server's.
EXPERIMENTS_ANALYSIS_WORK_MEM = os.environ.get("EXPERIMENTS_ANALYSIS_WORK_MEM", "256MB")

# Behavioural data (docs/tracking.md). Request limits of the tracking API, in bytes.
TRACKING_MAX_EVENT_BYTES = env_int("TRACKING_MAX_EVENT_BYTES", 32 * 1024)
TRACKING_MAX_REQUEST_BYTES = env_int("TRACKING_MAX_REQUEST_BYTES", 500 * 1024)
# Incoming event names -> canonical types (canonical names always pass through).
EVENT_NAME_MAP: dict[str, str] = {
    "Video Playback Started": "play",
    "Video Playback Resumed": "play",
    "Video Playback Paused": "pause",
    "Video Playback Interrupted": "pause",
    "Video Playback Completed": "complete",
    "Video Playback Exited": "abandon",
    "Video Content Playing": "play",
    "Video Content Completed": "complete",
    "Product Viewed": "view",
    "Product Clicked": "click",
    "Product Added": "add_to_cart",
    "Product Added to Wishlist": "add_to_list",
    "Product Reviewed": "rate",
    "Order Completed": "purchase",
    "Products Searched": "search",
    "Content Viewed": "view",
    "Item Rated": "rate",
    "Item Liked": "like",
    "Item Disliked": "dislike",
    "Added to List": "add_to_list",
}
# Properties that name the item, tried in order, matched to catalog items by external id.
TRACKING_ITEM_PROPERTIES = env_list("TRACKING_ITEM_PROPERTIES", ["item_id", "product_id", "content_asset_id"])
# Unknown item ids: "placeholder" creates an inactive item flagged for editors; "ignore" keeps
# the event without an item.
TRACKING_UNKNOWN_ITEMS = os.environ.get("TRACKING_UNKNOWN_ITEMS", "placeholder")
if TRACKING_UNKNOWN_ITEMS not in {"placeholder", "ignore"}:
    raise ImproperlyConfigured("TRACKING_UNKNOWN_ITEMS must be 'placeholder' or 'ignore'")
# Interaction strength per canonical type; defaults to the training weights.
INTERACTION_WEIGHTS: dict[str, float] = {}
# "rate": strength = weight x (rating - midpoint); "abandon" counts only before this progress.
INTERACTION_RATING_MIDPOINT = 3.0
INTERACTION_EARLY_ABANDON = 0.5
# Optional time decay of interaction strengths (days; 0 = none).
INTERACTION_HALF_LIFE_DAYS = float(os.environ.get("INTERACTION_HALF_LIFE_DAYS") or 0)
# Events older than this many days are deleted every night (0 = keep forever).
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 0)
# Catalog: facets (by slug) every item should carry a tag from, and the editors' "thin" threshold.
CATALOG_REQUIRED_FACETS = env_list("CATALOG_REQUIRED_FACETS", ["genre", "mood"])
CATALOG_MIN_TAGS = env_int("CATALOG_MIN_TAGS", 3)
# Pending tag suggestions kept per item after each training.
CATALOG_SUGGESTIONS_PER_ITEM = env_int("CATALOG_SUGGESTIONS_PER_ITEM", 5)
# Uploaded import files larger than this are refused; files with more rows than the inline
# threshold are applied on a worker (heavy queue) with a progress bar.
# Parallel database connections of `import_events` for CSV files on PostgreSQL (each a
# writer thread); about one per core the database can spare.
IMPORT_WRITERS = env_int("IMPORT_WRITERS", 2)
if IMPORT_WRITERS < 1:
    raise ImproperlyConfigured("IMPORT_WRITERS must be at least 1")
CATALOG_IMPORT_MAX_BYTES = env_int("CATALOG_IMPORT_MAX_MB", 50) * 1024 * 1024
CATALOG_IMPORT_INLINE_ROWS = env_int("CATALOG_IMPORT_INLINE_ROWS", 2000)

# Business impact (docs/impact.md): an engagement event is attributed to a recommendation when
# the same profile clicked a recommendation of the same item at most this many hours before.
IMPACT_ATTRIBUTION_WINDOW_HOURS = env_int("IMPACT_ATTRIBUTION_WINDOW_HOURS", 24)
# The engagement types whose share from recommendations is measured.
IMPACT_ENGAGEMENT_TYPES = env_list("IMPACT_ENGAGEMENT_TYPES", ["play", "complete", "purchase", "add_to_cart"])
# Record every served result (recommendation id, placement, recommender) as an impression.
IMPACT_RECORD_IMPRESSIONS = env_bool("IMPACT_RECORD_IMPRESSIONS", True)
# Impression rows older than this are deleted by the refresh (the daily figures are kept).
IMPACT_IMPRESSION_RETENTION_DAYS = env_int("IMPACT_IMPRESSION_RETENTION_DAYS", 90)
# The first refresh computes this many days back; later ones recompute recent days only.
IMPACT_BACKFILL_DAYS = env_int("IMPACT_BACKFILL_DAYS", 90)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
