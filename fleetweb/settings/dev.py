"""The embedded first run (./fleet demo): SQLite unless DATABASE_URL says otherwise."""

from .base import *  # noqa: F403
from .env import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)

# uvicorn serves the pages in the embedded run: WhiteNoise finds static files without collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
