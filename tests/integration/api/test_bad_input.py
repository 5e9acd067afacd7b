"""Every malformed request gets a clear JSON error naming the field (spec §1.5, §0.1.2, §0.1.9)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Agent


@pytest.fixture
def alice(agent: Any) -> Agent:
    a: Agent = agent("alice")
    return a


def error(r: Any, http: int, code: int) -> str:
    assert r.status_code == http, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"statusCode", "statusMessage"}
    assert body["statusCode"] == code
    return str(body["statusMessage"])


def op_urls(alice: Agent) -> list[str]:
    dev = alice.device_id
    call = alice.dial("1002")["id"]
    return ["/api/v2/me", f"/api/v2/me/devices/{dev}", f"/api/v2/me/devices/{dev}/calls",
            f"/api/v2/me/calls/{call}", "/api/v2/me/channels/voice"]


class TestBody:
    @pytest.mark.parametrize("raw", [b"{", b"{\"operationName\": }", b"operationName=Ready", b"{'a': 1}",
                                     b"{\"operationName\": NaN}"])
    def test_malformed_json(self, alice: Agent, raw: bytes) -> None:
        for url in op_urls(alice):
            assert "not valid JSON" in error(alice.post(url, content=raw), 400, 10)

    def test_not_utf8(self, alice: Agent) -> None:
        assert "not valid JSON" in error(alice.post("/api/v2/me", content=b"{\"a\": \"\xff\"}"), 400, 10)

    def test_empty_body(self, alice: Agent) -> None:
        assert "empty" in error(alice.post("/api/v2/me", content=b""), 400, 10)

    @pytest.mark.parametrize("raw,kind", [(b"[]", "array"), (b"\"Ready\"", "string"), (b"42", "number"),
                                          (b"null", "null"), (b"true", "boolean")])
    def test_body_must_be_an_object(self, alice: Agent, raw: bytes, kind: str) -> None:
        message = error(alice.post("/api/v2/me/channels/voice", content=raw), 400, 10)
        assert "JSON object" in message and kind in message

    def test_deeply_nested_json(self, alice: Agent) -> None:
        raw = b"[" * 100_000 + b"]" * 100_000
        error(alice.post("/api/v2/me", content=raw), 400, 10)

    def test_too_large(self, alice: Agent) -> None:
        raw = b"{\"operationName\":\"Ready\",\"pad\":\"" + b"x" * (2 << 20) + b"\"}"
        assert "too large" in error(alice.post("/api/v2/me/channels/voice", content=raw), 413, 10)

    def test_pretty_printed_with_nulls_and_extras_is_fine(self, alice: Agent) -> None:
        raw = b'{\n  "operationName" : "NotReady",\n  "reasonCode" : null,\n  "isForceLogin" : "1"\n}\n'
        assert alice.post("/api/v2/me/channels/voice", content=raw).json() == {"statusCode": 0}
        assert alice.device()["userState"]["state"] == "NotReady"


class TestOperationName:
    def test_missing(self, alice: Agent) -> None:
        for url in op_urls(alice):
            assert "operationName" in error(alice.post(url, {"channels": ["voice"]}), 400, 1)

    def test_explicit_null_is_missing(self, alice: Agent) -> None:
        assert "operationName" in error(alice.post("/api/v2/me", {"operationName": None}), 400, 1)

    @pytest.mark.parametrize("value", [1, True, ["Ready"], {"name": "Ready"}])
    def test_not_a_string(self, alice: Agent, value: Any) -> None:
        assert "operationName" in error(alice.post("/api/v2/me/channels/voice", {"operationName": value}), 400, 10)

    @pytest.mark.parametrize("url_kind,valid", [
        ("me", ["StartContactCenterSession", "EndContactCenterSession"]),
        ("device", ["DoNotDisturbOn", "DoNotDisturbOff", "ForwardCallsOn", "ForwardCallsOff"]),
        ("dial", ["Dial"]),
        ("call", ["Answer", "Hangup", "Hold", "Retrieve", "SendDtmf", "MuteCall", "UnmuteCall",
                  "StartCallRecording", "StopCallRecording"]),
        ("voice", ["Ready", "NotReady", "AuxWork", "AfterCallWork", "Offline"]),
    ])
    def test_unknown_lists_the_valid_ones_for_that_url(self, alice: Agent, url_kind: str, valid: list[str]) -> None:
        url = dict(zip(["me", "device", "dial", "call", "voice"], op_urls(alice)))[url_kind]
        message = error(alice.op(url, "Frobnicate"), 400, 2)
        assert "Frobnicate" in message
        for name in valid:
            assert name in message

    def test_names_are_case_sensitive(self, alice: Agent) -> None:
        error(alice.op("/api/v2/me/channels/voice", "ready"), 400, 2)

    def test_operation_of_another_url_is_unknown_here(self, alice: Agent) -> None:
        error(alice.op(f"/api/v2/me/devices/{alice.device_id}", "Hangup"), 400, 2)


class TestParameters:
    def test_channels_missing(self, alice: Agent) -> None:
        assert "channels" in error(alice.op("/api/v2/me", "StartContactCenterSession"), 400, 1)

    @pytest.mark.parametrize("channels,field", [("voice", "channels"), ([1], "channels[0]"),
                                                ({"voice": True}, "channels"), ([], "channels")])
    def test_channels_wrong(self, alice: Agent, channels: Any, field: str) -> None:
        message = error(alice.op("/api/v2/me", "StartContactCenterSession", channels=channels), 400, 10)
        assert f"'{field}'" in message

    def test_dial_destination_missing(self, alice: Agent) -> None:
        url = f"/api/v2/me/devices/{alice.device_id}/calls"
        assert "destination" in error(alice.op(url, "Dial"), 400, 1)
        assert "destination" in error(alice.op(url, "Dial", destination=None), 400, 1)
        assert "destination.phoneNumber" in error(alice.op(url, "Dial", destination={}), 400, 1)

    @pytest.mark.parametrize("destination,field", [(True, "destination"), ([], "destination"),
                                                   ({"phoneNumber": []}, "destination.phoneNumber"),
                                                   ("  ", "destination")])
    def test_dial_destination_wrong(self, alice: Agent, destination: Any, field: str) -> None:
        url = f"/api/v2/me/devices/{alice.device_id}/calls"
        assert f"'{field}'" in error(alice.op(url, "Dial", destination=destination), 400, 10)

    def test_dial_user_data_must_be_an_object(self, alice: Agent) -> None:
        url = f"/api/v2/me/devices/{alice.device_id}/calls"
        message = error(alice.op(url, "Dial", destination="1002", userData="x"), 400, 10)
        assert "'userData'" in message
        assert alice.calls() == []  # nothing changed

    def test_forward_destination_missing_and_wrong(self, alice: Agent) -> None:
        url = f"/api/v2/me/devices/{alice.device_id}"
        assert "destination" in error(alice.op(url, "ForwardCallsOn"), 400, 1)
        assert "'destination'" in error(alice.op(url, "ForwardCallsOn", destination=3.5), 400, 10)
        assert "forwardTo" not in alice.device()

    def test_dtmf_digits(self, alice: Agent) -> None:
        call = alice.dial("1002")["id"]
        url = f"/api/v2/me/calls/{call}"
        assert "digits" in error(alice.op(url, "SendDtmf"), 400, 1)
        assert "'digits'" in error(alice.op(url, "SendDtmf", digits=["1"]), 400, 10)
        assert "'dtmfDigits'" in error(alice.op(url, "SendDtmf", dtmfDigits={"d": 1}), 400, 10)

    def test_agent_state_work_mode_type(self, alice: Agent) -> None:
        message = error(alice.op("/api/v2/me/channels/voice", "Ready", workmode=5), 400, 10)
        assert "'workmode'" in message

    def test_disposition_missing(self, alice: Agent) -> None:
        call = alice.dial("1002")["id"]
        assert "disposition" in error(alice.op(f"/api/v2/me/calls/{call}", "SetCallDisposition"), 400, 1)


class TestRouting:
    @pytest.mark.parametrize("path", ["/api/v2/nothing", "/api/v2/me/devices/a/b/c", "/api/v2/me/im-sessions/x/y"])
    def test_unknown_url_is_json_404(self, alice: Agent, path: str) -> None:
        assert path in error(alice.get(path), 404, 6)

    def test_wrong_method_is_json_405_with_allow(self, alice: Agent) -> None:
        r = alice.post("/api/v2/me/devices", {"operationName": "x"})
        error(r, 405, 3)
        assert r.headers["allow"].replace(" ", "").split(",") >= ["GET"]
        r = alice.get(f"/api/v2/me/devices/{alice.device_id}/calls")
        error(r, 405, 3)
        assert "POST" in r.headers["allow"]
        r = alice.http.put("/api/v2/me", headers={"X-CSRF-TOKEN": alice.token or ""})
        assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
        error(r, 405, 3)

    def test_unknown_channel(self, alice: Agent) -> None:
        assert "chat" in error(alice.get("/api/v2/me/channels/chat"), 404, 6)
        error(alice.op("/api/v2/me/channels/chat", "Ready"), 404, 6)
