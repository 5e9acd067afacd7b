"""``/api/v2/me/calls``: call reads (§2.3, §1.7) and call operations (§3.5, §3.9)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from . import shapes
from .context import ApiContext, collection, current_user
from .params import Operation, OperationTable, Param, number_text, read_json_object, text
from .responses import ok

__all__ = ["CALL_OPERATIONS", "CallEndpoints"]

#: POST /api/v2/me/calls/{id}: operation -> parameters; every one goes to
#: ``Telephony.call_operation`` under its canonical name (aliases per §0 and §3.5.7).
CALL_OPERATIONS = OperationTable("/api/v2/me/calls/{id}", [
    Operation("Answer"),
    Operation("Reject"),
    Operation("Hold"),
    Operation("Retrieve"),
    Operation("Hangup"),
    Operation("SendDtmf", (Param("digits", number_text, required=True, aliases=("dtmfDigits",)),)),
    Operation("MuteCall"),
    Operation("UnmuteCall", aliases=("UnMuteCall",)),
    Operation("SetCallDisposition", (
        Param("disposition", text, required=True),
        Param("dispositionKey", text),
        Param("callUri", text),
        Param("callUuid", text),
    )),
    Operation("StartCallRecording"),
    Operation("PauseCallRecording"),
    Operation("ResumeCallRecording"),
    Operation("StopCallRecording"),
])


class CallEndpoints:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def list(self, request: Request) -> Response:
        """``GET /api/v2/me/calls[?fields=*]``: active calls only (§2.5)."""
        base = self.ctx.base_url(request)
        calls = self.ctx.telephony.call_views(current_user(request))
        return collection(request, "calls", [shapes.call_resource(c, base) for c in calls])

    async def get(self, request: Request) -> Response:
        """``GET /api/v2/me/calls/{id}`` and ``/api/v2/calls/{id}`` (own calls only, §6 #23)."""
        call = self.ctx.telephony.call_view(current_user(request), request.path_params["call_id"])
        return ok(call=shapes.call_resource(call, self.ctx.base_url(request)))

    async def operate(self, request: Request) -> Response:
        user = current_user(request)
        op, params = CALL_OPERATIONS.resolve(await read_json_object(request))
        await self.ctx.telephony.call_operation(user, request.path_params["call_id"], op.name, params)
        return ok()
