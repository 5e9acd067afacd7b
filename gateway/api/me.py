"""``/api/v2/me``: the user resource (§2.1) and the contact-center session (§3.1)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.telephony.errors import InvalidParameter, TelephonyError

from . import shapes
from .auth import SessionStore
from .context import ApiContext, current_identity, current_user
from .errors import GwsError, from_telephony_error
from .params import Operation, OperationTable, Param, invalid, read_json_object, string_list
from .responses import GwsResponse, ok

if TYPE_CHECKING:  # the facade's module pulls in SIP and media; the API needs only its type
    from gateway.telephony.service import ChannelResult

__all__ = ["SESSION_OPERATIONS", "SUBRESOURCES", "MeEndpoints", "parse_subresources"]

log = logging.getLogger(__name__)

SESSION_OPERATIONS = OperationTable("/api/v2/me", [
    Operation("StartContactCenterSession", (Param("channels", string_list, required=True),)),
    Operation("EndContactCenterSession"),
])

#: §2.1 [INF] sub-resources embedded by ``?subresources=`` (``*`` = all of them)
SUBRESOURCES = ("devices", "calls", "channels", "settings", "features")


def parse_subresources(value: str | None) -> set[str]:
    """Names requested in ``subresources`` (comma list or ``*``); unknown names are ignored
    (clients ask for ``skills`` and the like, which a voice gateway does not have)."""
    if not value:
        return set()
    names = {part.strip() for part in value.split(",") if part.strip()}
    return set(SUBRESOURCES) if "*" in names else names & set(SUBRESOURCES)


def _channel_failure(result: ChannelResult) -> dict[str, Any]:
    error = result.error
    if isinstance(error, InvalidParameter):
        # §0.1.5: a channel the gateway does not serve is reported with statusCode 4, as real GWS does.
        code, message = 4, error.message
    elif isinstance(error, TelephonyError):
        gws = from_telephony_error(error)
        code, message = gws.status_code, gws.message
    else:
        log.error("channel %r failed unexpectedly", result.channel, exc_info=error)
        code, message = 4, "Internal error"
    return {"statusCode": code, "statusMessage": message, "channel": result.channel}


class MeEndpoints:
    def __init__(self, ctx: ApiContext, sessions: SessionStore) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self._operations = {
            "StartContactCenterSession": self._start_session,
            "EndContactCenterSession": self._end_session,
        }

    async def get(self, request: Request) -> Response:
        """``GET /api/v2/me[?subresources=...]`` -> ``{"statusCode":0,"user":{...}}`` (§2.5, §0.1.14)."""
        tel = self.ctx.telephony
        user = current_user(request)
        base = self.ctx.base_url(request)
        view = tel.user_view(user)
        body = shapes.user_resource(view, base)
        wanted = parse_subresources(request.query_params.get("subresources"))
        if "devices" in wanted:
            body["devices"] = [shapes.device_resource(d, base) for d in tel.device_views(user)]
        if "calls" in wanted:
            body["calls"] = [shapes.call_resource(c, base) for c in tel.call_views(user)]
        if "channels" in wanted:
            body["channels"] = [shapes.voice_channel(tel.voice_channel_state(user))]
        if "settings" in wanted:
            body["settings"] = shapes.user_settings()
        if "features" in wanted:
            body["features"] = shapes.features(view)
        return ok(user=body)

    async def get_user(self, request: Request) -> Response:
        """``GET /api/v2/users/{id}`` for the caller's own id, so ``user.uri`` resolves (§1.1)."""
        user = current_user(request)
        if request.path_params["user_id"] != user.id:
            raise GwsError(6, 404, "User not found")
        base = self.ctx.base_url(request)
        return ok(user=shapes.user_resource(self.ctx.telephony.user_view(user), base))

    async def post(self, request: Request) -> Response:
        body = await read_json_object(request)
        op, params = SESSION_OPERATIONS.resolve(body)
        return await self._operations[op.name](request, params)

    async def _start_session(self, request: Request, params: dict[str, Any]) -> Response:
        """§3.1.1; partial success in the exact shape real clients parse (§0.1.5)."""
        channels = list(dict.fromkeys(params["channels"]))
        if not channels:
            raise invalid("channels", "must list at least one channel, e.g. [\"voice\"]")
        results = await self.ctx.telephony.start_session(current_user(request), channels)
        failed = [r for r in results if r.error is not None]
        if not failed:
            return ok()
        succeeded = [r for r in results if r.error is None]
        if not succeeded:  # §3.1.1: when every channel fails only one channel's error is returned
            error = failed[0].error
            assert error is not None
            raise error
        return GwsResponse({
            "statusCode": 7,
            "failed": [_channel_failure(r) for r in failed],
            "succeeded": [{"statusCode": 0, "channel": r.channel} for r in succeeded],
        })

    async def _end_session(self, request: Request, params: dict[str, Any]) -> Response:
        """§3.1.2: log out, then invalidate the HTTP session (AuthMiddleware clears the cookie)."""
        identity = current_identity(request)
        await self.ctx.telephony.end_session(identity.user)
        if identity.session is not None:
            self.sessions.invalidate(identity.session)
        return ok()
