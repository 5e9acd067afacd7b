"""G.711 µ-law (PCMU, PT 0) and A-law (PCMA, PT 8) through the stdlib ``audioop`` module.

Payload types are the static ones of RFC 3551 §6 (table 4); both codecs run at 8 kHz, one byte per
sample. ``audioop`` is deprecated in 3.11/3.12 (PEP 594) and gone in 3.13, where the ``audioop-lts``
distribution installs the same module name; the import warning is silenced here, once, for the package.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["CODECS", "PCMA", "PCMU", "SAMPLE_RATE", "SAMPLE_WIDTH", "Codec", "audioop", "codec_by_name", "codec_by_pt"]

SAMPLE_RATE = 8000
"""Hz; the RTP clock rate of both G.711 codecs (RFC 3551 §4.5.14)."""
SAMPLE_WIDTH = 2
"""Bytes per linear sample: the package's PCM is 16-bit little-endian signed mono."""


@dataclass(frozen=True, slots=True)
class Codec:
    """One G.711 variant. ``lin2law``/``law2lin`` are the raw audioop functions, for the hot path."""

    name: str
    payload_type: int
    lin2law: Callable[[bytes, int], bytes]
    law2lin: Callable[[bytes, int], bytes]
    clock_rate: int = SAMPLE_RATE

    def encode(self, pcm: bytes) -> bytes:
        """16-bit LE PCM -> one byte per sample."""
        return self.lin2law(pcm, SAMPLE_WIDTH)

    def decode(self, payload: bytes) -> bytes:
        """One byte per sample -> 16-bit LE PCM."""
        return self.law2lin(payload, SAMPLE_WIDTH)

    def silence(self, samples: int = 160) -> bytes:
        """The encoded form of digital silence (0xFF for µ-law, 0xD5 for A-law)."""
        return self.lin2law(bytes(samples * SAMPLE_WIDTH), SAMPLE_WIDTH)


PCMU = Codec("PCMU", 0, audioop.lin2ulaw, audioop.ulaw2lin)
PCMA = Codec("PCMA", 8, audioop.lin2alaw, audioop.alaw2lin)
CODECS: dict[str, Codec] = {PCMU.name: PCMU, PCMA.name: PCMA}
_BY_PT: dict[int, Codec] = {PCMU.payload_type: PCMU, PCMA.payload_type: PCMA}


def codec_by_name(name: str) -> Codec:
    """Codec for an SDP encoding name (case-insensitive, as rtpmap names are: RFC 4566 §6)."""
    try:
        return CODECS[name.upper()]
    except KeyError:
        raise ValueError(f"codec: unsupported {name!r} (supported: {', '.join(CODECS)})") from None


def codec_by_pt(payload_type: int) -> Codec | None:
    """Codec for a static payload type, or None."""
    return _BY_PT.get(payload_type)
