"""Shared by the hawkBit services: the error type and hawkBit's constants."""

import re

DEFAULT_TENANT = "DEFAULT"
CONFIG_KEYS = (
    "pollingTime",
    "authentication.targettoken.enabled",
    "authentication.gatewaytoken.enabled",
    "authentication.gatewaytoken.key",
)
POLLING_RE = re.compile(r"^([0-9]{2}):([0-5][0-9]):([0-5][0-9])$")
COMPONENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,47}$")
# hawkBit's error codes (its spelling), as its tools expect them.
NOT_FOUND = "hawkbit.server.error.repo.entitiyNotFound"
ALREADY_EXISTS = "hawkbit.server.error.repo.entitiyAlreadyExists"
INVALID_CONFIG = "hawkbit.server.error.configValueInvalid"
# hawkBit software module types that mean "the OS"; everything else is an application.
OS_MODULE_TYPES = {"os"}


class HawkbitError(Exception):
    """A request the hawkBit API refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400, code: str = "hawkbit.server.error.request"):
        super().__init__(message)
        self.status = status
        self.code = code
