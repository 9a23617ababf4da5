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
    "apps.simulator",
    "apps.ops",
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
}

CELERY_BEAT_SCHEDULE = {
    "rollouts-tick": {
        "task": "apps.rollouts.tasks.engine_tick",
        "schedule": FLEET["ENGINE_TICK_S"],
    },
    "fleet-spread-snapshot": {
        "task": "apps.fleet.tasks.spread_snapshot",
        "schedule": FLEET["SPREAD_SNAPSHOT_S"],
    },
    "fleet-recount-combinations": {
        "task": "apps.fleet.tasks.recount_combinations",
        "schedule": env_float("FLEET_RECOUNT_S", 600.0),
    },
    "fleet-prune-health": {
        "task": "apps.fleet.tasks.prune_health_reports",
        "schedule": 3600.0,
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
