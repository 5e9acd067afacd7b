"""RTP and audio for the gateway's softphones. Knows nothing of SIP or GWS (telephony drives it)."""

from __future__ import annotations

from .codecs import PCMA, PCMU, Codec, codec_by_name, codec_by_pt
from .dtmf import DtmfEvent
from .engine import MediaEngine
from .errors import AudioSourceError, MediaError
from .recorder import WavRecorder, repair_recordings
from .rtp import LegStats, RtpLeg
from .sources import AudioSource, Silence, Tone, WavFileSource, make_source

__all__ = [
    "PCMA",
    "PCMU",
    "AudioSource",
    "AudioSourceError",
    "Codec",
    "DtmfEvent",
    "LegStats",
    "MediaEngine",
    "MediaError",
    "RtpLeg",
    "Silence",
    "Tone",
    "WavFileSource",
    "WavRecorder",
    "codec_by_name",
    "codec_by_pt",
    "make_source",
    "repair_recordings",
]
