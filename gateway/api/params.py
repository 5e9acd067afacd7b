"""Operation request bodies: JSON object in, ``operationName`` resolved, parameters checked.

Spec §1.4: every state change is a POST whose JSON object names an ``operationName``. §0.1.9:
bodies may be pretty-printed and may hold explicit ``null`` members, which mean "absent". Unknown
extra members are ignored (§3.1.1). Each error names the field it is about.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from .errors import GwsError

__all__ = [
    "MAX_BODY_BYTES",
    "Operation",
    "OperationTable",
    "Param",
    "destination",
    "extract",
    "json_object",
    "number_text",
    "read_json_object",
    "string_list",
    "text",
]

#: Operation bodies are small; this bounds what a broken client can make us buffer.
MAX_BODY_BYTES = 1 << 20


def missing(name: str) -> GwsError:
    return GwsError(1, 400, f"Missing required parameter '{name}'")


def invalid(name: str, why: str) -> GwsError:
    return GwsError(10, 400, f"Invalid parameter '{name}': {why}")


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a body into a dict with top-level nulls removed; GwsError 400/10 otherwise."""
    if not raw.strip():
        raise GwsError(10, 400, "Request body is empty; expected a JSON object with an operationName")
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise GwsError(10, 400, "Request body is not valid JSON: it is not UTF-8 text") from None
    except RecursionError:
        raise GwsError(10, 400, "Request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise GwsError(10, 400, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise GwsError(10, 400, f"Request body must be a JSON object, not {json_type(value)}")
    return {key: val for key, val in value.items() if val is not None}


async def read_json_object(request: Request) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise GwsError(10, 413, f"Request body is too large (limit {MAX_BODY_BYTES} bytes)")
    return parse_json_object(bytes(body))


# ---- converters: (field name, JSON value) -> Python value, or GwsError naming the field --------

Convert = Callable[[str, Any], Any]


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(name, f"must be a string, not {json_type(value)}")
    return value


def number_text(name: str, value: Any) -> str:
    """A phone number or digit string; an integer is accepted for lenient clients."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    result = text(name, value).strip()
    if not result:
        raise invalid(name, "must not be empty")
    return result


def destination(name: str, value: Any) -> str:
    """§1.4 / §6 #17: ``{"phoneNumber": "5001"}`` or the plain string ``"5001"``, everywhere."""
    if isinstance(value, Mapping):
        number = value.get("phoneNumber")
        if number is None:
            raise missing(f"{name}.phoneNumber")
        return number_text(f"{name}.phoneNumber", number)
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return number_text(name, value)
    raise invalid(name, f"must be an object with a phoneNumber or a string, not {json_type(value)}")


def json_object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(name, f"must be an object, not {json_type(value)}")
    return value


def string_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise invalid(name, f"must be an array of strings, not {json_type(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"{name}[{i}]", f"must be a string, not {json_type(item)}")
    return list(value)


@dataclass(frozen=True, slots=True)
class Param:
    """One body parameter: its wire name, converter, whether required, accepted aliases."""

    name: str
    convert: Convert = text
    required: bool = False
    aliases: tuple[str, ...] = ()


def extract(body: Mapping[str, Any], params: Iterable[Param]) -> dict[str, Any]:
    """The declared parameters present in ``body``, under their canonical names."""
    out: dict[str, Any] = {}
    for param in params:
        for key in (param.name, *param.aliases):
            if key in body:
                out[param.name] = param.convert(key, body[key])
                break
        else:
            if param.required:
                raise missing(param.name)
    return out


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    params: tuple[Param, ...] = ()
    aliases: tuple[str, ...] = ()


class OperationTable:
    """The operations one URL family accepts (§1.4), by canonical name and alias (§0)."""

    def __init__(self, where: str, operations: Iterable[Operation]) -> None:
        self.where = where
        self.operations = {op.name: op for op in operations}
        self._lookup = dict(self.operations)
        for op in self.operations.values():
            for alias in op.aliases:
                self._lookup[alias] = op

    def __contains__(self, name: object) -> bool:
        return name in self.operations

    def resolve(self, body: Mapping[str, Any]) -> tuple[Operation, dict[str, Any]]:
        """(operation, its converted parameters) or GwsError: 400/1 without ``operationName``,
        400/2 naming the valid operations when it is unknown here (§1.5)."""
        name = body.get("operationName")
        if name is None:
            raise missing("operationName")
        if not isinstance(name, str):
            raise invalid("operationName", f"must be a string, not {json_type(name)}")
        op = self._lookup.get(name)
        if op is None:
            valid = ", ".join(self.operations)
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise GwsError(2, 400, f"Unknown operationName '{shown}' for {self.where}; valid operations: {valid}")
        return op, extract(body, op.params)
