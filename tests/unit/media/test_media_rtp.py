"""One RTP leg driven tick by tick (no clock task): wire format, sequencing, hold/mute, receive path,
malformed packets, symmetric RTP latching, DTMF through the socket, recording, and the port pool."""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from media.codecs import PCMA, PCMU
from media.dtmf import DtmfEvent, encode_event
from media.engine import MediaEngine
from media.errors import MediaError
from media.rtp import _HEADER, _V2, RtpLeg
from media.sources import Tone

TS = 0.0


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    e = MediaEngine(port_min=0, port_max=0)
    yield e
    await e.stop()


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    return s


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    s = _udp()
    yield s
    s.close()


def _recv(peer: socket.socket) -> RtpPacket:
    return RtpPacket.parse(peer.recv(2048))


def _nothing_waiting(peer: socket.socket) -> bool:
    return not select.select([peer], [], [], 0)[0]


def _deliver(leg: RtpLeg) -> None:
    """Run the leg's reader once the datagrams sent to it are queued (loopback: immediately)."""
    assert select.select([leg._sock], [], [], 2)[0]
    leg._on_readable()


def _rtp(pt: int, seq: int, ts: int, payload: bytes, ssrc: int = 0xABCDEF01, marker: int = 0) -> bytes:
    return RtpPacket(
        payload_type=pt, marker=marker, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload
    ).serialize()


@given(
    pt=st.integers(0, 127),
    marker=st.booleans(),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
)
def test_send_header_is_byte_identical_to_aiortc(
    pt: int, marker: bool, seq: int, ts: int, ssrc: int, payload: bytes
) -> None:
    ours = _HEADER.pack(_V2, pt | 0x80 if marker else pt, seq, ts, ssrc) + payload
    ref = RtpPacket(
        payload_type=pt, marker=int(marker), sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload
    ).serialize()
    assert ours == ref


async def test_send_sequence_timestamps_marker_and_payload(engine: MediaEngine, peer: socket.socket) -> None:
    leg = await engine.open_leg()
    assert leg.local_host == "127.0.0.1" and leg.local_port in engine.ports_in_use()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", 101)
    leg.set_source(Tone(1000))
    reference = Tone(1000)
    pkts = []
    for _ in range(4):
        leg._on_tick(1, TS)
        pkts.append(_recv(peer))
    assert [p.payload_type for p in pkts] == [0] * 4
    assert [p.marker for p in pkts] == [1, 0, 0, 0]  # talkspurt start only
    assert len({p.ssrc for p in pkts}) == 1 and pkts[0].ssrc == leg.ssrc
    assert [(p.sequence_number - pkts[0].sequence_number) & 0xFFFF for p in pkts] == [0, 1, 2, 3]
    assert [(p.timestamp - pkts[0].timestamp) & 0xFFFFFFFF for p in pkts] == [0, 160, 320, 480]
    assert [p.payload for p in pkts] == [PCMU.encode(reference.read_frame()) for _ in range(4)]
    st_ = leg.stats
    assert st_.packets_sent == 4 and st_.bytes_sent == 4 * 172


async def test_hold_mute_and_skipped_ticks_keep_the_timestamp_on_real_time(
    engine: MediaEngine, peer: socket.socket
) -> None:
    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 8, "PCMA", None)
    leg.set_source(Tone(440))
    leg._on_tick(1, TS)
    first = _recv(peer)
    leg.set_direction(send=False, recv=True)  # hold: no packets, but time goes on
    leg._on_tick(1, TS)
    leg._on_tick(1, TS)
    assert _nothing_waiting(peer)
    leg.set_direction(send=True, recv=True)
    leg.muted = True
    leg._on_tick(1, TS)
    resumed = _recv(peer)
    assert resumed.marker == 1 and resumed.payload == PCMA.silence()  # muted: silence keeps RTP flowing
    assert (resumed.timestamp - first.timestamp) & 0xFFFFFFFF == 3 * 160
    assert (resumed.sequence_number - first.sequence_number) & 0xFFFF == 1
    leg._on_tick(4, TS)  # the clock skipped 3 deadlines
    after = _recv(peer)
    assert (after.timestamp - resumed.timestamp) & 0xFFFFFFFF == 4 * 160 and after.marker == 0


async def test_reinvite_changes_codec_and_address(engine: MediaEngine, peer: socket.socket) -> None:
    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", 101)
    leg._on_tick(1, TS)
    a = _recv(peer)
    other = _udp()
    try:
        leg.set_remote("localhost", other.getsockname()[1], 8, "pcma", 96)
        assert leg.remote_address == ("127.0.0.1", other.getsockname()[1])
        leg._on_tick(1, TS)
        b = _recv(other)
    finally:
        other.close()
    assert b.payload_type == 8 and b.ssrc == a.ssrc and b.marker == 1
    assert (b.sequence_number - a.sequence_number) & 0xFFFF == 1


