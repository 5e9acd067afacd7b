"""The one response class of the Voice API: JSON that always carries an integer ``statusCode``.

Spec §0.1.2: a client treats a response without ``statusCode`` as an error, so the class refuses
to render a body without one (a programming error, caught by the tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["GwsResponse", "ok"]


class GwsResponse(JSONResponse):
    """``application/json`` body whose top level is an object with an integer ``statusCode``."""

    def render(self, content: Any) -> bytes:
        if not isinstance(content, Mapping) or not isinstance(content.get("statusCode"), int):
            raise TypeError("a GWS response body must be an object with an integer statusCode")
        return super().render(content)


def ok(**fields: Any) -> GwsResponse:
    """HTTP 200 ``{"statusCode": 0, ...fields}`` (spec §1.5)."""
    return GwsResponse({"statusCode": 0, **fields})
