"""Domain events -> CometD publications (spec §4.3-§4.6, §0.1.6, §0.1.8) via ``connect_notifications``."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.api import shapes
from gateway.api.notify import connect_notifications
from gateway.telephony.events import CallStateChanged, OperationFailed
from gateway.telephony.views import CallView

from .conftest import Agent

BASE = "http://testserver"


class Recorder:
    """Stands in for the CometD server: renders each publication with one client's base URL."""

    def __init__(self, base: str = BASE) -> None:
        self.base = base
        self.published: list[tuple[str, str, dict[str, Any]]] = []
        self.disconnected: list[str] = []

    def publish(self, username: str, channel: str, render: Any) -> None:
        self.published.append((username, channel, render(self.base)))

    def disconnect(self, username: str) -> None:
        self.disconnected.append(username)
        self.published.append((username, "<disconnect>", {}))


@pytest.fixture
def recorder(telephony: Any) -> Recorder:
    rec = Recorder()
    connect_notifications(telephony.bus, rec.publish, "", disconnect_user=rec.disconnect)
    return rec


def test_device_state_change_message(agent: Any, recorder: Recorder) -> None:
    alice: Agent = agent("alice")
    recorder.published.clear()
    alice.op(f"/api/v2/me/devices/{alice.device_id}", "DoNotDisturbOn")
    assert len(recorder.published) == 1
    user, channel, data = recorder.published[0]
    assert (user, channel) == ("alice", "/v2/me/devices")
    assert data == {"messageType": "DeviceStateChangeMessage", "devices": [alice.device()]}


def test_login_reports_logged_in_first(app: Any, recorder: Recorder) -> None:
    alice = Agent(app, "alice")
    alice.login()
    alice.start_session()
    alice.op("/api/v2/me/channels/voice", "Ready")
    states = [d["devices"][0]["userState"] for u, c, d in recorder.published if c == "/v2/me/devices"]
    assert states[0] == {"state": "LoggedIn"}
    assert states[-1]["state"] == "Ready"


def test_call_state_change_message(agent: Any, recorder: Recorder) -> None:
    alice: Agent = agent("alice")
    bob: Agent = agent("bob")
    recorder.published.clear()
    call = alice.dial("1002")
    bob.wait_for_call("Ringing")
    mine = [d for u, c, d in recorder.published if u == "alice" and c == "/v2/me/calls"]
    theirs = [d for u, c, d in recorder.published if u == "bob" and c == "/v2/me/calls"]
    first = mine[0]
    assert {"messageType", "notificationType", "call", "phoneNumber"} <= set(first)
    assert set(first) <= {"messageType", "notificationType", "call", "phoneNumber", "extensions", "digits"}
    assert first["messageType"] == "CallStateChangeMessage"
    assert first["notificationType"] == "StatusChange"
    assert first["phoneNumber"] == "1001"
    assert first["call"] == call
    assert theirs[0]["call"]["state"] == "Ringing" and theirs[0]["phoneNumber"] == "1002"


def test_session_end_logs_out_then_disconnects(agent: Any, recorder: Recorder) -> None:
    alice: Agent = agent("alice")
    recorder.published.clear()
    alice.op("/api/v2/me", "EndContactCenterSession")
    assert recorder.disconnected == ["alice"]
    channels = [c for u, c, d in recorder.published]
    assert channels[-1] == "<disconnect>"
    assert recorder.published[-2][2]["devices"][0]["userState"]["state"] == "LoggedOut"


def test_public_url_overrides_the_clients_base(telephony: Any, agent: Any) -> None:
    rec = Recorder(base="http://127.0.0.1:8080")
    connect_notifications(telephony.bus, rec.publish, "https://voice.example.com/")
    alice: Agent = agent("alice")
    alice.op(f"/api/v2/me/devices/{alice.device_id}", "DoNotDisturbOn")
    device = rec.published[-1][2]["devices"][0]
    assert device["uri"].startswith("https://voice.example.com/api/v2/devices/")


def _call(**kw: Any) -> CallView:
    fields: dict[str, Any] = dict(
        id="C1", state="Established", call_uuid="C1", conn_id="0071027198180020", device_id="D1",
        phone_number="1001", participants=("1002",), ani=None, dnis="1002", call_type="Internal",
        capabilities=("Hangup",), user_data=(), duration=7, mute=False, recording_state="Stopped")
    fields.update(kw)
    return CallView(**fields)


def test_error_message_on_the_calls_topic(telephony: Any, recorder: Recorder) -> None:
    telephony.bus.publish(OperationFailed(username="alice", topic="calls", operation="Dial", error_code=486,
                                          error_message="Busy Here", device_id="D1", call_id="C1",
                                          phone_number="1001"))
    user, channel, data = recorder.published[-1]
    assert (user, channel) == ("alice", "/v2/me/calls")
    assert data == {
        "messageType": "ErrorMessage", "errorCode": 486, "errorMessage": "Busy Here", "operationName": "Dial",
        "deviceUri": f"{BASE}/api/v2/devices/D1", "devicePath": "/devices/D1",
        "callUri": f"{BASE}/api/v2/me/calls/C1", "callPath": "/calls/C1", "phoneNumber": "1001",
    }


def test_error_message_on_the_devices_topic(telephony: Any, recorder: Recorder) -> None:
    telephony.bus.publish(OperationFailed(username="bob", topic="devices", operation="ForwardCallsOn",
                                          error_code=4, error_message="nope", device_id="D2"))
    user, channel, data = recorder.published[-1]
    assert (user, channel) == ("bob", "/v2/me/devices")
    assert set(data) == {"messageType", "errorCode", "errorMessage", "operationName", "deviceUri", "devicePath"}


class TestCallShapes:
    """Pure shape rules, on views the HTTP flow does not easily produce."""

    def test_released_call_has_empty_capabilities_and_string_duration(self) -> None:
        out = shapes.call_resource(_call(state="Released", capabilities=("Hangup",), duration=672), BASE)
        assert out["capabilities"] == []
        assert out["duration"] == "672"

    def test_consult_links_and_flags(self) -> None:
        out = shapes.call_resource(_call(call_type="Consult", parent_call_id="P9", mute=True,
                                         supervisor_listening_in=True), BASE)
        assert out["parentCallUri"] == f"{BASE}/api/v2/me/calls/P9"
        assert out["parentCallPath"] == "/calls/P9"
        assert out["mute"] == "On"
        assert out["supervisorListeningIn"] is True

    def test_user_data_last_value_wins_and_nests(self) -> None:
        out = shapes.call_resource(_call(user_data=(("k", "a"), ("k", "b"), ("n", {"x": ("1", "2")}))), BASE)
        assert out["userData"] == {"k": "b", "n": {"x": ["1", "2"]}}

    def test_e164_participant(self) -> None:
        assert shapes.participant("+4930123456")["e164Number"] == "+4930123456"
        assert shapes.participant("1002")["e164Number"] == ""

    def test_message_extensions_and_digits(self) -> None:
        event = CallStateChanged(username="alice", call=_call(), notification_type="DtmfSent",
                                 extensions=(("BusinessCall", 0),), digits="12#")
        data = shapes.call_state_message(event, BASE)
        assert data["extensions"] == {"BusinessCall": 0}
        assert data["digits"] == "12#"
        bare = shapes.call_state_message(CallStateChanged(username="a", call=_call(), notification_type="X"), BASE)
        assert set(bare) == {"messageType", "notificationType", "call", "phoneNumber"}
