"""The test suite: PostgreSQL and Redis from the environment (./fleet test sets them)."""

from .base import *  # noqa: F403
from .base import FLEET
from .env import env_bool, env_str

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES["default"]["KEY_PREFIX"] = env_str("CACHE_KEY_PREFIX", "fleetweb-test")  # noqa: F405
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = env_str("CHANNELS_PREFIX", "fleetweb-test")  # noqa: F405
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "fleetweb-test")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
FLEET["POLL_INTERVAL_S"] = 60
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# Tests drive check-ins right after installs; the grace has its own test.
FLEET["FALLBACK_GRACE_S"] = 0.0
# Check-ins are written synchronously in most tests; tests of the Redis buffer turn it on.
FLEET["CHECKIN_BUFFER"] = env_bool("FLEET_CHECKIN_BUFFER", False)
# Tests hammer the device API from one address; the rate limit tests switch the limits on.
FLEET["RATE_LIMIT_DEVICE_PER_MIN"] = 0
FLEET["RATE_LIMIT_IP_PER_MIN"] = 0
# Failed logins would pile up in the shared cache across runs; the throttling tests switch it on.
FLEET["LOGIN_FAILURES_MAX"] = 0
