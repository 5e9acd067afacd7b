"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for one G.711 audio stream.

``SessionDescription`` keeps every line in order (unknown ones too) and serialises back to the
same lines; typed views (origin, connection, rtpmap, direction ...) are read on demand.
``build_offer`` / ``answer_offer`` / ``accept_answer`` implement the negotiation the softphones
need: PCMU/PCMA, RFC 4733 telephone-event, direction attributes, RFC 2543 ``c=0.0.0.0`` hold.
Errors are ``SdpError``: status_hint 400 for SDP that does not parse, 488 for SDP we cannot accept.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from .errors import LocalSipError, SdpError

__all__ = [
    "Connection",
    "LocalMedia",
    "MediaDescription",
    "NegotiatedMedia",
    "Origin",
    "SdpError",
    "SessionDescription",
    "accept_answer",
    "answer_offer",
    "build_offer",
    "parse_sdp",
]

#: RFC 3551 Table 4 static payload types of 8 kHz mono audio codecs we can name in an offer.
STATIC_PAYLOAD_TYPES: dict[str, int] = {"PCMU": 0, "GSM": 3, "G723": 4, "PCMA": 8, "G722": 9, "G729": 18}
_STATIC_BY_PT = {pt: name for name, pt in STATIC_PAYLOAD_TYPES.items()}
#: Dynamic payload type we offer for RFC 4733 telephone-event (the answerer reuses the offerer's).
DTMF_PAYLOAD_TYPE = 101
DTMF_EVENTS = "0-15"  # RFC 4733 §3.2: the DTMF digits, *, #, A-D
CLOCK_RATE = 8000
#: RTP profiles we answer (AVPF is AVP plus feedback we may ignore, RFC 4585 §3.2); SRTP/DTLS are not.
RTP_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF"})
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """What we can do: our RTP address/port, codecs by preference, DTMF, ptime, direction."""

    address: str
    port: int
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    dtmf: bool = True
    ptime: int = 20
    direction: str = "sendrecv"
    session_id: int = 0
    session_version: int = 0
    username: str = "-"


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome of one offer/answer exchange, from our side.

    ``payload_type`` / ``dtmf_payload_type`` are the numbers to *send* with (the peer's, RFC 3264
    §5.1); ``direction`` is ours; ``ptime`` is the packet time the peer asked for (or ours).
    """

    remote_address: str
    remote_port: int
    codec: str
    payload_type: int
    dtmf_payload_type: int | None
    direction: str
    ptime: int


# ------------------------------------------------------------------------------------- the model
@dataclass(frozen=True, slots=True)
class Connection:
    """c=<nettype> <addrtype> <connection-address> (RFC 4566 §5.7)."""

    nettype: str
    addrtype: str
    address: str  # as written, with any /ttl/count

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_hold(self) -> bool:
        """RFC 2543 hold / "no address yet": neither RTP nor RTCP is sent there (RFC 3264 §8.4)."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Origin:
    """o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address> (§5.2)."""

    username: str
    session_id: str
    session_version: str
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return " ".join([self.username, self.session_id, self.session_version, self.nettype, self.addrtype,
                         self.address])


def _attributes(lines: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    # attribute = (att-field ":" att-value) / att-field                    (RFC 4566 §9)
    out: list[tuple[str, str | None]] = []
    for kind, value in lines:
        if kind == "a":
            name, colon, rest = value.partition(":")
            out.append((name, rest if colon else None))
    return out


def _connection(lines: list[tuple[str, str]]) -> Connection | None:
    for kind, value in lines:
        if kind == "c":
            return _parse_connection(value)
    return None


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"malformed c= line {value[:80]!r}", 400)
    return Connection(*parts)


def _direction(attrs: list[tuple[str, str | None]]) -> str | None:
    for name, value in attrs:
        if value is None and name in DIRECTIONS:
            return name
    return None


