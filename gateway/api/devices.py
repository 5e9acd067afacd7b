"""``/api/v2/me/devices``: device reads (§2.2, §1.7), device operations (§3.3, §3.4), Dial (§3.5.1)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.telephony.agent_states import STATE_BY_OPERATION

from . import shapes
from .context import ApiContext, collection, current_user
from .params import Operation, OperationTable, Param, destination, json_object, read_json_object, text
from .responses import ok

__all__ = ["AGENT_STATE_PARAMS", "DEVICE_OPERATIONS", "DIAL_OPERATIONS", "DeviceEndpoints"]

#: §3.2 parameters; ``workmode`` is the documented spelling, ``workMode`` the echoed one (§6 #24);
#: ``reason``/``reasonCode`` per §6 #20. ``wrapUpTime`` is accepted and not used yet.
AGENT_STATE_PARAMS = (
    Param("workMode", text, aliases=("workmode",)),
    Param("reason", text, aliases=("reasonCode",)),
    Param("wrapUpTime", text),
)

_DEVICE_ONLY = (
    Operation("DoNotDisturbOn"),
    Operation("DoNotDisturbOff"),
    Operation("ForwardCallsOn", (Param("destination", destination, required=True),)),
    Operation("ForwardCallsOff"),
)

#: POST /api/v2/me/devices/{id}. Agent-state operations are accepted here too (§6 #18: several
#: doc pages give the device URL for them).
DEVICE_OPERATIONS = OperationTable("/api/v2/me/devices/{id}", [
    *_DEVICE_ONLY,
    *(Operation(name, AGENT_STATE_PARAMS) for name in STATE_BY_OPERATION),
])

DIAL_OPERATIONS = OperationTable("/api/v2/me/devices/{id}/calls", [
    Operation("Dial", (
        Param("destination", destination, required=True),
        Param("userData", json_object),
        Param("location", text),
        Param("outboundCallerId", text),
    )),
])


class DeviceEndpoints:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def list(self, request: Request) -> Response:
        """``GET /api/v2/me/devices[?fields=*]``."""
        base = self.ctx.base_url(request)
        devices = self.ctx.telephony.device_views(current_user(request))
        return collection(request, "devices", [shapes.device_resource(d, base) for d in devices])

    async def get(self, request: Request) -> Response:
        """``GET /api/v2/me/devices/{id}`` and ``/api/v2/devices/{id}`` (own devices only)."""
        device = self.ctx.telephony.device_view(current_user(request), request.path_params["device_id"])
        return ok(device=shapes.device_resource(device, self.ctx.base_url(request)))

    async def operate(self, request: Request) -> Response:
        user = current_user(request)
        device_id = request.path_params["device_id"]
        op, params = DEVICE_OPERATIONS.resolve(await read_json_object(request))
        tel = self.ctx.telephony
        if op.name in STATE_BY_OPERATION:
            tel.device_view(user, device_id)  # NotFound for a device that is not the user's
            await tel.set_agent_state(user, op.name, work_mode=params.get("workMode"), reason=params.get("reason"))
        else:
            await tel.device_operation(user, device_id, op.name, params)
        return ok()

    async def dial(self, request: Request) -> Response:
        """``POST /api/v2/me/devices/{id}/calls`` with Dial (§3.5.1)."""
        user = current_user(request)
        _, params = DIAL_OPERATIONS.resolve(await read_json_object(request))
        await self.ctx.telephony.dial(user, request.path_params["device_id"], params["destination"],
                                      params.get("userData"))
        return ok()
