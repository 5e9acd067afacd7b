"""Line registration state (RFC 3261 §10.2): refresh before expiry, back-off after failure.

The core drives it; this module keeps the numbers honest: one Call-ID per line for all its
REGISTERs, CSeq increasing by one each time (§10.2.4), and when to refresh or retry.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .headers import parse_address
from .message import SipResponse

__all__ = ["Registration", "RegState", "granted_expires", "refresh_delay", "retry_delay"]


class RegState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    UNREGISTERING = "unregistering"


@dataclass(slots=True, eq=False)
class Registration:
    line_id: str
    call_id: str
    from_tag: str
    cseq: int = 0
    state: RegState = RegState.IDLE
    requested_expires: int = 300
    granted: int | None = None
    auth_attempts: int = 0
    failures: int = 0
    last_status: int | None = None

    def next_cseq(self) -> int:
        self.cseq += 1
        return self.cseq


def granted_expires(response: SipResponse, contact_uri: str, requested: int) -> int:
    """Expiry the registrar granted for *our* binding (RFC 3261 §10.2.4): the Contact's
    ``expires`` param for our URI, else the Expires header, else what we asked for."""
    ours = contact_uri.lower()
    for value in response.headers.values("Contact"):
        try:
            addr = parse_address(value)
        except ValueError:
            continue
        if str(addr.uri).lower().split(";")[0] == ours.split(";")[0]:
            exp = addr.param("expires")
            if exp and re.fullmatch(r"[0-9]+", exp):
                return int(exp)
    header = response.headers.get("Expires")
    if header and re.fullmatch(r"\s*[0-9]+\s*", header):
        return int(header)
    return requested


def refresh_delay(expires: int) -> float:
    """Refresh well before expiry: at 90 % of the interval, never later than 5 s before it."""
    return max(1.0, min(expires * 0.9, expires - 5.0))


def retry_delay(failures: int, retry_after: int | None = None) -> float:
    """Back-off after a failed registration: 5, 10, 20 ... capped at 300 s, or Retry-After."""
    if retry_after:
        return float(min(retry_after, 3600))
    return float(min(300, 5 * 2 ** max(0, failures - 1)))
