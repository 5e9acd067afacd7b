"""The console script as a user runs it: `voice-gateway serve` on the embedded default, ports from VG_* env."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

VENV_BIN = Path(sys.executable).parent


async def _start(tmp_path: Path, *argv: str, recordings: Path | None = None,
                 ) -> tuple[asyncio.subprocess.Process, int, list[str]]:
    env = {**os.environ, "VG_HTTP_PORT": "0", "VG_SIP_PORT": "0", "VG_RTP_PORT_MIN": "0", "VG_RTP_PORT_MAX": "0",
           "VG_RECORDINGS_DIR": str(recordings or tmp_path / "rec"), "VG_DATA_DIR": str(tmp_path / "data")}
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stderr=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.DEVNULL)
    assert proc.stderr is not None
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(proc.stderr.readline(), 30)
        if not raw:
            raise AssertionError("gateway exited during start-up:\n" + "".join(lines))
        lines.append(raw.decode(errors="replace"))
        m = re.search(r"gateway ready: http=127\.0\.0\.1:(\d+)", lines[-1])
        if m:
            return proc, int(m.group(1)), lines


async def _stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    await asyncio.wait_for(proc.stderr.read(), 30)
    return await asyncio.wait_for(proc.wait(), 30)


@pytest.mark.parametrize("argv", [("voice-gateway", "serve"), ("python", "-m", "gateway", "serve")])
async def test_serve_on_embedded_default_with_free_ports(tmp_path: Path, argv: tuple[str, ...]) -> None:
    exe = str(VENV_BIN / argv[0]) if argv[0] == "voice-gateway" else sys.executable
    proc, port, _ = await _start(tmp_path, exe, *argv[1:])
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            health = (await http.get("/health")).json()
            assert health["status"] == "ok" and health["http"]["port"] == port
            assert health["sip"]["mode"] == "standalone"
            assert health["sip"]["udp"] > 0 and health["sip"]["tcp"] > 0
            assert health["sip"]["udp"] != 5060  # VG_SIP_PORT=0 picked a free port
            denied = await http.get("/api/v2/me")
            assert denied.status_code == 403 and denied.json() == {"statusCode": 20, "statusMessage": "Access denied"}
            assert "www-authenticate" not in denied.headers
            me = await http.get("/api/v2/me", auth=("agent1", "agent1pw"))
            assert me.status_code == 200 and me.json()["user"]["userName"] == "agent1"
    finally:
        rc = await _stop(proc)
    assert rc == 0


async def test_bad_config_is_reported_not_traced(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[sip]\nport = -1\n")
    proc = await asyncio.create_subprocess_exec(str(VENV_BIN / "voice-gateway"), "serve", "--config", str(cfg),
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    text = err.decode()
    assert "sip.port" in text and "Traceback" not in text


async def test_check_config_hides_secrets() -> None:
    proc = await asyncio.create_subprocess_exec(str(VENV_BIN / "voice-gateway"), "check-config",
                                                stdout=asyncio.subprocess.PIPE, env={**os.environ})
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    text = out.decode()
    assert '"agent1"' in text and "agent1pw" not in text and "pw1001" not in text


async def test_sigterm_answers_a_held_cometd_long_poll(tmp_path: Path) -> None:
    """uvicorn drains open requests before the app's shutdown runs: the held long-poll must be answered first."""
    proc, port, _ = await _start(tmp_path, str(VENV_BIN / "voice-gateway"), "serve")
    url = "/api/v2/notifications"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=("agent1", "agent1pw"),
                                 timeout=60) as http:
        hs = (await http.post(url, json=[{"channel": "/meta/handshake", "version": "1.0",
                                           "supportedConnectionTypes": ["long-polling"]}])).json()
        cid = hs[0]["clientId"]
        connect = [{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}]
        first = (await http.post(url, json=connect)).json()
        assert first[0]["successful"] is True  # the first connect returns at once
        held = asyncio.create_task(http.post(url, json=connect))  # this one is held by the server
        while not held.done() and await _held_connects(http) == 0:
            await asyncio.sleep(0.02)
        assert not held.done()
        rc = await _stop(proc)
        reply = await held
    assert rc == 0
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body[0]["channel"] == "/meta/connect" and body[0]["advice"]["reconnect"] in ("handshake", "none")


async def _held_connects(http: httpx.AsyncClient) -> int:
    return int((await http.get("/health")).json()["cometd"]["held_connects"])


async def test_sip_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        env = {**os.environ, "VG_HTTP_PORT": "0", "VG_SIP_PORT": str(port), "VG_HTTP_PORTT": "1"}
        proc = await asyncio.create_subprocess_exec(str(VENV_BIN / "voice-gateway"), "serve", env=env,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        taken.close()
    text = err.decode()
    assert proc.returncode == 1
    assert f"cannot bind SIP udp on 127.0.0.1:{port}: Address already in use (set VG_SIP_PORT" in text
    assert "Traceback" not in text
    assert "ignoring unknown environment variable VG_HTTP_PORTT" in text
