"""Typed settings: TOML file -> pydantic models, then environment overrides.

The embedded default lives in ``config/gateway.toml`` at the project root. Environment variables
(``VG_HTTP_PORT`` ...) override single values so tests and containers need no file of their own.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "DeviceSettings",
    "HttpSettings",
    "MediaSettings",
    "Settings",
    "SipSettings",
    "StorageSettings",
    "UserSettings",
    "load_settings",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "gateway.toml"


class ConfigError(Exception):
    """The configuration file or an override is invalid; the message says which value and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str = ""
    csrf: bool = True
    cors_origins: list[str] = ["*"]
    session_idle_seconds: int = Field(8 * 3600, gt=0)


class SipSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(5060, ge=0, le=65535)
    transports: list[Literal["udp", "tcp"]] = ["udp", "tcp"]
    registrar: str = ""
    outbound_proxy: str = ""
    domain: str = ""
    register_expires: int = Field(300, ge=10)
    trace: bool = False
    user_agent: str = "voice-gateway/0.1"
    t1: float = Field(0.5, gt=0, description="RFC 3261 Table 4 T1 (RTT estimate), seconds")
    t2: float = Field(4.0, gt=0)
    t4: float = Field(5.0, gt=0)

    @field_validator("registrar", "outbound_proxy")
    @classmethod
    def _sip_uri(cls, v: str) -> str:
        v = v.strip()
        if v and not (v.startswith("sip:") or v.startswith("sips:")):
            raise ValueError("must be empty or a SIP URI such as sip:127.0.0.1:5070")
        return v


class MediaSettings(_Strict):
    rtp_port_min: int = Field(20000, ge=0, le=65535)
    rtp_port_max: int = Field(20999, ge=0, le=65535)
    codecs: list[Literal["PCMU", "PCMA"]] = ["PCMU", "PCMA"]
    ptime: int = Field(20, ge=10, le=60)
    recordings_dir: str = "recordings"
    audio_dir: str = "audio"

    @model_validator(mode="after")
    def _port_range(self) -> MediaSettings:
        if (self.rtp_port_min == 0) != (self.rtp_port_max == 0):
            raise ValueError("rtp_port_min and rtp_port_max must both be 0 (any free port) or both set")
        if self.rtp_port_min > self.rtp_port_max:
            raise ValueError("rtp_port_min must not exceed rtp_port_max")
        if not self.codecs:
            raise ValueError("codecs must list at least one of PCMU, PCMA")
        return self


class StorageSettings(_Strict):
    data_dir: str = "data"


class UserSettings(_Strict):
    username: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    roles: list[Literal["agent", "supervisor"]] = ["agent"]
    devices: list[str] = []


class DeviceSettings(_Strict):
    number: str = Field(min_length=1, pattern=r"^[0-9A-Za-z_.+*#-]+$")
    sip_user: str = ""
    sip_password: str = Field("", repr=False)
    display_name: str = ""
    auto_answer: bool = False
    audio_source: str = "silence"
    after_call_work: bool = False
    wrap_up_seconds: int = Field(0, ge=0)

    @field_validator("audio_source")
    @classmethod
    def _source(cls, v: str) -> str:
        v = v.strip() or "silence"
        if v.startswith("tone:"):
            try:
                hz = float(v[5:])
            except ValueError:
                raise ValueError("tone source must look like tone:1000") from None
            if not 0 < hz < 4000:
                raise ValueError("tone frequency must be between 0 and 4000 Hz (8 kHz sampling)")
        return v

    @model_validator(mode="after")
    def _defaults(self) -> DeviceSettings:
        if not self.sip_user:
            self.sip_user = self.number
        return self


class Settings(_Strict):
    http: HttpSettings = HttpSettings()
    sip: SipSettings = SipSettings()
    media: MediaSettings = MediaSettings()
    storage: StorageSettings = StorageSettings()
    users: list[UserSettings] = []
    devices: list[DeviceSettings] = []
    base_dir: Path = Field(default=PROJECT_ROOT, exclude=True)
    """Directory that relative paths (recordings, data, audio) are resolved against."""

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        numbers = [d.number for d in self.devices]
        dup = {n for n in numbers if numbers.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate device number(s): {', '.join(sorted(dup))}")
        names = [u.username for u in self.users]
        dupu = {n for n in names if names.count(n) > 1}
        if dupu:
            raise ValueError(f"duplicate username(s): {', '.join(sorted(dupu))}")
        owner: dict[str, str] = {}
        for u in self.users:
            for n in u.devices:
                if n not in numbers:
                    raise ValueError(f"user {u.username!r} lists device {n!r}, which is not defined in [[devices]]")
                if n in owner:
                    raise ValueError(f"device {n!r} is assigned to both {owner[n]!r} and {u.username!r}")
                owner[n] = u.username
        return self

    def path(self, value: str) -> Path:
        """Resolve a configured path relative to ``base_dir``."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def recordings_path(self) -> Path:
        return self.path(self.media.recordings_dir)

    @property
    def data_path(self) -> Path:
        return self.path(self.storage.data_dir)

    @property
    def audio_path(self) -> Path:
        return self.path(self.media.audio_dir)


#: environment variable -> (section, key, type)
ENV_OVERRIDES: dict[str, tuple[str, str, type]] = {
    "VG_HTTP_HOST": ("http", "host", str),
    "VG_HTTP_PORT": ("http", "port", int),
    "VG_HTTP_PUBLIC_URL": ("http", "public_url", str),
    "VG_HTTP_CSRF": ("http", "csrf", bool),
    "VG_SIP_HOST": ("sip", "host", str),
    "VG_SIP_PORT": ("sip", "port", int),
    "VG_SIP_REGISTRAR": ("sip", "registrar", str),
    "VG_SIP_DOMAIN": ("sip", "domain", str),
    "VG_SIP_TRACE": ("sip", "trace", bool),
    "VG_RTP_PORT_MIN": ("media", "rtp_port_min", int),
    "VG_RTP_PORT_MAX": ("media", "rtp_port_max", int),
    "VG_RECORDINGS_DIR": ("media", "recordings_dir", str),
    "VG_DATA_DIR": ("storage", "data_dir", str),
}


def _coerce(name: str, raw: str, typ: type) -> Any:
    if typ is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if typ is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r}: expected true or false")
    return raw


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Settings:
    """Read ``path`` (default: the embedded config), apply ``VG_*`` env vars, then ``overrides``.

    Relative paths in the file resolve against the current directory for a user-supplied file and
    against the project root for the embedded default.
    """
    env = os.environ if env is None else env
    cfg_path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        raw: dict[str, Any] = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {cfg_path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
    for name, (section, key, typ) in ENV_OVERRIDES.items():
        if name in env:
            raw.setdefault(section, {})[key] = _coerce(name, env[name], typ)
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    raw.setdefault("base_dir", str(Path.cwd() if path else PROJECT_ROOT))
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc or '(root)'}: {err['msg']}")
        raise ConfigError(f"{cfg_path}: invalid configuration:\n" + "\n".join(lines)) from None
