"""What every endpoint needs: the telephony facade, the base URL rule, the caller, GET helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from gateway.telephony.directory import User

from .auth import Identity
from .errors import GwsError
from .middleware import IDENTITY_KEY
from .responses import GwsResponse, ok

if TYPE_CHECKING:  # the facade's module pulls in SIP and media; the API needs only its type
    from gateway.telephony.service import Telephony

__all__ = ["ApiContext", "collection", "current_identity", "current_user"]


@dataclass(frozen=True, slots=True)
class ApiContext:
    telephony: Telephony
    public_url: str = ""  # configured base URL without trailing slash; "" = the client's

    def base_url(self, request: Request) -> str:
        """§1.1: the configured public URL, else scheme://host:port as the client used it."""
        return self.public_url or str(request.base_url).rstrip("/")


def current_identity(request: Request) -> Identity:
    identity: Identity | None = request.scope.get(IDENTITY_KEY)
    if identity is None:  # only reachable when AuthMiddleware is not installed
        raise GwsError(20, 403, "Access denied")
    return identity


def current_user(request: Request) -> User:
    return current_identity(request).user


def collection(request: Request, key: str, objects: Sequence[dict[str, Any]]) -> GwsResponse:
    """§1.7: without ``fields`` a collection GET lists ``uris``; ``fields=*`` returns the objects
    under ``key``; ``fields=a,b`` returns objects cut down to those fields."""
    fields = request.query_params.get("fields")
    if fields is None or not fields.strip():
        return ok(uris=[obj["uri"] for obj in objects])
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    if "*" in wanted:
        return ok(**{key: list(objects)})
    return ok(**{key: [{f: obj[f] for f in wanted if f in obj} for obj in objects]})
