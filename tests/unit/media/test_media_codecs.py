"""G.711 round trips and payload-type mapping (RFC 3551 §6)."""

from __future__ import annotations

import math
import struct

import pytest

from media.codecs import PCMA, PCMU, codec_by_name, codec_by_pt


def _pcm(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}h", *values)


def _unpcm(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


def test_payload_types_and_names() -> None:
    assert (PCMU.name, PCMU.payload_type, PCMU.clock_rate) == ("PCMU", 0, 8000)
    assert (PCMA.name, PCMA.payload_type, PCMA.clock_rate) == ("PCMA", 8, 8000)
    assert codec_by_name("pcmu") is PCMU and codec_by_name("PCMA") is PCMA
    assert codec_by_pt(0) is PCMU and codec_by_pt(8) is PCMA and codec_by_pt(18) is None
    with pytest.raises(ValueError, match="G729"):
        codec_by_name("G729")


@pytest.mark.parametrize("codec", [PCMU, PCMA], ids=lambda c: c.name)
def test_round_trip_error_is_within_companding_step(codec) -> None:
    values = [round(20000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(160)]
    encoded = codec.encode(_pcm(values))
    assert len(encoded) == 160  # one byte per sample
    decoded = _unpcm(codec.decode(encoded))
    for original, back in zip(values, decoded, strict=True):
        # G.711 segments: the quantisation step is at most 1/16 of the segment (~3% relative), plus a floor.
        assert abs(original - back) <= max(40, abs(original) * 0.04)


@pytest.mark.parametrize("codec", [PCMU, PCMA], ids=lambda c: c.name)
def test_every_code_word_survives_decode_encode(codec) -> None:
    codes = bytes(range(256))
    again = codec.encode(codec.decode(codes))
    if codec is PCMU:
        # µ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
        assert again == bytes(0xFF if c == 0x7F else c for c in codes)
    else:
        assert again == codes


def test_silence_payloads() -> None:
    assert PCMU.silence() == b"\xff" * 160
    assert PCMA.silence(80) == b"\xd5" * 80
    assert PCMU.decode(PCMU.silence()) == bytes(320)
    assert PCMA.decode(PCMA.silence()) == _pcm([8] * 160)  # A-law has no exact zero: ±8 is the smallest step