@dataclass(slots=True)
class MediaDescription:
    """One m= section: the m= line's fields, then its other lines in order (RFC 4566 §5.14)."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        # media-field = %x6d "=" media SP port ["/" integer] SP proto 1*(SP fmt)
        parts = value.split()
        m = re.fullmatch(r"([0-9]{1,5})(?:/([0-9]{1,5}))?", parts[1]) if len(parts) >= 3 else None
        if m is None or int(m.group(1)) > 65535:
            raise SdpError(f"malformed m= line {value[:80]!r}", 400)
        count = int(m.group(2)) if m.group(2) else None
        return cls(media=parts[0], port=int(m.group(1)), proto=parts[2], formats=parts[3:], port_count=count)

    def m_line(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return " ".join([self.media, port, self.proto, *self.formats])

    @property
    def connection(self) -> Connection | None:
        return _connection(self.lines)

    @property
    def attributes(self) -> list[tuple[str, str | None]]:
        return _attributes(self.lines)

    def attribute(self, name: str) -> str | None:
        """Value of the first a=name:value (``""`` for a flag), None when absent."""
        for k, v in self.attributes:
            if k == name:
                return "" if v is None else v
        return None

    @property
    def direction(self) -> str | None:
        """The explicit direction attribute of this stream, if any."""
        return _direction(self.attributes)

    def rtpmap(self, pt: int) -> tuple[str, int, int] | None:
        """(encoding, clock rate, channels) of a payload type: its a=rtpmap, else RFC 3551's table."""
        # a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
        for name, value in self.attributes:
            if name != "rtpmap" or value is None:
                continue
            m = re.fullmatch(r"[ \t]*([0-9]{1,3})[ \t]+([^/ \t]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?[ \t]*", value)
            if m and int(m.group(1)) == pt:
                return m.group(2), int(m.group(3)), int(m.group(4) or 1)
        if pt in _STATIC_BY_PT:
            return _STATIC_BY_PT[pt], CLOCK_RATE, 1
        return None

    def fmtp(self, pt: int) -> str | None:
        for name, value in self.attributes:
            if name == "fmtp" and value is not None:
                fmt, _, params = value.strip().partition(" ")
                if fmt == str(pt):
                    return params.strip()
        return None

    @property
    def ptime(self) -> int | None:
        """a=ptime in whole milliseconds, None when absent or unusable."""
        value = self.attribute("ptime")
        try:
            ms = round(float(value)) if value else 0
        except ValueError:
            return None
        return ms if 0 < ms <= 1000 else None


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP: session-level lines (v= o= s= c= t= a= ... in order) and the m= sections."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Read an SDP body; raises ``SdpError`` (status_hint 400) when it is not one."""
        text = data.decode("utf-8", errors="surrogateescape") if isinstance(data, bytes) else data
        sd = cls()
        current: list[tuple[str, str]] = sd.lines
        for raw in re.split(r"\r?\n", text):
            if not raw.strip():
                continue  # blank lines (a trailing one is common) carry nothing
            # <type>=<value>, type one lower-case letter, no white space around "=" (§5)
            if len(raw) < 2 or raw[1] != "=" or not ("a" <= raw[0] <= "z"):
                raise SdpError(f"malformed SDP line {raw[:80]!r}", 400)
            kind, value = raw[0], raw[2:]
            if not sd.lines and not sd.media and (kind, value.strip()) != ("v", "0"):
                raise SdpError("SDP must start with v=0", 400)
            if kind == "m":
                section = MediaDescription.parse_m_line(value)
                sd.media.append(section)
                current = section.lines
                continue
            if kind == "c":
                _parse_connection(value)
            current.append((kind, value))
        if not sd.lines:
            raise SdpError("empty SDP", 400)
        return sd

    def to_bytes(self) -> bytes:
        out = [f"{k}={v}" for k, v in self.lines]
        for m in self.media:
            out.append(f"m={m.m_line()}")
            out.extend(f"{k}={v}" for k, v in m.lines)
        return ("\r\n".join(out) + "\r\n").encode("utf-8", errors="surrogateescape")

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8", errors="surrogateescape")

    def value(self, kind: str) -> str | None:
        """The first session-level line of that type."""
        for k, v in self.lines:
            if k == kind:
                return v
        return None

    @property
    def origin(self) -> Origin | None:
        parts = (self.value("o") or "").split()
        return Origin(*parts) if len(parts) == 6 else None

    @property
    def connection(self) -> Connection | None:
        return _connection(self.lines)

    @property
    def attributes(self) -> list[tuple[str, str | None]]:
        return _attributes(self.lines)

    @property
    def direction(self) -> str | None:
        return _direction(self.attributes)

    def stream_connection(self, m: MediaDescription) -> Connection | None:
        """Media-level c= overrides session-level c= (RFC 4566 §5.7)."""
        return m.connection or self.connection

    def stream_direction(self, m: MediaDescription) -> str:
        """Media-level direction, else session-level, else sendrecv (RFC 3264 §5.1)."""
        return m.direction or self.direction or "sendrecv"


def parse_sdp(data: bytes | str) -> SessionDescription:
    return SessionDescription.parse(data)


# ---------------------------------------------------------------------------- offer / answer
def _flags(direction: str) -> tuple[bool, bool]:
    """(send, receive) of a direction attribute."""
    return direction in ("sendrecv", "sendonly"), direction in ("sendrecv", "recvonly")