async def test_set_remote_validation(engine: MediaEngine) -> None:
    leg = await engine.open_leg()
    with pytest.raises(MediaError, match="codec"):
        leg.set_remote("127.0.0.1", 4000, 18, "G729", None)
    with pytest.raises(MediaError, match="port"):
        leg.set_remote("127.0.0.1", 0, 0, "PCMU", None)
    with pytest.raises(MediaError, match="dtmf_payload_type"):
        leg.set_remote("127.0.0.1", 4000, 0, "PCMU", 0)
    with pytest.raises(MediaError, match="no-such-host.invalid"):
        leg.set_remote("no-such-host.invalid", 4000, 0, "PCMU", None)
    with pytest.raises(MediaError, match="telephone-event"):
        leg.send_dtmf("1")
    leg.set_remote("127.0.0.1", 4000, 0, "PCMU", 101)
    with pytest.raises(MediaError, match="'x'"):
        leg.send_dtmf("1x")


async def test_receive_path_counts_and_drops_malformed(engine: MediaEngine, peer: socket.socket) -> None:
    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", 101)
    dest = ("127.0.0.1", leg.local_port)
    junk = [b"", b"\x80\x00", bytes(12), b"\x40" + bytes(20), b"\x9f\x00" + bytes(10)]  # short, v0, v1, CSRC cut
    datagrams = [
        *junk,
        _rtp(0, 1, 1000, PCMU.encode(Tone(1000).read_frame())),
        _rtp(13, 2, 1160, b"\x40"),  # comfort noise: not negotiated, ignored
        _rtp(101, 3, 1160, b"\x01"),  # telephone-event too short
    ]
    for d in datagrams:
        peer.sendto(d, dest)
    # every datagram is read once all their bytes are counted (a short DTMF counts as received *and* malformed)
    while leg.stats.bytes_received < sum(map(len, datagrams)):
        _deliver(leg)
    st_ = leg.stats
    assert st_.malformed == len(junk) + 1  # five junk datagrams + the short telephone-event
    assert (st_.packets_received, st_.ignored) == (2, 1)
    assert st_.last_received_at is not None and not st_.remote_latched


async def test_received_audio_is_played_out_and_recorded(
    engine: MediaEngine, peer: socket.socket, tmp_path: Path
) -> None:
    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", None)
    leg.set_source(Tone(440))
    leg.start_recording(tmp_path / "r.wav")
    with pytest.raises(MediaError, match="already recording"):
        leg.start_recording(tmp_path / "again.wav")
    assert leg.recording_path == tmp_path / "r.wav"
    remote = Tone(1000)
    frames = [remote.read_frame() for _ in range(6)]
    dest = ("127.0.0.1", leg.local_port)
    for k in (0, 2, 1, 1, 3, 5):  # reordered, a duplicate, frame 4 lost
        peer.sendto(_rtp(0, k, 5000 + 160 * k, PCMU.encode(frames[k])), dest)
    while leg.stats.packets_received < 6:
        _deliver(leg)
    for _ in range(8):
        leg._on_tick(1, TS)
    assert leg.recorded_frames == 8 * 160
    path = leg.stop_recording()
    assert path == tmp_path / "r.wav" and leg.stop_recording() is None
    import wave

    with wave.open(str(path)) as w:
        data = w.readframes(w.getnframes())
    left = struct.unpack(f"<{len(data) // 2}h", data)[0::2]
    got = [bytes(struct.pack("<160h", *left[i * 160 : (i + 1) * 160])) for i in range(8)]
    silence = bytes(320)
    # Two frames of playout delay, then frames 0..3, silence for the lost 4, then 5.
    assert got == [silence, silence] + [PCMU.decode(PCMU.encode(f)) for f in frames[:4]] + [
        silence,
        PCMU.decode(PCMU.encode(frames[5])),
    ]
    assert leg.stats.duplicates == 1


async def test_symmetric_rtp_latches_to_the_real_source(engine: MediaEngine, peer: socket.socket) -> None:
    leg = await engine.open_leg()
    signalled = _udp()  # what SDP said (a private address behind NAT); it never sends
    intruder = _udp()
    try:
        leg.set_remote("127.0.0.1", signalled.getsockname()[1], 0, "PCMU", None)
        dest = ("127.0.0.1", leg.local_port)
        peer.sendto(_rtp(0, 1, 160, PCMU.silence()), dest)
        _deliver(leg)
        assert leg.remote_address == peer.getsockname() and leg.stats.remote_latched
        leg._on_tick(1, TS)
        assert _recv(peer).payload_type == 0  # answered where the packets came from
        assert _nothing_waiting(signalled)
        intruder.sendto(_rtp(0, 1, 320, PCMU.silence()), dest)  # the peer spoke < 1 s ago: no takeover
        _deliver(leg)
        assert leg.remote_address == peer.getsockname() and leg.stats.ignored == 1
    finally:
        signalled.close()
        intruder.close()


