"""Typed settings: TOML file -> pydantic models, then environment overrides.

The embedded default lives in ``config/gateway.toml`` at the project root. Environment variables
(``VG_HTTP_PORT`` ...) override single values so tests and containers need no file of their own.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from media.sources import AudioSourceError, make_source

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

def _is_generated_source(spec: str) -> bool:
    low = spec.strip().lower()
    return low == "silence" or low.startswith("tone:")


PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "gateway.toml"


class ConfigError(Exception):
    """The configuration file or an override is invalid; the message says which value and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Strict):
    """``[http]``: where the Voice API and CometD listen, and how clients are let in."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str = ""
    csrf: StrictBool = True
    cors_origins: list[str] = ["*"]
    session_idle_seconds: int = Field(8 * 3600, gt=0)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not (v.startswith(("http://", "https://")) and len(v.split("://", 1)[1]) > 0):
            raise ValueError("must be empty or an absolute http(s) URL such as https://voice.example.com")
        return v


class SipSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(5060, ge=0, le=65535)
    transports: list[Literal["udp", "tcp"]] = ["udp", "tcp"]
    registrar: str = ""
    outbound_proxy: str = ""
    domain: str = ""
    register_expires: int = Field(300, ge=10)
    trace: StrictBool = False
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
    auto_answer: StrictBool = False
    audio_source: str = "silence"
    after_call_work: StrictBool = False
    wrap_up_seconds: int = Field(0, ge=0)

    @field_validator("audio_source")
    @classmethod
    def _source(cls, v: str) -> str:
        """``silence`` and ``tone:<Hz>[:<amplitude>]`` are checked here; a WAV path is checked by
        ``Settings`` once the audio directory it is relative to is known."""
        v = v.strip() or "silence"
        if _is_generated_source(v):
            try:
                make_source(v)
            except AudioSourceError as exc:
                raise ValueError(str(exc)) from None
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
        for d in self.devices:
            if not _is_generated_source(d.audio_source):
                try:
                    make_source(d.audio_source, self.audio_path)
                except AudioSourceError as exc:
                    raise ValueError(f"device {d.number!r} audio_source {d.audio_source!r}: {exc}") from None
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
    from_env: dict[tuple[str, str], str] = {}
    for name, (section, key, typ) in ENV_OVERRIDES.items():
        if name in env:
            raw.setdefault(section, {})[key] = _coerce(name, env[name], typ)
            from_env[(section, key)] = name
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
            for key in values:
                from_env.pop((section, key), None)
        else:
            raw[section] = values
    raw.setdefault("base_dir", str(Path.cwd() if path else PROJECT_ROOT))
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, cfg_path, from_env)) from None


def _describe(exc: ValidationError, cfg_path: Path, from_env: dict[tuple[str, str], str]) -> str:
    """One line per problem, naming the setting, and the environment variable when one set it."""
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        where = ".".join(loc) or "configuration"
        env_name = from_env.get(loc[:2]) if len(loc) >= 2 else None
        if env_name is None and len(loc) == 1:  # a section-level check, e.g. the RTP port range
            names = sorted(n for (section, _), n in from_env.items() if section == loc[0])
            env_name = ", ".join(names) or None
        lines.append(f"  {where}: {msg}" + (f" (set by {env_name})" if env_name else ""))
    return f"{cfg_path}: invalid configuration:\n" + "\n".join(lines)
