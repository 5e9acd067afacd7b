"""Which operations are valid right now (spec §2.2 device capabilities, §5.2 call capabilities).

Only operations the gateway actually carries out are ever listed: a capability is a promise
that the operation will work, so an unimplemented one must not appear (it would be answered
with statusCode 2 anyway). The order follows the observed GWS lists.
"""

from __future__ import annotations

from .model import Call, CallState, Device

__all__ = ["call_capabilities", "device_capabilities"]


def device_capabilities(device: Device) -> tuple[str, ...]:
    """Device-level operations (DND, forwarding, supervision) arrive in later work; none yet."""
    return ()


def call_capabilities(call: Call) -> tuple[str, ...]:
    state = call.state
    if state is CallState.RELEASED:
        return ()
    caps: list[str] = []
    if state is CallState.RINGING and call.direction == "inbound":
        if call.device.config and not call.answering:
            caps.append("Answer")
            caps.append("Reject")
    elif state is CallState.DIALING:
        caps.append("Hangup")
    elif state is CallState.ESTABLISHED:
        caps.append("Hangup")
        if call.recording_path is None:
            caps.append("StartCallRecording")
        else:
            caps.append("StopCallRecording")
    elif state is CallState.HELD:
        caps.append("Hangup")
    return tuple(caps)
