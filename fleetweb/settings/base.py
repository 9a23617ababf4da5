"""Settings shared by every environment; each value comes from the environment (env.py)."""

import dj_database_url

from .env import BASE_DIR, env_bool, env_float, env_int, env_list, env_str

DATA_DIR = BASE_DIR / ".fleet"

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-embedded-default-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "apps.accounts",
    "apps.audit",
    "apps.fleet",
    "apps.deviceapi",
    "apps.rollouts",
    "apps.hawkbit",
    "apps.live",
    "apps.alerts",
    "apps.dashboard",
    "apps.governance",
    "apps.insights",
    "apps.simulator",
    "apps.ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Device API request limits: before everything else, so a refused request costs little.
    "apps.deviceapi.ratelimit.RateLimitMiddleware",
    # PostgreSQL/Redis briefly away: 503 + Retry-After instead of a 500 (docs/reliability.md).
    "fleetweb.middleware.ServiceUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fleetweb.urls"
WSGI_APPLICATION = "fleetweb.wsgi.application"
ASGI_APPLICATION = "fleetweb.asgi.application"

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
                "apps.accounts.context_processors.roles",
            ],
        },
    },
]


def _database(url: str) -> dict:
    config = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets the web process read while the worker writes; IMMEDIATE makes writers
        # queue on the lock instead of failing with "database is locked" on upgrade.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    else:
        config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'fleet.sqlite3'}")
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "fleetweb"),
    }
}

CHANNEL_LAYERS = {
    "default": {
        # The pub/sub layer fans out about 8x faster than the list-based default here
        # (stack-notes.md); live pages are coalesced snapshots, so losing a message
        # while a client reconnects is harmless: it re-syncs from a snapshot.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNELS_PREFIX", "fleetweb")},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The throttling backend refuses a username + IP locked out for failed logins, on every path
# that authenticates (login page, admin, hawkBit Basic auth).
AUTHENTICATION_BACKENDS = ["apps.accounts.throttle.ThrottledModelBackend"]

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
USE_THOUSAND_SEPARATOR = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / env_str("STATIC_ROOT_DIR", "staticfiles")
MEDIA_ROOT = env_str("MEDIA_ROOT", str(DATA_DIR / "media"))
MEDIA_URL = "media/"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)

# Celery: settings live here (namespace CELERY_), the app is in fleetweb/celery.py.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker killed mid-task (SIGKILL, OOM, lost machine) leaves its message unacknowledged: the
# Redis transport hands it to another worker after this many seconds. It must exceed the
# longest task (CELERY_TASK_TIME_LIMIT); no task here uses countdown/eta, which would be
# redelivered too. Every task is idempotent, so a redelivery is harmless (docs/reliability.md).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300)}
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 120)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 100)
CELERY_TASK_DEFAULT_QUEUE = "fleetweb"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = "UTC"

FLEET = {
    # Devices are told to check in every this many seconds (jittered by the client).
    "POLL_INTERVAL_S": env_int("FLEET_POLL_INTERVAL_S", 300),
    # A device is "online" while its last check-in is within this many poll intervals.
    "ONLINE_INTERVALS": env_float("FLEET_ONLINE_INTERVALS", 2.5),
    # How often the rollout engine ticks.
    "ENGINE_TICK_S": env_float("FLEET_ENGINE_TICK_S", 5.0),
    # How often the spread time series is sampled.
    "SPREAD_SNAPSHOT_S": env_float("FLEET_SPREAD_SNAPSHOT_S", 60.0),
    # Health reports older than this are rolled up and deleted.
    "HEALTH_RETENTION_H": env_int("FLEET_HEALTH_RETENTION_H", 72),
    "MAX_CHECKIN_BODY": env_int("FLEET_MAX_CHECKIN_BODY", 64 * 1024),
    # Check-ins arriving this soon after an "installed" report may have been sent before it.
    "FALLBACK_GRACE_S": env_float("FLEET_FALLBACK_GRACE_S", 10.0),
    # A settling device fails when one report has this many crashes + failed health checks.
    "SETTLE_UNHEALTHY_EVENTS": env_int("FLEET_SETTLE_UNHEALTHY_EVENTS", 3),
    # Prometheus may scrape /metrics with "Authorization: Bearer <token>" instead of a login.
    "METRICS_TOKEN": env_str("FLEET_METRICS_TOKEN", ""),
    # Device API limits per minute (apps/deviceapi/ratelimit.py explains the defaults; 0 = off).
    "RATE_LIMIT_DEVICE_PER_MIN": env_int("FLEET_RATE_LIMIT_DEVICE_PER_MIN", 120),
    "RATE_LIMIT_IP_PER_MIN": env_int("FLEET_RATE_LIMIT_IP_PER_MIN", 6000),
    # Login throttling (apps/accounts/throttle.py): this many failures per username + IP lock that
    # pair out until the window (seconds) passes.
    "LOGIN_FAILURES_MAX": env_int("FLEET_LOGIN_FAILURES_MAX", 5),
    "LOGIN_FAILURE_WINDOW_S": env_int("FLEET_LOGIN_FAILURE_WINDOW_S", 900),
    # Check-in write buffer (apps/fleet/checkin_buffer.py, docs/performance.md): steady-state check-ins
    # go to Redis and are flushed to PostgreSQL every FLUSH_S in batches of FLUSH_BATCH (at most
    # FLUSH_MAX_BATCHES per task run, then it re-queues itself). Off on SQLite. SEQ_TTL_S: how long a
    # device's last seq stays in Redis (PostgreSQL's last_seq is the truth after that).
    "CHECKIN_BUFFER": env_bool("FLEET_CHECKIN_BUFFER", True),
    "CHECKIN_FLUSH_S": env_float("FLEET_CHECKIN_FLUSH_S", 1.0),
    "CHECKIN_FLUSH_BATCH": env_int("FLEET_CHECKIN_FLUSH_BATCH", 5000),
    "CHECKIN_FLUSH_MAX_BATCHES": env_int("FLEET_CHECKIN_FLUSH_MAX_BATCHES", 4),
    "CHECKIN_SEQ_TTL_S": env_int("FLEET_CHECKIN_SEQ_TTL_S", 3600),
    "CHECKIN_REDIS_TIMEOUT_S": env_float("FLEET_CHECKIN_REDIS_TIMEOUT_S", 0.5),
    # Alert webhooks (apps/alerts): per-attempt timeout, attempts in all, exponential backoff
    # (BACKOFF_S, then doubling, capped at BACKOFF_MAX_S) on connection errors, timeouts, 429 and 5xx.
    "WEBHOOK_TIMEOUT_S": env_float("FLEET_WEBHOOK_TIMEOUT_S", 10.0),
    "WEBHOOK_MAX_ATTEMPTS": env_int("FLEET_WEBHOOK_MAX_ATTEMPTS", 8),
    "WEBHOOK_BACKOFF_S": env_float("FLEET_WEBHOOK_BACKOFF_S", 15.0),
    "WEBHOOK_BACKOFF_MAX_S": env_float("FLEET_WEBHOOK_BACKOFF_MAX_S", 3600.0),
    # Cohort going silent: checked every CHECK_S; silent when under MIN_SHARE of its devices checked
    # in within INTERVALS poll intervals, or none did for MINUTES. Cohorts under MIN_DEVICES are skipped;
    # at most MAX_COHORTS are checked per run (least recently checked first).
    "COHORT_SILENT_CHECK_S": env_float("FLEET_COHORT_SILENT_CHECK_S", 60.0),
    "COHORT_SILENT_INTERVALS": env_float("FLEET_COHORT_SILENT_INTERVALS", 3.0),
    "COHORT_SILENT_MIN_SHARE": env_float("FLEET_COHORT_SILENT_MIN_SHARE", 0.5),
    "COHORT_SILENT_MINUTES": env_float("FLEET_COHORT_SILENT_MINUTES", 30.0),
    "COHORT_SILENT_MIN_DEVICES": env_int("FLEET_COHORT_SILENT_MIN_DEVICES", 3),
    "COHORT_SILENT_MAX_COHORTS": env_int("FLEET_COHORT_SILENT_MAX_COHORTS", 200),
}

