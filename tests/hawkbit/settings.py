"""Test settings with the hawkBit app installed (until fleetweb/settings/base.py lists it)."""

from fleetweb.settings.test import *  # noqa: F403
from fleetweb.settings.test import INSTALLED_APPS

if "apps.hawkbit" not in INSTALLED_APPS:
    INSTALLED_APPS = [*INSTALLED_APPS, "apps.hawkbit"]
