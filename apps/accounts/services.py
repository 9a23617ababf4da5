from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from apps.audit.services import audit_record

from . import roles


@transaction.atomic
def roles_ensure() -> dict[str, Group]:
    """Create the role groups and give each its permissions; safe to run again."""
    groups = {}
    for name in roles.ORDER:
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for dotted in roles.permissions_for(name):
            app_label, codename = dotted.split(".", 1)
            perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if perm is not None:
                wanted.append(perm)
        group.permissions.set(wanted)
        groups[name] = group
    return groups


@transaction.atomic
def user_create(*, username: str, password: str, role: str, actor=None, email: str = ""):
    if role not in roles.ORDER:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(roles.ORDER)}")
    groups = roles_ensure()
    user = get_user_model().objects.create_user(
        username=username, password=password, email=email, is_staff=(role == roles.ADMIN)
    )
    user.groups.add(groups[role])
    audit_record(actor=actor, action="user.create", obj=user, after={"username": username, "role": role})
    return user