# Health by combination (apps.insights): a 5-minute rollup of health reports (read by id, at most
# MAX_REPORTS per run) and finished deployments (read up to now − LAG_S, at most MAX_SPAN_S per run).
INSIGHTS = {
    "ROLLUP_S": env_float("INSIGHTS_ROLLUP_S", 60.0),
    "ROLLUP_LAG_S": env_float("INSIGHTS_ROLLUP_LAG_S", 30.0),
    "ROLLUP_MAX_SPAN_S": env_float("INSIGHTS_ROLLUP_MAX_SPAN_S", 3600.0),
    "ROLLUP_MAX_REPORTS": env_int("INSIGHTS_ROLLUP_MAX_REPORTS", 500_000),
    "ROLLUP_RETENTION_H": env_int("INSIGHTS_ROLLUP_RETENTION_H", 14 * 24),
}

# Combination governance (apps/governance, docs/governance.md).
GOVERNANCE = {
    "BUDGET_CHECK_S": env_float("FLEET_BUDGET_CHECK_S", 300.0),
    # An acknowledged budget breach is raised again after this many hours if it persists.
    "BUDGET_REALERT_H": env_float("FLEET_BUDGET_REALERT_H", 24.0),
    # The sweep re-checks combinations first seen this recently (catches lost on-commit hooks).
    "SWEEP_LOOKBACK_H": env_float("FLEET_UNCERTIFIED_SWEEP_LOOKBACK_H", 24.0),
}

CELERY_BEAT_SCHEDULE = {
    "fleet-checkin-flush": {
        "task": "apps.fleet.tasks.checkin_flush",
        "schedule": FLEET["CHECKIN_FLUSH_S"],
        "options": {"expires": max(5.0, FLEET["CHECKIN_FLUSH_S"] * 5)},
    },
    "governance-budget-check": {
        "task": "apps.governance.tasks.budget_check",
        "schedule": GOVERNANCE["BUDGET_CHECK_S"],
    },
    "governance-uncertified-sweep": {
        "task": "apps.governance.tasks.uncertified_sweep",
        "schedule": 900.0,
    },
    "rollouts-tick": {
        "task": "apps.rollouts.tasks.engine_tick",
        "schedule": FLEET["ENGINE_TICK_S"],
    },
    "fleet-spread-snapshot": {
        "task": "apps.fleet.tasks.spread_snapshot",
        "schedule": FLEET["SPREAD_SNAPSHOT_S"],
    },
    "insights-health-rollup": {
        "task": "apps.insights.tasks.health_rollup",
        "schedule": INSIGHTS["ROLLUP_S"],
    },
    "fleet-recount-combinations": {
        "task": "apps.fleet.tasks.recount_combinations",
        "schedule": env_float("FLEET_RECOUNT_S", 600.0),
    },
    "fleet-prune-health": {
        "task": "apps.fleet.tasks.prune_health_reports",
        "schedule": 3600.0,
    },
    "alerts-cohort-silence": {
        "task": "apps.alerts.tasks.cohort_silence_scan",
        "schedule": FLEET["COHORT_SILENT_CHECK_S"],
    },
    "alerts-webhook-redeliver-stale": {
        "task": "apps.alerts.tasks.webhook_redeliver_stale",
        "schedule": 300.0,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
