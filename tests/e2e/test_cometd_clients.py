"""The official CometD JavaScript client (npm ``cometd`` + ``cometd-nodejs-client``, run by Node)
against a real gateway: the same call and device events arrive over websocket and over long-polling.

Each listener is ``tests/e2e/node/gws_listener.mjs`` in a subprocess. It prints one JSON object per
line; the test reads them as they come (no fixed sleeps) and drives a real line-to-line call over
SIP loopback through the Voice API: agent1 dials 1002, agent2 answers, agent1 hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayHandle, GwsClient, gateway_settings, running_gateway

NODE_DIR = Path(__file__).resolve().parent / "node"
LISTENER = NODE_DIR / "gws_listener.mjs"
VOICE = "/api/v2/me/channels/voice"
LINE_TIMEOUT = 10.0  # seconds to wait for one expected line; a healthy run needs milliseconds
READY_ID = "9430250E-0A1B-421F-B372-F29E69366DED"  # spec §3.2 userState id of Ready

Record = dict[str, Any]


class NodeListener:
    """One ``gws_listener.mjs`` process; its stdout JSON lines collected in arrival order."""

    def __init__(self, name: str, stderr_path: Path) -> None:
        self.name = name
        self.records: list[Record] = []
        self.noise: list[str] = []  # stdout lines that are not JSON (client log output)
        self._stderr_path = stderr_path
        self._changed = asyncio.Event()
        self._eof = False
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, base_url: str, user: str, password: str, transport: str, *extra: str) -> None:
        node = shutil.which("node")
        assert node is not None, "node is not installed (the README's test command installs it)"
        assert (NODE_DIR / "node_modules" / "cometd-nodejs-client").is_dir(), \
            f"npm packages missing: run `npm ci` in {NODE_DIR}"
        with self._stderr_path.open("wb") as stderr:
            self._proc = await asyncio.create_subprocess_exec(
                node, str(LISTENER), "--base", base_url, "--user", user, "--password", password,
                "--transport", transport, *extra,
                cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                env={**os.environ, "NODE_NO_WARNINGS": "1"})
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                text = line.decode("utf-8", errors="replace").strip()
                try:
                    record = json.loads(text)
                except json.JSONDecodeError:
                    self.noise.append(text)
                    continue
                if isinstance(record, dict):
                    self.records.append(record)
                    self._changed.set()
        finally:
            self._eof = True
            self._changed.set()

    def describe(self) -> str:
        """Everything the listener said, for assertion messages."""
        stderr = self._stderr_path.read_text(errors="replace")[-3000:] if self._stderr_path.exists() else ""
        lines = "\n".join(json.dumps(r)[:400] for r in self.records)
        return f"--- {self.name} stdout records ---\n{lines}\n--- {self.name} stderr ---\n{stderr}"

    async def wait_for(self, predicate: Callable[[Record], bool], what: str,
                       timeout: float = LINE_TIMEOUT) -> Record:
        """The first record (from the start) matching ``predicate``; fails after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for record in self.records:
                if predicate(record):
                    return record
            if self._eof:
                pytest.fail(f"{self.name} exited before {what}\n{self.describe()}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                pytest.fail(f"{self.name}: no {what} within {timeout} s\n{self.describe()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def ready(self) -> Record:
        return await self.wait_for(lambda r: r.get("event") in ("ready", "handshake-failed", "subscribe-failed",
                                                                 "login-failed"), "ready line")

    def messages(self) -> list[Record]:
        return [r for r in self.records if r.get("event") == "message"]

    async def exit_code(self, timeout: float = LINE_TIMEOUT) -> int:
        """Wait for the process to end on its own."""
        assert self._proc is not None
        rc = await asyncio.wait_for(self._proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return rc

    async def close(self) -> int:
        """Close stdin (the script disconnects cleanly) and wait for exit; kill only as a last resort."""
        proc = self._proc
        assert proc is not None
        if proc.returncode is None and proc.stdin is not None:
            proc.stdin.close()
        try:
            return await self.exit_code()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise

    async def terminate(self) -> int:
        """SIGTERM (the script disconnects cleanly) and wait for exit."""
        assert self._proc is not None
        self._proc.terminate()
        return await self.exit_code()

    async def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


@contextlib.asynccontextmanager
async def listener(gw: GatewayHandle, tmp_path: Path, user: str, transport: str, *extra: str,
                   password: str | None = None) -> AsyncIterator[NodeListener]:
    node = NodeListener(f"node-{user}-{transport}", tmp_path / f"node-{user}-{transport}.stderr")
    try:
        await node.start(gw.base_url, user, password if password is not None else f"{user}pw", transport, *extra)
        yield node
    finally:
        await node.kill()


def call_events(node: NodeListener) -> list[Record]:
    return [r["data"] for r in node.messages() if r["data"].get("messageType") == "CallStateChangeMessage"]


def device_events(node: NodeListener) -> list[Record]:
    return [r["data"] for r in node.messages() if r["data"].get("messageType") == "DeviceStateChangeMessage"]


def call_state(call_id: str | None, state: str) -> Callable[[Record], bool]:
    def match(record: Record) -> bool:
        data = record.get("data") if record.get("event") == "message" else None
        if not isinstance(data, dict) or data.get("messageType") != "CallStateChangeMessage":
            return False
        call = data.get("call", {})
        return call.get("state") == state and (call_id is None or call.get("id") == call_id)
    return match


def device_state(state: str) -> Callable[[Record], bool]:
    def match(record: Record) -> bool:
        data = record.get("data") if record.get("event") == "message" else None
        if not isinstance(data, dict) or data.get("messageType") != "DeviceStateChangeMessage":
            return False
        return any(d.get("userState", {}).get("state") == state for d in data.get("devices", []))
    return match


async def agent(gw: GatewayHandle, stack: contextlib.AsyncExitStack, username: str) -> tuple[GwsClient, str]:
    """A logged-in agent (session started) and its device id."""
    client = await stack.enter_async_context(gw.client(username))
    await client.start_session()
    return client, await client.device_id()


@pytest.mark.parametrize("transport,auth", [
    ("websocket", "basic"),
    ("long-polling", "basic"),
    ("websocket", "cookie"),
    ("long-polling", "cookie"),
])
async def test_official_client_receives_call_events(tmp_path: Path, transport: str, auth: str) -> None:
    async with running_gateway(gateway_settings(tmp_path)) as gw, contextlib.AsyncExitStack() as stack:
        cometd = gw.app.state.cometd
        node2 = await stack.enter_async_context(listener(gw, tmp_path, "agent2", transport, "--auth", auth))
        node1 = await stack.enter_async_context(listener(gw, tmp_path, "agent1", transport, "--auth", auth))
        for node in (node2, node1):
            ready = await node.ready()
            assert ready["event"] == "ready", node.describe()
            # the transport really used: as the client sees it and as the gateway recorded it
            assert ready["transport"] == transport, node.describe()
            assert cometd.transport_of(ready["clientId"]) == transport
        ready2 = await node2.ready()

        agent1, device1 = await agent(gw, stack, "agent1")
        agent2, device2 = await agent(gw, stack, "agent2")
        await agent2.op(VOICE, "Ready")
        await node2.wait_for(device_state("Ready"), "DeviceStateChangeMessage Ready")

        dial = await agent1.op(f"/api/v2/me/devices/{device1}/calls", "Dial", destination={"phoneNumber": "1002"})
        assert dial == {"statusCode": 0}
        ringing = await node2.wait_for(call_state(None, "Ringing"), "CallStateChangeMessage Ringing")
        call_id = ringing["data"]["call"]["id"]
        assert [c["id"] for c in await agent2.calls()] == [call_id]

        await agent2.op(f"/api/v2/me/calls/{call_id}", "Answer")
        await node2.wait_for(call_state(call_id, "Established"), "Established")
        (call1,) = await agent1.calls()
        await node1.wait_for(call_state(call1["id"], "Established"), "agent1's Established")

        await agent1.op(f"/api/v2/me/calls/{call1['id']}", "Hangup")
        await node2.wait_for(call_state(call_id, "Released"), "Released")
        await node1.wait_for(call_state(call1["id"], "Released"), "agent1's Released")

        assert await node2.close() == 0, node2.describe()
        assert await node1.close() == 0, node1.describe()
        assert node2.records[-1] == {"event": "disconnected", "successful": True}, node2.describe()
        assert cometd.transport_of(ready2["clientId"]) is None  # /meta/disconnect reached the gateway
        assert cometd.client_count() == 0

    # agent2's call: StatusChange Ringing -> Established -> Released, in order, shaped as in spec §4.5
    mine = [e for e in call_events(node2) if e["call"]["id"] == call_id]
    status = [e for e in mine if e["notificationType"] == "StatusChange"]
    assert [e["call"]["state"] for e in status] == ["Ringing", "Established", "Released"], node2.describe()
    for event in mine:
        call = event["call"]
        assert event["messageType"] == "CallStateChangeMessage"
        assert event["phoneNumber"] == "1002"
        assert isinstance(call["capabilities"], list)
        assert call["uri"] == f"{gw.base_url}/api/v2/me/calls/{call_id}"
        assert call["path"] == f"/calls/{call_id}"
        assert call["deviceUri"] == f"{gw.base_url}/api/v2/devices/{device2}"
        assert call["callType"] == "Internal"
        assert [p["phoneNumber"] for p in call["participants"]] == ["1001"]  # the other party only
    assert "Answer" in status[0]["call"]["capabilities"]
    assert "Hangup" in status[1]["call"]["capabilities"]
    assert status[2]["call"]["capabilities"] == []
    assert [r["channel"] for r in node2.messages() if r["data"]["messageType"] == "CallStateChangeMessage"] \
        == ["/v2/me/calls"] * len(call_events(node2))

    # agent2's agent-state changes: LoggedIn (session start), then Ready, on /v2/me/devices
    devices = device_events(node2)
    assert [d["devices"][0]["userState"]["state"] for d in devices] == ["LoggedIn", "Ready"], node2.describe()
    assert devices[1]["devices"][0]["userState"]["id"] == READY_ID
    assert all(d["devices"][0]["id"] == device2 and d["devices"][0]["phoneNumber"] == "1002" for d in devices)
    assert all(r["channel"] == "/v2/me/devices" for r in node2.messages()
               if r["data"]["messageType"] == "DeviceStateChangeMessage")

    # agent1's events went to agent1's client and never to agent2's
    assert [e["call"]["state"] for e in call_events(node1)
            if e["notificationType"] == "StatusChange"] == ["Dialing", "Established", "Released"], node1.describe()
    assert all(e["phoneNumber"] == "1001" for e in call_events(node1))
    assert call1["id"] != call_id
    assert {e["call"]["id"] for e in call_events(node2)} == {call_id}
    assert all(e["phoneNumber"] == "1002" for e in call_events(node2))
    assert {d["id"] for e in device_events(node2) for d in e["devices"]} == {device2}
    assert device1 not in json.dumps(node2.records)
    # every message carries a distinct Bayeux id (nothing delivered twice)
    ids = [r["id"] for r in node2.messages()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("transport,extra", [
    ("websocket", ()),
    ("long-polling", ()),
    ("websocket", ("--auth", "cookie", "--session-cookie", "forged-session-id")),
    ("long-polling", ("--auth", "cookie", "--session-cookie", "forged-session-id")),
], ids=["websocket-bad-password", "long-polling-bad-password", "websocket-forged-cookie",
        "long-polling-forged-cookie"])
async def test_bad_credentials_fail_the_handshake(tmp_path: Path, transport: str, extra: tuple[str, ...]) -> None:
    async with running_gateway(gateway_settings(tmp_path)) as gw:
        cometd = gw.app.state.cometd
        async with listener(gw, tmp_path, "agent2", transport, *extra, password="wrong-password") as node:
            failed = await node.ready()
            assert failed["event"] == "handshake-failed", node.describe()
            assert failed["reply"]["successful"] is False
            if transport == "long-polling":
                assert failed["reply"]["failure"]["httpCode"] == 403  # spec §0.1.1
            assert await node.exit_code() == 2, node.describe()
            assert cometd.client_count() == 0
            assert node.messages() == []
            assert not any(r.get("event") == "ready" for r in node.records)


async def test_websocket_subprotocol_is_answered(tmp_path: Path) -> None:
    """A client that offers a subprotocol must get one back, else browsers and ``ws`` drop the socket.
    Also: SIGTERM makes the listener send /meta/disconnect before it exits."""
    async with running_gateway(gateway_settings(tmp_path)) as gw:
        async with listener(gw, tmp_path, "agent2", "websocket", "--protocol", "cometd") as node:
            ready = await node.ready()
            assert ready["event"] == "ready", node.describe()
            assert gw.app.state.cometd.transport_of(ready["clientId"]) == "websocket"
            async with gw.client("agent2") as agent2:
                await agent2.start_session()
            await node.wait_for(device_state("LoggedIn"), "DeviceStateChangeMessage LoggedIn")
            assert await node.terminate() == 0, node.describe()
            assert node.records[-1] == {"event": "disconnected", "successful": True}, node.describe()
            assert gw.app.state.cometd.client_count() == 0
