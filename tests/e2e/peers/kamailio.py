"""kamailio as a loopback registrar + proxy for end-to-end tests.

The config is generated per test from `kamailio.cfg` (a template next to this file): the port, the
subscriber table (plain-text passwords in db_text, RFC 3261 §22 digest auth on) and the user regex come
from the test.  kamailio runs in the foreground (-DD -E) as our child; readiness and registrations are
read over its own binrpc control socket with kamcmd.
"""

from __future__ import annotations

import asyncio
import glob
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .ports import HOST, free_port
from .process import ManagedProcess, PeerError, require_binary, tail

TEMPLATE = Path(__file__).with_name("kamailio.cfg")
DEFAULT_USERS: dict[str, str] = {str(u): f"pw{u}" for u in range(1001, 1011)}
_USER_OK = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class Contact:
    """One binding of an AoR as kamailio's usrloc reports it."""

    uri: str
    expires: int | None
    received: str | None
    user_agent: str | None


def _module_dir() -> str:
    found = sorted(glob.glob("/usr/lib/*/kamailio/modules")) + sorted(glob.glob("/usr/lib/kamailio/modules"))
    if not found:
        raise PeerError("kamailio module directory not found under /usr/lib; run scripts/setup-tests.sh")
    return found[0] + "/"


def _parse_contacts(text: str) -> list[Contact]:
    """Contacts from `kamcmd ul.lookup` output: binrpc pretty-print with one `Contact: { Key: value ... }` each."""
    blocks: list[dict[str, str]] = []
    for raw in text.splitlines():
        key, sep, value = raw.strip().partition(":")
        value = value.strip()
        if key == "Contact" and value == "{":
            blocks.append({})
        elif blocks and sep and value not in ("{", ""):
            blocks[-1].setdefault(key, value)

    def field(block: dict[str, str], key: str) -> str | None:
        v = block.get(key)
        return None if v in (None, "[not set]") else v

    contacts = []
    for b in blocks:
        if "Address" not in b:
            continue
        exp = b.get("Expires", "")
        contacts.append(
            Contact(
                uri=b["Address"],
                expires=int(exp) if exp.lstrip("-").isdigit() else None,
                received=field(b, "Received"),
                user_agent=field(b, "User-Agent"),
            )
        )
    return contacts


