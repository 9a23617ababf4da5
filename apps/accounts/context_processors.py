from . import roles as role_rules


def roles(request):
    user = getattr(request, "user", None)
    role = role_rules.user_role(user)
    return {
        "fleet_role": role,
        "is_operator": role is not None and role_rules.has_role(user, role_rules.OPERATOR),
        "is_admin": role is not None and role_rules.has_role(user, role_rules.ADMIN),
    }
