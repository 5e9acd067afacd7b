"""baresip 1.0.0 as a scripted SIP user agent, driven over its ctrl_tcp socket from asyncio.

Each instance gets a generated config dir (loopback only: net_interface 127.0.0.1 + sip_listen, or it
picks eth0's address for Contact/SDP), a WAV file as microphone (aufile), the ALSA "null" PCM as speaker
and the sndfile module recording what it sends (rec/dump-*-enc.wav) and receives (rec/dump-*-dec.wav).

ctrl_tcp keeps ONE client connection (a second one steals the events), so one `BaresipControl` per
baresip carries both commands and events.  Framing is a netstring `<len>:<json>,` in both directions.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .audio import read_wav_header, read_wav_info, wav_is_complete, write_tone_wav
from .ports import HOST, free_port, free_port_block
from .process import ManagedProcess, PeerError, require_binary, tail

DEFAULT_CODECS = "PCMU/8000/1,PCMA/8000/1"
MODULE_DIR = "/usr/lib/baresip/modules"

Match = str | Callable[[Any], bool] | None
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # reginfo colours its status


def _matches(event: dict[str, Any], etype: str | None, match: dict[str, Match]) -> bool:
    if etype is not None and event.get("type") != etype:
        return False
    for key, want in match.items():
        have = event.get(key)
        if callable(want):
            if not want(have):
                return False
        elif have != want:
            return False
    return True


class BaresipControl:
    """Asyncio client of baresip's ctrl_tcp: commands with tokens, and every event kept in `events`."""

    def __init__(self, name: str, log_path: Path | None = None) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self._log_path = log_path
        self._tokens = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None

    async def connect(self, port: int, host: str = HOST) -> None:
        self._reader, self._writer = await asyncio.open_connection(host, port)
        self._task = asyncio.get_running_loop().create_task(self._read_loop(), name=f"baresip-ctrl-{self.name}")

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._closed_reason is None

    def _log(self, direction: str, msg: object) -> None:
        if self._log_path is not None:
            with open(self._log_path, "a") as f:
                f.write(f"{time.time():.3f} {direction} {json.dumps(msg)}\n")

    async def _read_loop(self) -> None:
        assert self._reader is not None
        buf = b""
        try:
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    self._closed_reason = "connection closed by baresip"
                    break
                buf += chunk
                while True:
                    colon = buf.find(b":")
                    if colon < 0:
                        break
                    if not buf[:colon].isdigit():
                        self._closed_reason = f"bad netstring length {buf[:colon][:20]!r}"
                        return
                    n = int(buf[:colon])
                    if len(buf) < colon + n + 2:
                        break
                    payload, buf = buf[colon + 1 : colon + 1 + n], buf[colon + n + 2 :]
                    self._dispatch(payload)
        except (OSError, asyncio.IncompleteReadError) as exc:
            self._closed_reason = f"connection error: {exc}"
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(PeerError(f"baresip {self.name}: {self._closed_reason}"))
            async with self._changed:
                self._changed.notify_all()

    def _dispatch(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            self._log("bad", payload.decode(errors="replace"))
            return
        if not isinstance(msg, dict):
            return
        msg["_t"] = time.monotonic()
        self._log("<-", msg)
        if msg.get("response"):
            fut = self._pending.pop(str(msg.get("token")), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        self.events.append(msg)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def cmd(self, command: str, params: str = "", timeout: float = 5.0) -> str:
        """Send one command (the /help long name, e.g. dial, accept, hangup, sndcode); returns its text output."""
        if self._writer is None or self._closed_reason is not None:
            raise PeerError(f"baresip {self.name}: ctrl_tcp not connected ({self._closed_reason})")
        token = f"{self.name}-{next(self._tokens)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        msg = {"command": command, "params": params, "token": token}
        body = json.dumps(msg).encode()
        self._log("->", msg)
        self._writer.write(str(len(body)).encode() + b":" + body + b",")
        await self._writer.drain()
        try:
            resp = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise PeerError(f"baresip {self.name}: no response to {command} {params!r} within {timeout}s") from None
        finally:
            self._pending.pop(token, None)
        if not resp.get("ok"):
            raise PeerError(f"baresip {self.name}: {command} {params!r} failed: {resp.get('data')!r}")
        return str(resp.get("data") or "")

    def mark(self) -> int:
        """Index to pass as `since=` so a wait only sees events that arrive after this point."""
        return len(self.events)

    def find_event(self, etype: str | None = None, since: int = 0, **match: Match) -> dict[str, Any] | None:
        for event in self.events[since:]:
            if _matches(event, etype, match):
                return event
        return None

    def events_of(self, etype: str | None = None, since: int = 0, **match: Match) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if _matches(e, etype, match)]

    async def wait_event(
        self, etype: str | None, timeout: float = 10.0, since: int = 0, **match: Match
    ) -> dict[str, Any]:
        """First event of type `etype` (None = any) at index >= since whose fields equal (or satisfy) `match`."""

        def found() -> dict[str, Any] | None:
            return self.find_event(etype, since, **match)

        event = found()
        if event is not None:
            return event
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while (event := found()) is None:
                        if self._closed_reason is not None:
                            raise PeerError(f"baresip {self.name}: {self._closed_reason} while waiting for {etype}")
                        await self._changed.wait()
        except TimeoutError:
            seen = [(e.get("type"), e.get("param")) for e in self.events[since:]]
            raise PeerError(
                f"baresip {self.name}: no {etype} event matching {match} within {timeout}s;"
                f" events since {since}: {seen}"
            ) from None
        return event

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._writer = None


CONFIG_TEMPLATE = """\
# generated by tests/e2e/peers/baresip.py
poll_method\t\tepoll
sip_listen\t\t{host}:{sip_port}
net_interface\t\t{host}
call_local_timeout\t120
call_max_calls\t\t{max_calls}
audio_player\t\talsa,null
audio_alert\t\talsa,null
audio_source\t\taufile,{source}
ausrc_srate\t\t{src_rate}
ausrc_channels\t\t{src_channels}
ausrc_format\t\ts16
auplay_format\t\ts16
auenc_format\t\ts16
audec_format\t\ts16
audio_buffer\t\t20-160
rtp_ports\t\t{rtp_lo}-{rtp_hi}
rtcp_mux\t\tno
jitter_buffer_delay\t5-10
rtp_stats\t\tyes
module_path\t\t{module_dir}
module\t\t\tg711.so
module\t\t\tg722.so
module\t\t\topus.so
module\t\t\taufile.so
module\t\t\talsa.so
module\t\t\tsndfile.so
snd_path\t\t{rec_dir}
module_tmp\t\tuuid.so
module_tmp\t\taccount.so
module_app\t\tcontact.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t{host}:{ctrl_port}
statmode_default\toff
{extra}"""


class Baresip:
    """One baresip UA.  Registered mode: `registrar=` a Kamailio (or "host:port"); standalone: registrar=None.

    `uri` is where this UA can be dialled directly (standalone gateways call it there); `aor` is its
    address-of-record at the registrar.
    """

    host = HOST

    def __init__(
        self,
        workdir: Path,
        user: str | int,
        *,
        registrar: Any = None,
        password: str | None = None,
        answermode: str = "auto",
        tone_hz: float | None = 440.0,
        source_wav: Path | None = None,
        codecs: str | None = DEFAULT_CODECS,
        transport: str = "udp",
        regint: int = 600,
        display_name: str | None = None,
        contacts: list[str] | None = None,
        account_params: str = "",
        extra_config: str = "",
        max_calls: int = 4,
        rtp_ports: int = 40,
        name: str | None = None,
    ) -> None:
        if answermode not in ("auto", "manual", "early"):
            raise ValueError(f"baresip answermode {answermode!r}: expected auto, manual or early")
        if transport not in ("udp", "tcp"):
            raise ValueError(f"baresip transport {transport!r}: expected udp or tcp")
        self.workdir = Path(workdir)
        self.user = str(user)
        self.name = name or f"baresip-{self.user}"
        if registrar is not None and not isinstance(registrar, str):
            registrar = f"{registrar.host}:{registrar.port}"  # a Kamailio (or anything with host/port)
        self.registrar: str | None = registrar
        self.password = password
        self.answermode = answermode
        self.codecs = codecs
        self.transport = transport
        self.regint = regint
        self.display_name = display_name
        self.contacts = list(contacts or [])
        self.account_params = account_params
        self.extra_config = extra_config
        self.max_calls = max_calls
        self.sip_port = free_port(udp=True, tcp=True, span=2)  # baresip binds SIP/TLS on sip_port + 1
        self.ctrl_port = free_port(udp=False, tcp=True)
        self.rtp_lo = free_port_block(rtp_ports, udp=True)
        self.rtp_hi = self.rtp_lo + rtp_ports - 1
        self.rec_dir = self.workdir / "rec"
        self.source_wav = Path(source_wav) if source_wav else self.workdir / "source.wav"
        self._tone_hz = tone_hz
        self.control = BaresipControl(self.user, self.workdir / "ctrl.log")
        self.process = ManagedProcess(
            self.name, [require_binary("baresip"), "-f", str(self.workdir)], self.workdir / "baresip.log"
        )

    # ---- addresses -------------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """Direct URI of this UA (no registrar involved)."""
        return f"sip:{self.user}@{self.host}:{self.sip_port}"

    @property
    def aor(self) -> str:
        host = self.registrar or f"{self.host}:{self.sip_port}"
        return f"sip:{self.user}@{host}"

    def account_line(self) -> str:
        params = [f"answermode={self.answermode}", "ptime=20"]
        if self.codecs:
            params.append(f"audio_codecs={self.codecs}")
        if self.registrar is not None:
            if self.password is not None:
                params.append(f"auth_pass={self.password}")
            params.append(f"regint={self.regint}")
            target = f"<sip:{self.user}@{self.registrar};transport={self.transport}>"
        else:
            # no registrar: regint=0 means baresip never sends REGISTER; dial targets are used as given
            params.append("regint=0")
            target = f"<sip:{self.user}@{self.host}:{self.sip_port};transport={self.transport}>"
        if self.account_params:
            params.append(self.account_params.lstrip(";"))
        display = f'"{self.display_name}" ' if self.display_name else ""
        return f"{display}{target};" + ";".join(params)

    def write_config(self) -> None:
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        if not self.source_wav.exists():
            if self._tone_hz is None:
                write_tone_wav(self.source_wav, 0.0, seconds=60.0, amplitude=0.0)
            else:
                write_tone_wav(self.source_wav, self._tone_hz, seconds=60.0, amplitude=0.5)
        rate, channels, width = read_wav_header(self.source_wav)
        if width != 2:
            raise ValueError(f"baresip source_wav {self.source_wav}: aufile needs 16-bit PCM, got {8 * width}-bit")
        (self.workdir / "config").write_text(
            CONFIG_TEMPLATE.format(
                host=self.host,
                sip_port=self.sip_port,
                ctrl_port=self.ctrl_port,
                rtp_lo=self.rtp_lo,
                rtp_hi=self.rtp_hi,
                source=self.source_wav,
                src_rate=rate,
                src_channels=channels,
                module_dir=MODULE_DIR,
                rec_dir=self.rec_dir,
                max_calls=self.max_calls,
                extra=self.extra_config,
            )
        )
        (self.workdir / "accounts").write_text(self.account_line() + "\n")
        (self.workdir / "contacts").write_text("".join(c + "\n" for c in self.contacts))

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self, timeout: float = 10.0) -> Baresip:
        """Start baresip, connect ctrl_tcp, and (registered mode) wait for 200 OK to REGISTER."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.process.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.process.check_alive("starting")
            try:
                await self.control.connect(self.ctrl_port)
                break
            except OSError:
                if loop.time() > deadline:
                    raise PeerError(
                        f"{self.name}: ctrl_tcp {self.host}:{self.ctrl_port} not accepting after {timeout}s:\n"
                        f"{tail(self.log_text())}"
                    ) from None
                await asyncio.sleep(0.02)  # polling a real condition (the listener) with a deadline
        if self.registrar is not None:
            await self.wait_registered(timeout=max(0.5, deadline - loop.time()))
        return self

    async def stop(self) -> int | None:
        await self.control.close()
        return await asyncio.to_thread(self.process.stop)

    async def __aenter__(self) -> Baresip:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def log_text(self) -> str:
        return self.process.log_text()

    # ---- control ---------------------------------------------------------------------------------
    @property
    def events(self) -> list[dict[str, Any]]:
        return self.control.events

    def mark(self) -> int:
        return self.control.mark()

    async def cmd(self, command: str, params: str = "", timeout: float = 5.0) -> str:
        return await self.control.cmd(command, params, timeout)

    async def wait_event(
        self, etype: str | None, timeout: float = 10.0, since: int = 0, **match: Match
    ) -> dict[str, Any]:
        try:
            return await self.control.wait_event(etype, timeout, since, **match)
        except PeerError as exc:
            raise PeerError(f"{exc}\n--- {self.name} log ---\n{tail(self.log_text(), 3000)}") from None

    def find_event(self, etype: str | None = None, since: int = 0, **match: Match) -> dict[str, Any] | None:
        return self.control.find_event(etype, since, **match)

    def events_of(self, etype: str | None = None, since: int = 0, **match: Match) -> list[dict[str, Any]]:
        return self.control.events_of(etype, since, **match)

    async def dial(self, uri: str) -> int:
        """Dial `uri`; returns the event mark taken just before, for `wait_event(..., since=mark)`."""
        mark = self.mark()
        await self.cmd("dial", uri)
        return mark

    async def hangup(self) -> None:
        await self.cmd("hangup")

    async def reginfo(self) -> str:
        return await self.cmd("reginfo")

    async def wait_registered(self, timeout: float = 10.0) -> None:
        """Until the registrar answered 200 to REGISTER (reginfo says OK, or REGISTER_OK arrives).

        A REGISTER_FAIL event (e.g. 403, or 401 with a wrong password) fails at once with its reason.
        """
        if self.registrar is None:
            raise PeerError(f"{self.name} is standalone (no registrar); nothing to wait for")
        mark = self.mark()
        info = await self.reginfo()
        if _reginfo_ok(info):
            return
        if _reginfo_failed(info):  # failed before our ctrl connection existed; the reason is in the log
            reasons = [ln.strip() for ln in _ANSI.sub("", self.log_text()).splitlines() if ln.startswith("reg: ")]
            raise PeerError(f"{self.name} not registered at {self.registrar}: {reasons[-1:] or info!r}")
        try:
            event = await self.control.wait_event(
                None, timeout, mark, type=lambda t: t in ("REGISTER_OK", "REGISTER_FAIL")
            )
        except PeerError:
            event = None
        if event is not None and event["type"] == "REGISTER_OK":
            return
        info = await self.reginfo()
        if _reginfo_ok(info):
            return
        reason = f"REGISTER_FAIL {event.get('param')!r}" if event else f"no answer within {timeout}s"
        raise PeerError(
            f"{self.name} not registered at {self.registrar}: {reason}; reginfo: {_ANSI.sub('', info).strip()!r}\n"
            f"{tail(self.log_text(), 3000)}"
        )

    # ---- recordings ------------------------------------------------------------------------------
    def recordings(self, kind: str = "dec") -> list[Path]:
        """sndfile dumps, oldest first: kind "dec" = audio received (decoded), "enc" = audio sent."""
        if kind not in ("dec", "enc"):
            raise ValueError(f"recording kind {kind!r}: expected 'dec' (received) or 'enc' (sent)")
        return sorted(self.rec_dir.glob(f"dump-*-{kind}.wav"), key=lambda p: (p.stat().st_mtime, p.name))

    async def wait_received_audio(self, seconds: float, timeout: float = 10.0, kind: str = "dec") -> Path:
        """Until the newest recording holds `seconds` of audio (sndfile writes as it goes): a media-progress
        condition to wait on instead of sleeping.  Returns that (still growing) file."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        have = 0.0
        while True:
            files = self.recordings(kind)
            if files:
                try:
                    have = read_wav_info(files[-1]).duration
                except (OSError, ValueError):
                    have = 0.0
                if have >= seconds:
                    return files[-1]
            if loop.time() > deadline:
                raise PeerError(
                    f"{self.name}: {kind} recording has {have:.2f} s of audio, wanted {seconds} s within {timeout}s;"
                    f" files: {files}"
                )
            await asyncio.sleep(0.02)  # polling a real condition (bytes on disk) with a deadline

    async def wait_recording(self, kind: str = "dec", timeout: float = 5.0, index: int = -1) -> Path:
        """The newest (or `index`-th) recording once its WAV header is final (sndfile writes it on close)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            files = self.recordings(kind)
            if files and wav_is_complete(files[index]):
                return files[index]
            if loop.time() > deadline:
                raise PeerError(
                    f"{self.name}: no complete {kind} recording in {self.rec_dir} after {timeout}s: {files}"
                )
            await asyncio.sleep(0.02)  # polling a real condition (the file header) with a deadline


def _reginfo_ok(info: str) -> bool:
    # "--- User Agents (1) ---\n> sip:1005@127.0.0.1:37962   \x1b[32mOK \x1b[;m kamailio-test Expires 600s"
    return re.search(r"\bOK\b", _ANSI.sub("", info)) is not None


def _reginfo_failed(info: str) -> bool:
    return re.search(r"\bERR\b", _ANSI.sub("", info)) is not None