class Kamailio:
    """A kamailio child process: `await k.start()`, `await k.registered_contacts("1001")`, `await k.stop()`."""

    host = HOST

    def __init__(
        self,
        workdir: Path,
        users: Mapping[str | int, str] | None = None,
        *,
        port: int | None = None,
        auth: bool = True,
        gateway_uri: str | None = None,
        name: str = "kamailio",
        qop: bool = False,
        algorithm: str = "MD5",
    ) -> None:
        if algorithm not in ("MD5", "SHA-256"):
            raise ValueError(f"kamailio digest algorithm {algorithm!r}: MD5 or SHA-256")
        self.qop = qop
        self.algorithm = algorithm
        self.workdir = Path(workdir)
        self.users = {str(u): p for u, p in (DEFAULT_USERS if users is None else users).items()}
        for user in self.users:
            if not _USER_OK.match(user):
                raise ValueError(f"kamailio user {user!r}: only letters, digits, '_' and '-' are allowed")
        if not self.users:
            raise ValueError("kamailio users: the subscriber table needs at least one user")
        self.port = port or free_port(udp=True, tcp=True)
        self.auth = auth
        self.gateway_uri = gateway_uri
        self.name = name
        self.run_dir = self.workdir / "run"
        self.db_dir = self.workdir / "dbtext"
        self.cfg_path = self.workdir / "kamailio.cfg"
        self.ctl = f"unix:{self.run_dir}/kamailio_ctl"
        self.process = ManagedProcess(name, self._argv(), self.workdir / "kamailio.log")

    # ---- addresses -------------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """The proxy/registrar URI, e.g. sip:127.0.0.1:40123 (what a line's `registrar` setting takes)."""
        return f"sip:{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def aor(self, user: str | int) -> str:
        return f"sip:{user}@{self.host}:{self.port}"

    # ---- files -----------------------------------------------------------------------------------
    def _argv(self) -> list[str]:
        argv = [
            require_binary("kamailio"),
            "-f",
            str(self.cfg_path),
            "-DD",
            "-E",
            "-m",
            "64",
            "-M",
            "8",
            "-P",
            str(self.run_dir / "kamailio.pid"),
        ]
        if self.auth:
            argv += ["-A", "WITH_AUTH"]
        if self.gateway_uri:
            argv += ["-A", "WITH_GW"]
        return argv

    def user_regex(self) -> str:
        return "^(" + "|".join(sorted(self.users)) + ")$"

    def write_config(self) -> Path:
        """Generate kamailio.cfg and the db_text tables into workdir (also handy for `kamailio -c`)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.db_dir.mkdir(parents=True, exist_ok=True)
        (self.db_dir / "version").write_text(
            "id(int,auto) table_name(string) table_version(int) \n0:version:1\n0:subscriber:7\n0:location:9\n"
        )
        # ha1/ha1b must be declared nullable, or db_text rejects the empty fields and every auth fails
        rows = ["id(int,auto) username(string) domain(string) password(string) ha1(string,null) ha1b(string,null) "]
        for i, (user, password) in enumerate(sorted(self.users.items()), 1):
            if any(c in password for c in ":\n\\"):
                raise ValueError(f"kamailio password of {user!r}: ':', '\\\\' and newlines are not allowed")
            rows.append(f"{i}:{user}:{self.host}:{password}::")
        (self.db_dir / "subscriber").write_text("\n".join(rows) + "\n")
        values = {
            "PORT": str(self.port),
            "USER_RE": self.user_regex(),
            "DBURL": f"text://{self.db_dir}",
            "CTL_SOCK": self.ctl,
            "RPC_FIFO": str(self.run_dir / "kamailio_rpc.fifo"),
            "RPC_SOCK": str(self.run_dir / "kamailio_rpc.sock"),
            "GW_URI": self.gateway_uri or "sip:127.0.0.1:9",
            "MPATH": _module_dir(),
            "AUTH_FLAGS": "1" if self.qop else "0",
            "AUTH_ALGORITHM": self.algorithm,
        }
        text = TEMPLATE.read_text()
        for key, value in values.items():
            text = text.replace(f"@@{key}@@", value)
        leftover = re.findall(r"@@[A-Z_]+@@", text)
        if leftover:
            raise PeerError(f"kamailio.cfg template has unfilled placeholders: {sorted(set(leftover))}")
        self.cfg_path.write_text(text)
        return self.cfg_path

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self, timeout: float = 10.0) -> Kamailio:
        self.write_config()
        self.process.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.process.check_alive("starting")
            out = await self._kamcmd("core.uptime", check=False)
            if "uptime" in out:
                return self
            if loop.time() > deadline:
                raise PeerError(f"{self.name} not answering on {self.ctl} after {timeout}s:\n{tail(self.log_text())}")
            await asyncio.sleep(0.02)  # polling a real condition (the ctl socket) with a deadline

    async def stop(self) -> int | None:
        return await asyncio.to_thread(self.process.stop)

    async def __aenter__(self) -> Kamailio:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def log_text(self) -> str:
        return self.process.log_text()

    # ---- inspection ------------------------------------------------------------------------------
    async def _kamcmd(self, *args: str, check: bool = True, timeout: float = 5.0) -> str:
        proc = await asyncio.create_subprocess_exec(
            require_binary("kamcmd"),
            "-s",
            self.ctl,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PeerError(f"kamcmd {' '.join(args)} did not answer within {timeout}s") from None
        text = out.decode(errors="replace")
        # kamcmd exits 0 even on RPC errors; they print as "error: <code> - <reason>"
        if check and (proc.returncode != 0 or text.startswith("error:")):
            raise PeerError(f"kamcmd {' '.join(args)} failed (rc={proc.returncode}): {text.strip()}")
        return text

    async def rpc(self, *args: str) -> str:
        """Run one kamcmd RPC, e.g. `await k.rpc("ul.dump")`.  Prefix string args that look numeric with s:."""
        return await self._kamcmd(*args)

    async def registered_contacts(self, aor: str | int) -> list[Contact]:
        """Current bindings of a user (AoR = the user part, usrloc runs without domains); [] if none."""
        user = str(aor)
        if user.startswith("sip:"):
            user = user[4:].split("@", 1)[0]
        out = await self._kamcmd("ul.lookup", "location", "s:" + user, check=False)
        if "AOR not found" in out:
            return []
        if out.startswith("error:"):
            raise PeerError(f"kamcmd ul.lookup location {user} failed: {out.strip()}")
        return _parse_contacts(out)

    async def wait_registered(self, aor: str | int, count: int = 1, timeout: float = 10.0) -> list[Contact]:
        """Poll usrloc until `aor` has at least `count` bindings (kamailio emits no event we could await)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            contacts = await self.registered_contacts(aor)
            if len(contacts) >= count:
                return contacts
            self.process.check_alive(f"waiting for {aor} to register")
            if loop.time() > deadline:
                raise PeerError(
                    f"{aor} has {len(contacts)} binding(s) at {self.name}, expected >= {count} within {timeout}s;"
                    f" kamailio log:\n{tail(self.log_text())}"
                )
            await asyncio.sleep(0.05)

    async def wait_unregistered(self, aor: str | int, timeout: float = 10.0) -> None:
        """Poll usrloc until `aor` has no binding left (e.g. after the gateway's REGISTER Expires: 0)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.registered_contacts(aor):
            if loop.time() > deadline:
                raise PeerError(f"{aor} still registered at {self.name} after {timeout}s")
            await asyncio.sleep(0.05)