def _remote_flags(sd: SessionDescription, m: MediaDescription, conn: Connection) -> tuple[bool, bool]:
    """(sends, receives) of the remote side of a stream. RFC 3264 §8.4: c=0.0.0.0 is the legacy way
    of saying "send nothing to me", so such a peer does not receive whatever its direction says."""
    send, recv = _flags(sd.stream_direction(m))
    return send, recv and not conn.is_hold


def _direction_of(send: bool, recv: bool) -> str:
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
        (send, recv), "inactive")


def _check_local(local: LocalMedia) -> None:
    if local.direction not in DIRECTIONS:
        raise LocalSipError(f"unknown direction {local.direction!r}")
    unknown = [c for c in local.codecs if c.upper() not in STATIC_PAYLOAD_TYPES]
    if unknown or not local.codecs:
        raise LocalSipError(f"cannot offer codecs {local.codecs!r} (static payload types only)")
    if not 0 <= local.port <= 65535:
        raise LocalSipError(f"bad RTP port {local.port}")


def _check_connection(conn: Connection, local: LocalMedia) -> None:
    """Refuse a connection address our RTP socket cannot send to (488, RFC 3264 §6).

    RFC 4566 §5.7 allows a host name, but resolving it would put a DNS lookup, with a timeout chosen
    by whoever wrote the SDP, on the media path; and an IPv6 address is unreachable from an IPv4
    socket (and vice versa). The Warning codes are RFC 3261 §20.43's 300 and 301.
    """
    if conn.nettype.upper() != "IN":
        raise SdpError(f"network type {conn.nettype[:20]!r} is not supported (IN only)", 488, warn_code=300)
    family = 6 if ":" in local.address else 4
    addrtype = f"IP{family}"
    if conn.addrtype.upper() != addrtype:
        raise SdpError(f"address type {conn.addrtype[:20]!r} is not supported ({addrtype} only)", 488,
                       warn_code=301)
    try:
        address = ipaddress.ip_address(conn.host)
    except ValueError:
        raise SdpError(f"connection address {conn.host[:80]!r} is not an {addrtype} address literal", 488,
                       warn_code=301) from None
    if address.version != family:
        raise SdpError(f"connection address {conn.host[:80]!r} is not an {addrtype} address", 488,
                       warn_code=301)


def _session_lines(local: LocalMedia, timing: str = "0 0") -> list[tuple[str, str]]:
    addrtype = "IP6" if ":" in local.address else "IP4"
    return [
        ("v", "0"),
        ("o", f"{local.username} {local.session_id} {local.session_version} IN {addrtype} {local.address}"),
        ("s", "-"),
        ("c", f"IN {addrtype} {local.address}"),
        ("t", timing),
    ]


def _audio_lines(codecs: list[tuple[str, int]], dtmf_pt: int | None, local: LocalMedia,
                 direction: str) -> list[tuple[str, str]]:
    lines = [("a", f"rtpmap:{pt} {name}/{CLOCK_RATE}") for name, pt in codecs]
    if dtmf_pt is not None:
        lines += [("a", f"rtpmap:{dtmf_pt} telephone-event/{CLOCK_RATE}"), ("a", f"fmtp:{dtmf_pt} {DTMF_EVENTS}")]
    lines += [("a", f"ptime:{local.ptime}"), ("a", direction)]
    return lines


def build_offer(local: LocalMedia) -> bytes:
    """An offer with one audio stream: our codecs in preference order, then telephone-event."""
    _check_local(local)
    codecs = [(c.upper(), STATIC_PAYLOAD_TYPES[c.upper()]) for c in local.codecs]
    dtmf_pt = DTMF_PAYLOAD_TYPE if local.dtmf else None
    formats = [str(pt) for _, pt in codecs] + ([str(dtmf_pt)] if dtmf_pt is not None else [])
    audio = MediaDescription("audio", local.port, "RTP/AVP", formats,
                             lines=_audio_lines(codecs, dtmf_pt, local, local.direction))
    return SessionDescription(_session_lines(local), [audio]).to_bytes()


def _payload_types(m: MediaDescription) -> list[int]:
    return [int(f) for f in m.formats if f.isdigit() and len(f) <= 3 and int(f) <= 127]


def _pick_codec(m: MediaDescription, codecs: tuple[str, ...]) -> tuple[str, int] | None:
    """First format of ``m`` (its sender's preference, RFC 3264 §6.1) that is one of ``codecs``."""
    wanted = {c.upper() for c in codecs}
    for pt in _payload_types(m):
        rtpmap = m.rtpmap(pt)
        if rtpmap and rtpmap[0].upper() in wanted and rtpmap[1] == CLOCK_RATE and rtpmap[2] == 1:
            return rtpmap[0].upper(), pt
    return None


