"""Fault tests reuse the rollout fixtures (a small catalogue: os 39.1 → 40.0)."""

from tests.hawkbit.conftest import _fresh_tenant_config, media_root  # noqa: F401 - fixtures
from tests.rollouts.conftest import new_os, old_os, os_component  # noqa: F401 - fixtures
