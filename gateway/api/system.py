"""Read-only service resources real clients call at start-up (§0.1.14)."""

from __future__ import annotations

from importlib import metadata

from starlette.requests import Request
from starlette.responses import Response

from gateway.telephony.agent_states import AGENT_STATES, STATE_BY_OPERATION

from . import shapes
from .responses import ok

__all__ = ["GWS_VERSION", "agent_states", "version"]

#: The GWS release whose wire behaviour §0.1 records; clients gate features on it.
GWS_VERSION = "8.5.202.96"


def _gateway_version() -> str:
    try:
        return metadata.version("voice-gateway")
    except metadata.PackageNotFoundError:
        return "0+unknown"


async def agent_states(request: Request) -> Response:
    """``GET /api/v2/settings/agent-states``: the system states, in operation order."""
    return ok(settings=[shapes.agent_state_setting(AGENT_STATES[state]) for state in STATE_BY_OPERATION.values()])


async def version(request: Request) -> Response:
    """``GET /api/v2/diagnostics/version``."""
    return ok(version=GWS_VERSION, gatewayVersion=_gateway_version())
