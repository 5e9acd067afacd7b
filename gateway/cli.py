"""Command line: ``voice-gateway serve [--config PATH]`` and ``voice-gateway check-config``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import FrameType

import uvicorn

from .config import DEFAULT_CONFIG_PATH, ENV_OVERRIDES, ConfigError, Settings, load_settings

__all__ = ["main"]

log = logging.getLogger("gateway")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def _bind_http(settings: Settings) -> socket.socket:
    """Bind the HTTP socket ourselves so port 0 resolves before startup (reported at /health)."""
    # proto=IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets whose proto says TCP (accepted
    # sockets inherit it), and without it every response waits ~40 ms for Nagle + the client's delayed ACK
    sock = socket.socket(socket.AF_INET6 if ":" in settings.http.host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.http.host, settings.http.port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"voice-gateway: cannot bind HTTP on {settings.http.host}:{settings.http.port}: {exc}"
                         " (set VG_HTTP_PORT or [http] port; 0 picks a free port)") from None
    sock.listen(256)
    sock.setblocking(False)
    return sock


def _check_sip_port(settings: Settings) -> None:
    """Fail with one clear line (not a start-up traceback) when the SIP port is taken. The endpoint
    binds for real a moment later; this only catches the common case of another SIP process."""
    sip = settings.sip
    if sip.port == 0:
        return
    family = socket.AF_INET6 if ":" in sip.host else socket.AF_INET
    kinds = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}
    for transport in sip.transports:
        probe = socket.socket(family, kinds[transport])
        try:
            if transport == "tcp":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((sip.host, sip.port))
        except OSError as exc:
            reason = exc.strerror or exc
            raise SystemExit(f"voice-gateway: cannot bind SIP {transport} on {sip.host}:{sip.port}: {reason}"
                             " (set VG_SIP_PORT or [sip] port; 0 picks a free port)") from None
        finally:
            probe.close()


def _warn_unknown_env(env: Mapping[str, str]) -> None:
    """A misspelt override (VG_HTTP_PORTT) would otherwise be ignored without a word."""
    for name in sorted(env):
        if name.startswith("VG_") and name not in ENV_OVERRIDES and name not in _SCRIPT_ENV:
            log.warning("ignoring unknown environment variable %s (known: %s)", name, ", ".join(ENV_OVERRIDES))


#: VG_* variables the scripts read (not settings)
_SCRIPT_ENV = frozenset({"VG_VENV"})


class _GatewayServer(uvicorn.Server):
    """uvicorn drains open requests *before* the app's lifespan shutdown runs, so a held CometD
    long-poll would make every stop wait for the graceful timeout and then end in a 500. On the
    first SIGINT/SIGTERM we answer the held connects (and close websockets) first, then exit."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._on_stop = on_stop
        self._stopping: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # called from the signal handler (uvicorn installs it with signal.signal): hop onto the loop
        self._loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if self._stopping is not None:  # a second signal: stop now
            self.should_exit = self.force_exit = True
            return
        self._stopping = self._loop.create_task(self._stop())

    async def _stop(self) -> None:
        try:
            await self._on_stop()
        except Exception:
            log.exception("closing CometD clients before shutdown failed")
        finally:
            self.should_exit = True


async def _serve(settings: Settings) -> int:
    from .app import create_app

    _check_sip_port(settings)
    sock = _bind_http(settings)
    http_port = sock.getsockname()[1]
    app = create_app(settings, http_port=http_port)
    config = uvicorn.Config(app, log_config=None, lifespan="on", ws="websockets-sansio", timeout_graceful_shutdown=3)
    server = _GatewayServer(config, on_stop=app.state.cometd.close)
    await server.serve(sockets=[sock])
    return 0 if server.started else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway (HTTP Voice API + CometD + SIP lines)")
    check = sub.add_parser("check-config", help="validate a config file and print the effective settings")
    for p in (serve, check):
        p.add_argument("--config", metavar="PATH", help=f"TOML config file (default: {DEFAULT_CONFIG_PATH})")
        p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        _warn_unknown_env(os.environ)
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"voice-gateway: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        dumped = settings.model_dump(mode="json")
        for u in dumped.get("users", []):
            u["password"] = "***"
        for d in dumped.get("devices", []):
            d["sip_password"] = "***"
        import json

        print(json.dumps(dumped, indent=2))
        return 0
    try:
        return asyncio.run(_serve(settings))
    except KeyboardInterrupt:
        return 0
