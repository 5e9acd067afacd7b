"""CSRF protection (spec §1.2) and CORS for agent desktops on another origin (§0.1.13)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from .conftest import Agent, basic, build_app, make_settings
from .fakes import FakeTelephony

CSRF_BODY = {"statusCode": 3, "statusMessage": "Missing or invalid Csrf token"}
START = {"operationName": "StartContactCenterSession", "channels": ["voice"]}


def app_with(**http: Any) -> Any:
    settings = make_settings(**http)
    return build_app(FakeTelephony(settings), settings)[0]


def logged_in(client: TestClient, user: str = "alice") -> str:
    r = client.get("/api/v2/me", headers={"Authorization": basic(user)})
    return str(r.headers["X-CSRF-TOKEN"])


class TestCsrf:
    def test_every_get_names_the_header_and_gives_the_token(self, client: TestClient) -> None:
        token = logged_in(client)
        assert str(uuid.UUID(token)) == token
        for path in ("/api/v2/me", "/api/v2/me/devices", "/api/v2/me/calls", "/api/v2/settings/agent-states"):
            r = client.get(path)
            assert r.headers["X-CSRF-HEADER"] == "X-CSRF-TOKEN"
            assert r.headers["X-CSRF-TOKEN"] == token

    def test_each_session_has_its_own_token(self, client: TestClient, app: Any) -> None:
        assert logged_in(client) != logged_in(TestClient(app))

    def test_post_without_token_is_refused(self, client: TestClient) -> None:
        logged_in(client)
        r = client.post("/api/v2/me", json=START)
        assert r.status_code == 403
        assert r.json() == CSRF_BODY
        assert client.get("/api/v2/me/channels/voice").json()["channel"]["userState"]["state"] != "LoggedIn"

    def test_post_with_wrong_token_is_refused(self, client: TestClient) -> None:
        logged_in(client)
        r = client.post("/api/v2/me", json=START, headers={"X-CSRF-TOKEN": str(uuid.uuid4())})
        assert (r.status_code, r.json()) == (403, CSRF_BODY)

    def test_token_without_session_cookie_is_refused(self, client: TestClient, app: Any) -> None:
        token = logged_in(client)
        other = TestClient(app)  # Basic only, no cookie: this request would make a new session
        r = other.post("/api/v2/me", json=START, headers={"X-CSRF-TOKEN": token, "Authorization": basic("alice")})
        assert (r.status_code, r.json()) == (403, CSRF_BODY)

    def test_another_sessions_token_is_refused(self, client: TestClient, app: Any) -> None:
        logged_in(client)
        foreign = logged_in(TestClient(app))
        r = client.post("/api/v2/me", json=START, headers={"X-CSRF-TOKEN": foreign})
        assert (r.status_code, r.json()) == (403, CSRF_BODY)

    @pytest.mark.parametrize("method", ["PUT", "DELETE"])
    def test_put_and_delete_are_protected_too(self, client: TestClient, method: str) -> None:
        logged_in(client)
        r = client.request(method, "/api/v2/me")
        assert (r.status_code, r.json()) == (403, CSRF_BODY)

    def test_post_with_cookie_and_token_passes(self, client: TestClient) -> None:
        token = logged_in(client)
        r = client.post("/api/v2/me", json=START, headers={"X-CSRF-TOKEN": token})
        assert (r.status_code, r.json()) == (200, {"statusCode": 0})

    def test_header_name_is_case_insensitive(self, client: TestClient) -> None:
        token = logged_in(client)
        r = client.post("/api/v2/me", json=START, headers={"x-csrf-token": token})
        assert r.json() == {"statusCode": 0}

    def test_csrf_off_lets_basic_only_posts_through_and_sends_no_token(self) -> None:
        client = TestClient(app_with(csrf=False))
        r = client.get("/api/v2/me", headers={"Authorization": basic("alice")})
        assert "X-CSRF-TOKEN" not in r.headers and "X-CSRF-HEADER" not in r.headers
        fresh = TestClient(client.app)
        r = fresh.post("/api/v2/me", json=START, headers={"Authorization": basic("alice")})
        assert (r.status_code, r.json()) == (200, {"statusCode": 0})

    def test_cometd_endpoint_is_exempt(self, client: TestClient) -> None:
        logged_in(client)
        for path in ("/api/v2/notifications", "/api/v2/notifications/handshake"):
            r = client.post(path, json=[{"channel": "/meta/handshake"}])
            assert r.status_code == 200
            assert r.json()[0]["user"] == "alice"

    def test_unauthenticated_post_is_access_denied_not_csrf(self, client: TestClient) -> None:
        r = client.post("/api/v2/me", json=START)
        assert r.json()["statusCode"] == 20


PREFLIGHT = {
    "Origin": "http://desktop.example:3000",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-csrf-token",
}


class TestCors:
    def test_preflight_is_answered_without_credentials(self, client: TestClient) -> None:
        r = client.options("/api/v2/me/calls/abc", headers=PREFLIGHT)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://desktop.example:3000"
        assert r.headers["access-control-allow-credentials"] == "true"
        allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-csrf-token"} <= allowed
        methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
        assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= methods

    def test_simple_response_echoes_origin_and_exposes_csrf_headers(self, client: TestClient) -> None:
        r = client.get("/api/v2/me", headers={"Authorization": basic("alice"), "Origin": "http://desktop.example:3000"})
        assert r.headers["access-control-allow-origin"] == "http://desktop.example:3000"
        assert r.headers["access-control-allow-credentials"] == "true"
        exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
        assert {"x-csrf-header", "x-csrf-token"} <= exposed

    def test_errors_carry_cors_headers_too(self, client: TestClient) -> None:
        r = client.get("/api/v2/me", headers={"Origin": "http://desktop.example:3000"})
        assert r.status_code == 403
        assert r.headers["access-control-allow-origin"] == "http://desktop.example:3000"

    def test_configured_origins_only(self) -> None:
        client = TestClient(app_with(cors_origins=["http://good.example"]))
        good = client.get("/api/v2/me", headers={"Authorization": basic("alice"), "Origin": "http://good.example"})
        assert good.headers["access-control-allow-origin"] == "http://good.example"
        bad = client.get("/api/v2/me", headers={"Authorization": basic("alice"), "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in bad.headers
        pre = client.options("/api/v2/me", headers={**PREFLIGHT, "Origin": "http://evil.example"})
        assert pre.headers.get("access-control-allow-origin") in (None, "")

    def test_never_a_wildcard_with_credentials(self, client: TestClient) -> None:
        for r in (client.options("/api/v2/me", headers=PREFLIGHT),
                  client.get("/api/v2/me", headers={"Origin": "http://x.example", "Authorization": basic("bob")})):
            assert r.headers["access-control-allow-origin"] != "*"


def test_agent_helper_round_trip(agent: Any) -> None:
    """The browser flow end to end: GET gives cookie + token, POSTs echo the token."""
    alice: Agent = agent("alice")
    r = alice.op("/api/v2/me/channels/voice", "Ready")
    assert r.json() == {"statusCode": 0}
