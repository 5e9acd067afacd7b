"""Real third-party SIP peers for end-to-end tests: kamailio, baresip, SIPp, plus audio analysis.

Everything binds 127.0.0.1 on probed free ports and runs as a child process that is stopped by PID.
"""

from __future__ import annotations

from .baresip import Baresip, BaresipControl
from .kamailio import DEFAULT_USERS, Contact, Kamailio
from .ports import free_port, free_port_block
from .process import ManagedProcess, PeerError, require_binary

__all__ = [
    "DEFAULT_USERS",
    "Baresip",
    "BaresipControl",
    "Contact",
    "Kamailio",
    "ManagedProcess",
    "PeerError",
    "free_port",
    "free_port_block",
    "require_binary",
]
