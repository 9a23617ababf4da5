"""Roles are Django groups, ordered: viewer (on-call) < operator < admin.

A user's role is the highest group they belong to; superusers are admins.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ORDER = (VIEWER, OPERATOR, ADMIN)
RANK = {name: rank for rank, name in enumerate(ORDER, start=1)}

# Model permissions each role's group holds (admin site and has_perm checks).
GROUP_PERMISSIONS = {
    VIEWER: [
        "fleet.view_device",
        "fleet.view_component",
        "fleet.view_release",
        "fleet.view_artifact",
        "fleet.view_combination",
        "fleet.view_cohort",
        "rollouts.view_rollout",
        "rollouts.view_wave",
        "rollouts.view_deployment",
        "audit.view_auditentry",
    ],
    OPERATOR: [
        "fleet.add_release",
        "fleet.change_release",
        "fleet.add_artifact",
        "fleet.change_artifact",
        "rollouts.add_rollout",
        "rollouts.change_rollout",
        "rollouts.add_wave",
        "rollouts.change_wave",
    ],
    ADMIN: [
        "fleet.add_device",
        "fleet.change_device",
        "fleet.delete_device",
        "fleet.add_component",
        "fleet.change_component",
        "fleet.add_cohort",
        "fleet.change_cohort",
        "fleet.delete_cohort",
        "fleet.view_enrollmentsecret",
        "fleet.add_enrollmentsecret",
        "fleet.change_enrollmentsecret",
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
    ],
}


def permissions_for(role: str) -> list[str]:
    """A role holds its own permissions and those of every lower role."""
    perms: list[str] = []
    for name in ORDER[: RANK[role]]:
        perms.extend(GROUP_PERMISSIONS[name])
    return perms


def user_role(user) -> str | None:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    cached = getattr(user, "_fleet_role", "unset")
    if cached != "unset":
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = None
    for name in ORDER:
        if name in names:
            role = name
    user._fleet_role = role
    return role


def has_role(user, role: str) -> bool:
    current = user_role(user)
    return current is not None and RANK[current] >= RANK[role]


def role_required(role: str):
    """View decorator: anonymous users go to the login page, too-low roles get 403."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(f"this needs the {role} role")
            return view(request, *args, **kwargs)

        wrapper.required_role = role
        return wrapper

    return decorator
