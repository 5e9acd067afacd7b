"""Live domain objects: devices (lines) and the calls on them.

These are mutable and owned by ``Telephony``; anything leaving the domain is a snapshot
(``views.py``) taken with ``device_view`` / ``call_view``.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .agent_states import AgentState
from .directory import DeviceConfig

if TYPE_CHECKING:
    from media import RtpLeg

__all__ = ["Call", "CallState", "Device", "new_call_id", "new_conn_id"]


class CallState(enum.Enum):
    DIALING = "Dialing"
    RINGING = "Ringing"
    ESTABLISHED = "Established"
    HELD = "Held"
    RELEASED = "Released"


def new_call_id() -> str:
    """32-character id in the style of SIP Server call UUIDs (spec §6 open point 2)."""
    return uuid.uuid4().hex.upper()


def new_conn_id() -> str:
    """16-hex T-Server style ConnID."""
    return secrets.token_hex(8)


@dataclass(eq=False)
class Device:
    config: DeviceConfig
    owner: str | None  # username, or None for a line no user is assigned to
    in_session: bool = False
    agent_state: AgentState = AgentState.LOGGED_OUT
    agent_reason: str | None = None
    dnd: bool = False
    forward_to: str | None = None
    registered: bool = True  # standalone lines are always usable
    calls: list[Call] = field(default_factory=list)
    wrap_up_timer: asyncio.TimerHandle | None = None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def number(self) -> str:
        return self.config.number

    @property
    def active(self) -> bool:
        """deviceState Active: the line can place and receive calls (spec §5.3, open point 27)."""
        return self.registered


@dataclass(eq=False)
class Call:
    id: str
    device: Device
    direction: str  # "inbound" | "outbound"
    call_type: str  # Internal | Inbound | Outbound
    remote_number: str
    created_at: float
    conn_id: str = field(default_factory=new_conn_id)
    state: CallState = CallState.DIALING
    ani: str | None = None
    dnis: str | None = None
    session_id: str | None = None
    leg: RtpLeg | None = None
    leg_ready: asyncio.Future[RtpLeg | None] | None = None
    user_data: dict[str, object] = field(default_factory=dict)
    mute: bool = False
    recording_path: Path | None = None
    released_at: float | None = None
    release_cause: str | None = None
    answering: bool = False

    @property
    def recording_state(self) -> str:
        return "Recording" if self.recording_path is not None else "Stopped"

    def duration(self, now: float) -> int:
        end = self.released_at if self.released_at is not None else now
        return max(0, int(end - self.created_at))
