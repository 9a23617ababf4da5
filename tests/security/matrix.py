"""The permission matrix: every HTTP route and websocket route × every role → the expected answer.

tests/security/test_permission_matrix.py requests each cell and fails for any route that has no
entry here, so whoever adds a route adds its line (copy the closest one).

Keys are the full route as Django prints it (``str(pattern)`` of each level joined), because some
routes (admin's object redirects) have no name. Each entry has:

- ``kwargs``: values for the route's parameters; ``{device}`` is replaced by the uid of a real
  device whose token the "device" role holds, ``{rollout}``/``{cohort}``/``{alert}`` by real rows.
- ``auth``: how people authenticate there: ``"session"`` (login cookie, the default) or
  ``"basic"`` (HTTP Basic with their password: the hawkBit Management API).
- ``device_auth``: the header the "device" role sends: ``"Bearer"`` (native API, default) or
  ``"TargetToken"`` (hawkBit DDI).
- one dict per HTTP method tried, mapping each role to an expectation below. POST cells send an
  empty body: a deny must come before validation. DELETE/PUT cells only assert denies (an allowed
  one would really delete); their allow cells are documentation.

Roles: anonymous (no credentials), device (a valid device token), viewer (on-call), operator, admin.
"""

ROLES = ("anonymous", "device", "viewer", "operator", "admin")

ALLOW = "allow"  # passed the permission check: any status except 401/403/login redirect/5xx
LOGIN = "login"  # 302 to the dashboard login page
ADMIN_LOGIN = "admin_login"  # 302 to the admin site's login page
E401 = 401
E403 = 403
E405 = 405  # method not allowed (checked before the role, harmless: nothing is revealed or done)


def page(role: str) -> dict:
    """A role_required(role) page: anonymous → login, lower roles → 403."""
    rank = {"viewer": 1, "operator": 2, "admin": 3}[role]
    return {
        "anonymous": LOGIN,
        "device": LOGIN,  # a device token is not a login
        "viewer": ALLOW if rank <= 1 else E403,
        "operator": ALLOW if rank <= 2 else E403,
        "admin": ALLOW,
    }


def everyone(expectation) -> dict:
    return dict.fromkeys(ROLES, expectation)


def device_only() -> dict:
    """Device API: only the device's own token; people (session or not) get 401."""
    return {"anonymous": E401, "device": ALLOW, "viewer": E401, "operator": E401, "admin": E401}


def basic(role: str) -> dict:
    """hawkBit Management API method needing `role`, over HTTP Basic."""
    rank = {"viewer": 1, "operator": 2, "admin": 3}[role]
    return {
        "anonymous": E401,
        "device": E401,
        "viewer": ALLOW if rank <= 1 else E403,
        "operator": ALLOW if rank <= 2 else E403,
        "admin": ALLOW,
    }


DEV = {"device_id": "{device}"}
DDI = {"tenant": "DEFAULT", "controller_id": "{device}"}
PERSON_METRICS = {"anonymous": E401, "device": E401, "viewer": ALLOW, "operator": ALLOW, "admin": ALLOW}

