"""Domain errors. The API maps each kind to a GWS statusCode and HTTP status (spec §1.5).

Raising any of these means *nothing was changed* (spec §1.5: "If a request fails, the server
must not have modified contact-center state").
"""

from __future__ import annotations

__all__ = [
    "AlreadyInUse",
    "InvalidParameter",
    "InvalidState",
    "MissingParameter",
    "NotFound",
    "PermissionDenied",
    "ServiceUnavailable",
    "TelephonyError",
]


class TelephonyError(Exception):
    """Base class; ``message`` is shown to the API client as statusMessage."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingParameter(TelephonyError):
    """A mandatory parameter is absent (statusCode 1)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Missing required parameter '{name}'")
        self.name = name


class InvalidParameter(TelephonyError):
    """A parameter has a bad type or value (statusCode 10 — input validation error)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"Invalid parameter '{name}': {why}")
        self.name = name


class InvalidState(TelephonyError):
    """The operation is not valid in the resource's current state (statusCode 2)."""


class NotFound(TelephonyError):
    """No such device/call for this user (statusCode 6)."""


class PermissionDenied(TelephonyError):
    """The user lacks the role for this operation (statusCode 5)."""


class AlreadyInUse(TelephonyError):
    """The resource is taken by someone else (statusCode 19)."""


class ServiceUnavailable(TelephonyError):
    """The voice service (SIP side) cannot take the request now (statusCode 4, HTTP 503)."""
