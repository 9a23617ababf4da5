"""WSGI entry point: the device API is served from here by gunicorn sync workers."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleetweb.settings.dev")
application = get_wsgi_application()
