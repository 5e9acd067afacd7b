"""Error kinds of the SIP core, after h11's Local/Remote split.

*Local* means our own code asked for something illegal (a bug or misuse by telephony) and is
raised to the caller. *Remote* means the peer sent something we cannot accept; it carries the
status a UAS should answer with (RFC 3261 §8.2, §21.4) and never escapes the receive path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import SipMessage

__all__ = ["LocalSipError", "RemoteSipError", "SdpError", "SipError"]


class SipError(Exception):
    """Base of all SIP core errors."""


class LocalSipError(SipError):
    """Telephony called the core in a way the current state does not allow."""


class RemoteSipError(SipError):
    """The peer sent something malformed or unacceptable.

    ``status_hint`` is the response a UAS owes (400 by default); ``partial`` is whatever could be
    parsed (enough headers to build a response), or None when nothing could.
    """

    def __init__(self, reason: str, status_hint: int = 400, partial: SipMessage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
        self.partial = partial


class SdpError(RemoteSipError):
    """An SDP offer or answer we cannot use (RFC 3264).

    ``status_hint`` is 488 (Not Acceptable Here) when it parses but nothing in it is acceptable,
    400 when it does not parse at all. ``warn_code`` is the Warning header's code for the refusal
    (RFC 3261 §20.43: 300 incompatible network protocol, 301 incompatible address format; 399 misc).
    """

    def __init__(self, reason: str, status_hint: int = 488, warn_code: int = 399) -> None:
        super().__init__(reason, status_hint=status_hint)
        self.warn_code = warn_code
