"""The telephony facade the API and CometD layers use: agents, devices, calls.

Every operation takes the authenticated ``User`` and only touches that user's devices and calls
(another user's id is a ``NotFound``, never a hint that it exists). Failing operations raise a
``TelephonyError`` subclass and change nothing; successful ones publish events on ``bus``.

Each device is a softphone line in the SIP core. A call between two lines of this gateway is
real SIP over loopback: the caller's INVITE leaves the UDP socket and comes back in.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.sip.core import CoreConfig, LineConfig, SipCore
from gateway.sip.endpoint import SipEndpoint
from gateway.sip.errors import LocalSipError
from gateway.sip.events import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    IncomingCall,
    MediaUpdated,
    MessageDropped,
    RegistrationStateChanged,
    SipEvent,
)
from gateway.sip.sdp import LocalMedia, NegotiatedMedia, SdpError
from gateway.sip.transaction import TimerConfig
from gateway.sip.uri import SipUri, UriError
from media import MediaEngine, MediaError, RtpLeg, make_source, repair_recordings

from .agent_states import AGENT_STATES, STATE_BY_OPERATION, AgentState
from .capabilities import call_capabilities, device_capabilities
from .directory import DeviceConfig, Directory, User
from .errors import InvalidParameter, InvalidState, NotFound, ServiceUnavailable, TelephonyError
from .events import CallStateChanged, DeviceStateChanged, EventBus, OperationFailed, SessionEnded
from .model import Call, CallState, Device, new_call_id
from .views import CallView, DeviceView, UserView

__all__ = ["ChannelResult", "Telephony", "build_directory"]

log = logging.getLogger("gateway.telephony")

#: SIP statuses that are an ordinary outcome of dialling, not an error worth an ErrorMessage.
_ORDINARY_FAILURES = frozenset({480, 486, 487, 600, 603})

_URI_RE = re.compile(r"^(sips?):", re.I)
#: Longest Dial destination accepted: far beyond any number or URI a client dials, far below what
#: would make the INVITE too large for a UDP datagram (it would never leave, and wait for Timer B).
MAX_DESTINATION_LENGTH = 512


class ChannelResult:
    """Outcome of StartContactCenterSession for one channel (spec §0.1.5)."""

    def __init__(self, channel: str, error: TelephonyError | None = None) -> None:
        self.channel = channel
        self.error = error


def build_directory(settings: Settings) -> Directory:
    users = [
        User(username=u.username, password=u.password, first_name=u.first_name, last_name=u.last_name,
             email=u.email, roles=frozenset(u.roles), device_numbers=tuple(u.devices))
        for u in settings.users
    ]
    devices = [
        DeviceConfig(number=d.number, sip_user=d.sip_user, sip_password=d.sip_password,
                     display_name=d.display_name, auto_answer=d.auto_answer, audio_source=d.audio_source,
                     after_call_work=d.after_call_work, wrap_up_seconds=d.wrap_up_seconds)
        for d in settings.devices
    ]
    return Directory(users, devices)


class Telephony:
    def __init__(self, settings: Settings, *, bus: EventBus | None = None) -> None:
        self.settings = settings
        self.directory = build_directory(settings)
        self.bus = bus or EventBus()
        self.media = MediaEngine(host=settings.sip.host, port_min=settings.media.rtp_port_min,
                                 port_max=settings.media.rtp_port_max, ptime_ms=settings.media.ptime)
        sip = settings.sip
        core = SipCore(CoreConfig(user_agent=sip.user_agent, timers=TimerConfig(sip.t1, sip.t2, sip.t4)))
        self.sip = SipEndpoint(core, host=sip.host, port=sip.port, transports=list(sip.transports),
                               on_event=self._on_sip_event, trace=sip.trace)
        self.registrar: SipUri | None = SipUri.parse(sip.registrar) if sip.registrar else None
        self.outbound_proxy: SipUri | None = SipUri.parse(sip.outbound_proxy) if sip.outbound_proxy else None
        self.devices: dict[str, Device] = {}
        for cfg in self.directory.devices:
            dev = Device(config=cfg, owner=self.directory.owner_of(cfg.number))
            dev.registered = self.registrar is None
            self.devices[cfg.id] = dev
        self._by_number = {d.number: d for d in self.devices.values()}
        self._sessions: dict[str, Call] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    # ================================================================== lifecycle
    async def start(self) -> None:
        rec_dir = self.settings.recordings_path
        rec_dir.mkdir(parents=True, exist_ok=True)
        repaired = repair_recordings(rec_dir)
        if repaired:
            log.warning("repaired %d recording(s) left by an earlier crash: %s", len(repaired),
                        ", ".join(p.name for p in repaired))
        await self.media.start()
        await self.sip.start()
        for dev in self.devices.values():
            cfg = dev.config
            self.sip.add_line(LineConfig(
                line_id=cfg.number, user=cfg.sip_user, password=cfg.sip_password, display_name=cfg.display_name,
                registrar=self.registrar, outbound_proxy=self.outbound_proxy, domain=self.settings.sip.domain,
                register_expires=self.settings.sip.register_expires))
        self._started = True
        if self.registrar is not None:
            for dev in self.devices.values():
                self.sip.register(dev.config.number)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.sip.stop()
        for call in list(self._sessions.values()):
            await self._close_leg(call)
        for task in list(self._tasks):
            task.cancel()
        await self.media.stop()

    @property
    def sip_ports(self) -> dict[str, int]:
        return dict(self.sip.ports)

    # ================================================================== reads
    def _now(self) -> float:
        return time.monotonic()

    def _devices_of(self, user: User) -> list[Device]:
        return [self._by_number[n] for n in user.device_numbers if n in self._by_number]

    def _device_of(self, user: User, device_id: str) -> Device:
        dev = self.devices.get(device_id)
        if dev is None or dev.owner != user.username:
            raise NotFound(f"Device '{device_id}' not found")
        return dev

    def _call_of(self, user: User, call_id: str) -> Call:
        for dev in self._devices_of(user):
            for call in dev.calls:
                if call.id == call_id:
                    return call
        raise NotFound(f"Call '{call_id}' not found")

    def user_view(self, user: User) -> UserView:
        devs = self._devices_of(user)
        return UserView(id=user.id, username=user.username, first_name=user.first_name, last_name=user.last_name,
                        email=user.email, roles=user.gws_roles, device_ids=tuple(d.id for d in devs),
                        in_session=any(d.in_session for d in devs))

    def device_view(self, user: User, device_id: str) -> DeviceView:
        return self._view_device(self._device_of(user, device_id))

    def device_views(self, user: User) -> list[DeviceView]:
        return [self._view_device(d) for d in self._devices_of(user)]

    def call_views(self, user: User) -> list[CallView]:
        now = self._now()
        return [self._view_call(c, now) for d in self._devices_of(user) for c in d.calls]

    def call_view(self, user: User, call_id: str) -> CallView:
        return self._view_call(self._call_of(user, call_id), self._now())

    def voice_channel_state(self, user: User) -> DeviceView | None:
        devs = self._devices_of(user)
        return self._view_device(devs[0]) if devs else None

    def _view_device(self, dev: Device) -> DeviceView:
        user_state = AGENT_STATES[dev.agent_state] if dev.active else None
        return DeviceView(id=dev.id, number=dev.number, device_state="Active" if dev.active else "Inactive",
                          user_state=user_state, dnd=dev.dnd, forward_to=dev.forward_to,
                          capabilities=device_capabilities(dev), user_state_reason=dev.agent_reason)

    def _view_call(self, call: Call, now: float) -> CallView:
        return CallView(
            id=call.id, state=call.state.value, call_uuid=call.id, conn_id=call.conn_id, device_id=call.device.id,
            phone_number=call.device.number, participants=(call.remote_number,) if call.remote_number else (),
            ani=call.ani, dnis=call.dnis, call_type=call.call_type, capabilities=call_capabilities(call),
            user_data=tuple(call.user_data.items()), duration=call.duration(now), mute=call.mute,
            recording_state=call.recording_state)

    def stats(self) -> dict[str, int]:
        sip = self.sip.stats()
        media = self.media.stats()
        return {
            "calls": sum(len(d.calls) for d in self.devices.values()),
            "sip_sessions": int(sip.get("sip_sessions", 0)),
            "sip_transactions": int(sip.get("sip_transactions", 0)),
            "sip_dialogs": int(sip.get("sip_dialogs", 0)),
            "rtp_legs": self.media.leg_count,
            "rtp_ports": len(self.media.ports_in_use()),
            "rtp_packets_in": int(media.get("packets_in", 0)),
            "rtp_packets_out": int(media.get("packets_out", 0)),
        }

    # ================================================================== publishing
    def _publish_device(self, dev: Device) -> None:
        if dev.owner:
            self.bus.publish(DeviceStateChanged(username=dev.owner, device=self._view_device(dev)))

    def _publish_call(self, call: Call, notification_type: str = "StatusChange") -> None:
        owner = call.device.owner
        if owner:
            self.bus.publish(CallStateChanged(username=owner, call=self._view_call(call, self._now()),
                                              notification_type=notification_type))

    def _publish_error(self, call: Call, operation: str, code: int, message: str) -> None:
        owner = call.device.owner
        if owner:
            self.bus.publish(OperationFailed(username=owner, topic="calls", operation=operation, error_code=code,
                                             error_message=message, device_id=call.device.id, call_id=call.id,
                                             phone_number=call.device.number))

    # ================================================================== session & agent state
    async def start_session(self, user: User, channels: list[str]) -> list[ChannelResult]:
        results: list[ChannelResult] = []
        for ch in channels:
            if ch != "voice":
                results.append(ChannelResult(ch, InvalidParameter("channels", f"channel '{ch}' is not supported "
                                                                  "by this gateway (voice only)")))
                continue
            devs = self._devices_of(user)
            if not devs:
                results.append(ChannelResult(ch, InvalidState(f"User '{user.username}' has no device")))
                continue
            for dev in devs:
                if not dev.in_session:
                    dev.in_session = True
                    dev.agent_state = AgentState.LOGGED_IN
                    dev.agent_reason = None
                    self._publish_device(dev)
            results.append(ChannelResult(ch))
        return results

    async def end_session(self, user: User) -> None:
        for dev in self._devices_of(user):
            self._cancel_wrap_up(dev)
            if dev.in_session or dev.agent_state is not AgentState.LOGGED_OUT:
                dev.in_session = False
                dev.agent_state = AgentState.LOGGED_OUT
                dev.agent_reason = None
                self._publish_device(dev)
        self.bus.publish(SessionEnded(username=user.username))

    async def set_agent_state(self, user: User, operation: str, *, work_mode: str | None = None,
                              reason: str | None = None) -> None:
        state = STATE_BY_OPERATION.get(operation)
        if state is None:
            raise InvalidState(f"Unknown agent state operation '{operation}'")
        devs = self._devices_of(user)
        if not devs or not any(d.in_session for d in devs):
            raise InvalidState("Agent is not logged in: call StartContactCenterSession first")
        if work_mode is not None and operation == "Ready" and work_mode not in ("ManualIn", "AutoIn"):
            raise InvalidParameter("workmode", "must be ManualIn or AutoIn")
        for dev in devs:
            if not dev.in_session:
                continue
            self._cancel_wrap_up(dev)
            dev.agent_state = state
            dev.agent_reason = reason
            self._publish_device(dev)

    async def device_operation(self, user: User, device_id: str, operation: str, params: dict[str, Any]) -> None:
        self._device_of(user, device_id)  # NotFound first: another user's device does not exist here
        # no device-level operation (DND, forwarding, supervision) is carried out yet
        raise InvalidState(f"Operation '{operation}' is not supported by this gateway yet")

    def _cancel_wrap_up(self, dev: Device) -> None:
        if dev.wrap_up_timer is not None:
            dev.wrap_up_timer.cancel()
            dev.wrap_up_timer = None

    def _after_call(self, dev: Device) -> None:
        """§0.1.4: with wrap-up configured, a finished call puts the agent in AfterCallWork."""
        if not (dev.config.after_call_work and dev.in_session) or any(
                c.state is not CallState.RELEASED for c in dev.calls):
            return
        self._cancel_wrap_up(dev)
        dev.agent_state = AgentState.AFTER_CALL_WORK
        self._publish_device(dev)
        if dev.config.wrap_up_seconds > 0:
            loop = asyncio.get_running_loop()
            dev.wrap_up_timer = loop.call_later(dev.config.wrap_up_seconds, self._wrap_up_done, dev)

    def _wrap_up_done(self, dev: Device) -> None:
        dev.wrap_up_timer = None
        if dev.in_session and dev.agent_state is AgentState.AFTER_CALL_WORK:
            dev.agent_state = AgentState.READY
            self._publish_device(dev)

    # ================================================================== dial
    def _resolve_destination(self, destination: str) -> tuple[str, SipUri | None, str]:
        """(target URI, proxy to send via, participant number) for a Dial destination."""
        dest = destination.strip()
        if not dest:
            raise InvalidParameter("destination", "must not be empty")
        if len(dest) > MAX_DESTINATION_LENGTH:
            raise InvalidParameter("destination", f"longer than {MAX_DESTINATION_LENGTH} characters ({len(dest)})")
        if _URI_RE.match(dest) or "@" in dest:
            uri_text = dest if _URI_RE.match(dest) else f"sip:{dest}"
            try:
                uri = SipUri.parse(uri_text)
            except UriError as exc:
                raise InvalidParameter("destination", f"not a valid SIP URI ({exc})") from None
            if uri.transport not in self.sip.ports:
                raise InvalidParameter("destination", f"transport '{uri.transport}' is not enabled")
            return str(uri), None, uri.user_unescaped or str(uri)
        if not re.fullmatch(r"[0-9A-Za-z_.+*#-]+", dest):
            raise InvalidParameter("destination", f"'{dest}' is neither a phone number nor a SIP URI")
        local = self._by_number.get(dest)
        if local is not None:
            transport = "udp" if "udp" in self.sip.ports else "tcp"
            host = self.settings.sip.host
            suffix = "" if transport == "udp" else ";transport=tcp"
            return f"sip:{local.config.sip_user}@{host}:{self.sip.ports[transport]}{suffix}", None, dest
        if self.registrar is not None:
            domain = self.settings.sip.domain or self.registrar.aor().split(":", 1)[1]
            return f"sip:{dest}@{domain}", self.registrar, dest
        raise InvalidParameter("destination", f"'{dest}' is not a line of this gateway and no registrar is "
                               "configured (standalone mode): dial a full SIP URI such as sip:5001@host:port")

    async def dial(self, user: User, device_id: str, destination: str,
                   user_data: dict[str, Any] | None = None) -> CallView:
        dev = self._device_of(user, device_id)
        if not dev.active:
            raise InvalidState(f"Device '{dev.number}' is not registered (deviceState Inactive)")
        target, via, number = self._resolve_destination(destination)
        try:
            leg = await self.media.open_leg()
        except MediaError as exc:
            raise ServiceUnavailable(f"No media port available: {exc}") from None
        internal = number in self._by_number
        call = Call(id=new_call_id(), device=dev, direction="outbound",
                    call_type="Internal" if internal else "Outbound", remote_number=number,
                    created_at=self._now(), dnis=number, leg=leg)
        if user_data:
            call.user_data.update(user_data)
        try:
            sid = self.sip.invite(dev.config.number, target, self._local_media(leg), via_proxy=via)
        except LocalSipError as exc:
            await leg.close()
            raise InvalidParameter("destination", str(exc)) from None
        call.session_id = sid
        self._sessions[sid] = call
        dev.calls.append(call)
        self._cancel_wrap_up(dev)
        log.info("line %s: dialing %s (call %s, session %s)", dev.number, target, call.id, sid)
        self._publish_call(call)
        return self._view_call(call, self._now())

    def _local_media(self, leg: RtpLeg) -> LocalMedia:
        return LocalMedia(address=leg.local_host, port=leg.local_port, codecs=tuple(self.settings.media.codecs),
                          ptime=self.settings.media.ptime)

    # ================================================================== call operations
    async def call_operation(self, user: User, call_id: str, operation: str, params: dict[str, Any]) -> None:
        call = self._call_of(user, call_id)
        handler = {
            "Answer": self._answer,
            "Reject": self._reject,
            "Hangup": self._hangup,
            "StartCallRecording": self._start_recording,
            "StopCallRecording": self._stop_recording,
        }.get(operation)
        if handler is None:  # part of the Voice API, not carried out by this gateway yet
            raise InvalidState(f"Operation '{operation}' is not supported by this gateway yet")
        caps = call_capabilities(call)
        if operation not in caps:
            raise InvalidState(f"Operation '{operation}' is not valid for call '{call.id}' in state "
                               f"{call.state.value} (capabilities: {', '.join(caps) or 'none'})")
        await handler(call, params)

    async def _answer(self, call: Call, params: dict[str, Any]) -> None:
        call.answering = True
        try:
            leg = await self._await_leg(call)
            if call.state is not CallState.RINGING or call.session_id is None:
                raise InvalidState(f"Call '{call.id}' is no longer ringing")
            try:
                media = self.sip.answer(call.session_id, self._local_media(leg))
            except SdpError as exc:
                self.sip.reject(call.session_id, exc.status_hint or 488)
                raise InvalidState(f"Cannot answer: {exc}") from None
            except LocalSipError as exc:
                raise InvalidState(f"Cannot answer: {exc}") from None
        finally:
            call.answering = False
        if media is not None:
            self._start_media(call, media)
        call.state = CallState.ESTABLISHED
        self._publish_call(call)

    async def _reject(self, call: Call, params: dict[str, Any]) -> None:
        assert call.session_id is not None
        try:
            self.sip.reject(call.session_id, 603, "Decline")
        except LocalSipError as exc:
            raise InvalidState(f"Cannot reject: {exc}") from None

    async def _hangup(self, call: Call, params: dict[str, Any]) -> None:
        assert call.session_id is not None
        self.sip.hangup(call.session_id)
        if call.state is not CallState.RELEASED:  # the core reports the end synchronously
            await self._release(call, "local")

    async def _start_recording(self, call: Call, params: dict[str, Any]) -> None:
        leg = call.leg
        if leg is None:
            raise InvalidState("Call has no media")
        path = self._recording_path(call)
        try:
            leg.start_recording(path)
        except MediaError as exc:
            raise InvalidState(f"Cannot start recording: {exc}") from None
        call.recording_path = path
        leg.on_recording_failed = lambda failed_path, reason, c=call: self._recording_failed(c, failed_path, reason)
        log.info("call %s: recording to %s", call.id, path)
        self._publish_call(call, "CallRecordingStateChange")

    def _recording_failed(self, call: Call, path: Path, reason: str) -> None:
        """The media leg stopped a recording whose write failed (disk full, file size limit): the file is a
        valid WAV up to there; the agent learns it from recordingState Stopped and an ErrorMessage."""
        if call.recording_path != path:
            return
        call.recording_path = None
        log.error("call %s: recording %s stopped: %s", call.id, path, reason)
        self._publish_call(call, "CallRecordingStateChange")
        self._publish_error(call, "StartCallRecording", 4, f"Recording stopped: {reason}")

    async def _stop_recording(self, call: Call, params: dict[str, Any]) -> None:
        if call.leg is not None:
            call.leg.stop_recording()
        call.recording_path = None
        self._publish_call(call, "CallRecordingStateChange")

    def _recording_path(self, call: Call) -> Path:
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime())
        remote = re.sub(r"[^0-9A-Za-z_.+-]", "_", call.remote_number)[:40] or "unknown"
        base = self.settings.recordings_path / f"{call.id}_{call.device.number}_{remote}_{stamp}"
        path = base.with_suffix(".wav")
        n = 1
        while path.exists():
            n += 1
            path = Path(f"{base}_{n}.wav")
        return path

    async def _await_leg(self, call: Call) -> RtpLeg:
        if call.leg is not None:
            return call.leg
        if call.leg_ready is None:
            raise InvalidState("Call has no media")
        leg = await call.leg_ready
        if leg is None:
            raise ServiceUnavailable("No media port available for this call")
        return leg

    def _start_media(self, call: Call, media: NegotiatedMedia) -> None:
        leg = call.leg
        if leg is None:
            return
        leg.set_remote(media.remote_address, media.remote_port, media.payload_type, media.codec,
                       media.dtmf_payload_type)
        send = media.direction in ("sendrecv", "sendonly")
        recv = media.direction in ("sendrecv", "recvonly")
        leg.set_direction(send, recv)
        try:
            leg.set_source(make_source(call.device.config.audio_source, self.settings.audio_path))
        except (MediaError, OSError, ValueError) as exc:
            log.error("line %s: audio source %r unusable (%s); sending silence", call.device.number,
                      call.device.config.audio_source, exc)
            leg.set_source(make_source("silence"))
        leg.on_dtmf = lambda ev, c=call: self._on_dtmf(c, ev)
        leg.start()

    def _on_dtmf(self, call: Call, event: Any) -> None:
        log.info("call %s: DTMF %s received (%d ms)", call.id, event.digit, event.duration_ms)
        owner = call.device.owner
        if owner:
            self.bus.publish(CallStateChanged(username=owner, call=self._view_call(call, self._now()),
                                              notification_type="DtmfReceived", digits=event.digit))

    async def _close_leg(self, call: Call) -> None:
        leg, call.leg = call.leg, None
        if leg is not None:
            try:
                await leg.close()
            except Exception:
                log.exception("call %s: closing media leg failed", call.id)

    async def _release(self, call: Call, cause: str) -> None:
        if call.state is CallState.RELEASED:
            return
        call.state = CallState.RELEASED
        call.released_at = self._now()
        call.release_cause = cause
        if call.session_id is not None:
            self._sessions.pop(call.session_id, None)
        leg = call.leg
        if leg is not None and call.recording_path is not None:
            leg.stop_recording()
        call.recording_path = None
        dev = call.device
        if call in dev.calls:
            dev.calls.remove(call)
        self._after_call(dev)
        self._publish_call(call)
        await self._close_leg(call)
        log.info("line %s: call %s released (%s)", dev.number, call.id, cause)

    def _release_soon(self, call: Call, cause: str) -> None:
        """Release from a synchronous SIP callback: state and the event now, the port async."""
        if call.state is CallState.RELEASED:
            return
        task = asyncio.ensure_future(self._release(call, cause))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ================================================================== SIP events
    def _on_sip_event(self, ev: SipEvent) -> None:
        if isinstance(ev, IncomingCall):
            self._on_incoming(ev)
            return
        if isinstance(ev, RegistrationStateChanged):
            self._on_registration(ev)
            return
        if isinstance(ev, MessageDropped):
            log.debug("sip: dropped message from %s: %s", ev.peer, ev.reason)
            return
        call = self._sessions.get(ev.session_id)
        if call is None:
            return
        if isinstance(ev, CallProgress):
            log.info("call %s: %d %s", call.id, ev.status, ev.reason)
        elif isinstance(ev, CallAnswered):
            if call.state is CallState.DIALING:
                self._start_media(call, ev.media)
                call.state = CallState.ESTABLISHED
                self._publish_call(call)
        elif isinstance(ev, CallConfirmed):
            if ev.media is not None:
                self._start_media(call, ev.media)
        elif isinstance(ev, MediaUpdated):
            if call.leg is not None:
                m = ev.media
                call.leg.set_remote(m.remote_address, m.remote_port, m.payload_type, m.codec, m.dtmf_payload_type)
                call.leg.set_direction(m.direction in ("sendrecv", "sendonly"), m.direction in ("sendrecv", "recvonly"))
        elif isinstance(ev, CallFailed):
            log.info("call %s: failed %d %s", call.id, ev.status, ev.reason)
            if ev.status not in _ORDINARY_FAILURES and call.direction == "outbound":
                self._publish_error(call, "Dial", ev.status, f"{ev.status} {ev.reason}")
            self._release_soon(call, f"failed {ev.status}")
        elif isinstance(ev, CallEnded):
            self._release_soon(call, ev.cause)

    def _on_registration(self, ev: RegistrationStateChanged) -> None:
        dev = self._by_number.get(ev.line_id)
        if dev is None:
            return
        log.info("line %s: %s (%s %s)", ev.line_id, "registered" if ev.registered else "not registered",
                 ev.status, ev.reason)
        if dev.registered != ev.registered:
            dev.registered = ev.registered
            self._publish_device(dev)

    def _on_incoming(self, ev: IncomingCall) -> None:
        dev = self._by_number.get(ev.line_id)
        if dev is None:
            self.sip.reject(ev.session_id, 404)
            return
        if dev.dnd:
            self.sip.reject(ev.session_id, 486, "Busy Here (Do Not Disturb)")
            return
        number = ev.remote_user or ev.remote_uri
        internal = number in self._by_number
        call = Call(id=new_call_id(), device=dev, direction="inbound", call_type="Internal" if internal else "Inbound",
                    remote_number=number, created_at=self._now(), ani=number, dnis=dev.number,
                    session_id=ev.session_id, state=CallState.RINGING)
        loop = asyncio.get_running_loop()
        call.leg_ready = loop.create_future()
        self._sessions[ev.session_id] = call
        dev.calls.append(call)
        self._cancel_wrap_up(dev)
        self.sip.ringing(ev.session_id)
        log.info("line %s: incoming call %s from %s (session %s)", dev.number, call.id, ev.remote_uri, ev.session_id)
        self._publish_call(call)
        task = asyncio.ensure_future(self._prepare_incoming(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prepare_incoming(self, call: Call) -> None:
        assert call.leg_ready is not None
        try:
            leg = await self.media.open_leg()
        except MediaError as exc:
            log.error("call %s: no media port (%s); rejecting", call.id, exc)
            call.leg_ready.set_result(None)
            if call.session_id and call.state is CallState.RINGING:
                self.sip.reject(call.session_id, 503, "Service Unavailable (no media port)")
            return
        if call.state is CallState.RELEASED:
            call.leg_ready.set_result(None)
            await leg.close()
            return
        call.leg = leg
        call.leg_ready.set_result(leg)
        if call.device.config.auto_answer:
            try:
                await self._answer(call, {})
            except TelephonyError as exc:
                log.warning("call %s: auto-answer failed: %s", call.id, exc)

    # ================================================================== helpers for tests/tools
    def device_by_number(self, number: str) -> Device | None:
        return self._by_number.get(number)

    def iter_calls(self) -> Iterable[Call]:
        for dev in self.devices.values():
            yield from dev.calls
