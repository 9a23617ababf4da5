"""State changes made through the hawkBit APIs. Each is keyword-only, atomic and audited.

Split by sub-domain; import from `apps.hawkbit.services`.
"""

from .actions import (
    Feedback,
    MaintenanceWindow,
    action_cancel,
    action_feedback,
    action_retrieved,
    cancel_feedback,
    hawkbit_assign,
    poll_seen,
    settle_due,
    status_add,
)
from .catalog import (
    artifact_upload,
    component_name_for,
    distribution_set_create,
    distribution_set_delete,
    module_create,
    module_delete,
    target_attributes_set,
    target_autoregister,
    target_create,
    target_delete,
)
from .common import ALREADY_EXISTS, CONFIG_KEYS, DEFAULT_TENANT, INVALID_CONFIG, NOT_FOUND, HawkbitError
from .config import config_value, tenant_config, tenant_config_cache_clear, tenant_config_set

__all__ = [
    "ALREADY_EXISTS", "CONFIG_KEYS", "DEFAULT_TENANT", "INVALID_CONFIG", "NOT_FOUND", "Feedback", "HawkbitError",
    "MaintenanceWindow", "action_cancel", "action_feedback", "action_retrieved", "artifact_upload", "cancel_feedback",
    "component_name_for", "config_value", "distribution_set_create", "distribution_set_delete", "hawkbit_assign",
    "module_create", "module_delete", "poll_seen", "settle_due", "status_add", "target_attributes_set",
    "target_autoregister", "target_create", "target_delete", "tenant_config", "tenant_config_cache_clear",
    "tenant_config_set",
]
