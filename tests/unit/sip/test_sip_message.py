"""Parser and serializer (RFC 3261 §7, §20, §25) and the RFC 4475 torture messages at parser level.

The RFC 4475 table comes from tests/data/rfc4475/INDEX.tsv: every message the RFC calls valid must
parse (with the values below read exactly), every invalid one must be refused with a reason naming
what is wrong and the status a UAS owes, unless the RFC allows a liberal element to accept it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable

import pytest
from sipnet import DATA

from gateway.sip.errors import LocalSipError, RemoteSipError
from gateway.sip.headers import Headers, parse_address, parse_uint, parse_via, quote, split_list, unquote
from gateway.sip.message import NEED_DATA, SipRequest, SipResponse, StreamFramer, build_response, parse_message
from gateway.sip.uri import AbsoluteUri, SipUri, parse_uri

CRLF = "\r\n"


def msg(*lines: str, body: str = "") -> bytes:
    return (CRLF.join(lines) + CRLF + CRLF + body).encode()


BASE = (
    "OPTIONS sip:1001@127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKb1",
    "From: <sip:a@example.com>;tag=f1",
    "To: <sip:1001@127.0.0.1>",
    "Call-ID: c1@example.com",
    "CSeq: 7 OPTIONS",
    "Max-Forwards: 70",
)


def request(*extra: str, body: str = "") -> SipRequest:
    m = parse_message(msg(*BASE, *extra, f"Content-Length: {len(body.encode())}", body=body))
    assert isinstance(m, SipRequest)
    return m


# ------------------------------------------------------------------------------- header names
@pytest.mark.parametrize(("compact", "full", "value"), [
    ("i", "Call-ID", "x@y"), ("f", "From", "<sip:a@b>;tag=1"), ("t", "To", "<sip:c@d>"),
    ("v", "Via", "SIP/2.0/UDP h;branch=z9hG4bKv"), ("m", "Contact", "<sip:a@h>"), ("l", "Content-Length", "0"),
    ("c", "Content-Type", "application/sdp"), ("k", "Supported", "timer"), ("s", "Subject", "hi"),
    ("e", "Content-Encoding", "gzip"), ("o", "Event", "presence"), ("u", "Allow-Events", "talk, hold"),
    ("r", "Refer-To", "<sip:x@y>"), ("b", "Referred-By", "<sip:z@y>"), ("x", "Session-Expires", "1800"),
])
def test_compact_forms_are_read_as_their_full_names_and_written_as_received(compact: str, full: str,
                                                                            value: str) -> None:
    h = Headers([(compact, value)])
    assert h.get(full) == value and h.get(full.upper()) == value and h.get(compact.upper()) == value
    assert full in h and h.count(full.lower()) == 1
    assert h.items() == [(compact, value)]  # the spelling on the wire is kept


@pytest.mark.parametrize("name", ["CALL-ID", "call-id", "Call-Id", "cAlL-iD", "i", "I"])
def test_header_names_are_case_insensitive(name: str) -> None:
    m = parse_message(msg(*[ln for ln in BASE if not ln.startswith("Call-ID")], f"{name}: abc@h", "l: 0"))
    assert m.call_id == "abc@h" and m.headers.get("call-ID") == "abc@h"


def test_header_colon_may_have_white_space_before_it() -> None:
    m = parse_message(msg(*BASE, "Subject  \t:   spaced  ", "l: 0"))
    assert m.headers.items()[-2] == ("Subject", "spaced")


# ------------------------------------------------------------------------------------- folding
@pytest.mark.parametrize(("lines", "value"), [
    (["Subject: one", " two"], "one two"),
    (["Subject: one", "\t two", "   three"], "one two three"),
    (["Subject: one  ", "  two"], "one two"),  # the line break and the LWS around it become one SP
    (["Subject:", " folded-from-the-start"], "folded-from-the-start"),
    (["Subject: a", " ", " b"], "a b"),  # a white-space-only continuation adds nothing
])
def test_folded_lines_are_joined_with_one_space(lines: list[str], value: str) -> None:
    m = parse_message(msg(*BASE, *lines, "l: 0"))
    assert m.headers.get("Subject") == value


def test_folding_inside_structured_headers_is_transparent() -> None:
    m = parse_message(msg(*BASE[:1], "Via: SIP/2.0/UDP", "  192.0.2.1:5070", "\t;branch=z9hG4bKfold", *BASE[2:],
                          "l: 0"))
    via = m.top_via
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "192.0.2.1", 5070, "z9hG4bKfold")


def test_continuation_before_any_header_is_a_400() -> None:
    with pytest.raises(RemoteSipError) as err:
        parse_message(msg(BASE[0], " oops", *BASE[1:], "l: 0"))
    assert err.value.status_hint == 400 and "continuation line" in err.value.reason


# ----------------------------------------------------------------------------- multiple values
def test_list_values_in_one_header_and_across_headers_are_kept_in_order() -> None:
    m = request("Contact: <sip:a@h1>, \"Doe, John\" <sip:b@h2>;q=0.5", "Contact: sip:c@h3",
                "Via: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bKb2, SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bKb3")
    assert [str(c.uri) for c in m.contacts] == ["sip:a@h1", "sip:b@h2", "sip:c@h3"]
    assert m.contacts[1].display == "Doe, John" and m.contacts[1].param("q") == "0.5"
    assert [(v.transport, v.host, v.port) for v in m.vias] == [
        ("UDP", "192.0.2.1", 5070), ("TCP", "192.0.2.2", None), ("UDP", "[2001:db8::9]", 5062)]
    assert m.headers.count("Contact") == 2 and m.headers.count("Via") == 2


@pytest.mark.parametrize(("value", "parts"), [
    ("a, b,c", ["a", "b", "c"]),
    ('"x, y" <sip:a@h>, <sip:b@h;p=1,2>', ['"x, y" <sip:a@h>', "<sip:b@h;p=1,2>"]),
    ('"esc \\" ,still" <sip:a@h>, b', ['"esc \\" ,still" <sip:a@h>', "b"]),
    (";;,,;;,;", [";;", "", ";;", ";"]),
    ("", []),
])
def test_split_list_respects_quotes_and_angle_brackets(value: str, parts: list[str]) -> None:
    assert split_list(value) == parts


@pytest.mark.parametrize("name", ["Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length"])
def test_a_second_single_valued_header_is_a_400(name: str) -> None:
    extra = {"Call-ID": "i: other", "CSeq": "CSeq: 8 OPTIONS", "From": "f: <sip:b@h>;tag=2",
             "To": "t: <sip:c@h>", "Max-Forwards": "Max-Forwards: 69", "Content-Length": "l: 0"}[name]
    with pytest.raises(RemoteSipError) as err:
        parse_message(msg(*BASE, extra, "Content-Length: 0"))
    assert err.value.status_hint == 400 and f"more than one {name.lower()}" in err.value.reason


# ---------------------------------------------------------------- display names and addresses
@pytest.mark.parametrize(("value", "display_name", "display", "uri", "params"), [
    ('"Bob \\"the\\" Builder" <sip:bob@h>;tag=9', '"Bob \\"the\\" Builder"', 'Bob "the" Builder', "sip:bob@h",
     [("tag", "9")]),
    ('"back\\\\slash" <sip:b@h>', '"back\\\\slash"', "back\\slash", "sip:b@h", []),
    ('Bob Smith <sip:bob@h>', "Bob Smith", "Bob Smith", "sip:bob@h", []),
    ("caller<sip:caller@example.com>;tag=1", "caller", "caller", "sip:caller@example.com", [("tag", "1")]),
    ('"" <sip:e@h>', '""', "", "sip:e@h", []),
    ("sip:bare@h;tag=x;other", None, None, "sip:bare@h", [("tag", "x"), ("other", None)]),
    ("<sip:u@h;lr>;expires=0", None, None, "sip:u@h;lr", [("expires", "0")]),
    ("tel:+15551234;tag=t", None, None, "tel:+15551234", [("tag", "t")]),
])
def test_addresses(value: str, display_name: str | None, display: str | None, uri: str,
                   params: list[tuple[str, str | None]]) -> None:
    a = parse_address(value)
    assert (a.display_name, a.display, str(a.uri), a.params) == (display_name, display, uri, params)


@pytest.mark.parametrize(("value", "reason"), [
    ('"unterminated <sip:a@h>', "unterminated quoted string"),
    ("Bell, Alexander <sip:a@h>", "display name must be quoted"),
    ("< sip:a@h >", "white space inside <>"),
    ("<sip:a@h", "missing '>'"),
    ("sip:a@h?Route=x", "must be enclosed in <>"),
    ("", "empty address"),
])
def test_bad_addresses_raise_header_error(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_address(value)


@pytest.mark.parametrize("text", ['plain', 'with "quotes"', "back\\slash", "both \\\" mixed", ""])
def test_quote_and_unquote_are_inverse(text: str) -> None:
    assert unquote(quote(text)) == text
    assert parse_address(f"{quote(text)} <sip:a@h>").display == text


# --------------------------------------------------------------------------------------- URIs
@pytest.mark.parametrize(("text", "user", "user_unescaped", "host", "port", "params", "headers"), [
    ("sip:alice@example.com", "alice", "alice", "example.com", None, [], ""),
    ("sips:a%20b@[2001:db8::1]:5061;transport=tcp", "a%20b", "a b", "[2001:db8::1]", 5061, [("transport", "tcp")], ""),
    ("sip:user;par=u%40example.net@example.com", "user;par=u%40example.net", "user;par=u@example.net",
     "example.com", None, [], ""),
    ("sip:%00%00@h", "%00%00", "\x00\x00", "h", None, [], ""),
    ("sip:h;lr;maddr=1.2.3.4;N%61me=v%61lue", None, None, "h", None,
     [("lr", None), ("maddr", "1.2.3.4"), ("N%61me", "v%61lue")], ""),
    ("sip:u@h?Route=%3Csip:x%3E&Subject=hi", "u", "u", "h", None, [], "Route=%3Csip:x%3E&Subject=hi"),
])
def test_sip_uris_keep_escapes_and_serialise_unchanged(text: str, user: str | None, user_unescaped: str | None,
                                                       host: str, port: int | None,
                                                       params: list[tuple[str, str | None]], headers: str) -> None:
    u = parse_uri(text)
    assert isinstance(u, SipUri)
    assert (u.user, u.user_unescaped, u.host, u.port, u.params, u.headers) == (
        user, user_unescaped, host, port, params, headers)
    assert str(u) == text


def test_uri_headers_are_decoded_only_on_request() -> None:
    u = SipUri.parse("sip:u@h?Route=%3Csip:x%3E&Subject=hi")
    assert u.header_fields == [("Route", "<sip:x>"), ("Subject", "hi")]


@pytest.mark.parametrize(("text", "reason"), [
    ("sip:user@example.com; lr", "illegal character"), ("<sip:a@h>", "no URI scheme"), ("sip:@h", "empty user"),
    ("sip:h:99999", "port out of range"), ("sip:", "bad host"), ("isbn:", "empty isbn: URI"),
])
def test_bad_uris(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_uri(text)


def test_non_sip_uris_are_kept_opaque() -> None:
    assert parse_uri("soap.beep://192.0.2.103:3002") == AbsoluteUri("soap.beep", "//192.0.2.103:3002")


# -------------------------------------------------------------------------- Via, CSeq, numbers
@pytest.mark.parametrize(("value", "fields"), [
    ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport", ("UDP", "192.0.2.1", 5060, "z9hG4bK1", "")),
    ("SIP  /  2.0  /  tcp   h.example.com ; branch = z9hG4bK2", ("TCP", "h.example.com", None, "z9hG4bK2", None)),
    ("SIP/2.0/UDP [::1]:5062;received=::1;rport=5062;branch=z9hG4bK3", ("UDP", "[::1]", 5062, "z9hG4bK3", "5062")),
])
def test_via(value: str, fields: tuple) -> None:
    v = parse_via(value)
    assert (v.transport, v.host, v.port, v.branch, v.param("rport")) == fields


@pytest.mark.parametrize(("digits", "maximum", "value"), [
    ("0068", 255, 68), ("300", 255, None), ("4294967295", 0xFFFFFFFF, 4294967295), ("4294967296", 0xFFFFFFFF, None),
    ("0" * 5000 + "7", 10, 7), ("9" * 60000, 2**64, None), ("-1", 10, None), ("１２", 99, None), ("", 5, 0),
])
def test_parse_uint_bounds_and_never_converts_huge_numbers(digits: str, maximum: int, value: int | None) -> None:
    assert parse_uint(digits, maximum) == value


# ---------------------------------------------------------------------------- serialization
CANONICAL = msg(
    "INVITE sip:1002@127.0.0.1:5060 SIP/2.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK776asdhds;rport",
    "v: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKold, SIP/2.0/UDP 10.0.0.2",
    "Max-Forwards: 70",
    'f: "Alice \\"A\\"" <sip:1001@127.0.0.1:5060>;tag=1928301774',
    "To: <sip:1002@127.0.0.1:5060>",
    "i: a84b4c76e66710@pc33.example.com",
    "CSeq: 314159 INVITE",
    "m: <sip:1001@127.0.0.1:5060>",
    "X-Custom-Header: Some ODD value ;;,, with \"quotes\" and \u00e9",
    "NewFangled: a, b",
    "c: application/sdp",
    "l: 10",
    body="v=0\r\nabc\r\n",
)


def test_canonical_message_round_trips_byte_for_byte() -> None:
    m = parse_message(CANONICAL)
    assert m.to_bytes() == CANONICAL
    assert m.headers.get("X-Custom-Header") == 'Some ODD value ;;,, with "quotes" and \u00e9'
    assert m.headers.items()[8:10] == [("X-Custom-Header", 'Some ODD value ;;,, with "quotes" and \u00e9'),
                                       ("NewFangled", "a, b")]


def test_serialisation_keeps_order_and_fixes_only_a_wrong_content_length() -> None:
    m = parse_message(CANONICAL)
    m.body = b"v=0\r\n"
    out = m.to_bytes()
    assert b"\r\nl: 5\r\n\r\nv=0\r\n" in out and out.count(b"Content-Length") == 0
    m.headers.remove("Content-Length")
    assert m.to_bytes().endswith(b"c: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")
    m.headers.set("Max-Forwards", "69")
    assert m.headers.items()[2] == ("Max-Forwards", "69")


def test_raw_bytes_survive_a_round_trip() -> None:
    data = msg(*BASE, "Subject: \u00ff raw", "X-Bin: caf\u00e9", "l: 0").replace("\u00ff".encode(), b"\xff")
    assert parse_message(data).to_bytes() == data


@pytest.mark.parametrize(("name", "value"), [("X-Evil", "a\r\nVia: injected"), ("X-Evil\r\nVia", "v"),
                                             ("X-Evil", "a\nb")])
def test_line_breaks_in_our_own_headers_are_refused(name: str, value: str) -> None:
    m = request()
    m.headers.add(name, value)
    with pytest.raises(LocalSipError):
        m.to_bytes()


def test_headers_helpers() -> None:
    h = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"), ("To", "<sip:x@y>"),
                 ("v", "SIP/2.0/UDP c;branch=z9hG4bK3")])
    h.prepend("Via", "SIP/2.0/UDP top;branch=z9hG4bK0")
    assert h.values("via") == ["SIP/2.0/UDP top;branch=z9hG4bK0", "SIP/2.0/UDP a;branch=z9hG4bK1",
                               "SIP/2.0/UDP b;branch=z9hG4bK2", "SIP/2.0/UDP c;branch=z9hG4bK3"]
    assert h.pop_first_value("Via") == "SIP/2.0/UDP top;branch=z9hG4bK0"
    assert h.pop_first_value("Via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert h.items() == [("Via", "SIP/2.0/UDP b;branch=z9hG4bK2"), ("To", "<sip:x@y>"),
                         ("v", "SIP/2.0/UDP c;branch=z9hG4bK3")]
    h.set("via", "SIP/2.0/UDP only")
    assert h.items() == [("Via", "SIP/2.0/UDP only"), ("To", "<sip:x@y>")]


# -------------------------------------------------------------------------------- datagrams
def test_leading_line_breaks_bare_lf_and_trailing_octets() -> None:
    data = b"\r\n\r\n" + msg(*BASE, "Content-Length: 3", body="abcJUNK").replace(b"\r\n", b"\n")
    m = parse_message(data)
    assert m.call_id == "c1@example.com" and m.body == b"abc"


@pytest.mark.parametrize(("extra", "status", "reason"), [
    (["Content-Length: 10"], 400, "exceeds the 0 octets"),
    (["Content-Length: -1"], 400, "invalid Content-Length"),
    (["CSeq: 7 INVITE"], 400, "does not match"),
    (["Max-Forwards: lots"], 400, "invalid Max-Forwards"),
    (["Call-ID: has space"], 400, "malformed Call-ID"),
    (["Bad Header Name: x"], 400, "malformed header line"),
])
def test_malformed_requests_name_the_problem(extra: list[str], status: int, reason: str) -> None:
    replaced = {ln.split(":")[0] for ln in extra}
    lines = [ln for ln in BASE if ln.split(":")[0] not in replaced]
    with pytest.raises(RemoteSipError) as err:
        parse_message(msg(*lines, *extra))
    assert err.value.status_hint == status and reason in err.value.reason
    assert isinstance(err.value.partial, SipRequest) and err.value.partial.call_id


def test_stream_messages_need_content_length() -> None:
    with pytest.raises(RemoteSipError, match="mandatory over stream"):
        parse_message(msg(*BASE), stream=True)
    assert parse_message(msg(*BASE)).body == b""


def test_oversized_datagram_is_513() -> None:
    with pytest.raises(RemoteSipError) as err:
        parse_message(msg(*BASE, "X-Pad: " + "p" * 70000, "l: 0"))
    assert err.value.status_hint == 513


@pytest.mark.parametrize("data", [b"", b"\r\n\r\n", b"\x00\xff" * 32768, b"SIP/2.0 99 x\r\n\r\n",
                                  b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1"])
def test_unanswerable_junk_has_status_zero(data: bytes) -> None:
    with pytest.raises(RemoteSipError) as err:
        parse_message(data)
    assert err.value.status_hint == 0


# -------------------------------------------------------------------------------- responses
def test_build_response_copies_the_dialog_headers_and_adds_the_to_tag() -> None:
    req = request("Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKlower", "Timestamp: 54", "Record-Route: <sip:p;lr>")
    ok = build_response(req, 200, to_tag="tt")
    assert ok.start_line() == "SIP/2.0 200 OK"
    assert ok.headers.items() == [
        ("Via", "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKb1"), ("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKlower"),
        ("From", "<sip:a@example.com>;tag=f1"), ("To", "<sip:1001@127.0.0.1>;tag=tt"),
        ("Call-ID", "c1@example.com"), ("CSeq", "7 OPTIONS")]
    trying = build_response(req, 100, to_tag="tt")
    assert trying.headers.get("To") == "<sip:1001@127.0.0.1>" and trying.headers.get("Timestamp") == "54"
    assert parse_message(ok.to_bytes()).to_bytes() == ok.to_bytes()


def test_build_response_keeps_an_existing_to_tag() -> None:
    req = request()
    req.headers.set("To", "<sip:1001@127.0.0.1>;tag=existing")
    assert build_response(req, 486, to_tag="new").headers.get("To") == "<sip:1001@127.0.0.1>;tag=existing"


# ---------------------------------------------------------------------------- TCP framing
def test_stream_framer_cuts_by_content_length_even_byte_by_byte() -> None:
    one = msg(*BASE, "Content-Length: 3", body="abc")
    two = msg(*BASE, "l: 0")
    stream = b"\r\n\r\n" + one + two  # a CRLFCRLF keep-alive first (RFC 5626 §4.4.1)
    f = StreamFramer()
    got: list[bytes] = []
    for i in range(len(stream)):
        f.receive_data(stream[i:i + 1])
        while (out := f.next_message()) is not NEED_DATA:
            got.append(out)  # type: ignore[arg-type]
    assert got == [one, two] and f.keepalives == 1 and f.pending_bytes == 0


@pytest.mark.parametrize(("head", "reason"), [
    ("", "missing Content-Length"), ("Content-Length: -5", "invalid Content-Length"),
    ("Content-Length: 1\r\nl: 2", "conflicting Content-Length"),
])
def test_stream_framer_refuses_unframeable_streams(head: str, reason: str) -> None:
    f = StreamFramer()
    f.receive_data(msg(*BASE, *([head] if head else [])))
    with pytest.raises(RemoteSipError, match=reason):
        f.next_message()
    with pytest.raises(RemoteSipError):  # the stream stays unusable
        f.next_message()


# ------------------------------------------------------------------------------ RFC 4475
def _rows() -> list[dict[str, str]]:
    with open(DATA / "INDEX.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def _sip(uri: object) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


#: What each message the RFC calls valid must read as.
VALID: dict[str, tuple[Callable[[SipRequest | SipResponse], object], object]] = {
    "wsinv": (lambda m: (m.cseq, m.max_forwards, [v.branch for v in m.vias], m.from_.display, m.from_tag, m.to_tag,
                         m.headers.get("NewFangledHeader"), m.headers.get("s"), m.contacts[0].params, len(m.body)),
              ((9, "INVITE"), 68, ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"], 'J Rosenberg \\"', "98asjd8",
               "1918181833n", "newfangled value continued newfangled value", "",
               [("newparam", "newvalue"), ("secondparam", None), ("q", "0.33")], 150)),
    "intmeth": (lambda m: (m.method, m.cseq[1], m.to.display),
                ("!interesting-Method0123456789_*+`.%indeed'~", "!interesting-Method0123456789_*+`.%indeed'~",
                 "BEL:\x07 NUL:\x00 DEL:\x7f")),
    "esc01": (lambda m: (_sip(parse_uri(m.method and m.uri)).user_unescaped, _sip(m.from_.uri).user_unescaped,
                         _sip(m.contacts[0].uri).params),
              ("sips:user@example.com", "I have spaces", [("%6C%72", None), ("n%61me", "v%61lue%25%34%31")])),
    "escnull": (lambda m: ([_sip(c.uri).user_unescaped for c in m.contacts], _sip(m.to.uri).user_unescaped),
                (["\x00", "\x00\x00"], "null-\x00-null")),
    "esc02": (lambda m: (m.method, m.from_.display, [str(c.uri) for c in m.contacts], m.headers.get("C%6Fntact")),
              ("RE%47IST%45R", "%Z%45", ["sip:alias1@host1.example.com", "sip:alias3@host3.example.com"],
               "<sip:alias2@host2.example.com>")),
    "lwsdisp": (lambda m: (m.from_.display_name, str(m.from_.uri)), ("caller", "sip:caller@example.com")),
    "longreq": (lambda m: (len(m.vias), len(m.call_id), m.to.display and len(m.to.display)), (34, 141, 103)),
    "dblreq": (lambda m: (m.method, m.body), ("REGISTER", b"")),
    "semiuri": (lambda m: (_sip(parse_uri(m.uri)).user_unescaped, m.headers.values("Accept")[-1]),
                ("user;par=u@example.net", "message/sipfrag")),
    "transports": (lambda m: [v.transport for v in m.vias], ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]),
    "mpart01": (lambda m: (len(m.body), b"\x00" in m.body, m.content_type), (553, True, "multipart/mixed")),
    "unreason": (lambda m: (m.status, m.reason),  # type: ignore[union-attr]
                 (200, "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442"
                       "\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435")),
    "noreason": (lambda m: (m.status, m.reason), (100, "")),  # type: ignore[union-attr]
    "badbranch": (lambda m: m.top_via.branch, "z9hG4bK"),
    "unkscm": (lambda m: parse_uri(m.uri), AbsoluteUri("nobodyKnowsThisScheme", "totallyopaquecontent")),
    "novelsc": (lambda m: parse_uri(m.uri), AbsoluteUri("soap.beep", "//192.0.2.103:3002")),
    "unksm2": (lambda m: (str(m.to.uri), str(m.from_.uri), str(m.contacts[0].uri)),
               ("isbn:2983792873", "http://www.example.com", "name:John_Smith")),
    "bext01": (lambda m: (m.headers.values("Require"), m.headers.values("Proxy-Require")),
               (["nothingSupportsThis", "nothingSupportsThisEither"],
                ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"])),
    "invut": (lambda m: (m.content_type, len(m.body)), ("application/unknownformat", 40)),
    "regaut01": (lambda m: m.headers.get("Authorization"), "NoOneKnowsThisScheme opaque-data=here"),
    "bcast": (lambda m: [v.host for v in m.vias], ["192.0.2.198", "255.255.255.255"]),
    "zeromf": (lambda m: m.max_forwards, 0),  # type: ignore[union-attr]
    "cparam01": (lambda m: (m.contacts[0].params, _sip(m.contacts[0].uri).params), ([("unknownparam", None)], [])),
    "cparam02": (lambda m: (m.contacts[0].params, _sip(m.contacts[0].uri).params), ([], [("unknownparam", None)])),
    "regescrt": (lambda m: _sip(m.contacts[0].uri).header_fields, [("Route", "<sip:sip.example.com>")]),
    "sdp01": (lambda m: (m.headers.get("Accept"), m.content_type), ("text/nobodyKnowsThis", "application/sdp")),
    "inv2543": (lambda m: (m.top_via.branch, m.from_tag, m.max_forwards, len(m.body)), (None, None, None, 105)),
}

#: Invalid messages: (status a UAS owes or 0 for "drop", words of the reason), or None where the RFC
#: lets a liberal element accept it and we do (the INDEX must then allow a non-400 answer).
INVALID: dict[str, tuple[int, str] | None] = {
    "badinv01": (400, "Via: bad parameter"),
    "clerr": (400, "Content-Length 9999 exceeds"),
    "ncl": (400, "invalid Content-Length '-999'"),
    "scalar02": (400, "CSeq number out of range"),
    "scalarlg": (0, "CSeq number out of range"),
    "quotbal": (400, "To: unterminated quoted string"),
    "ltgtruri": (400, "bad Request-URI"),
    "lwsruri": (400, "malformed start line"),
    "lwsstart": None,
    "trws": None,
    "escruri": (400, "escaped headers are not allowed in a Request-URI"),
    "baddate": None,  # we never use Date
    "regbadct": (400, "Contact: addr-spec with '?' or ',' must be enclosed in <>"),
    "badaspec": (400, "To: white space inside <>"),
    "baddn": (400, "From: display name must be quoted"),
    "badvers": (505, "unsupported version SIP/7.0"),
    "mismatch01": (400, "CSeq method INVITE does not match request method OPTIONS"),
    "mismatch02": (501, "CSeq method INVITE does not match request method NEWMETHOD"),
    "bigcode": (0, "malformed start line"),
    "insuf": (400, "missing mandatory header"),
    "multi01": (400, "more than one"),
    "mcl01": (400, "more than one content-length header"),
}


def test_the_tables_cover_the_whole_index() -> None:
    rows = {r["name"]: r for r in _rows()}
    assert set(VALID) == {n for n, r in rows.items() if r["expected"].startswith("valid")}
    assert set(INVALID) == {n for n, r in rows.items() if r["expected"] == "invalid"}
    for name, outcome in INVALID.items():
        answers = rows[name]["rfc_response"].split("|")
        if outcome is None:
            assert "!400" in answers, f"{name}: the RFC does not allow accepting it"
        elif outcome[0] == 0:
            assert answers == ["drop"], name
        else:
            assert str(outcome[0]) in answers or f"{str(outcome[0])[0]}xx" in answers, name


@pytest.mark.parametrize("name", sorted(VALID))
def test_rfc4475_valid_message_parses(name: str) -> None:
    m = parse_message(_load(name))
    read, expected = VALID[name]
    assert read(m) == expected
    again = parse_message(m.to_bytes())  # and what we would write reads back the same
    assert again.to_bytes() == m.to_bytes() and read(again) == expected


@pytest.mark.parametrize("name", sorted(INVALID))
def test_rfc4475_invalid_message_is_refused_with_a_reason(name: str) -> None:
    outcome = INVALID[name]
    if outcome is None:
        m = parse_message(_load(name))
        assert parse_message(m.to_bytes()).to_bytes() == m.to_bytes()
        return
    status, words = outcome
    with pytest.raises(RemoteSipError) as err:
        parse_message(_load(name))
    assert err.value.status_hint == status and words in err.value.reason
    if status:
        assert isinstance(err.value.partial, SipRequest)  # enough was read to answer it


def test_liberal_acceptances_read_what_was_meant() -> None:
    lws = parse_message(_load("lwsstart"))
    trws = parse_message(_load("trws"))
    assert isinstance(lws, SipRequest) and isinstance(trws, SipRequest)
    assert (lws.method, lws.uri, lws.start_line()) == ("INVITE", "sip:user@example.com",
                                                        "INVITE sip:user@example.com SIP/2.0")
    assert (trws.uri, trws.version) == ("sip:remote-target@example.com", "SIP/2.0")
