"""Fixtures for the security tests: real rows every route of the permission matrix can point at."""

import pytest

from apps.alerts.models import Alert
from apps.hawkbit import services as hawkbit_services
from apps.rollouts.models import Rollout
from tests.factories import CohortFactory, DeviceFactory

DEVICE_TOKEN = "matrix-device-token-0123456789"


@pytest.fixture
def world(db, admin_user, operator_user, viewer_user):
    hawkbit_services.tenant_config_cache_clear()
    device = DeviceFactory(token=DEVICE_TOKEN)
    rollout = Rollout.objects.create(name="matrix rollout")
    cohort = CohortFactory()
    alert = Alert.objects.create(kind=Alert.Kind.OTHER, severity=Alert.Severity.INFO, title="matrix alert")
    return {
        "objects": {"device": device.uid, "rollout": rollout.pk, "cohort": cohort.pk, "alert": alert.pk},
        "users": {"viewer": viewer_user, "operator": operator_user, "admin": admin_user},
    }
