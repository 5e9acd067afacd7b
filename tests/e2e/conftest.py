"""Fixtures for end-to-end tests against real peers (kamailio, baresip, SIPp), usable from async tests.

Every peer is created through one per-test `PeerSet`: its files live under the test's tmp_path, it is
stopped at teardown (UAs before the registrar, even when the test failed), and when a test fails the
tail of every peer's log is attached to the report as a "peer log: NAME" section.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests.e2e.peers` must be importable however pytest was started
    sys.path.insert(0, str(_ROOT))

from tests.e2e.peers import DEFAULT_USERS, Baresip, Kamailio  # noqa: E402
from tests.e2e.peers.audio import write_tone_wav  # noqa: E402
from tests.e2e.peers.process import tail  # noqa: E402
from tests.e2e.peers.sipp import Sipp  # noqa: E402

_HERE = Path(__file__).resolve().parent
PEERS_KEY = pytest.StashKey["PeerSet"]()
LOG_TAIL = 8000


class PeerSet:
    """The peers of one test, in start order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.peers: list[Kamailio | Baresip | Sipp] = []
        self._names: set[str] = set()

    def dir_for(self, name: str) -> Path:
        unique, n = name, 1
        while unique in self._names:
            n += 1
            unique = f"{name}-{n}"
        self._names.add(unique)
        return self.root / unique

    def add(self, peer: Any) -> Any:
        self.peers.append(peer)
        return peer

    def logs(self) -> list[tuple[str, str]]:
        out = []
        for peer in self.peers:
            text = peer.log_text()
            if isinstance(peer, Baresip):
                ctrl = peer.workdir / "ctrl.log"
                if ctrl.exists():
                    text += "\n--- ctrl_tcp ---\n" + tail(ctrl.read_text(errors="replace"), LOG_TAIL // 2)
            out.append((f"{peer.name} ({peer.workdir})", tail(text, LOG_TAIL)))
        return out

    async def aclose(self) -> None:
        # UAs and SIPp first, the registrar last, so nobody sees its proxy vanish mid-call
        order = sorted(reversed(self.peers), key=lambda p: isinstance(p, Kamailio))
        errors = []
        for peer in order:
            try:
                await peer.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{peer.name}: {exc!r}")
        self.kill_all()
        if errors:
            raise RuntimeError("stopping peers failed: " + "; ".join(errors))

    def kill_all(self) -> None:
        """Synchronous last resort (finalizer): stop every child process by PID."""
        for peer in self.peers:
            peer.process.stop(timeout=2.0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/e2e carries the e2e marker (select with -m e2e / deselect with -m 'not e2e')."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    peers = item.stash.get(PEERS_KEY, None)
    if report.failed and peers is not None:
        for name, text in peers.logs():
            report.sections.append((f"peer log: {name}", text))
    return report


@pytest.fixture
async def peers(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The PeerSet of this test (the factories below add to it); torn down after the test."""
    peer_set = PeerSet(tmp_path / "peers")
    request.node.stash[PEERS_KEY] = peer_set
    request.addfinalizer(peer_set.kill_all)  # runs even if the async teardown below cannot
    yield peer_set
    await peer_set.aclose()


KamailioFactory = Callable[..., Awaitable[Kamailio]]
BaresipFactory = Callable[..., Awaitable[Baresip]]
SippFactory = Callable[..., Sipp]


@pytest.fixture
def kamailio_factory(peers: PeerSet) -> KamailioFactory:
    """`await kamailio_factory(users={"1001": "pw1001"}, auth=True, gateway_uri=None, qop=False, algorithm="MD5")`
    -> a running Kamailio (qop=True challenges with qop="auth"; algorithm "SHA-256" per RFC 8760).

    users defaults to 1001..1010 with password pw<user>; gateway_uri (WITH_GW) receives requests for
    users that are not registered.
    """

    async def make(
        users: dict[str | int, str] | None = None,
        *,
        auth: bool = True,
        gateway_uri: str | None = None,
        name: str = "kamailio",
        qop: bool = False,
        algorithm: str = "MD5",
    ) -> Kamailio:
        k = peers.add(Kamailio(peers.dir_for(name), users, auth=auth, gateway_uri=gateway_uri, name=name,
                               qop=qop, algorithm=algorithm))
        await k.start()
        return k

    return make


@pytest.fixture
async def kamailio(kamailio_factory: KamailioFactory) -> Kamailio:
    """A running kamailio with auth, users 1001..1010 (password pw<user>), on a free port."""
    return await kamailio_factory(DEFAULT_USERS)


@pytest.fixture
def baresip_factory(peers: PeerSet) -> BaresipFactory:
    """`await baresip_factory("1005", registrar=kamailio, tone_hz=440)` -> a started (and registered) Baresip.

    registrar=None gives a standalone UA reachable at `ua.uri`.  The password defaults to the registrar's
    table entry for the user.  Other keyword arguments go to `Baresip(...)` (answermode, source_wav,
    codecs, transport, display_name, contacts, account_params, extra_config, ...).
    """

    async def make(
        user: str | int,
        *,
        registrar: Kamailio | str | None = None,
        password: str | None = None,
        start_timeout: float = 10.0,
        **kwargs: Any,
    ) -> Baresip:
        if password is None and isinstance(registrar, Kamailio):
            password = registrar.users.get(str(user))
        if registrar is not None and password is None:
            raise ValueError(f"baresip {user}: no password given and the registrar has no user {user}")
        ua = peers.add(
            Baresip(peers.dir_for(f"baresip-{user}"), user, registrar=registrar, password=password, **kwargs)
        )
        await ua.start(timeout=start_timeout)
        return ua

    return make


@pytest.fixture
def sipp_factory(peers: PeerSet) -> SippFactory:
    """`sipp_factory("uac_pcmu", remote="127.0.0.1:5060", service="1001", calls=10, pause_ms=500)` -> Sipp.

    Not started: `await s.run()` (start + wait -> SippResult) or `await s.start()` ... `await s.wait()`.
    """

    def make(scenario: str | Path, *, name: str | None = None, **kwargs: Any) -> Sipp:
        label = name or f"sipp-{Path(str(scenario)).stem}"
        return peers.add(Sipp(peers.dir_for(label), scenario, name=label, **kwargs))

    return make


@pytest.fixture
def tone_wav(tmp_path: Path) -> Callable[..., Path]:
    """`tone_wav(440, seconds=5, rate=8000)` -> path of a 16-bit mono sine WAV (a tuple gives one channel each)."""
    counter = iter(range(1, 10_000))

    def make(freq: float | tuple[float, ...], seconds: float = 5.0, **kwargs: Any) -> Path:
        return write_tone_wav(tmp_path / "audio" / f"tone-{next(counter)}.wav", freq, seconds, **kwargs)

    return make
