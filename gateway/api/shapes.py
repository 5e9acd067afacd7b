"""Domain snapshots -> GWS JSON (spec §2, §4). Pure functions of a view and a base URL.

``base`` is ``scheme://host[:port]`` without a trailing slash: the configured public URL, or the
one the client used (§1.1). The same device shape serves ``fields=*``, ``subresources=*`` and
``DeviceStateChangeMessage`` (§2.2), the same call shape serves GETs and call notifications.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.telephony.agent_states import AGENT_STATES, AgentState, AgentStateInfo
from gateway.telephony.events import CallStateChanged, DeviceStateChanged, OperationFailed
from gateway.telephony.views import CallView, DeviceView, UserView

__all__ = [
    "CONTACT_CENTER_ID",
    "VOICE_ENVIRONMENT_ID",
    "agent_state_setting",
    "call_resource",
    "call_state_message",
    "call_uri",
    "device_resource",
    "device_state_message",
    "device_uri",
    "error_message",
    "features",
    "json_value",
    "participant",
    "user_resource",
    "user_settings",
    "user_state",
    "voice_channel",
]

#: One voice environment (switch) for the whole gateway; fixed so cached URIs stay valid.
VOICE_ENVIRONMENT_ID = "5f0c4e8a-2d7b-5a31-9c6e-0b8d1f2a3c4e"
#: §2.1 contactCenterId (a uuid); one contact centre per gateway.
CONTACT_CENTER_ID = "a3d4c2b1-7e6f-5d8c-9b0a-1f2e3d4c5b6a"

_E164 = re.compile(r"\+[1-9][0-9]{5,14}")


def device_uri(base: str, device_id: str) -> str:
    """§1.1: device links have no ``/me`` (``deviceUri`` = ``{base}/api/v2/devices/{id}``)."""
    return f"{base}/api/v2/devices/{device_id}"


def call_uri(base: str, call_id: str) -> str:
    """§1.1: call ``uri`` is under ``/me`` while its ``path`` is ``/calls/{id}``."""
    return f"{base}/api/v2/me/calls/{call_id}"


def json_value(value: object) -> Any:
    """User data as JSON: mappings become objects (recursively), other sequences arrays (§0.1.9)."""
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def _user_data(pairs: Iterable[tuple[str, object]]) -> dict[str, Any]:
    # §6 #15: duplicate keys (AttachUserData) show their last value.
    return {key: json_value(value) for key, value in pairs}


def user_state(info: AgentStateInfo, reason: str | None = None) -> dict[str, Any]:
    """§2.2 userState. The transient LoggedIn state has no id/displayName (§0.1.3)."""
    if info.id is None:
        return {"state": info.state}
    out: dict[str, Any] = {"id": info.id, "displayName": info.display_name, "state": info.state}
    if info.work_mode:
        out["workMode"] = info.work_mode
    if reason:
        out["reason"] = reason
    return out


def device_resource(device: DeviceView, base: str) -> dict[str, Any]:
    """§2.2 device; ``userState`` omitted when there is none, ``forwardTo`` only while set,
    ``capabilities`` always an array (§0.1.7)."""
    out: dict[str, Any] = {"id": device.id, "deviceState": device.device_state}
    if device.user_state is not None:
        out["userState"] = user_state(device.user_state, device.user_state_reason)
    out.update(
        phoneNumber=device.number,
        e164Number=device.number,
        telephonyNetwork=device.telephony_network,
        doNotDisturb="On" if device.dnd else "Off",
    )
    if device.forward_to:
        out["forwardTo"] = device.forward_to
    out.update(
        voiceEnvironmentUri=f"{base}/api/v2/voice-environments/{VOICE_ENVIRONMENT_ID}",
        capabilities=list(device.capabilities),
        uri=device_uri(base, device.id),
        path=f"/devices/{device.id}",
    )
    return out


def participant(number: str) -> dict[str, str]:
    """§2.3 object form; ``e164Number`` is ``""`` for internal DNs (§6 #4)."""
    return {
        "e164Number": number if _E164.fullmatch(number) else "",
        "formattedPhoneNumber": number,
        "phoneNumber": number,
        "digits": number,
    }


def call_resource(call: CallView, base: str) -> dict[str, Any]:
    """§2.3 call. ``duration`` is a string, ``mute`` On/Off, flags booleans (§0.1.8); ``userData``
    omitted when empty, ``capabilities`` ``[]`` once Released (§0.1.7)."""
    out: dict[str, Any] = {
        "id": call.id,
        "state": call.state,
        "callUuid": call.call_uuid,
        "connId": call.conn_id,
        "deviceUri": device_uri(base, call.device_id),
        "participants": [participant(p) for p in call.participants],
    }
    if call.ani is not None:
        out["ani"] = call.ani
    if call.dnis is not None:
        out["dnis"] = call.dnis
    out["callType"] = call.call_type
    out["capabilities"] = [] if call.state == "Released" else list(call.capabilities)
    data = _user_data(call.user_data)
    if data:
        out["userData"] = data
    out.update(
        duration=str(int(call.duration)),
        mute="On" if call.mute else "Off",
        recordingState=call.recording_state,
        supervisorListeningIn=bool(call.supervisor_listening_in),
        monitoredUserMuted=bool(call.monitored_user_muted),
        monitoring=bool(call.monitoring),
        uri=call_uri(base, call.id),
        path=f"/calls/{call.id}",
    )
    if call.parent_call_id:
        out["parentCallUri"] = call_uri(base, call.parent_call_id)
        out["parentCallPath"] = f"/calls/{call.parent_call_id}"
    return out


def features(user: UserView) -> list[str]:
    """§1.3 / §6 #25: feature names as an array; supervisor monitoring only for supervisors."""
    out = ["api-voice", "api-voice-recording"]
    if "ROLE_SUPERVISOR" in user.roles:
        out.append("api-supervisor-monitoring")
    return out


def user_settings() -> dict[str, dict[str, Any]]:
    """§0.1.14: an object whose values are objects; the agent desktop reads its options from
    ``interaction-workspace`` and falls back to defaults when the section is empty."""
    return {"interaction-workspace": {}}


def voice_channel(device: DeviceView | None) -> dict[str, Any]:
    """``{"channel":"voice","userState":{...}}`` (§2.1, QueryAgentState); no usable device -> LoggedOut."""
    if device is None or device.user_state is None:
        return {"channel": "voice", "userState": user_state(AGENT_STATES[AgentState.LOGGED_OUT])}
    return {"channel": "voice", "userState": user_state(device.user_state, device.user_state_reason)}


def user_resource(user: UserView, base: str) -> dict[str, Any]:
    """§2.1 user (password always blank on read)."""
    return {
        "id": user.id,
        "userName": user.username,
        "password": "",
        "firstName": user.first_name,
        "lastName": user.last_name,
        "emailAddress": user.email,
        "roles": list(user.roles),
        "enabled": True,
        "changePasswordOnFirstLogin": False,
        "contactCenterId": CONTACT_CENTER_ID,
        "uri": f"{base}/api/v2/users/{user.id}",
        "path": f"/users/{user.id}",
    }


def agent_state_setting(info: AgentStateInfo) -> dict[str, Any]:
    """One entry of ``GET /api/v2/settings/agent-states`` (§0.1.14)."""
    out: dict[str, Any] = {
        "id": info.id,
        "name": info.operation,
        "displayName": info.display_name,
        "operationName": info.operation,
        "state": info.state,
    }
    if info.work_mode:
        out["workMode"] = info.work_mode
    return out


def device_state_message(event: DeviceStateChanged, base: str) -> dict[str, Any]:
    """§4.4 ``data`` of a DeviceStateChangeMessage (no notificationType)."""
    return {"messageType": "DeviceStateChangeMessage", "devices": [device_resource(event.device, base)]}


def call_state_message(event: CallStateChanged, base: str) -> dict[str, Any]:
    """§4.5 ``data`` of a CallStateChangeMessage; ``phoneNumber`` is the device's DN (§0.1.8).

    ``digits`` (DTMF sent/received) is our extension, at the top level next to ``call``.
    """
    out: dict[str, Any] = {
        "messageType": "CallStateChangeMessage",
        "notificationType": event.notification_type,
        "call": call_resource(event.call, base),
        "phoneNumber": event.call.phone_number,
    }
    if event.extensions:
        out["extensions"] = {key: json_value(value) for key, value in event.extensions}
    if event.digits is not None:
        out["digits"] = event.digits
    return out


def error_message(event: OperationFailed, base: str) -> dict[str, Any]:
    """§0.1.6 + §4.6 ``data`` of an ErrorMessage, on the topic of the resource concerned."""
    out: dict[str, Any] = {
        "messageType": "ErrorMessage",
        "errorCode": event.error_code,
        "errorMessage": event.error_message,
        "operationName": event.operation,
    }
    if event.device_id:
        out["deviceUri"] = device_uri(base, event.device_id)
        out["devicePath"] = f"/devices/{event.device_id}"
    if event.call_id:
        out["callUri"] = call_uri(base, event.call_id)
        out["callPath"] = f"/calls/{event.call_id}"
    if event.phone_number:
        out["phoneNumber"] = event.phone_number
    return out
