"""Shared checks for fuzz tests: no 5xx, every 4xx JSON naming the problem, no writes on rejection."""

import json

from apps.audit.models import AuditEntry
from apps.fleet.models import Device, HealthReport
from apps.rollouts.models import Deployment

FUZZ_SETTINGS = {"derandomize": True, "deadline": None, "database": None}


def row_counts() -> dict[str, int]:
    return {
        "devices": Device.objects.count(),
        "health": HealthReport.objects.count(),
        "deployments": Deployment.objects.count(),
        "audit": AuditEntry.objects.count(),
    }


def device_rows(device) -> dict:
    row = Device.objects.filter(pk=device.pk).values().first()
    row.pop("last_seen", None)
    return row


def assert_clean_rejection(status: int, content: bytes, *, needs_field: bool = True, key: str = "field") -> dict:
    """A 4xx with a JSON object body naming what was wrong."""
    assert 400 <= status < 500, status
    body = json.loads(content)
    assert isinstance(body, dict), body
    if needs_field:
        assert body.get(key), body
    return body
