"""The ASGI app the real-client tests serve with uvicorn: fleetweb plus the hawkBit URLs."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.hawkbit.settings")

from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
settings.ROOT_URLCONF = "tests.hawkbit.urls"
