"""An in-memory stand-in for ``gateway.telephony.service.Telephony`` (same public interface).

It keeps devices and calls in dicts and publishes on a real ``EventBus``, so the HTTP tests see
the same event flow as with real SIP. A call between two lines of the gateway rings the callee's
device at once; answering establishes both legs; hanging up releases both. Capabilities follow
spec §2.2 / §5.2, and a failing operation changes nothing (§1.5).

The only hooks beyond the interface are ``fail_next`` (make the next operation raise, optionally
after publishing an event) for the error-path tests.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Settings
from gateway.telephony.agent_states import AGENT_STATES, STATE_BY_OPERATION, AgentState
from gateway.telephony.directory import DeviceConfig, Directory, User
from gateway.telephony.errors import InvalidParameter, InvalidState, NotFound
from gateway.telephony.events import CallStateChanged, DeviceStateChanged, EventBus, OperationFailed, SessionEnded
from gateway.telephony.views import CallView, DeviceView, UserView

__all__ = ["FakeChannelResult", "FakeTelephony", "directory_from_settings"]

_UD = ("UpdateUserData", "DeleteUserData", "DeleteUserDataPair", "AttachUserData")


class FakeChannelResult:
    """Same shape as ``gateway.telephony.service.ChannelResult``."""

    def __init__(self, channel: str, error: Exception | None = None) -> None:
        self.channel = channel
        self.error = error


def directory_from_settings(settings: Settings) -> Directory:
    users = [User(username=u.username, password=u.password, first_name=u.first_name, last_name=u.last_name,
                  email=u.email, roles=frozenset(u.roles), device_numbers=tuple(u.devices))
             for u in settings.users]
    devices = [DeviceConfig(number=d.number, sip_user=d.sip_user, sip_password=d.sip_password,
                            display_name=d.display_name) for d in settings.devices]
    return Directory(users, devices)


@dataclass(eq=False)
class _Device:
    config: DeviceConfig
    owner: str | None
    in_session: bool = False
    state: AgentState = AgentState.LOGGED_OUT
    reason: str | None = None
    dnd: bool = False
    forward_to: str | None = None

    @property
    def id(self) -> str:
        return self.config.id

    def capabilities(self) -> tuple[str, ...]:
        return ("DoNotDisturbOff" if self.dnd else "DoNotDisturbOn",
                "ForwardCallsOff" if self.forward_to else "ForwardCallsOn")


@dataclass(eq=False)
class _Call:
    id: str
    device: _Device
    state: str
    remote: str
    call_type: str
    created: float
    ani: str | None = None
    dnis: str | None = None
    peer: _Call | None = None
    user_data: dict[str, object] = field(default_factory=dict)
    mute: bool = False
    recording: str = "Stopped"
    conn_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def capabilities(self) -> tuple[str, ...]:
        s = self.state
        if s == "Released":
            return ()
        if s == "Ringing":
            return ("Answer", *_UD)
        if s == "Dialing":
            return (*_UD, "Hangup", "SendDtmf")
        if s == "Held":
            return ("Retrieve", "Hangup", *_UD)
        rec = {"Stopped": ("StartCallRecording",), "Recording": ("PauseCallRecording", "StopCallRecording"),
               "Paused": ("ResumeCallRecording", "StopCallRecording")}[self.recording]
        return ("Hold", "Hangup", "SendDtmf", "UnmuteCall" if self.mute else "MuteCall", *rec, *_UD)


class FakeTelephony:
    def __init__(self, settings: Settings, *, bus: EventBus | None = None,
                 clock: Any = time.monotonic) -> None:
        self.settings = settings
        self.directory = directory_from_settings(settings)
        self.bus = bus or EventBus()
        self._clock = clock
        self._devices = {c.id: _Device(c, self.directory.owner_of(c.number)) for c in self.directory.devices}
        self._by_number = {d.config.number: d for d in self._devices.values()}
        self._calls: dict[str, _Call] = {}
        self._ids = itertools.count(1)
        #: (exception, event to publish before raising) for the next operation, or None
        self.fail_next: tuple[BaseException, object | None] | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    # ---- helpers ----------------------------------------------------------------------------
    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            exc, event = self.fail_next
            self.fail_next = None
            if event is not None:
                self.bus.publish(event)  # type: ignore[arg-type]
            raise exc

    def _devices_of(self, user: User) -> list[_Device]:
        return [d for d in self._devices.values() if d.owner == user.username]

    def _device_of(self, user: User, device_id: str) -> _Device:
        dev = self._devices.get(device_id)
        if dev is None or dev.owner != user.username:
            raise NotFound(f"Device '{device_id}' not found")
        return dev

    def _call_of(self, user: User, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None or call.device.owner != user.username or call.state == "Released":
            raise NotFound(f"Call '{call_id}' not found")
        return call

    def _device_view(self, dev: _Device) -> DeviceView:
        return DeviceView(id=dev.id, number=dev.config.number, device_state="Active",
                          user_state=AGENT_STATES[dev.state], dnd=dev.dnd, forward_to=dev.forward_to,
                          capabilities=dev.capabilities(), user_state_reason=dev.reason)

    def _call_view(self, call: _Call) -> CallView:
        return CallView(id=call.id, state=call.state, call_uuid=call.id, conn_id=call.conn_id,
                        device_id=call.device.id, phone_number=call.device.config.number,
                        participants=(call.remote,), ani=call.ani, dnis=call.dnis, call_type=call.call_type,
                        capabilities=call.capabilities(), user_data=tuple(call.user_data.items()),
                        duration=int(self._clock() - call.created), mute=call.mute, recording_state=call.recording)

    def _publish_device(self, dev: _Device) -> None:
        if dev.owner:
            self.bus.publish(DeviceStateChanged(username=dev.owner, device=self._device_view(dev)))

    def _publish_call(self, call: _Call, kind: str = "StatusChange", digits: str | None = None) -> None:
        if call.device.owner:
            self.bus.publish(CallStateChanged(username=call.device.owner, call=self._call_view(call),
                                              notification_type=kind, digits=digits,
                                              extensions=(("BusinessCall", 0),)))

    # ---- reads ------------------------------------------------------------------------------
    def user_view(self, user: User) -> UserView:
        devs = self._devices_of(user)
        return UserView(id=user.id, username=user.username, first_name=user.first_name, last_name=user.last_name,
                        email=user.email, roles=user.gws_roles, device_ids=tuple(d.id for d in devs),
                        in_session=any(d.in_session for d in devs))

    def device_views(self, user: User) -> list[DeviceView]:
        return [self._device_view(d) for d in self._devices_of(user)]

    def device_view(self, user: User, device_id: str) -> DeviceView:
        return self._device_view(self._device_of(user, device_id))

    def call_views(self, user: User) -> list[CallView]:
        return [self._call_view(c) for c in self._calls.values()
                if c.device.owner == user.username and c.state != "Released"]

    def call_view(self, user: User, call_id: str) -> CallView:
        return self._call_view(self._call_of(user, call_id))

    def voice_channel_state(self, user: User) -> DeviceView | None:
        devs = self._devices_of(user)
        return self._device_view(devs[0]) if devs else None

    def stats(self) -> dict[str, int]:
        return {"calls": sum(c.state != "Released" for c in self._calls.values())}

    # ---- session & agent state --------------------------------------------------------------
    async def start_session(self, user: User, channels: list[str]) -> list[FakeChannelResult]:
        self._maybe_fail()
        results = []
        for ch in channels:
            if ch != "voice":
                results.append(FakeChannelResult(ch, InvalidParameter("channels", f"channel '{ch}' is not supported")))
                continue
            for dev in self._devices_of(user):
                if not dev.in_session:
                    dev.in_session = True
                    dev.state = AgentState.LOGGED_IN
                    self._publish_device(dev)
            results.append(FakeChannelResult(ch))
        return results

    async def end_session(self, user: User) -> None:
        self._maybe_fail()
        for dev in self._devices_of(user):
            dev.in_session = False
            dev.state = AgentState.LOGGED_OUT
            self._publish_device(dev)
        self.bus.publish(SessionEnded(username=user.username))

    async def set_agent_state(self, user: User, operation: str, *, work_mode: str | None = None,
                              reason: str | None = None) -> None:
        self._maybe_fail()
        state = STATE_BY_OPERATION.get(operation)
        if state is None:
            raise InvalidState(f"Unknown agent state '{operation}'")
        devs = [d for d in self._devices_of(user) if d.in_session]
        if not devs:
            raise InvalidState("Agent is not logged in: call StartContactCenterSession first")
        if work_mode is not None and operation == "Ready" and work_mode not in ("ManualIn", "AutoIn"):
            raise InvalidParameter("workmode", "must be ManualIn or AutoIn")
        for dev in devs:
            dev.state = state
            dev.reason = reason
            self._publish_device(dev)

    # ---- device operations ------------------------------------------------------------------
    async def device_operation(self, user: User, device_id: str, operation: str, params: dict[str, Any]) -> None:
        dev = self._device_of(user, device_id)
        self._maybe_fail()
        if operation not in dev.capabilities():
            raise InvalidState(f"Operation '{operation}' is not available on device '{dev.config.number}'")
        if operation == "DoNotDisturbOn":
            dev.dnd = True
        elif operation == "DoNotDisturbOff":
            dev.dnd = False
        elif operation == "ForwardCallsOn":
            dev.forward_to = params["destination"]
        elif operation == "ForwardCallsOff":
            dev.forward_to = None
        self._publish_device(dev)

    # ---- calls ------------------------------------------------------------------------------
    async def dial(self, user: User, device_id: str, destination: str,
                   user_data: dict[str, Any] | None = None) -> CallView:
        dev = self._device_of(user, device_id)
        self._maybe_fail()
        if not destination.strip():
            raise InvalidParameter("destination", "must not be empty")
        now = self._clock()
        callee = self._by_number.get(destination)
        call = _Call(id=f"CALL{next(self._ids):028d}", device=dev, state="Dialing", remote=destination,
                     call_type="Internal" if callee else "Outbound", created=now, dnis=destination,
                     user_data=dict(user_data or {}))
        self._calls[call.id] = call
        self._publish_call(call)
        if callee is not None and callee is not dev:
            other = _Call(id=f"CALL{next(self._ids):028d}", device=callee, state="Ringing",
                          remote=dev.config.number, call_type="Internal", created=now, ani=dev.config.number,
                          dnis=destination, peer=call, user_data=dict(user_data or {}))
            call.peer = other
            self._calls[other.id] = other
            self._publish_call(other)
        return self._call_view(call)

    async def call_operation(self, user: User, call_id: str, operation: str, params: dict[str, Any]) -> None:
        call = self._call_of(user, call_id)
        self._maybe_fail()
        if operation != "SetCallDisposition" and operation not in call.capabilities():
            raise InvalidState(f"Operation '{operation}' is not valid for call '{call.id}' in state {call.state}")
        peer = call.peer
        if operation == "Answer":
            call.state = "Established"
            self._publish_call(call)
            if peer is not None and peer.state == "Dialing":
                peer.state = "Established"
                self._publish_call(peer)
        elif operation == "Hangup":
            for leg in (call, peer):
                if leg is not None and leg.state != "Released":
                    leg.state = "Released"
                    self._publish_call(leg)
        elif operation in ("Hold", "Retrieve"):
            call.state = "Held" if operation == "Hold" else "Established"
            self._publish_call(call)
        elif operation in ("MuteCall", "UnmuteCall"):
            call.mute = operation == "MuteCall"
            self._publish_call(call)
        elif operation == "SendDtmf":
            self._publish_call(call, "DtmfSent", digits=params["digits"])
        elif operation.endswith("CallRecording"):
            call.recording = {"Start": "Recording", "Pause": "Paused", "Resume": "Recording",
                              "Stop": "Stopped"}[operation.removesuffix("CallRecording")]
            self._publish_call(call, "CallRecordingStateChange")
        elif operation == "SetCallDisposition":
            call.user_data[params.get("dispositionKey") or "DispositionCode"] = params["disposition"]
            self._publish_call(call, "AttachedDataChanged")

    def fail_later(self, user: User, call_id: str, operation: str) -> None:
        """Publish an ErrorMessage-worthy failure for an accepted operation (§4.6)."""
        call = self._calls[call_id]
        self.bus.publish(OperationFailed(username=user.username, topic="calls", operation=operation,
                                         error_code=1234, error_message="boom", device_id=call.device.id,
                                         call_id=call.id, phone_number=call.device.config.number))
