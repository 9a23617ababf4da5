"""Reads for the pages and the live surfaces, split by page; import from `apps.dashboard.selectors`."""

from .audit import AuditQuery, audit_filter_choices, audit_search
from .cohorts import CohortPreview, cohort_list, cohort_preview
from .devices import DeviceQuery, device_history, device_search
from .fleet import fleet_summary, online_cutoff, spread_series
from .rollouts import rollout_actions, rollout_controls, rollout_snapshot, rollouts_snapshot, wall_snapshot

__all__ = [
    "AuditQuery",
    "CohortPreview",
    "DeviceQuery",
    "audit_filter_choices",
    "audit_search",
    "cohort_list",
    "cohort_preview",
    "device_history",
    "device_search",
    "fleet_summary",
    "online_cutoff",
    "rollout_actions",
    "rollout_controls",
    "rollout_snapshot",
    "rollouts_snapshot",
    "spread_series",
    "wall_snapshot",
]
