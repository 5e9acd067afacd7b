"""Error kinds of the media package."""

from __future__ import annotations

__all__ = ["AudioSourceError", "MediaError"]


class MediaError(Exception):
    """A media operation cannot be done (no free port, already recording, no DTMF payload type...)."""


class AudioSourceError(MediaError, ValueError):
    """An audio source spec or file is unusable; the message names the spec or the file."""