def _pick_dtmf(m: MediaDescription) -> int | None:
    for pt in _payload_types(m):
        rtpmap = m.rtpmap(pt)
        if rtpmap and rtpmap[0].lower() == "telephone-event" and rtpmap[1] == CLOCK_RATE:
            return pt
    return None


def answer_offer(offer: bytes, local: LocalMedia) -> tuple[bytes, NegotiatedMedia]:
    """Answer an offer (RFC 3264 §6): accept the first usable audio stream, reject the others.

    The answer keeps the offer's m= lines in number and order (rejected ones with port 0) and its
    t= line, picks the first offered codec we support, reuses the offerer's payload types and
    mirrors the direction (sendonly -> recvonly, ...). Raises ``SdpError`` 488 if no audio stream
    has a codec in common or its address is not one we can send to, 400 if the offer does not parse.
    """
    _check_local(local)
    sd = SessionDescription.parse(offer)
    chosen: tuple[int, str, int, int | None] | None = None  # (index, codec, pt, dtmf pt)
    for i, m in enumerate(sd.media):
        if m.media.lower() == "audio" and m.port != 0 and m.proto.upper() in RTP_PROFILES:
            pick = _pick_codec(m, local.codecs)
            if pick is not None:
                chosen = (i, pick[0], pick[1], _pick_dtmf(m) if local.dtmf else None)
                break
    if chosen is None:
        has_audio = any(m.media.lower() == "audio" and m.port != 0 for m in sd.media)
        raise SdpError("no common audio codec in the offer" if has_audio else "no audio stream in the offer", 488)
    index, codec, pt, dtmf_pt = chosen
    offered = sd.media[index]
    conn = sd.stream_connection(offered)
    if conn is None:
        raise SdpError("offer has no connection address for its audio stream", 400)
    _check_connection(conn, local)
    # RFC 3264 §6.1: the answer's direction mirrors the offer's, within what we want ourselves;
    # §8.4: c=0.0.0.0 means "send nothing to me", i.e. the offerer does not receive.
    their_send, their_recv = _remote_flags(sd, offered, conn)
    our_send, our_recv = _flags(local.direction)
    direction = _direction_of(our_send and their_recv, our_recv and their_send)
    media: list[MediaDescription] = []
    for i, m in enumerate(sd.media):
        if i == index:
            formats = [str(pt)] + ([str(dtmf_pt)] if dtmf_pt is not None else [])
            media.append(MediaDescription("audio", local.port, m.proto, formats,
                                          lines=_audio_lines([(codec, pt)], dtmf_pt, local, direction)))
        else:
            # RFC 3264 §6: a rejected stream has port 0 and at least one (ignored) format
            media.append(MediaDescription(m.media, 0, m.proto, m.formats[:1] or ["0"]))
    answer = SessionDescription(_session_lines(local, sd.value("t") or "0 0"), media)
    negotiated = NegotiatedMedia(
        remote_address=conn.host, remote_port=offered.port, codec=codec, payload_type=pt,
        dtmf_payload_type=dtmf_pt, direction=direction, ptime=offered.ptime or local.ptime,
    )
    return answer.to_bytes(), negotiated


def accept_answer(answer: bytes, offer_local: LocalMedia) -> NegotiatedMedia:
    """Read the answer to an offer made by ``build_offer(offer_local)`` (RFC 3264 §7).

    Raises ``SdpError`` 488 when the audio stream was rejected (port 0), has an address we cannot
    send to or names no codec we offered, 400 when the answer does not parse or has no address.
    """
    sd = SessionDescription.parse(answer)
    audio = next((m for m in sd.media if m.media.lower() == "audio"), None)
    if audio is None or audio.port == 0:
        raise SdpError("the answer rejected the audio stream", 488)
    pick = _pick_codec(audio, offer_local.codecs)
    if pick is None:
        raise SdpError("the answer names no codec we offered", 488)
    conn = sd.stream_connection(audio)
    if conn is None:
        raise SdpError("answer has no connection address for its audio stream", 400)
    _check_connection(conn, offer_local)
    their_send, their_recv = _remote_flags(sd, audio, conn)
    our_send, our_recv = _flags(offer_local.direction)
    return NegotiatedMedia(
        remote_address=conn.host, remote_port=audio.port, codec=pick[0], payload_type=pick[1],
        dtmf_payload_type=_pick_dtmf(audio) if offer_local.dtmf else None,
        direction=_direction_of(our_send and their_recv, our_recv and their_send),
        ptime=audio.ptime or offer_local.ptime,
    )
