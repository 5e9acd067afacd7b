"""``/api/v2/me/channels``: the voice channel's agent state (§2.1 QueryAgentState, §3.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.telephony.agent_states import STATE_BY_OPERATION

from . import shapes
from .context import ApiContext, current_user
from .devices import AGENT_STATE_PARAMS
from .errors import GwsError
from .params import Operation, OperationTable, read_json_object
from .responses import ok

__all__ = ["AGENT_STATE_OPERATIONS", "ChannelEndpoints"]

#: POST /api/v2/me/channels/voice: the five system states (§3.2)
AGENT_STATE_OPERATIONS = OperationTable(
    "/api/v2/me/channels/voice", [Operation(name, AGENT_STATE_PARAMS) for name in STATE_BY_OPERATION]
)

VOICE = "voice"


def _voice_only(request: Request) -> None:
    channel = request.path_params["channel"]
    if channel != VOICE:
        raise GwsError(6, 404, f"Channel '{channel}' not found; this gateway serves only 'voice'")


class ChannelEndpoints:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def _voice(self, request: Request) -> dict[str, object]:
        return shapes.voice_channel(self.ctx.telephony.voice_channel_state(current_user(request)))

    async def list(self, request: Request) -> Response:
        """``GET /api/v2/me/channels`` -> ``{"statusCode":0,"channels":[{"channel":"voice",...}]}``."""
        return ok(channels=[self._voice(request)])

    async def get(self, request: Request) -> Response:
        """``GET /api/v2/me/channels/voice`` -> ``{"statusCode":0,"channel":{...}}``."""
        _voice_only(request)
        return ok(channel=self._voice(request))

    async def operate(self, request: Request) -> Response:
        """Ready / NotReady / AuxWork / AfterCallWork / Offline."""
        _voice_only(request)
        op, params = AGENT_STATE_OPERATIONS.resolve(await read_json_object(request))
        await self.ctx.telephony.set_agent_state(current_user(request), op.name, work_mode=params.get("workMode"),
                                                 reason=params.get("reason"))
        return ok()
