"""REGISTER as a UA (RFC 3261 §10.2): refresh before expiry, digest retries, unregister on shutdown.

The registrar is played by the test on 192.0.2.5:5070; time is a float moved by ``Net.advance``.
"""

from __future__ import annotations

import pytest
from sipnet import HOST, PORT, Net, make_net

from gateway.sip.auth import build_challenge, parse_auth_params, verify
from gateway.sip.core import LineConfig
from gateway.sip.events import RegistrationStateChanged
from gateway.sip.message import SipRequest, SipResponse, build_response
from gateway.sip.peer import Peer
from gateway.sip.registration import granted_expires, refresh_delay, retry_delay
from gateway.sip.uri import SipUri

REGISTRAR = Peer("udp", "192.0.2.5", 5070)
CONTACT = f"<sip:1005@{HOST}:{PORT}>"


def reg_net(expires: int = 300, registrar: str = "sip:192.0.2.5:5070") -> Net:
    return make_net(r=LineConfig(line_id="1005", user="1005", password="secret",
                                 registrar=SipUri.parse(registrar), register_expires=expires))


def one_register(net: Net) -> tuple[float, SipRequest]:
    (sent,) = net.take_sent()
    msg = sent.msg
    assert isinstance(msg, SipRequest) and msg.method == "REGISTER" and sent.peer == REGISTRAR
    return sent.at, msg


def challenge(req: SipRequest, nonce: str, *, status: int = 401, stale: bool = False) -> SipResponse:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return build_response(req, status, to_tag="r1",
                          headers=[(name, build_challenge("192.0.2.5", nonce, qop="auth", stale=stale))])


def ok(req: SipRequest, expires: int) -> SipResponse:
    return build_response(req, 200, to_tag="r1", headers=[("Contact", f"{CONTACT};expires={expires}")])


def creds(req: SipRequest, header: str = "Authorization") -> dict[str, str]:
    value = req.headers.get(header)
    assert value is not None, f"no {header} in {req!r}"
    assert verify(value, "secret", "REGISTER")
    return {k: v for k, v in parse_auth_params(value) if k is not None}


def registered(net: Net, expires: int = 60) -> SipRequest:
    """Register line 1005 through one 401 challenge (nonce n1); returns the accepted REGISTER."""
    net.core.register("1005", net.now)
    net.pump()
    _, first = one_register(net)
    net.inject(challenge(first, "n1"), REGISTRAR)
    _, second = one_register(net)
    net.inject(ok(second, expires), REGISTRAR)
    assert [(e.registered, e.expires) for e in net.of(RegistrationStateChanged)] == [(True, expires)]
    return second


def test_401_is_answered_with_credentials_in_the_same_call_id_and_next_cseq() -> None:
    net = reg_net()
    net.core.register("1005", net.now)
    net.pump()
    _, first = one_register(net)
    assert first.uri == "sip:192.0.2.5:5070" and first.cseq == (1, "REGISTER")
    assert first.headers.get("Expires") == "300" and "Authorization" not in first.headers
    assert first.headers.get("Contact") == f"{CONTACT};expires=300"
    net.now = 0.1
    net.inject(challenge(first, "n1"), REGISTRAR)
    at, second = one_register(net)
    assert at == 0.1 and second.cseq == (2, "REGISTER")
    assert (second.call_id, second.from_tag) == (first.call_id, first.from_tag)
    assert second.top_via.branch != first.top_via.branch
    c = creds(second)
    assert (c["username"], c["realm"], c["nonce"], c["uri"], c["qop"], c["nc"]) == (
        "1005", "192.0.2.5", "n1", "sip:192.0.2.5:5070", "auth", "00000001")


def test_refresh_at_90_percent_reuses_the_nonce_with_next_nonce_count() -> None:
    """RFC 3261 §10.2.4 refresh before expiry; RFC 7616 §3.4: nc counts requests per nonce."""
    net = reg_net()
    accepted = registered(net, expires=60)
    net.advance(53.99)
    assert net.take_sent() == []
    net.advance(54.6)
    sent = net.take_sent()
    assert [s.at for s in sent] == [54.0, 54.5]  # the refresh and its Timer E retransmission
    assert sent[0].data == sent[1].data
    refresh = sent[0].msg
    assert isinstance(refresh, SipRequest)
    assert refresh.cseq == (3, "REGISTER") and refresh.call_id == accepted.call_id
    assert (creds(refresh)["nonce"], creds(refresh)["nc"]) == ("n1", "00000002")
    net.inject(ok(refresh, 60), REGISTRAR)
    assert len(net.of(RegistrationStateChanged)) == 1  # still registered: no new event
    net.advance(net.now + 54.0)  # the next refresh is 54 s after the 200 (at 54.6)
    at, again = one_register(net)
    assert at == pytest.approx(108.6) and creds(again)["nc"] == "00000003"


def test_stale_nonce_is_retried_with_the_new_nonce() -> None:
    """RFC 7616 §3.3: stale=true means the credentials were right but the nonce expired."""
    net = reg_net()
    registered(net, expires=60)
    net.advance(54.0)
    _, refresh = one_register(net)
    net.inject(challenge(refresh, "n2", stale=True), REGISTRAR)
    _, retry = one_register(net)
    assert retry.cseq == (4, "REGISTER") and (creds(retry)["nonce"], creds(retry)["nc"]) == ("n2", "00000001")
    net.inject(ok(retry, 60), REGISTRAR)
    assert net.core.is_registered("1005") and len(net.of(RegistrationStateChanged)) == 1


