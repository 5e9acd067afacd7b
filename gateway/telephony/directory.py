"""Users and their devices as configured; credential checks.

Ids are derived from names (uuid5) so they stay the same across restarts: a client that cached a
device URI keeps working after the gateway restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field

__all__ = ["DeviceConfig", "Directory", "User"]

_NAMESPACE = uuid.UUID("6f1c1d8e-3b4a-5c6d-8e9f-a0b1c2d3e4f5")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """What telephony needs to know about a configured device (line)."""

    number: str
    sip_user: str
    sip_password: str = field(repr=False)
    display_name: str = ""
    auto_answer: bool = False
    audio_source: str = "silence"
    after_call_work: bool = False
    wrap_up_seconds: int = 0

    @property
    def id(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"device:{self.number}"))


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password: str = field(repr=False)
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    roles: frozenset[str] = frozenset({"agent"})
    device_numbers: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return uuid.uuid5(_NAMESPACE, f"user:{self.username}").hex

    @property
    def is_supervisor(self) -> bool:
        return "supervisor" in self.roles

    @property
    def gws_roles(self) -> tuple[str, ...]:
        out = ["ROLE_AGENT"] if "agent" in self.roles else []
        if self.is_supervisor:
            out.append("ROLE_SUPERVISOR")
        return tuple(out)


class Directory:
    """Lookup of users by name and of devices by number or id."""

    def __init__(self, users: list[User], devices: list[DeviceConfig]) -> None:
        self._users = {u.username: u for u in users}
        self._devices = {d.number: d for d in devices}
        self._device_ids = {d.id: d for d in devices}
        self._owner = {n: u.username for u in users for n in u.device_numbers}

    @property
    def users(self) -> list[User]:
        return list(self._users.values())

    @property
    def devices(self) -> list[DeviceConfig]:
        return list(self._devices.values())

    def user(self, username: str) -> User | None:
        return self._users.get(username)

    def authenticate(self, username: str, password: str) -> User | None:
        """Constant-time password check; None for unknown user or wrong password."""
        user = self._users.get(username)
        expected = user.password if user else "\x00invalid"
        ok = hmac.compare_digest(
            hashlib.sha256(password.encode()).digest(), hashlib.sha256(expected.encode()).digest()
        )
        return user if (ok and user is not None) else None

    def device_by_number(self, number: str) -> DeviceConfig | None:
        return self._devices.get(number)

    def device_by_id(self, device_id: str) -> DeviceConfig | None:
        return self._device_ids.get(device_id)

    def owner_of(self, number: str) -> str | None:
        return self._owner.get(number)