async def test_dtmf_received_through_the_socket(engine: MediaEngine, peer: socket.socket) -> None:
    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", 101)
    got: list[DtmfEvent] = []
    leg.on_dtmf = got.append
    dest = ("127.0.0.1", leg.local_port)
    seq = 0
    for ts, code in ((8000, 9), (9280, 11)):
        for k in range(1, 5):
            peer.sendto(_rtp(101, seq, ts, encode_event(code, False, 10, 160 * k), marker=k == 1), dest)
            seq += 1
        for _ in range(3):
            peer.sendto(_rtp(101, seq, ts, encode_event(code, True, 10, 800)), dest)
            seq += 1
    while leg.stats.packets_received < seq:
        _deliver(leg)
    assert got == [DtmfEvent("9", 100), DtmfEvent("#", 100)]
    assert leg.stats.dtmf_received == 2


async def test_dtmf_callback_errors_do_not_escape(engine: MediaEngine, peer: socket.socket) -> None:
    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", 101)

    def boom(ev: DtmfEvent) -> None:
        raise RuntimeError("callback bug")

    leg.on_dtmf = boom
    peer.sendto(_rtp(101, 0, 100, encode_event(1, True, 10, 800)), ("127.0.0.1", leg.local_port))
    _deliver(leg)
    assert leg.stats.dtmf_received == 1


async def test_dtmf_send_replaces_audio_then_resumes(engine: MediaEngine, peer: socket.socket) -> None:
    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", 101)
    leg.set_source(Tone(440))
    leg.send_dtmf("7")
    assert leg.dtmf_pending == 1
    pts = []
    for _ in range(9):
        leg._on_tick(1, TS)
        pts.append(_recv(peer).payload_type)
    assert pts == [101] * 7 + [0, 0]
    assert leg.dtmf_pending == 0


async def test_broken_source_falls_back_to_silence(engine: MediaEngine, peer: socket.socket) -> None:
    class Broken:
        def read_frame(self, samples: int = 160) -> bytes:
            raise OSError("disk gone")

    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", None)
    leg.set_source(Broken())
    leg._on_tick(1, TS)
    assert _recv(peer).payload == PCMU.silence()
    with pytest.raises(MediaError, match="read_frame"):
        leg.set_source(object())  # type: ignore[arg-type]


def _free_even_range(count: int) -> int:
    """A base port where `count` consecutive even ports are free right now (probed)."""
    for base in range(41000, 60000, 2 * count + 10):
        socks = []
        try:
            for i in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", base + 2 * i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


async def test_port_pool_even_ports_exhaustion_and_reuse() -> None:
    base = _free_even_range(2)
    engine = MediaEngine(port_min=base - 1, port_max=base + 3)  # odd bounds: even ports base, base + 2
    try:
        a = await engine.open_leg()
        b = await engine.open_leg()
        assert {a.local_port, b.local_port} == {base, base + 2} == engine.ports_in_use()
        assert engine.leg_count == 2
        with pytest.raises(MediaError, match="no free RTP port"):
            await engine.open_leg()
        await a.close()
        await a.close()  # idempotent
        assert engine.ports_in_use() == {b.local_port}
        c = await engine.open_leg()
        assert c.local_port == a.local_port
        with pytest.raises(MediaError, match="closed"):
            a.start()
    finally:
        await engine.stop()
    assert engine.leg_count == 0


def test_engine_validates_settings() -> None:
    with pytest.raises(MediaError, match="both"):
        MediaEngine(port_min=0, port_max=100)
    with pytest.raises(MediaError, match="port range"):
        MediaEngine(port_min=3000, port_max=2000)
    with pytest.raises(MediaError, match="ptime"):
        MediaEngine(ptime_ms=0)


async def test_engine_stop_finishes_recordings(tmp_path: Path, peer: socket.socket) -> None:
    engine = MediaEngine(port_min=0, port_max=0)
    await engine.start()
    leg = await engine.open_leg()
    leg.set_remote("127.0.0.1", peer.getsockname()[1], 0, "PCMU", None)
    leg.start_recording(tmp_path / "x.wav")
    leg.start()
    leg._on_tick(1, TS)
    await engine.stop()
    assert leg.closed and leg.recording_path is None and not engine.running
    import wave

    with wave.open(str(tmp_path / "x.wav")) as w:
        assert w.getnchannels() == 2 and w.getnframes() >= 160
    stats = engine.stats()
    assert stats["legs"] == 0 and stats["packets_out"] >= 1  # closed legs still count