def test_a_pre_emptive_answer_refused_without_stale_is_retried_once_with_the_new_nonce() -> None:
    """Some servers renew an expired nonce without saying stale=true: the refresh's cached
    credentials were never answered to *this* challenge, so it is answered once."""
    net = reg_net()
    registered(net, expires=60)
    net.advance(54.0)
    _, refresh = one_register(net)
    net.inject(challenge(refresh, "n2"), REGISTRAR)
    _, retry = one_register(net)
    assert (creds(retry)["nonce"], creds(retry)["nc"], retry.cseq[0]) == ("n2", "00000001", 4)
    net.inject(challenge(retry, "n3"), REGISTRAR)  # refused again: now it is the password
    assert net.take_sent() == [] and not net.core.is_registered("1005")


def test_rejected_credentials_are_not_sent_again() -> None:
    """RFC 3261 §22.2: a second challenge for the nonce we just answered means wrong credentials."""
    net = reg_net()
    net.core.register("1005", net.now)
    net.pump()
    _, first = one_register(net)
    net.inject(challenge(first, "n1"), REGISTRAR)
    _, second = one_register(net)
    net.inject(challenge(second, "n1"), REGISTRAR)
    assert net.take_sent() == []
    assert [(e.registered, e.status) for e in net.of(RegistrationStateChanged)] == [(False, 401)]
    net.advance(4.99)
    assert net.take_sent() == []
    net.advance(5.0)  # back-off 5 s, then a fresh attempt
    at, third = one_register(net)
    assert at == 5.0 and third.cseq == (3, "REGISTER") and "Authorization" not in third.headers


def test_407_from_an_outbound_proxy_is_answered_with_proxy_authorization() -> None:
    net = reg_net()
    net.core.register("1005", net.now)
    net.pump()
    _, first = one_register(net)
    net.inject(challenge(first, "p1", status=407), REGISTRAR)
    _, second = one_register(net)
    assert "Authorization" not in second.headers
    assert creds(second, "Proxy-Authorization")["nonce"] == "p1"


def test_unregister_on_shutdown_sends_expires_zero_and_stops_refreshing() -> None:
    net = reg_net()
    registered(net, expires=60)
    net.advance(10.0)
    assert net.core.unregister_all(net.now) == 1
    net.pump()
    _, unreg = one_register(net)
    assert unreg.headers.get("Expires") == "0" and unreg.headers.get("Contact") == f"{CONTACT};expires=0"
    assert unreg.cseq == (3, "REGISTER") and creds(unreg)["nc"] == "00000002"
    assert net.core.registrations_pending() == 1
    net.inject(build_response(unreg, 200, to_tag="r1"), REGISTRAR)
    last = net.of(RegistrationStateChanged)[-1]
    assert (last.registered, last.expires) == (False, 0)
    assert net.core.registrations_pending() == 0 and not net.core.is_registered("1005")
    net.advance(1000.0)
    assert net.take_sent() == []


def test_unanswered_register_times_out_after_timer_f_and_backs_off() -> None:
    net = reg_net()
    net.core.register("1005", net.now)
    net.pump()
    net.advance(32.0)
    times = [s.at for s in net.take_sent()]
    # Timer E: 0.5, 1, 2, then T2 = 4 s; Timer F = 64*T1 = 32 s (RFC 3261 §17.1.2.2)
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(e.registered, e.status) for e in net.of(RegistrationStateChanged)] == [(False, 408)]
    net.advance(37.0)
    at, again = one_register(net)
    assert at == 37.0 and again.cseq == (2, "REGISTER")


def test_423_raises_the_requested_expiry_to_min_expires() -> None:
    net = reg_net(expires=30)
    net.core.register("1005", net.now)
    net.pump()
    _, first = one_register(net)
    net.inject(build_response(first, 423, to_tag="r1", headers=[("Min-Expires", "120")]), REGISTRAR)
    _, second = one_register(net)
    assert second.headers.get("Expires") == "120" and second.cseq == (2, "REGISTER")


@pytest.mark.parametrize(("expires", "delay"), [(3600, 3240.0), (300, 270.0), (60, 54.0), (30, 25.0),
                                                (10, 5.0), (5, 1.0), (0, 1.0)])
def test_refresh_delay(expires: int, delay: float) -> None:
    assert refresh_delay(expires) == delay


@pytest.mark.parametrize(("failures", "retry_after", "delay"), [
    (1, None, 5.0), (2, None, 10.0), (3, None, 20.0), (7, None, 300.0), (12, None, 300.0), (1, 30, 30.0),
    (1, 99999, 3600.0)])
def test_retry_delay(failures: int, retry_after: int | None, delay: float) -> None:
    assert retry_delay(failures, retry_after) == delay


@pytest.mark.parametrize(("contacts", "expires_header", "granted"), [
    ([f"{CONTACT};expires=60"], None, 60),
    (["<sip:other@192.0.2.7>;expires=10", f"{CONTACT};expires=90"], "30", 90),  # our binding, not the first
    (["<sip:other@192.0.2.7>;expires=10"], "30", 30),  # ours is missing: the Expires header
    ([], None, 300),  # nothing said: what we asked for
])
def test_granted_expires_is_read_from_our_contact(contacts: list[str], expires_header: str | None,
                                                  granted: int) -> None:
    req = SipRequest(method="REGISTER", uri="sip:192.0.2.5")
    for h, v in (("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx"), ("From", "<sip:1005@h>;tag=1"),
                 ("To", "<sip:1005@h>"), ("Call-ID", "c"), ("CSeq", "1 REGISTER")):
        req.headers.add(h, v)
    extra = [("Contact", c) for c in contacts] + ([("Expires", expires_header)] if expires_header else [])
    resp = build_response(req, 200, headers=extra)
    assert granted_expires(resp, f"sip:1005@{HOST}:{PORT}", 300) == granted

