"""Digest authentication: the RFC example vectors, challenge parsing, and the core's 401/407 retries."""

from __future__ import annotations

import hashlib

import pytest
from sipnet import Net, make_net, media

from gateway.sip.auth import (
    Challenge,
    DigestCredentials,
    DigestSession,
    authorize,
    build_challenge,
    digest_response,
    parse_auth_params,
    parse_challenges,
    verify,
)
from gateway.sip.core import LineConfig
from gateway.sip.events import CallFailed, CallProgress
from gateway.sip.message import SipRequest, SipResponse, build_response
from gateway.sip.peer import Peer
from gateway.sip.uri import SipUri

# RFC 7616 §3.9.1
RFC7616 = dict(username="Mufasa", realm="http-auth@example.org", password="Circle of Life", method="GET",
               uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", qop="auth",
               nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
# RFC 2617 §3.5
RFC2617 = dict(username="Mufasa", realm="testrealm@host.com", password="Circle Of Life", method="GET",
               uri="/dir/index.html", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@pytest.mark.parametrize(("algorithm", "response"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_example(algorithm: str, response: str) -> None:
    assert digest_response(algorithm=algorithm, **RFC7616) == response
    ch = Challenge("Digest", {"realm": RFC7616["realm"], "qop": "auth, auth-int", "algorithm": algorithm,
                              "nonce": RFC7616["nonce"], "opaque": OPAQUE})
    value = authorize(ch, DigestCredentials("Mufasa", "Circle of Life"), "GET", "/dir/index.html", nc=1,
                      cnonce=RFC7616["cnonce"])
    assert value == (
        f'Digest username="Mufasa", realm="http-auth@example.org", nonce="{RFC7616["nonce"]}", '
        f'uri="/dir/index.html", response="{response}", algorithm={algorithm}, cnonce="{RFC7616["cnonce"]}", '
        f'opaque="{OPAQUE}", qop=auth, nc=00000001')
    assert verify(value, "Circle of Life", "GET", realm="http-auth@example.org", username="Mufasa")
    assert not verify(value, "Circle of life", "GET")
    assert not verify(value, "Circle of Life", "POST")


def test_rfc2617_example_with_qop_auth() -> None:
    assert md5("Mufasa:testrealm@host.com:Circle Of Life") == "939e7578ed9e3c518a452acee763bce9"  # HA1
    assert digest_response(algorithm="MD5", qop="auth", nc="00000001", cnonce="0a4f113b",
                           **RFC2617) == "6629fae49393a05397450978507c4ef1"


def test_rfc2617_without_qop_is_the_rfc2069_digest() -> None:
    """RFC 2617 §3.2.2.1: no qop -> KD(H(A1), nonce ":" H(A2))."""
    expected = md5(f"939e7578ed9e3c518a452acee763bce9:{RFC2617['nonce']}:{md5('GET:/dir/index.html')}")
    assert digest_response(algorithm="MD5", **RFC2617) == expected
    ch = Challenge("Digest", {"realm": RFC2617["realm"], "nonce": RFC2617["nonce"]})
    value = authorize(ch, DigestCredentials("Mufasa", "Circle Of Life"), "GET", "/dir/index.html")
    assert value == (f'Digest username="Mufasa", realm="testrealm@host.com", nonce="{RFC2617["nonce"]}", '
                     f'uri="/dir/index.html", response="{expected}"')  # no qop, nc, cnonce or algorithm
    assert verify(value, "Circle Of Life", "GET")


def test_auth_int_and_sess_variants() -> None:
    body = b"v=0\r\n"
    ha1 = md5("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = md5(f"INVITE:sip:b@h:{hashlib.md5(body).hexdigest()}")
    assert digest_response(algorithm="MD5", username="Mufasa", realm="testrealm@host.com",
                           password="Circle Of Life", method="INVITE", uri="sip:b@h", nonce="n", qop="auth-int",
                           nc="00000001", cnonce="c", body=body) == md5(f"{ha1}:n:00000001:c:auth-int:{ha2}")
    sess_ha1 = md5(f"{ha1}:n:c")
    assert digest_response(algorithm="MD5-sess", username="Mufasa", realm="testrealm@host.com",
                           password="Circle Of Life", method="INVITE", uri="sip:b@h", nonce="n", qop="auth",
                           nc="00000001", cnonce="c") == md5(f"{sess_ha1}:n:00000001:c:auth:{md5('INVITE:sip:b@h')}")


@pytest.mark.parametrize(("values", "picked"), [
    (['Digest realm="r", nonce="a", algorithm=MD5', 'Digest realm="r", nonce="b", algorithm=SHA-256'],
     [("SHA-256", "b"), ("MD5", "a")]),  # RFC 7616 §3.7: the strongest first
    (['Basic realm="r", Digest realm="r", nonce="x", qop="auth"'], [("MD5", "x")]),  # several in one value
    (['Digest realm="r", nonce="x", algorithm=UNKNOWN-ALG', 'Digest realm="r"'], []),  # unusable
    (['Digest realm="r", nonce="x", qop="auth-conf"'], []),
    (["NoOneKnowsThisScheme opaque-data=here"], []),
    (['Digest realm="a, b", nonce="q\\"x"'], [("MD5", 'q"x')]),  # commas and escapes inside quotes
])
def test_parse_challenges(values: list[str], picked: list[tuple[str, str]]) -> None:
    assert [(c.algorithm, c.nonce) for c in parse_challenges(values)] == picked


@pytest.mark.parametrize(("qop", "chosen"), [("auth", "auth"), ("auth-int,auth", "auth"), ("auth-int", "auth-int"),
                                              ("", None)])
def test_qop_choice(qop: str, chosen: str | None) -> None:
    params = {"realm": "r", "nonce": "n"} | ({"qop": qop} if qop else {})
    value = authorize(Challenge("Digest", params), DigestCredentials("u", "p"), "INVITE", "sip:x@y", cnonce="c")
    got = {k: v for k, v in parse_auth_params(value) if k is not None}
    assert got.get("qop") == chosen and ("nc" in got) == (chosen is not None)


@pytest.mark.parametrize("garbage", ["", "Digest", "Digest ,,,= =", 'Digest realm="unterminated', "\x00\xff",
                                     "=" * 5000])
def test_readers_never_raise(garbage: str) -> None:
    assert parse_challenges([garbage]) == []
    assert verify(garbage, "p", "INVITE") is False


def test_digest_session_counts_per_nonce() -> None:
    session = DigestSession(DigestCredentials("u", "p"))
    ch = parse_challenges([build_challenge("r", "n1")])[0]
    ncs = [dict((k, v) for k, v in parse_auth_params(session.authorize(ch, "REGISTER", "sip:r")))["nc"]
           for _ in range(3)]
    assert ncs == ["00000001", "00000002", "00000003"]
    session.forget("n1")
    assert "nc=00000001" in session.authorize(ch, "REGISTER", "sip:r")


def test_build_challenge() -> None:
    assert build_challenge("r", "n", algorithm="SHA-256", opaque="o", stale=True) == (
        'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth", opaque="o", stale=true')
    ch = parse_challenges([build_challenge("r", "n", stale=True)])[0]
    assert ch.stale and ch.qop_options == ["auth"]


# ---------------------------------------------------------------------------- in the core
PROXY = Peer("udp", "192.0.2.5", 5070)


def proxy_net() -> Net:
    return make_net(r=LineConfig(line_id="1005", user="1005", password="secret",
                                 registrar=SipUri.parse("sip:192.0.2.5:5070")))


def call(net: Net) -> tuple[str, SipRequest]:
    sid = net.core.invite("1005", "sip:2000@192.0.2.5:5070", media(), net.now,
                          via_proxy=SipUri.parse("sip:192.0.2.5:5070"))
    net.pump()
    (inv,) = net.take_outside()
    assert isinstance(inv, SipRequest)
    return sid, inv


def challenge(req: SipRequest, status: int, nonce: str, stale: bool = False) -> SipResponse:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return build_response(req, status, to_tag="p1", headers=[(name, build_challenge("192.0.2.5", nonce, stale=stale))])


def fields(value: str | None) -> dict[str, str]:
    assert value is not None
    return {k: v for k, v in parse_auth_params(value) if k is not None}


@pytest.mark.parametrize(("status", "header", "other"), [(401, "Authorization", "Proxy-Authorization"),
                                                        (407, "Proxy-Authorization", "Authorization")])
def test_invite_challenge_is_answered_in_the_right_header(status: int, header: str, other: str) -> None:
    net = proxy_net()
    _, inv1 = call(net)
    net.inject(challenge(inv1, status, "n1"), PROXY)
    ack, inv2 = net.take_outside()
    assert isinstance(ack, SipRequest) and isinstance(inv2, SipRequest)
    assert (ack.method, ack.cseq, ack.top_via.branch) == ("ACK", (1, "ACK"), inv1.top_via.branch)
    assert inv2.cseq == (2, "INVITE") and inv2.call_id == inv1.call_id and inv2.from_tag == inv1.from_tag
    assert inv2.top_via.branch != inv1.top_via.branch and other not in inv2.headers
    assert verify(inv2.headers.get(header) or "", "secret", "INVITE", nonce="n1", username="1005")
    assert fields(inv2.headers.get(header))["uri"] == "sip:2000@192.0.2.5:5070"


def test_the_nonce_count_grows_while_the_proxy_keeps_its_nonce() -> None:
    net = proxy_net()
    ncs = []
    for _ in range(3):
        _, inv1 = call(net)
        net.inject(challenge(inv1, 407, "same"), PROXY)
        _, inv2 = net.take_outside()
        ncs.append(fields(inv2.headers.get("Proxy-Authorization"))["nc"])
    assert ncs == ["00000001", "00000002", "00000003"]


def test_refused_credentials_end_the_call_but_stale_is_retried() -> None:
    net = proxy_net()
    sid, inv1 = call(net)
    net.inject(challenge(inv1, 407, "n1"), PROXY)
    _, inv2 = net.take_outside()
    net.inject(challenge(inv2, 407, "n2", stale=True), PROXY)  # RFC 7616 §3.3: retry with the new nonce
    _, inv3 = net.take_outside()
    assert inv3.cseq == (3, "INVITE") and fields(inv3.headers.get("Proxy-Authorization"))["nonce"] == "n2"
    net.inject(challenge(inv3, 407, "n3"), PROXY)  # not stale: the password was refused
    sent = net.take_outside()
    assert [(m.method, m.cseq) for m in sent if isinstance(m, SipRequest)] == [("ACK", (3, "ACK"))]
    assert [(e.session_id, e.status) for e in net.of(CallFailed)] == [(sid, 407)]


def test_the_2xx_ack_carries_the_invite_credentials() -> None:
    net = proxy_net()
    sid, inv1 = call(net)
    net.inject(challenge(inv1, 407, "n1"), PROXY)
    _, inv2 = net.take_outside()
    net.inject(build_response(inv2, 180, to_tag="callee"), PROXY)
    assert [e.status for e in net.of(CallProgress)] == [180]
    sdp = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
           b"m=audio 30000 RTP/AVP 0\r\n")
    ok = build_response(inv2, 200, to_tag="callee", headers=[("Contact", "<sip:2000@192.0.2.9>")], body=sdp,
                        content_type="application/sdp")
    net.inject(ok, PROXY)
    (ack,) = net.take_outside()
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and ack.cseq == (2, "ACK")
    assert ack.headers.get("Proxy-Authorization") == inv2.headers.get("Proxy-Authorization")
    assert net.core.session_state(sid) is not None
