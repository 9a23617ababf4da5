"""Rollout services: every state change of rollouts, waves, deployments and freezes goes through here.

Split by sub-domain; import from `apps.rollouts.services`.
"""

from .common import RolloutError
from .deployments import FeedbackError, deployment_cancel, deployment_feedback, deployments_on_checkin
from .freeze import (
    fleet_freeze,
    fleet_unfreeze,
    maintenance_window_create,
    maintenance_window_delete,
    rollout_unfreeze,
)
from .lifecycle import (
    rollout_abort,
    rollout_approve,
    rollout_create,
    rollout_halt,
    rollout_pause,
    rollout_resume,
    rollout_rollback,
    rollout_start,
    rollout_submit,
)

__all__ = [
    "FeedbackError",
    "RolloutError",
    "deployment_cancel",
    "deployment_feedback",
    "deployments_on_checkin",
    "fleet_freeze",
    "fleet_unfreeze",
    "maintenance_window_create",
    "maintenance_window_delete",
    "rollout_abort",
    "rollout_approve",
    "rollout_create",
    "rollout_halt",
    "rollout_pause",
    "rollout_resume",
    "rollout_rollback",
    "rollout_start",
    "rollout_submit",
    "rollout_unfreeze",
]
