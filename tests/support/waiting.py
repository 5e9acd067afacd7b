"""Waiting on real state in tests: poll a condition against a deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["until"]

T = TypeVar("T")


async def until(probe: Callable[[], T | None | Awaitable[T | None]], what: str = "condition",
                timeout: float = 10.0, interval: float = 0.02) -> T:
    """Call ``probe`` (sync or async) until it returns something truthy and return that value;
    after ``timeout`` seconds fail naming ``what`` and the last value seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value: Any = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[no-any-return]
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        await asyncio.sleep(interval)
