"""System agent states of the voice channel (spec §2.2 "System agent states", §3.2).

The ids are fixed by Genesys and reproduced verbatim (the Offline id really has a lower-case ``f``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["AgentState", "AgentStateInfo", "AGENT_STATES", "STATE_BY_OPERATION"]


class AgentState(enum.Enum):
    """What ``device.userState`` shows. LOGGED_IN is the transient state right after login (§0.1.3)."""

    LOGGED_OUT = "LoggedOut"
    LOGGED_IN = "LoggedIn"
    READY = "Ready"
    NOT_READY = "NotReady"
    AUX_WORK = "AuxWork"
    AFTER_CALL_WORK = "AfterCallWork"


@dataclass(frozen=True, slots=True)
class AgentStateInfo:
    operation: str | None
    id: str | None
    display_name: str | None
    state: str
    work_mode: str | None = None


AGENT_STATES: dict[AgentState, AgentStateInfo] = {
    AgentState.READY: AgentStateInfo("Ready", "9430250E-0A1B-421F-B372-F29E69366DED", "Ready", "Ready"),
    AgentState.NOT_READY: AgentStateInfo("NotReady", "900D55CC-2BB0-431F-8BF9-D3525B383BE6", "Not Ready", "NotReady"),
    AgentState.AUX_WORK: AgentStateInfo(
        "AuxWork", "2B36138D-C564-4562-A8CB-3C32D564F296", "AuxWork", "NotReady", "AuxWork"
    ),
    AgentState.AFTER_CALL_WORK: AgentStateInfo(
        "AfterCallWork", "D3663509-3D82-4DD3-A82E-2EA8EFA02AEF", "AfterCallWork", "NotReady", "AfterCallWork"
    ),
    AgentState.LOGGED_OUT: AgentStateInfo("Offline", "0F7F5003-EF26-4D13-A6Ef-D0C7EC819BEB", "Offline", "LoggedOut"),
    AgentState.LOGGED_IN: AgentStateInfo(None, None, None, "LoggedIn"),
}

#: operationName on /me/channels/voice -> resulting state
STATE_BY_OPERATION: dict[str, AgentState] = {
    info.operation: state for state, info in AGENT_STATES.items() if info.operation is not None
}