ROUTES: dict[str, dict] = {
    # --- operations -----------------------------------------------------------------------
    "healthz": {"GET": everyone(ALLOW)},  # load balancers probe it; reveals nothing
    "metrics": {"GET": PERSON_METRICS},  # or the FLEET_METRICS_TOKEN bearer (tested in tests/ops)
    # --- login ------------------------------------------------------------------------------
    "accounts/login/": {"GET": everyone(ALLOW)},
    # Logging out works for anyone and always lands on the login page.
    "accounts/logout/": {"GET": everyone(E405), "POST": everyone(LOGIN)},
    # --- native device API ------------------------------------------------------------------
    "api/v1/openapi.json": {"GET": everyone(ALLOW)},  # the public contract
    # Authenticated by the enrollment secret in the body; an empty body is a 400 for all.
    "api/v1/enroll": {"GET": everyone(E405), "POST": everyone(ALLOW)},
    "api/v1/devices/<str:device_id>/checkin": {"kwargs": DEV, "POST": device_only()},
    "api/v1/devices/<str:device_id>/state": {"kwargs": DEV, "GET": device_only()},
    "api/v1/devices/<str:device_id>/deployments/<int:deployment_id>/feedback": {
        "kwargs": {**DEV, "deployment_id": 999999}, "POST": device_only(),
    },
    "api/v1/devices/<str:device_id>/artifacts/<int:artifact_id>": {
        "kwargs": {**DEV, "artifact_id": 999999}, "GET": device_only(),
    },
    # --- alerts ------------------------------------------------------------------------------
    "alerts/<int:pk>/ack/": {"kwargs": {"pk": "{alert}"}, "GET": everyone(E405), "POST": page("viewer")},
    "alerts/webhooks/": {"GET": page("admin")},
    "alerts/webhooks/new/": {"GET": page("admin"), "POST": page("admin")},
    "alerts/webhooks/deliveries/": {"GET": page("admin")},
    "alerts/webhooks/<int:pk>/": {"kwargs": {"pk": 999999}, "GET": page("admin"), "POST": page("admin")},
    # --- governance (certified combinations, budgets): viewers read, admins change -----------
    "governance/": {"GET": page("viewer")},
    "governance/certified/": {"GET": page("viewer"), "POST": page("admin")},
    "governance/certified/<int:pk>/delete/": {"kwargs": {"pk": 999999}, "GET": everyone(E405), "POST": page("admin")},
    "governance/budgets/": {"GET": page("viewer"), "POST": page("admin")},
    "governance/budgets/<int:pk>/delete/": {"kwargs": {"pk": 999999}, "GET": everyone(E405), "POST": page("admin")},
    "governance/plan-preview/": {"GET": page("operator")},
    # --- insights (health by combination, convergence): viewers read, operators follow up ----
    "insights/health/": {"GET": page("viewer"), "POST": everyone(E405)},
    "insights/health.json": {"GET": page("viewer")},
    "insights/spread/": {"GET": page("viewer")},
    "insights/spread.json": {"GET": page("viewer")},
    "insights/spread.csv": {"GET": page("viewer")},
    "insights/rollouts/<int:pk>/stragglers/": {"kwargs": {"pk": "{rollout}"}, "GET": page("viewer")},
    "insights/rollouts/<int:pk>/stragglers.csv": {"kwargs": {"pk": "{rollout}"}, "GET": page("viewer")},
    "insights/rollouts/<int:pk>/follow-up/": {
        "kwargs": {"pk": "{rollout}"}, "GET": everyone(E405), "POST": page("operator"),
    },
    # --- hawkBit Management API (HTTP Basic) -----------------------------------------------
    "rest/v1/system/configs/<str:key>": {
        "auth": "basic", "kwargs": {"key": "pollingTime"}, "GET": basic("viewer"), "PUT": basic("admin"),
    },
    "rest/v1/targets": {"auth": "basic", "POST": basic("admin")},
    "rest/v1/targets/<str:controller_id>": {
        "auth": "basic", "kwargs": {"controller_id": "{device}"}, "GET": basic("viewer"), "DELETE": basic("admin"),
    },
    "rest/v1/targets/<str:controller_id>/attributes": {
        "auth": "basic", "kwargs": {"controller_id": "{device}"}, "GET": basic("viewer"),
    },
    "rest/v1/targets/<str:controller_id>/actions": {
        "auth": "basic", "kwargs": {"controller_id": "{device}"}, "GET": basic("viewer"),
    },
    "rest/v1/targets/<str:controller_id>/actions/<int:action_id>": {
        "auth": "basic", "kwargs": {"controller_id": "{device}", "action_id": 999999},
        "GET": basic("viewer"), "DELETE": basic("operator"),
    },
    "rest/v1/targets/<str:controller_id>/actions/<int:action_id>/status": {
        "auth": "basic", "kwargs": {"controller_id": "{device}", "action_id": 999999}, "GET": basic("viewer"),
    },
    "rest/v1/softwaremodules": {"auth": "basic", "POST": basic("operator")},
    "rest/v1/softwaremodules/<int:module_id>": {
        "auth": "basic", "kwargs": {"module_id": 999999}, "GET": basic("viewer"), "DELETE": basic("operator"),
    },
    "rest/v1/softwaremodules/<int:module_id>/artifacts": {
        "auth": "basic", "kwargs": {"module_id": 999999}, "GET": basic("viewer"), "POST": basic("operator"),
    },
    "rest/v1/distributionsets": {"auth": "basic", "POST": basic("operator")},
    "rest/v1/distributionsets/<int:set_id>": {
        "auth": "basic", "kwargs": {"set_id": 999999}, "GET": basic("viewer"), "DELETE": basic("operator"),
    },
    "rest/v1/distributionsets/<int:set_id>/assignedTargets": {
        "auth": "basic", "kwargs": {"set_id": 999999}, "POST": basic("operator"),
    },
    # --- hawkBit DDI (TargetToken of the controller in the URL) ---------------------------
    "<str:tenant>/controller/v1/<str:controller_id>": {
        "device_auth": "TargetToken", "kwargs": DDI, "GET": device_only(),
    },
    "<str:tenant>/controller/v1/<str:controller_id>/deploymentBase/<int:action_id>": {
        "device_auth": "TargetToken", "kwargs": {**DDI, "action_id": 999999}, "GET": device_only(),
    },
    "<str:tenant>/controller/v1/<str:controller_id>/deploymentBase/<int:action_id>/feedback": {
        "device_auth": "TargetToken", "kwargs": {**DDI, "action_id": 999999}, "POST": device_only(),
    },
    "<str:tenant>/controller/v1/<str:controller_id>/cancelAction/<int:action_id>": {
        "device_auth": "TargetToken", "kwargs": {**DDI, "action_id": 999999}, "GET": device_only(),
    },
    "<str:tenant>/controller/v1/<str:controller_id>/cancelAction/<int:action_id>/feedback": {
        "device_auth": "TargetToken", "kwargs": {**DDI, "action_id": 999999}, "POST": device_only(),
    },
    "<str:tenant>/controller/v1/<str:controller_id>/installedBase/<int:action_id>": {
        "device_auth": "TargetToken", "kwargs": {**DDI, "action_id": 999999}, "GET": device_only(),
    },
    "<str:tenant>/controller/v1/<str:controller_id>/configData": {
        "device_auth": "TargetToken", "kwargs": DDI, "PUT": device_only(),
    },
    "<str:tenant>/controller/v1/<str:controller_id>/softwaremodules/<int:module_id>/artifacts/<str:filename>": {
        "device_auth": "TargetToken", "kwargs": {**DDI, "module_id": 999999, "filename": "x.bin"},
        "GET": device_only(),
    },
    # --- dashboard --------------------------------------------------------------------------
    "": {"GET": page("viewer")},
    "overview.json": {"GET": page("viewer")},
    "spread.json": {"GET": page("viewer")},
    "wall/": {"GET": page("viewer")},
    "devices/": {"GET": page("viewer")},
    "devices/<str:uid>/": {"kwargs": {"uid": "{device}"}, "GET": page("viewer")},
    "cohorts/": {"GET": page("viewer")},
    "cohorts/new/": {"GET": page("admin"), "POST": page("admin")},
    "cohorts/preview.json": {"GET": page("admin")},
    "cohorts/<int:pk>/": {"kwargs": {"pk": "{cohort}"}, "GET": page("viewer")},
    "cohorts/<int:pk>/edit/": {"kwargs": {"pk": "{cohort}"}, "GET": page("admin"), "POST": page("admin")},
    "audit/": {"GET": page("viewer")},
    "rollouts/": {"GET": page("viewer")},
    "rollouts/new/": {"GET": page("operator"), "POST": page("operator")},
    "rollouts/wave-preview.json": {"GET": page("operator")},
    # Freezing the fleet is an on-call (viewer) power on purpose: stopping is always allowed.
    "rollouts/freeze/": {"GET": everyone(E405), "POST": page("viewer")},
    "rollouts/<int:pk>/": {"kwargs": {"pk": "{rollout}"}, "GET": page("viewer")},
    "rollouts/<int:pk>/health.json": {"kwargs": {"pk": "{rollout}"}, "GET": page("viewer")},
    "rollouts/<int:pk>/action/": {"kwargs": {"pk": "{rollout}"}, "GET": everyone(E405), "POST": page("operator")},
}

# The Django admin site: every route under this prefix is covered by one rule (is_staff plus
# model permissions, see apps/accounts/roles.py GROUP_PERMISSIONS). The test requests every
# argument-free admin route (index, app lists, changelists, add pages) for each role.
ADMIN_PREFIX = "admin/"
ADMIN_SITE = {
    "anonymous": ADMIN_LOGIN,
    "device": ADMIN_LOGIN,
    "viewer": ADMIN_LOGIN,  # not staff
    "operator": ADMIN_LOGIN,  # not staff
    "admin": "staff",  # allowed, or 403 on a model the admin role holds no permission for
}

# Websocket routes (apps/live/routing.py) → role → "accept" or the close code.
ACCEPT = "accept"
WS_VIEWER = {"anonymous": 4401, "device": 4401, "viewer": ACCEPT, "operator": ACCEPT, "admin": ACCEPT}
WEBSOCKETS: dict[str, dict] = {
    "ws/fleet/": {"GET": WS_VIEWER},
    "ws/rollouts/": {"GET": WS_VIEWER},
    "ws/rollouts/<int:rollout_id>/": {"kwargs": {"rollout_id": "{rollout}"}, "GET": WS_VIEWER},
    "ws/wall/": {"GET": WS_VIEWER},
}
