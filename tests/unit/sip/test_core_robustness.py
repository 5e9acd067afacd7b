"""Mutated traffic never raises out of the core and leaves nothing behind (RFC 4475 §1's spirit).

Seeded, so every run feeds the same datagrams: the RFC 4475 messages plus a call to a line and
responses to one of our calls, each with random octet flips, cuts, inserted separators, duplicated,
dropped, swapped or re-cased lines. After the traffic, shutdown (``terminate_all``) and a minute
of timers must leave no session, transaction or dialog.
"""

from __future__ import annotations

import random

import pytest
from sipnet import DATA, HOST, PORT, Net, make_net, media

from gateway.sip.errors import LocalSipError
from gateway.sip.events import IncomingCall
from gateway.sip.message import SipRequest, build_response
from gateway.sip.peer import Peer

SDP = (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")
SEPARATORS = [b";", b",", b'"', b"<", b">", b":", b" ", b"\t", b"\r\n ", b"%", b"\\", b"=", b"@", b"?", b"[", b"\r\n"]
PEER = Peer("udp", "192.0.2.1", 5080)


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    lines = data.split(b"\r\n")
    op = rng.randrange(7)
    if op == 0 and b:
        for _ in range(rng.randint(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if op == 1:
        return data[:rng.randrange(len(data) + 1)]
    if op == 2:
        i = rng.randrange(len(b) + 1)
        return data[:i] + b"".join(rng.choice(SEPARATORS) for _ in range(rng.randint(1, 4))) + data[i:]
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if op == 3:
        del lines[i]
    elif op == 4:
        lines.insert(i, lines[j])
    elif op == 5:
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = lines[i].upper() if rng.random() < 0.5 else lines[i].lower()
    return b"\r\n".join(lines)


def invite(n: int, method: str = "INVITE", to_tag: str = "", body: bytes = SDP) -> bytes:
    return (f"{method} sip:1001@{HOST}:{PORT} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKr{n};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: \"C\" <sip:caller@192.0.2.1:5080>;tag=c{n}\r\n"
            f"To: <sip:1001@{HOST}>{';tag=' + to_tag if to_tag else ''}\r\nCall-ID: r{n}\r\nCSeq: 1 {method}\r\n"
            "Contact: <sip:caller@192.0.2.1:5080>\r\nRecord-Route: <sip:192.0.2.50;lr>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def feed(net: Net, data: bytes, rng: random.Random) -> None:
    transport = rng.choice(["udp", "udp", "tcp"])  # stream framing rules differ (Content-Length mandatory)
    net.core.receive_datagram(data, Peer(transport, PEER.host, PEER.port, 1 if transport == "tcp" else None), net.now)
    net.pump()


def incoming_calls(net: Net, rng: random.Random, n: int) -> None:
    feed(net, invite(n) if rng.random() < 0.5 else mutate(rng, invite(n)), rng)
    calls = [e for e in net.of(IncomingCall) if e.call_id == f"r{n}"]
    if not calls:
        return
    action = rng.choice(["answer", "ringing", "reject"])
    try:
        if action == "answer":
            net.core.answer(calls[0].session_id, media(40002), net.now)
        elif action == "ringing":
            net.core.ringing(calls[0].session_id, net.now)
        else:
            net.core.reject(calls[0].session_id, 486, net.now)
    except LocalSipError:
        pass
    net.pump()
    tags = [m.to_tag for m in net.take_outside() if not isinstance(m, SipRequest) and m.to_tag]
    for method in rng.sample(["ACK", "BYE", "INVITE", "CANCEL", "OPTIONS", "INFO"], 3):
        data = invite(n, method, to_tag="" if method == "CANCEL" else (tags[-1] if tags else "x"),
                      body=SDP if method == "INVITE" else b"")
        feed(net, mutate(rng, data) if rng.random() < 0.5 else data, rng)


def outgoing_call(net: Net, rng: random.Random) -> None:
    sid = net.core.invite("1001", "sip:2000@192.0.2.1:5080", media(), net.now)
    net.pump()
    (req,) = net.take_outside()
    assert isinstance(req, SipRequest)
    for status in rng.sample([100, 180, 183, 200, 401, 407, 486, 487, 500], 3):
        headers = [("Contact", "<sip:callee@192.0.2.1:5080>"),
                   ("WWW-Authenticate" if status == 401 else "Proxy-Authenticate", 'Digest realm="r", nonce="n"')]
        resp = build_response(req, status, to_tag="t", headers=headers, body=SDP if status in (183, 200) else b"",
                              content_type="application/sdp")
        feed(net, mutate(rng, resp.to_bytes()) if rng.random() < 0.6 else resp.to_bytes(), rng)
    if rng.random() < 0.5:
        net.core.hangup(sid, net.now)
        net.pump()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_traffic_never_raises_and_leaves_nothing_behind(seed: int) -> None:
    rng = random.Random(seed)
    vectors = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]
    net = make_net()
    for n in range(400):
        kind = rng.randrange(4)
        if kind == 0:
            data = rng.choice(vectors)
            for _ in range(rng.randint(1, 3)):
                data = mutate(rng, data)
            feed(net, data, rng)
        elif kind == 1:
            incoming_calls(net, rng, n)
        elif kind == 2:
            outgoing_call(net, rng)
        else:
            net.advance(net.now + rng.choice([0.5, 2.0, 10.0, 40.0]))
        net.take_sent()
    net.core.terminate_all(net.now)
    net.pump()
    net.advance(net.now + 100.0)
    assert net.core.stats() == {"sip_sessions": 0, "sip_transactions": 0, "sip_dialogs": 0, "sip_timers": 0}
