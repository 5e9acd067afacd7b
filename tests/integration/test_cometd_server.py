"""CometdServer in-process: Starlette TestClient against Starlette(routes=server.routes()).

Held long-polls run in worker threads (TestClient is blocking); publishes from the test thread go
through CometdServer.publish's hand-off to the event loop.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from gateway.cometd.channels import channel_error, matches
from gateway.cometd.server import CometdServer

PATH = "/api/v2/notifications"
USERS = {"alice": "pw-a", "bob": "pw-b"}
SESSIONS = {"cookie-alice": "alice"}
WAIT = 5.0  # generous deadline for conditions that should hold within milliseconds


def basic(user: str, password: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password or USERS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def fake_authenticate(conn: HTTPConnection) -> str | None:
    """Session cookie or Basic, like the gateway's authenticate()."""
    cookie = conn.cookies.get("JSESSIONID")
    if cookie in SESSIONS:
        return SESSIONS[cookie]
    header = conn.headers.get("authorization", "")
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user if USERS.get(user) == password else None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[CometdServer, TestClient]]]:
    clients: list[TestClient] = []

    def factory(**kwargs: Any) -> tuple[CometdServer, TestClient]:
        server = CometdServer(fake_authenticate, **kwargs)
        client = TestClient(Starlette(routes=server.routes()))
        client.__enter__()  # one event loop for the whole test (held connects live across requests)
        clients.append(client)
        return server, client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def post(client: TestClient, body: Any, user: str | None = "alice", path: str = PATH, **kw: Any) -> Any:
    headers = basic(user) if user else {}
    return client.post(path, json=body, headers=headers, **kw)


