"""GET resources and their exact JSON shapes (spec §2, §1.7, §0.1.7, §0.1.8, §0.1.14)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from .conftest import Agent, basic, build_app, make_settings
from .fakes import FakeTelephony

USER_KEYS = {"id", "userName", "password", "firstName", "lastName", "emailAddress", "roles", "enabled",
             "changePasswordOnFirstLogin", "contactCenterId", "uri", "path"}
DEVICE_KEYS = {"id", "deviceState", "userState", "phoneNumber", "e164Number", "telephonyNetwork", "doNotDisturb",
               "voiceEnvironmentUri", "capabilities", "uri", "path"}
CALL_KEYS = {"id", "state", "callUuid", "connId", "deviceUri", "participants", "dnis", "callType", "capabilities",
             "duration", "mute", "recordingState", "supervisorListeningIn", "monitoredUserMuted", "monitoring",
             "uri", "path"}
PARTICIPANT_KEYS = {"e164Number", "formattedPhoneNumber", "phoneNumber", "digits"}
BASE = "http://testserver"


@pytest.fixture
def alice(agent: Any) -> Agent:
    a: Agent = agent("alice")
    return a


@pytest.fixture
def bob(agent: Any) -> Agent:
    b: Agent = agent("bob")
    return b


class TestUser:
    def test_me(self, alice: Agent) -> None:
        body = alice.get("/api/v2/me").json()
        assert set(body) == {"statusCode", "user"} and body["statusCode"] == 0
        user = body["user"]
        assert set(user) == USER_KEYS
        assert re.fullmatch(r"[0-9a-f]{32}", user["id"])
        assert (user["userName"], user["firstName"], user["lastName"], user["emailAddress"]) == (
            "alice", "Alice", "Archer", "alice@example.test")
        assert user["password"] == ""
        assert user["roles"] == ["ROLE_AGENT"]
        assert user["uri"] == f"{BASE}/api/v2/users/{user['id']}"
        assert user["path"] == f"/users/{user['id']}"

    def test_supervisor_roles_and_features(self, agent: Any) -> None:
        sue: Agent = agent("sue")
        user = sue.get("/api/v2/me?subresources=features").json()["user"]
        assert "ROLE_SUPERVISOR" in user["roles"]
        assert "api-supervisor-monitoring" in user["features"]

    def test_subresources_star(self, alice: Agent) -> None:
        alice.dial("1002")
        user = alice.get("/api/v2/me?subresources=*").json()["user"]
        assert set(user) == USER_KEYS | {"devices", "calls", "channels", "settings", "features"}
        assert [d["phoneNumber"] for d in user["devices"]] == ["1001"]
        assert set(user["devices"][0]) == DEVICE_KEYS
        assert [c["state"] for c in user["calls"]] == ["Dialing"]
        assert user["channels"][0]["channel"] == "voice"
        assert isinstance(user["settings"], dict)
        assert all(isinstance(v, dict) for v in user["settings"].values())
        assert isinstance(user["features"], list) and "api-voice" in user["features"]

    def test_subresources_list_and_unknown_names(self, alice: Agent) -> None:
        user = alice.get("/api/v2/me?subresources=devices, skills,settings").json()["user"]
        assert set(user) == USER_KEYS | {"devices", "settings"}

    def test_users_self_link_resolves(self, alice: Agent, bob: Agent) -> None:
        me = alice.get("/api/v2/me").json()["user"]
        assert alice.get(f"/api/v2{me['path']}").json()["user"] == me
        bob_id = bob.get("/api/v2/me").json()["user"]["id"]
        assert alice.get(f"/api/v2/users/{bob_id}").json()["statusCode"] == 6


class TestDevices:
    def test_uris_by_default_objects_with_fields_star(self, alice: Agent) -> None:
        r = alice.get("/api/v2/me/devices").json()
        assert r == {"statusCode": 0, "uris": [f"{BASE}/api/v2/devices/{alice.device_id}"]}
        full = alice.get("/api/v2/me/devices?fields=*").json()
        assert set(full) == {"statusCode", "devices"}
        assert set(full["devices"][0]) == DEVICE_KEYS

    def test_fields_subset(self, alice: Agent) -> None:
        r = alice.get("/api/v2/me/devices?fields=id,phoneNumber").json()
        assert r["devices"] == [{"id": alice.device_id, "phoneNumber": "1001"}]

    def test_device_shape(self, alice: Agent) -> None:
        dev_id = alice.device_id
        body = alice.get(f"/api/v2/me/devices/{dev_id}").json()
        assert set(body) == {"statusCode", "device"}
        dev = body["device"]
        assert set(dev) == DEVICE_KEYS
        assert dev["deviceState"] == "Active"
        assert dev["userState"] == {"state": "LoggedIn"}  # §0.1.3: right after login, no id/displayName
        assert (dev["phoneNumber"], dev["e164Number"]) == ("1001", "1001")
        assert dev["doNotDisturb"] == "Off"
        assert isinstance(dev["capabilities"], list)
        assert dev["uri"] == f"{BASE}/api/v2/devices/{dev_id}"
        assert dev["path"] == f"/devices/{dev_id}"
        assert re.fullmatch(rf"{BASE}/api/v2/voice-environments/[0-9a-f-]{{36}}", dev["voiceEnvironmentUri"])

    def test_device_uri_resolves_without_me(self, alice: Agent) -> None:
        dev = alice.device()
        assert alice.get(f"/api/v2/devices/{dev['id']}").json()["device"] == dev

    def test_agent_state_objects(self, alice: Agent) -> None:
        alice.op("/api/v2/me/channels/voice", "AuxWork")
        assert alice.device()["userState"] == {"id": "2B36138D-C564-4562-A8CB-3C32D564F296",
                                               "displayName": "AuxWork", "state": "NotReady", "workMode": "AuxWork"}
        alice.op("/api/v2/me/channels/voice", "Ready")
        assert alice.device()["userState"] == {"id": "9430250E-0A1B-421F-B372-F29E69366DED",
                                               "displayName": "Ready", "state": "Ready"}
        alice.op("/api/v2/me/channels/voice", "Offline")
        assert alice.device()["userState"] == {"id": "0F7F5003-EF26-4D13-A6Ef-D0C7EC819BEB",
                                               "displayName": "Offline", "state": "LoggedOut"}

    def test_forward_to_only_while_forwarding(self, alice: Agent) -> None:
        url = f"/api/v2/me/devices/{alice.device_id}"
        assert alice.op(url, "ForwardCallsOn", destination="5001").json() == {"statusCode": 0}
        dev = alice.device()
        assert set(dev) == DEVICE_KEYS | {"forwardTo"}
        assert dev["forwardTo"] == "5001"
        assert "ForwardCallsOff" in dev["capabilities"]
        alice.op(url, "ForwardCallsOff")
        assert "forwardTo" not in alice.device()


class TestCalls:
    def test_uris_and_fields(self, alice: Agent) -> None:
        call = alice.dial("1002")
        assert alice.get("/api/v2/me/calls").json() == {"statusCode": 0, "uris": [call["uri"]]}
        assert alice.get("/api/v2/me/calls?fields=*").json()["calls"] == [call]

    def test_dialing_call_shape(self, alice: Agent) -> None:
        call = alice.dial("1002")
        assert set(call) == CALL_KEYS
        assert call["callUuid"] and call["connId"]
        assert call["deviceUri"] == f"{BASE}/api/v2/devices/{alice.device_id}"
        assert call["participants"] == [{"e164Number": "", "formattedPhoneNumber": "1002",
                                         "phoneNumber": "1002", "digits": "1002"}]
        assert call["dnis"] == "1002"
        assert call["callType"] == "Internal"
        assert isinstance(call["capabilities"], list) and "Hangup" in call["capabilities"]
        assert isinstance(call["duration"], str) and call["duration"].isdigit()
        assert call["mute"] == "Off"
        assert call["recordingState"] == "Stopped"
        for flag in ("supervisorListeningIn", "monitoredUserMuted", "monitoring"):
            assert call[flag] is False
        assert call["uri"] == f"{BASE}/api/v2/me/calls/{call['id']}"
        assert call["path"] == f"/calls/{call['id']}"

    def test_ringing_call_has_ani(self, alice: Agent, bob: Agent) -> None:
        alice.dial("1002")
        ringing = bob.wait_for_call("Ringing")
        assert set(ringing) == CALL_KEYS | {"ani"}
        assert ringing["ani"] == "1001"
        assert set(ringing["participants"][0]) == PARTICIPANT_KEYS
        assert "Answer" in ringing["capabilities"]

    def test_single_call_get_both_paths(self, alice: Agent) -> None:
        call = alice.dial("1002")
        for path in (f"/api/v2/me/calls/{call['id']}", f"/api/v2/calls/{call['id']}"):
            body = alice.get(path).json()
            assert set(body) == {"statusCode", "call"}
            assert body["call"]["id"] == call["id"]

    def test_user_data_omitted_when_empty_and_nested_values_kept(self, alice: Agent) -> None:
        assert "userData" not in alice.dial("1002")
        data = {"WWE_PARTY_1001": {"username": "alice"}, "AccountNumber": "12345678"}
        r = alice.op(f"/api/v2/me/devices/{alice.device_id}/calls", "Dial", destination="1003", userData=data)
        assert r.json() == {"statusCode": 0}
        with_data = [c for c in alice.calls() if c["dnis"] == "1003"]
        assert with_data[0]["userData"] == data

    def test_mute_renders_on_off(self, alice: Agent, bob: Agent) -> None:
        alice.dial("1002")
        call = bob.wait_for_call("Ringing")
        url = f"/api/v2/me/calls/{call['id']}"
        bob.op(url, "Answer")
        bob.op(url, "MuteCall")
        assert bob.get(url).json()["call"]["mute"] == "On"
        bob.op(url, "UnmuteCall")
        assert bob.get(url).json()["call"]["mute"] == "Off"


class TestChannelsAndSettings:
    def test_channels(self, alice: Agent) -> None:
        body = alice.get("/api/v2/me/channels").json()
        assert body == {"statusCode": 0, "channels": [{"channel": "voice", "userState": {"state": "LoggedIn"}}]}
        alice.op("/api/v2/me/channels/voice", "NotReady")
        one = alice.get("/api/v2/me/channels/voice").json()
        assert one == {"statusCode": 0, "channel": {"channel": "voice", "userState": {
            "id": "900D55CC-2BB0-431F-8BF9-D3525B383BE6", "displayName": "Not Ready", "state": "NotReady"}}}

    def test_agent_state_settings(self, alice: Agent) -> None:
        body = alice.get("/api/v2/settings/agent-states").json()
        assert body["statusCode"] == 0
        assert [s["operationName"] for s in body["settings"]] == ["Ready", "NotReady", "AuxWork", "AfterCallWork",
                                                                  "Offline"]
        for s in body["settings"]:
            assert s["displayName"] and s["id"] and s["state"]

    def test_version(self, alice: Agent) -> None:
        body = alice.get("/api/v2/diagnostics/version").json()
        assert body["statusCode"] == 0
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", body["version"])


class TestBaseUrl:
    def test_uris_use_the_host_and_port_the_client_used(self) -> None:
        settings = make_settings()
        app, _ = build_app(FakeTelephony(settings), settings)
        client = TestClient(app, base_url="http://gw.example:9000")
        body = client.get("/api/v2/me/devices", headers={"Authorization": basic("alice")}).json()
        assert body["uris"][0].startswith("http://gw.example:9000/api/v2/devices/")

    def test_public_url_wins(self) -> None:
        settings = make_settings(public_url="https://voice.example.com/")
        app, _ = build_app(FakeTelephony(settings), settings)
        client = TestClient(app, base_url="http://127.0.0.1:8080")
        user = client.get("/api/v2/me?subresources=devices", headers={"Authorization": basic("alice")}).json()["user"]
        assert user["uri"].startswith("https://voice.example.com/api/v2/users/")
        assert user["devices"][0]["uri"].startswith("https://voice.example.com/api/v2/devices/")


class TestIsolation:
    """A user never sees or controls another user's device or call: 404/6, as if it did not exist."""

    def test_foreign_device(self, alice: Agent, bob: Agent) -> None:
        bob_dev = bob.device_id
        for path in (f"/api/v2/me/devices/{bob_dev}", f"/api/v2/devices/{bob_dev}"):
            r = alice.get(path)
            assert (r.status_code, r.json()["statusCode"]) == (404, 6)
        for op, url in (("DoNotDisturbOn", f"/api/v2/me/devices/{bob_dev}"),
                        ("Dial", f"/api/v2/me/devices/{bob_dev}/calls")):
            r = alice.op(url, op, destination="1003")
            assert (r.status_code, r.json()["statusCode"]) == (404, 6)
        assert bob.device()["doNotDisturb"] == "Off"
        assert bob.calls() == []

    def test_foreign_call(self, alice: Agent, bob: Agent) -> None:
        call = alice.dial("1002")
        ringing = bob.wait_for_call("Ringing")
        for path in (f"/api/v2/me/calls/{call['id']}", f"/api/v2/calls/{call['id']}"):
            r = bob.get(path)
            assert (r.status_code, r.json()["statusCode"]) == (404, 6)
        r = bob.op(f"/api/v2/me/calls/{call['id']}", "Hangup")
        assert (r.status_code, r.json()["statusCode"]) == (404, 6)
        r = alice.op(f"/api/v2/me/calls/{ringing['id']}", "Answer")
        assert (r.status_code, r.json()["statusCode"]) == (404, 6)
        assert alice.get(f"/api/v2/me/calls/{call['id']}").json()["call"]["state"] == "Dialing"

    def test_unknown_ids(self, alice: Agent) -> None:
        for path in ("/api/v2/me/devices/nope", "/api/v2/me/calls/nope", "/api/v2/calls/nope"):
            assert alice.get(path).json()["statusCode"] == 6
