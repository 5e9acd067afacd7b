"""Basic auth, servlet-style sessions and the 403/20 rule (spec §0.1.1, §1.2, §0.1.12)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from starlette.testclient import TestClient

from .conftest import Agent, basic, build_app, make_settings
from .fakes import FakeTelephony

DENIED = {"statusCode": 20, "statusMessage": "Access denied"}


def assert_denied(r: Any) -> None:
    assert r.status_code == 403
    assert r.json() == DENIED
    assert r.headers["content-type"] == "application/json"
    assert "www-authenticate" not in r.headers


def test_basic_auth_gets_user_and_a_session_cookie(client: TestClient) -> None:
    r = client.get("/api/v2/me", headers={"Authorization": basic("alice")})
    assert r.status_code == 200
    assert r.json()["statusCode"] == 0
    assert r.json()["user"]["userName"] == "alice"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("JSESSIONID=")
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=lax"} <= attrs
    assert len(cookie.split(";")[0].split("=", 1)[1]) >= 32


def test_cookie_alone_reuses_the_session(client: TestClient) -> None:
    first = client.get("/api/v2/me", headers={"Authorization": basic("alice")})
    second = client.get("/api/v2/me/devices")  # the client kept the cookie; no credentials now
    assert second.status_code == 200
    assert "set-cookie" not in second.headers
    assert first.headers["X-CSRF-TOKEN"] == second.headers["X-CSRF-TOKEN"]


def test_basic_with_the_sessions_cookie_does_not_make_a_new_session(client: TestClient) -> None:
    client.get("/api/v2/me", headers={"Authorization": basic("alice")})
    r = client.get("/api/v2/me", headers={"Authorization": basic("alice")})
    assert r.status_code == 200
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize("authorization", [
    None,
    basic("alice", "wrong"),
    basic("nobody", "x"),
    "Basic !!!notbase64",
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Bearer abc.def",
    "Basic",
])
def test_missing_or_bad_credentials_get_403_statuscode_20_without_challenge(
        client: TestClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for path in ("/api/v2/me", "/api/v2/me/devices", "/api/v2/no/such/thing"):
        assert_denied(client.get(path, headers=headers))
    assert_denied(client.post("/api/v2/me", headers=headers, json={"operationName": "EndContactCenterSession"}))
    assert "set-cookie" not in client.get("/api/v2/me", headers=headers).headers


def test_bad_basic_fails_even_with_a_valid_cookie(client: TestClient) -> None:
    client.get("/api/v2/me", headers={"Authorization": basic("alice")})
    assert_denied(client.get("/api/v2/me", headers={"Authorization": basic("alice", "wrong")}))
    assert client.get("/api/v2/me").status_code == 200  # the session itself is still good


def test_unknown_cookie_is_denied(client: TestClient) -> None:
    client.cookies.set("JSESSIONID", "0123456789ABCDEF0123456789ABCDEF")
    assert_denied(client.get("/api/v2/me"))


def test_basic_for_another_user_gets_that_users_own_session(client: TestClient) -> None:
    client.get("/api/v2/me", headers={"Authorization": basic("alice")})
    r = client.get("/api/v2/me", headers={"Authorization": basic("bob")})
    assert r.json()["user"]["userName"] == "bob"
    assert r.headers["set-cookie"].startswith("JSESSIONID=")


def test_health_outside_the_api_is_public(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_session_expires_after_idle_time() -> None:
    now = [1000.0]
    settings = make_settings(session_idle_seconds=60)
    app, _ = build_app(FakeTelephony(settings), settings, clock=lambda: now[0])
    client = TestClient(app)
    client.get("/api/v2/me", headers={"Authorization": basic("alice")})
    now[0] += 59
    assert client.get("/api/v2/me").status_code == 200  # use restarts the idle timer
    now[0] += 59
    assert client.get("/api/v2/me").status_code == 200
    now[0] += 61
    assert_denied(client.get("/api/v2/me"))


def test_end_contact_center_session_invalidates_the_cookie(agent: Any) -> None:
    alice: Agent = agent("alice")
    cookie = alice.http.cookies["JSESSIONID"]
    r = alice.op("/api/v2/me", "EndContactCenterSession")
    assert r.json() == {"statusCode": 0}
    set_cookie = r.headers["set-cookie"].lower()
    assert set_cookie.startswith("jsessionid=;") and "max-age=0" in set_cookie
    # even a client that ignores the clearing keeps a dead cookie
    stale = TestClient(alice.http.app)
    stale.cookies.set("JSESSIONID", cookie)
    assert_denied(stale.get("/api/v2/me"))
    assert_denied(alice.get("/api/v2/me"))
    # logging in again works and gives a new session
    again = alice.http.get("/api/v2/me", headers={"Authorization": basic("alice")})
    assert again.status_code == 200
    assert again.cookies["JSESSIONID"] != cookie


class TestCometdAuthenticate:
    """The CometD server calls ``Api.authenticate``; the API's own middleware leaves it alone."""

    def test_no_credentials_reach_the_cometd_endpoint_unauthenticated(self, client: TestClient) -> None:
        for path in ("/api/v2/notifications", "/api/v2/notifications/handshake"):
            r = client.post(path, json=[{"channel": "/meta/handshake"}])
            assert r.status_code == 200
            assert r.json()[0]["successful"] is False

    def test_basic_alone(self, client: TestClient) -> None:
        r = client.post("/api/v2/notifications/connect", headers={"Authorization": basic("bob")}, json=[])
        assert r.json()[0]["user"] == "bob"
        assert "set-cookie" not in r.headers

    def test_cookie_alone(self, agent: Any) -> None:
        alice: Agent = agent("alice")
        r = alice.http.post("/api/v2/notifications", json=[])  # no CSRF token, no Basic
        assert r.json()[0]["user"] == "alice"

    def test_bad_basic_with_good_cookie(self, agent: Any) -> None:
        alice: Agent = agent("alice")
        r = alice.http.post("/api/v2/notifications", headers={"Authorization": basic("alice", "nope")}, json=[])
        assert r.json()[0]["successful"] is False

    def test_session_ended_cookie_is_refused(self, agent: Any) -> None:
        alice: Agent = agent("alice")
        cookie = alice.http.cookies["JSESSIONID"]
        alice.op("/api/v2/me", "EndContactCenterSession")
        stale = TestClient(alice.http.app)
        stale.cookies.set("JSESSIONID", cookie)
        assert stale.post("/api/v2/notifications", json=[]).json()[0]["successful"] is False


class TestSessionStore:
    """The store on its own: idle expiry and the per-user bound, with an explicit clock."""

    def test_per_user_bound_evicts_the_least_recently_used(self) -> None:
        from gateway.api.auth import SessionStore

        now = [0.0]
        store = SessionStore(idle_seconds=100, clock=lambda: now[0], max_per_user=3)
        first, second = store.create("alice"), store.create("alice")
        store.create("alice")
        store.get(first.id)  # touched: now the most recent
        store.create("alice")
        assert store.get(second.id) is None and second.invalidated
        assert store.get(first.id) is first
        other = store.create("bob")
        assert len(store) == 4 and store.get(other.id) is other

    def test_expiry_drops_sessions_in_order(self) -> None:
        from gateway.api.auth import SessionStore

        now = [0.0]
        store = SessionStore(idle_seconds=10, clock=lambda: now[0])
        old = store.create("alice")
        now[0] = 5.0
        young = store.create("bob")
        now[0] = 10.5
        assert len(store) == 1
        assert store.get(old.id) is None and store.get(young.id) is young
