"""Immutable snapshots of domain objects, taken when something changes.

Events carry these (not live objects) so a notification delivered later still shows the state at
the moment of the change; the API renders them into GWS JSON with the client's base URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from .agent_states import AgentStateInfo

__all__ = ["CallView", "DeviceView", "UserView"]


@dataclass(frozen=True, slots=True)
class UserView:
    id: str
    username: str
    first_name: str
    last_name: str
    email: str
    roles: tuple[str, ...]  # GWS role names: ROLE_AGENT, ROLE_SUPERVISOR
    device_ids: tuple[str, ...]
    in_session: bool


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: str
    number: str
    device_state: str  # "Active" | "Inactive"
    user_state: AgentStateInfo | None  # None when the device is Inactive (spec §0.1.3)
    dnd: bool
    forward_to: str | None
    capabilities: tuple[str, ...]
    telephony_network: str = "Private"
    user_state_reason: str | None = None


@dataclass(frozen=True, slots=True)
class CallView:
    id: str
    state: str  # Dialing | Ringing | Established | Held | Released
    call_uuid: str
    conn_id: str
    device_id: str
    phone_number: str  # the DN of the device this call belongs to (notification wrapper `phoneNumber`)
    participants: tuple[str, ...]  # the other parties' numbers (never the device's own DN)
    ani: str | None
    dnis: str | None
    call_type: str  # Internal | Inbound | Outbound | Consult
    capabilities: tuple[str, ...]
    user_data: tuple[tuple[str, object], ...]
    duration: int  # whole seconds since the call appeared on the device
    mute: bool
    recording_state: str  # Recording | Paused | Stopped
    supervisor_listening_in: bool = False
    monitored_user_muted: bool = False
    monitoring: bool = False
    parent_call_id: str | None = None
