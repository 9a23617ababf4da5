"""hawkBit fixtures: a DDI device with a known token, modules with real artifact files, assignments."""

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.hawkbit import services
from tests.conftest import PASSWORD

TOKEN = "target-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _fresh_tenant_config():
    services.tenant_config_cache_clear()
    yield
    services.tenant_config_cache_clear()


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings.MEDIA_ROOT


def make_target(uid: str = "hb-dev-1", token: str = TOKEN):
    device, _ = services.target_create(controller_id=uid, actor="tests", security_token=token)
    return device


def make_module(name: str = "os", version: str = "1.0.1", module_type: str = "os", files: dict | None = None):
    release = services.module_create(name=name, version=version, module_type=module_type, actor="tests")
    for filename, content in (files or {}).items():
        services.artifact_upload(release=release, uploaded=SimpleUploadedFile(filename, content), actor="tests")
    return release


def make_set(*releases, name: str = "fleet-image", version: str = "1.0.1"):
    return services.distribution_set_create(name=name, version=version, module_ids=[r.pk for r in releases],
                                            actor="tests")


def assign(dist, *devices, action_type: str = "forced", window=None):
    return services.hawkbit_assign(distribution_set=dist, devices=list(devices), actor="tests",
                                   action_type=action_type, maintenance_window=window)


def ddi_auth(token: str = TOKEN, scheme: str = "TargetToken") -> dict:
    return {"HTTP_AUTHORIZATION": f"{scheme} {token}"}


def basic(user) -> dict:
    encoded = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {encoded}"}