def bayeux(client: TestClient, body: Any, user: str = "alice", path: str = PATH) -> list[dict[str, Any]]:
    response = post(client, body, user, path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def handshake(client: TestClient, user: str = "alice", path: str = PATH) -> str:
    [reply] = bayeux(client, [{"channel": "/meta/handshake", "version": "1.0", "id": "1",
                               "supportedConnectionTypes": ["long-polling"]}], user, path)
    assert reply["successful"] is True
    return reply["clientId"]


def connect(client: TestClient, cid: str, user: str = "alice", msg_id: str = "c") -> list[dict[str, Any]]:
    return bayeux(client, [{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling",
                            "id": msg_id}], user)


def subscribe(client: TestClient, cid: str, subscription: Any, user: str = "alice") -> dict[str, Any]:
    [reply] = bayeux(client, [{"channel": "/meta/subscribe", "clientId": cid, "subscription": subscription,
                               "id": "s"}], user)
    return reply


def ready_client(client: TestClient, subscriptions: list[str], user: str = "alice") -> str:
    """Handshake, first connect (answered at once), subscribe: the usual client start-up."""
    cid = handshake(client, user)
    [first] = connect(client, cid, user, "c0")
    assert first["successful"] is True
    for sub in subscriptions:
        assert subscribe(client, cid, sub, user)["successful"] is True
    return cid


def publish(client: TestClient, server: CometdServer, *args: Any) -> None:
    """Publish on the server's event loop, as the gateway does (synchronously, in loop order)."""
    assert client.portal is not None
    client.portal.call(server.publish, *args)


def poll(client: TestClient, cid: str, user: str = "alice") -> list[dict[str, Any]]:
    """A connect the client asks to be answered at once (advice timeout 0): what is queued now."""
    return bayeux(client, [{"channel": "/meta/connect", "clientId": cid, "advice": {"timeout": 0}, "id": "p"}], user)


def events(replies: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(r["channel"], r["data"]) for r in replies if not r["channel"].startswith("/meta/")]


def wait_until(client: TestClient, condition: Callable[[], bool]) -> None:
    """Poll a real condition, evaluated on the server's event loop, with a deadline.

    A held connect gives the test thread nothing to await, so this is the one place that polls.
    """
    assert client.portal is not None
    deadline = time.monotonic() + WAIT
    while not client.portal.call(condition):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def held_connect(pool: ThreadPoolExecutor, server: CometdServer, client: TestClient, cid: str,
                 user: str = "alice") -> Future[list[dict[str, Any]]]:
    before = client.portal.call(server.held_connect_count, user) if client.portal else 0
    future = pool.submit(connect, client, cid, user, "held")
    wait_until(client, lambda: server.held_connect_count(user) > before)
    return future


# ---------------------------------------------------------------- channels


def test_wildcard_matching_rules() -> None:
    assert matches("/v2/me/*", "/v2/me/calls")
    assert not matches("/v2/me/*", "/v2/me")
    assert not matches("/v2/me/*", "/v2/me/calls/x")
    assert matches("/v2/me/**", "/v2/me/calls/x")
    assert not matches("/v2/me/**", "/v2/me")
    assert matches("/**", "/v2/me/devices")
    assert matches("/*", "/v2")
    assert not matches("/*", "/v2/me")
    assert matches("/v2/me/calls", "/v2/me/calls")
    assert not matches("/v2/me/calls", "/v2/me/callsx")
    assert channel_error("/v2/*/calls", allow_wildcard=True) is not None
    assert channel_error("/v2/me/c*", allow_wildcard=True) is not None
    assert channel_error("/v2//calls", allow_wildcard=False) is not None
    assert channel_error("/v2/me/*", allow_wildcard=False) is not None
    assert channel_error("/v2/me/*", allow_wildcard=True) is None


# ---------------------------------------------------------------- handshake / connect


def test_handshake_reply(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make(timeout_ms=25000, interval_ms=5, max_interval_ms=7000)
    body = [{"channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0", "id": "42",
             "supportedConnectionTypes": ["websocket", "long-polling"], "ext": {"ack": True}}]
    [reply] = bayeux(client, body)
    assert reply["successful"] is True
    assert reply["channel"] == "/meta/handshake"
    assert reply["id"] == "42"
    assert reply["version"] == "1.0"
    assert reply["supportedConnectionTypes"] == ["websocket", "long-polling"]
    assert reply["advice"] == {"reconnect": "retry", "interval": 5, "timeout": 25000, "maxInterval": 7000}
    assert "ext" not in reply  # not echoed: echoing {"ack": true} would make clients expect acks
    assert len(reply["clientId"]) >= 32
    assert handshake(client) != reply["clientId"]
    assert server.client_count("alice") == 2
    assert server.base_url_of(reply["clientId"]) == "http://testserver"


@pytest.mark.parametrize("kind", ["handshake", "connect", "subscribe", "unsubscribe", "disconnect"])
def test_message_type_suffix_paths(make: Callable[..., tuple[CometdServer, TestClient]], kind: str) -> None:
    server, client = make()
    cid = handshake(client, path=f"{PATH}/handshake")
    message: dict[str, Any] = {"channel": f"/meta/{kind}", "clientId": cid, "id": "7"}
    if kind in ("subscribe", "unsubscribe"):
        message["subscription"] = "/v2/me/calls"
    if kind == "handshake":
        message = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
    [reply] = bayeux(client, [message], path=f"{PATH}/{kind}")
    assert reply["channel"] == f"/meta/{kind}"
    assert reply["successful"] is True


def test_subscribe_publish_connect_delivers_event_then_connect_reply(
        make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/calls"])
    publish(client, server, "alice", "/v2/me/calls", {"messageType": "CallStateChangeMessage", "n": 1})
    replies = connect(client, cid, msg_id="9")
    assert [r["channel"] for r in replies] == ["/v2/me/calls", "/meta/connect"]
    assert replies[0]["data"] == {"messageType": "CallStateChangeMessage", "n": 1}
    assert isinstance(replies[0]["id"], str)
    assert replies[1] == {"channel": "/meta/connect", "successful": True, "id": "9", "clientId": cid,
                          "advice": {"reconnect": "retry", "interval": 0, "timeout": 30000}}


def test_held_connect_is_released_by_publish(make: Callable[..., tuple[CometdServer, TestClient]],
                                              pool: ThreadPoolExecutor) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/devices"])
    future = held_connect(pool, server, client, cid)
    assert not future.done()
    server.publish("alice", "/v2/me/devices", {"messageType": "DeviceStateChangeMessage"})
    replies = future.result(WAIT)
    assert events(replies) == [("/v2/me/devices", {"messageType": "DeviceStateChangeMessage"})]
    assert replies[-1]["channel"] == "/meta/connect" and replies[-1]["successful"] is True
    assert server.held_connect_count() == 0


def test_held_connect_times_out_empty(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make(timeout_ms=50)
    cid = ready_client(client, ["/v2/me/calls"])
    replies = connect(client, cid)
    assert [r["channel"] for r in replies] == ["/meta/connect"]
    assert replies[0]["successful"] is True


def test_client_advice_timeout_zero_is_answered_at_once(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()  # 30 s hold unless the client asks for less
    cid = ready_client(client, ["/v2/me/calls"])
    [reply] = bayeux(client, [{"channel": "/meta/connect", "clientId": cid, "advice": {"timeout": 0}}])
    assert reply["successful"] is True


def test_second_connect_releases_first(make: Callable[..., tuple[CometdServer, TestClient]],
                                       pool: ThreadPoolExecutor) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/calls"])
    first = held_connect(pool, server, client, cid)
    second = pool.submit(connect, client, cid, "alice", "second")
    first_replies = first.result(WAIT)
    assert first_replies == [{"channel": "/meta/connect", "successful": True, "id": "held", "clientId": cid,
                              "advice": {"reconnect": "retry", "interval": 0, "timeout": 30000}}]
    wait_until(client, lambda: server.held_connect_count("alice") == 1)
    publish(client, server, "alice", "/v2/me/calls", {"n": 1})
    second_replies = second.result(WAIT)
    assert events(second_replies) == [("/v2/me/calls", {"n": 1})]
    assert second_replies[-1]["id"] == "second"


def test_batch_processed_in_order_with_connect_last(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    cid = ready_client(client, [])
    publish(client, server, "alice", "/v2/me/calls", {"before": "subscribe"})  # nobody subscribed yet: not queued
    batch = [
        {"channel": "/meta/connect", "clientId": cid, "id": "1"},
        {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/v2/me/calls", "id": "2"},
        {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/v2/me/devices", "id": "3"},
    ]
    replies = bayeux(client, batch)  # a connect followed by other messages is not held
    assert [(r["channel"], r["id"]) for r in replies] == [
        ("/meta/subscribe", "2"), ("/meta/subscribe", "3"), ("/meta/connect", "1")]
    assert all(r["successful"] for r in replies)
    publish(client, server, "alice", "/v2/me/devices", {"n": 1})
    publish(client, server, "alice", "/v2/me/calls", {"n": 2})
    replies = bayeux(client, [{"channel": "/meta/unsubscribe", "clientId": cid, "subscription": "/v2/me/calls",
                               "id": "4"},
                              {"channel": "/meta/connect", "clientId": cid, "id": "5"}])
    assert [r.get("id") for r in replies[-2:]] == ["4", "5"]
    assert events(replies) == [("/v2/me/devices", {"n": 1}), ("/v2/me/calls", {"n": 2})]


def test_publish_order_is_preserved(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/*"])
    for n in range(200):
        publish(client, server, "alice", "/v2/me/calls" if n % 2 else "/v2/me/devices", {"n": n})
    received = events(connect(client, cid))
    assert [data["n"] for _, data in received] == list(range(200))
    assert received[1] == ("/v2/me/calls", {"n": 1})


# ---------------------------------------------------------------- subscriptions


def test_wildcard_subscriptions_deliver_concrete_channel_once(
        make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    star = ready_client(client, ["/v2/me/*", "/v2/me/calls"])
    deep = ready_client(client, ["/v2/**"])
    everything = ready_client(client, ["/**"])
    exact = ready_client(client, ["/v2/me/devices"])
    publish(client, server, "alice", "/v2/me/calls", {"n": 1})
    publish(client, server, "alice", "/v2/me", {"n": 2})
    publish(client, server, "alice", "/v2/me/im-sessions/x", {"n": 3})
    publish(client, server, "alice", "/notifications/services", {"n": 4})
    assert events(connect(client, star)) == [("/v2/me/calls", {"n": 1})]
    assert events(connect(client, deep)) == [("/v2/me/calls", {"n": 1}), ("/v2/me", {"n": 2}),
                                             ("/v2/me/im-sessions/x", {"n": 3})]
    assert [d["n"] for _, d in events(connect(client, everything))] == [1, 2, 3, 4]
    assert events(poll(client, exact)) == []


def test_subscribe_answers(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    cid = ready_client(client, [])
    for channel in ("/v2/me/chats", "/v2/me/emails", "/v2/me/channels", "/v2/me/outbound", "/v2/me/*", "/**",
                    "/service/anything"):
        reply = subscribe(client, cid, channel)
        assert reply["successful"] is True, channel
        assert reply["subscription"] == channel
        assert reply["clientId"] == cid
    listed = subscribe(client, cid, ["/v2/me/calls", "/v2/me/devices"])
    assert listed["successful"] is True and listed["subscription"] == ["/v2/me/calls", "/v2/me/devices"]
    denied = subscribe(client, cid, "/meta/**")
    assert denied["successful"] is False and denied["error"].startswith("403::")
    assert subscribe(client, cid, "/meta/connect")["successful"] is False
    bad = subscribe(client, cid, "/v2/*/calls")
    assert bad["successful"] is False and bad["error"].startswith("400::subscription")
    missing = bayeux(client, [{"channel": "/meta/subscribe", "clientId": cid, "id": "m"}])[0]
    assert missing["successful"] is False and "subscription" in missing["error"]


def test_unsubscribe_stops_delivery(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/calls", "/v2/me/devices"])
    [reply] = bayeux(client, [{"channel": "/meta/unsubscribe", "clientId": cid,
                               "subscription": ["/v2/me/calls"], "id": "u"}])
    assert reply == {"channel": "/meta/unsubscribe", "successful": True, "id": "u", "clientId": cid,
                     "subscription": ["/v2/me/calls"]}
    publish(client, server, "alice", "/v2/me/calls", {"n": 1})
    publish(client, server, "alice", "/v2/me/devices", {"n": 2})
    assert events(connect(client, cid)) == [("/v2/me/devices", {"n": 2})]


# ---------------------------------------------------------------- users, ids, auth


def test_users_are_isolated(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    alice = ready_client(client, ["/**"], "alice")
    bob = ready_client(client, ["/**"], "bob")
    publish(client, server, "alice", "/v2/me/calls", {"for": "alice"})
    publish(client, server, "bob", "/v2/me/calls", {"for": "bob"})
    publish(client, server, "carol", "/v2/me/calls", {"for": "carol"})
    assert events(connect(client, bob, "bob")) == [("/v2/me/calls", {"for": "bob"})]
    assert events(connect(client, alice, "alice")) == [("/v2/me/calls", {"for": "alice"})]
    assert server.client_count("alice") == 1 and server.client_count("bob") == 1 and server.client_count() == 2


def test_client_id_is_bound_to_its_user(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    alice = ready_client(client, ["/v2/me/calls"])
    publish(client, server, "alice", "/v2/me/calls", {"secret": 1})
    [stolen] = connect(client, alice, "bob")
    assert stolen["successful"] is False and stolen["error"] == "402::Unknown client"
    [sub] = bayeux(client, [{"channel": "/meta/subscribe", "clientId": alice, "subscription": "/**"}], "bob")
    assert sub["successful"] is False
    anonymous = post(client, [{"channel": "/meta/connect", "clientId": alice}], None)
    assert anonymous.status_code == 403
    assert events(connect(client, alice)) == [("/v2/me/calls", {"secret": 1})]  # still alice's, intact


def test_unknown_client_gets_402_and_handshake_advice(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    [reply] = bayeux(client, [{"channel": "/meta/connect", "clientId": "nope", "id": "5"}])
    assert reply == {"channel": "/meta/connect", "successful": False, "id": "5", "error": "402::Unknown client",
                     "advice": {"reconnect": "handshake", "interval": 0}}
    [no_id] = bayeux(client, [{"channel": "/meta/subscribe", "subscription": "/v2/me/calls"}])
    assert no_id["error"] == "402::Unknown client"


def test_disconnect_then_402_then_rehandshake(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/calls"])
    [reply] = bayeux(client, [{"channel": "/meta/disconnect", "clientId": cid, "id": "d"}])
    assert reply == {"channel": "/meta/disconnect", "successful": True, "id": "d", "clientId": cid}
    assert server.client_count() == 0
    assert connect(client, cid)[0]["error"] == "402::Unknown client"
    fresh = ready_client(client, ["/v2/me/calls"])
    publish(client, server, "alice", "/v2/me/calls", {"n": 1})
    assert events(connect(client, fresh)) == [("/v2/me/calls", {"n": 1})]


def test_disconnect_user_releases_held_connect_with_402(make: Callable[..., tuple[CometdServer, TestClient]],
                                                         pool: ThreadPoolExecutor) -> None:
    server, client = make()
    held = ready_client(client, ["/v2/me/calls"])
    other = ready_client(client, ["/v2/me/calls"])
    bobs = ready_client(client, ["/v2/me/calls"], "bob")
    future = held_connect(pool, server, client, held)
    server.disconnect_user("alice")
    [reply] = future.result(WAIT)
    assert reply["successful"] is False and reply["error"] == "402::Unknown client"
    assert reply["advice"]["reconnect"] == "handshake"
    assert connect(client, other)[0]["error"] == "402::Unknown client"
    assert server.client_count("alice") == 0 and server.client_count("bob") == 1
    assert poll(client, bobs, "bob")[-1]["successful"] is True


def test_unauthenticated_requests_get_403_without_challenge(
        make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    body = [{"channel": "/meta/handshake", "version": "1.0", "id": "h1", "supportedConnectionTypes": ["long-polling"]}]
    for headers in ({}, basic("alice", "wrong"), {"Authorization": "Bearer x"}, {"Cookie": "JSESSIONID=forged"}):
        response = client.post(PATH, json=body, headers=headers)
        assert response.status_code == 403
        assert "www-authenticate" not in response.headers
        assert response.json() == [{"channel": "/meta/handshake", "successful": False, "id": "h1",
                                    "error": "403::Unauthorized", "advice": {"reconnect": "none", "interval": 0}}]
    batch = [{"channel": "/meta/subscribe", "id": "a"}, {"channel": "/meta/connect", "id": "b"}]
    response = client.post(f"{PATH}/connect", json=batch)
    assert response.status_code == 403
    assert [(r["channel"], r["id"], r["error"]) for r in response.json()] == [
        ("/meta/subscribe", "a", "403::Unauthorized"), ("/meta/connect", "b", "403::Unauthorized")]
    garbage = client.post(PATH, content=b"not json")
    assert garbage.status_code == 403 and garbage.json()[0]["error"] == "403::Unauthorized"
    assert server.client_count() == 0


def test_session_cookie_alone_authenticates(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    response = client.post(PATH, json=[{"channel": "/meta/handshake", "version": "1.0"}],
                           headers={"Cookie": "JSESSIONID=cookie-alice"})
    assert response.status_code == 200 and response.json()[0]["successful"] is True
    assert server.client_count("alice") == 1


def test_client_publish_is_denied(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/calls"])
    [reply] = bayeux(client, [{"channel": "/v2/me/calls", "clientId": cid, "data": {"x": 1}, "id": "p"}])
    assert reply == {"channel": "/v2/me/calls", "successful": False, "id": "p", "error": "403::Publish denied"}
    assert events(poll(client, cid)) == []
    [unknown_meta] = bayeux(client, [{"channel": "/meta/bogus", "clientId": cid}])
    assert unknown_meta["successful"] is False and unknown_meta["error"].startswith("400::")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("content", "field"), [
    (b"{not json", "not JSON"),
    (b"42", "object or array"),
    (b"[]", "empty"),
    (b"", "empty"),
    (b"[1]", "message[0]"),
    (b'[{"id": "1"}]', "message[0].channel is missing"),
    (b'[{"channel": 5}]', "message[0].channel"),
    (b'[{"channel": "/meta/handshake"}, {"channel": "nope"}]', "message[1].channel"),
    (b"\xff\xfe", "UTF-8"),
])
def test_malformed_bodies_get_400_naming_the_problem(make: Callable[..., tuple[CometdServer, TestClient]],
                                                      content: bytes, field: str) -> None:
    server, client = make()
    response = client.post(PATH, content=content, headers={**basic("alice"), "Content-Type": "application/json"})
    assert response.status_code == 400
    [reply] = response.json()
    assert reply["successful"] is False
    assert reply["error"].startswith("400::") and field in reply["error"]
    assert handshake(client)  # the server still works


def test_body_too_large(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make(max_body_bytes=1000)
    response = client.post(PATH, content=b"[" + b" " * 2000 + b"]", headers=basic("alice"))
    assert response.status_code == 413
    assert response.json()[0]["error"].startswith("413::")


def test_text_plain_and_form_bodies_are_accepted(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    text = json.dumps([{"channel": "/meta/handshake", "version": "1.0"}])
    plain = client.post(PATH, content=text, headers={**basic("alice"), "Content-Type": "text/plain;charset=UTF-8"})
    assert plain.status_code == 200 and plain.json()[0]["successful"] is True
    form = client.post(PATH, data={"message": text}, headers=basic("alice"))
    assert form.status_code == 200 and form.json()[0]["successful"] is True
    single = client.post(PATH, json={"channel": "/meta/handshake", "version": "1.0", "id": "o"}, headers=basic("alice"))
    assert single.json()[0]["id"] == "o"


# ---------------------------------------------------------------- expiry, bounds, rendering


def test_idle_clients_expire_after_max_interval(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    clock = FakeClock()
    server, client = make(max_interval_ms=10000, clock=clock)
    idle = ready_client(client, ["/v2/me/calls"])
    clock.now += 9.0
    busy = ready_client(client, ["/v2/me/calls"])
    assert server.client_count() == 2
    clock.now += 1.5  # idle: 10.5 s since its connect reply; busy: 1.5 s
    assert server.client_count() == 1
    assert connect(client, idle)[0]["error"] == "402::Unknown client"
    assert poll(client, busy)[-1]["successful"] is True


def test_client_with_held_connect_does_not_expire(make: Callable[..., tuple[CometdServer, TestClient]],
                                                  pool: ThreadPoolExecutor) -> None:
    clock = FakeClock()
    server, client = make(max_interval_ms=1000, clock=clock)
    cid = ready_client(client, ["/v2/me/calls"])
    future = held_connect(pool, server, client, cid)
    clock.now += 60
    assert server.expire_idle() == 0
    publish(client, server, "alice", "/v2/me/calls", {"n": 1})
    assert events(future.result(WAIT)) == [("/v2/me/calls", {"n": 1})]
    clock.now += 0.5
    assert server.expire_idle() == 0
    clock.now += 1.0
    assert server.expire_idle() == 1


def test_queue_overflow_drops_the_client(make: Callable[..., tuple[CometdServer, TestClient]],
                                         caplog: pytest.LogCaptureFixture) -> None:
    server, client = make(max_queue=3)
    slow = ready_client(client, ["/v2/me/calls"])
    fine = ready_client(client, ["/v2/me/devices"])
    for n in range(4):
        publish(client, server, "alice", "/v2/me/calls", {"n": n})
    assert server.client_count("alice") == 1
    assert connect(client, slow)[0]["error"] == "402::Unknown client"
    assert poll(client, fine)[-1]["successful"] is True
    assert any("queue full" in r.getMessage() and slow in r.getMessage() for r in caplog.records)


def test_render_callable_gets_each_clients_base_url(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    first = ready_client(client, ["/v2/me/devices"])
    second = ready_client(client, ["/v2/me/*"])
    calls: list[str] = []

    def render(base_url: str) -> dict[str, Any]:
        calls.append(base_url)
        return {"deviceUri": f"{base_url}/api/v2/devices/1001"}

    publish(client, server, "alice", "/v2/me/devices", render)
    assert calls == ["http://testserver"]  # rendered once for both clients sharing a base URL
    expected = [("/v2/me/devices", {"deviceUri": "http://testserver/api/v2/devices/1001"})]
    assert events(connect(client, first)) == expected
    assert events(connect(client, second)) == expected


def test_bad_publish_data_is_dropped_not_raised(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/calls"])
    publish(client, server, "alice", "/v2/me/calls", {"bad": object()})
    publish(client, server, "alice", "/v2/me/*", {"wildcard": "channel"})
    publish(client, server, "alice", "/v2/me/calls", {"ok": True})
    assert events(connect(client, cid)) == [("/v2/me/calls", {"ok": True})]


def test_close_releases_held_long_polls(make: Callable[..., tuple[CometdServer, TestClient]],
                                        pool: ThreadPoolExecutor) -> None:
    server, client = make()
    cid = ready_client(client, ["/v2/me/calls"])
    future = held_connect(pool, server, client, cid)
    assert client.portal is not None
    client.portal.call(server.close)
    [reply] = future.result(WAIT)
    assert reply["successful"] is False and reply["advice"]["reconnect"] == "handshake"
    [refused] = bayeux(client, [{"channel": "/meta/handshake", "version": "1.0"}])
    assert refused["successful"] is False


# ---------------------------------------------------------------- websocket


def ws_receive(ws: WebSocketTestSession) -> list[dict[str, Any]]:
    """Next frame, failing after WAIT seconds instead of hanging the test run (uses the session's stream)."""
    async def receive() -> Any:
        with anyio.fail_after(WAIT):
            return await ws._send_rx.receive()  # noqa: SLF001 - TestClient has no receive timeout

    message = ws.portal.call(receive)
    ws._raise_on_close(message)  # noqa: SLF001
    return json.loads(message["text"])


def ws_handshake(ws: WebSocketTestSession) -> str:
    ws.send_json([{"channel": "/meta/handshake", "version": "1.0", "id": "1",
                   "supportedConnectionTypes": ["websocket"]}])
    [reply] = ws_receive(ws)
    assert reply["successful"] is True
    ws.send_json([{"channel": "/meta/connect", "clientId": reply["clientId"], "connectionType": "websocket",
                   "id": "2"}])
    [first] = ws_receive(ws)
    assert first["channel"] == "/meta/connect" and first["successful"] is True
    return reply["clientId"]


def test_websocket_pushes_events_while_connect_is_held(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    with client.websocket_connect(PATH, headers=basic("alice")) as ws:
        cid = ws_handshake(ws)
        ws.send_json([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/v2/me/*", "id": "3"}])
        assert ws_receive(ws) == [{"channel": "/meta/subscribe", "successful": True, "id": "3", "clientId": cid,
                                   "subscription": "/v2/me/*"}]
        ws.send_json([{"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket", "id": "4"}])
        wait_until(client, lambda: server.held_connect_count("alice") == 1)
        for n in range(3):
            publish(client, server, "alice", "/v2/me/calls", {"n": n})
        received: list[dict[str, Any]] = []
        while len(received) < 3:
            received += ws_receive(ws)
        assert [(r["channel"], r["data"]) for r in received] == [("/v2/me/calls", {"n": n}) for n in range(3)]
        assert server.held_connect_count("alice") == 1  # the connect is still held
        ws.send_json([{"channel": "/meta/disconnect", "clientId": cid, "id": "5"}])
        replies: list[dict[str, Any]] = []
        while len(replies) < 2:
            replies += ws_receive(ws)
        by_channel = {r["channel"]: r for r in replies}
        assert by_channel["/meta/disconnect"]["successful"] is True
        assert by_channel["/meta/connect"]["id"] == "4"
        assert by_channel["/meta/connect"]["advice"]["reconnect"] == "none"
    assert server.client_count() == 0


def test_websocket_connect_reply_after_timeout(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make(timeout_ms=50)
    with client.websocket_connect(PATH, headers=basic("bob")) as ws:
        cid = ws_handshake(ws)
        ws.send_json([{"channel": "/meta/connect", "clientId": cid, "id": "9"}])
        [reply] = ws_receive(ws)
        assert reply["channel"] == "/meta/connect" and reply["id"] == "9" and reply["successful"] is True
        assert server.held_connect_count() == 0


def test_websocket_reuses_a_long_polling_handshake(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    """aiocometd handshakes over long-polling, then opens the websocket with the same clientId."""
    server, client = make()
    cid = handshake(client, "alice")
    server_side_user_b = ready_client(client, ["/**"], "bob")
    with client.websocket_connect(PATH, headers=basic("alice")) as ws:
        ws.send_json([{"channel": "/meta/connect", "clientId": cid, "id": "1"},
                      {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/v2/me/calls", "id": "2"}])
        replies = ws_receive(ws)
        assert [(r["channel"], r["successful"]) for r in replies] == [("/meta/subscribe", True)]
        replies = ws_receive(ws)
        assert [(r["channel"], r["id"]) for r in replies] == [("/meta/connect", "1")]
        publish(client, server, "bob", "/v2/me/calls", {"for": "bob"})
        publish(client, server, "alice", "/v2/me/calls", {"for": "alice"})
        assert [(r["channel"], r["data"]) for r in ws_receive(ws)] == [("/v2/me/calls", {"for": "alice"})]
        ws.send_json({"channel": "/meta/connect", "clientId": server_side_user_b, "id": "x"})  # bob's id
        assert ws_receive(ws)[0]["error"] == "402::Unknown client"


def test_websocket_bad_frames_do_not_close_the_socket(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    with client.websocket_connect(PATH, headers=basic("alice")) as ws:
        ws.send_text("{oops")
        [reply] = ws_receive(ws)
        assert reply["successful"] is False and "not JSON" in reply["error"]
        ws.send_bytes(b'[{"id": 1}]')
        assert "channel is missing" in ws_receive(ws)[0]["error"]
        assert ws_handshake(ws)


def test_websocket_without_auth_is_refused(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    for headers in ({}, basic("alice", "wrong")):
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(PATH, headers=headers):
                pass
        assert refused.value.code == 1008
    with client.websocket_connect(PATH, headers={"Cookie": "JSESSIONID=cookie-alice"}) as ws:
        assert ws_handshake(ws)


def test_close_answers_websocket_connect_and_closes(make: Callable[..., tuple[CometdServer, TestClient]]) -> None:
    server, client = make()
    with client.websocket_connect(PATH, headers=basic("alice")) as ws:
        cid = ws_handshake(ws)
        ws.send_json([{"channel": "/meta/connect", "clientId": cid, "id": "h"}])
        wait_until(client, lambda: server.held_connect_count() == 1)
        assert client.portal is not None
        client.portal.call(server.close)
        [reply] = ws_receive(ws)
        assert reply["id"] == "h" and reply["error"] == "402::Unknown client"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws_receive(ws)
        assert closed.value.code == 1001
