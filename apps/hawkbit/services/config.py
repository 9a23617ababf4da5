"""Per-tenant DDI settings (hawkBit's system configuration)."""

import time

from django.db import transaction

from apps.audit.services import audit_record
from apps.fleet.models import hash_token

from ..models import TenantConfig
from .common import CONFIG_KEYS, INVALID_CONFIG, NOT_FOUND, POLLING_RE, HawkbitError

_CONFIG_CACHE: dict[str, tuple[float, TenantConfig]] = {}
CONFIG_CACHE_S = 5.0


def tenant_config(tenant: str) -> TenantConfig:
    """The tenant's configuration (defaults when never configured), memoised per process for a few seconds.

    The DDI poll is the hot path; auth modes change rarely and a few seconds of staleness
    in other processes is acceptable.
    """
    name = tenant.upper()
    cached = _CONFIG_CACHE.get(name)
    if cached and time.monotonic() - cached[0] < CONFIG_CACHE_S:
        return cached[1]
    config = TenantConfig.objects.filter(tenant=name).first() or TenantConfig(tenant=name)
    _CONFIG_CACHE[name] = (time.monotonic(), config)
    return config


def tenant_config_cache_clear() -> None:
    _CONFIG_CACHE.clear()


def _config_state(config: TenantConfig) -> dict:
    return {
        "pollingTime": config.polling_time,
        "authentication.targettoken.enabled": config.targettoken_enabled,
        "authentication.gatewaytoken.enabled": config.gatewaytoken_enabled,
        "authentication.gatewaytoken.key": "(set)" if config.gatewaytoken_hash else "",
    }


def config_value(config: TenantConfig, key: str):
    if key not in CONFIG_KEYS:
        raise HawkbitError(f"unknown configuration key {key!r}", status=404, code=NOT_FOUND)
    return _config_state(config)[key]


@transaction.atomic
def tenant_config_set(*, tenant: str, key: str, value, actor) -> TenantConfig:
    """Change one system configuration value of a tenant (hawkBit `PUT system/configs/{key}`)."""
    if key not in CONFIG_KEYS:
        raise HawkbitError(f"unknown configuration key {key!r}", status=404, code=NOT_FOUND)
    config, _ = TenantConfig.objects.select_for_update().get_or_create(tenant=tenant.upper())
    before = _config_state(config)
    if key == "pollingTime":
        match = POLLING_RE.match(value if isinstance(value, str) else "")
        if not match or value == "00:00:00":
            raise HawkbitError("pollingTime must be HH:MM:SS and longer than 0", code=INVALID_CONFIG)
        config.polling_time = value
    elif key.endswith(".enabled"):
        if not isinstance(value, bool):
            raise HawkbitError(f"{key} must be true or false", code=INVALID_CONFIG)
        if key == "authentication.targettoken.enabled":
            config.targettoken_enabled = value
        else:
            if value and not config.gatewaytoken_hash:
                raise HawkbitError("set authentication.gatewaytoken.key before enabling gateway tokens",
                                   code=INVALID_CONFIG)
            config.gatewaytoken_enabled = value
    else:
        if not isinstance(value, str) or len(value) < 16:
            raise HawkbitError("the gateway token must be a string of at least 16 characters",
                               code=INVALID_CONFIG)
        config.gatewaytoken_hash = hash_token(value)
    config.updated_by = str(getattr(actor, "username", actor))[:160]
    config.save()
    audit_record(actor=actor, action="hawkbit.config_set", obj=config, before=before, after=_config_state(config))
    # Cleared now for this process and again after commit, so no request in between re-caches the old value.
    tenant_config_cache_clear()
    transaction.on_commit(tenant_config_cache_clear)
    return config
