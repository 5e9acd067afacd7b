"""Operations in scope: session (§3.1), agent state (§3.2), DND (§3.3), forwarding (§3.4), basic call
control (§3.5) and recording (§3.9) — asserted through HTTP only."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from .conftest import Agent, basic

OK = {"statusCode": 0}
VOICE = "/api/v2/me/channels/voice"


@pytest.fixture
def alice(agent: Any) -> Agent:
    a: Agent = agent("alice")
    return a


@pytest.fixture
def bob(agent: Any) -> Agent:
    b: Agent = agent("bob")
    return b


def connected(alice: Agent, bob: Agent) -> tuple[str, str]:
    """alice calls bob, bob answers: (alice's call id, bob's call id), both Established."""
    a_call = alice.dial("1002")["id"]
    b_call = bob.wait_for_call("Ringing")["id"]
    assert bob.op(f"/api/v2/me/calls/{b_call}", "Answer").json() == OK
    bob.wait_for_call("Established")
    alice.wait_for_call("Established")
    return a_call, b_call


class TestSession:
    def test_start_logs_in(self, app: Any) -> None:
        a = Agent(app, "alice")
        a.login()
        assert a.device()["userState"]["state"] != "LoggedIn"
        assert a.op("/api/v2/me", "StartContactCenterSession", channels=["voice"]).json() == OK
        assert a.device()["userState"] == {"state": "LoggedIn"}

    def test_start_is_idempotent(self, alice: Agent) -> None:
        assert alice.op("/api/v2/me", "StartContactCenterSession", channels=["voice", "voice"]).json() == OK

    def test_partial_success_exact_shape(self, app: Any) -> None:
        a = Agent(app, "alice")
        a.login()
        r = a.op("/api/v2/me", "StartContactCenterSession", channels=["voice", "chat"])
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"statusCode", "failed", "succeeded"}
        assert body["statusCode"] == 7
        assert body["succeeded"] == [{"statusCode": 0, "channel": "voice"}]
        assert len(body["failed"]) == 1
        failed = body["failed"][0]
        assert set(failed) == {"statusCode", "statusMessage", "channel"}
        assert (failed["statusCode"], failed["channel"]) == (4, "chat")
        assert failed["statusMessage"]

    def test_every_channel_failing_returns_one_error(self, app: Any) -> None:
        a = Agent(app, "alice")
        a.login()
        r = a.op("/api/v2/me", "StartContactCenterSession", channels=["chat", "email"])
        assert r.status_code == 400
        assert set(r.json()) == {"statusCode", "statusMessage"}

    def test_end_logs_out(self, alice: Agent, app: Any) -> None:
        assert alice.op("/api/v2/me", "EndContactCenterSession").json() == OK
        fresh = TestClient(app)
        dev = fresh.get("/api/v2/me/devices?fields=*", headers={"Authorization": basic("alice")}).json()["devices"][0]
        assert dev["userState"]["state"] == "LoggedOut"


class TestAgentState:
    @pytest.mark.parametrize("operation,state,work_mode", [
        ("Ready", "Ready", None), ("NotReady", "NotReady", None), ("AuxWork", "NotReady", "AuxWork"),
        ("AfterCallWork", "NotReady", "AfterCallWork"), ("Offline", "LoggedOut", None)])
    def test_states(self, alice: Agent, operation: str, state: str, work_mode: str | None) -> None:
        assert alice.op(VOICE, operation).json() == OK
        user_state = alice.device()["userState"]
        assert user_state["state"] == state
        assert user_state.get("workMode") == work_mode

    @pytest.mark.parametrize("key", ["workmode", "workMode"])
    def test_ready_work_mode_both_spellings(self, alice: Agent, key: str) -> None:
        assert alice.op(VOICE, "Ready", **{key: "ManualIn"}).json() == OK
        r = alice.op(VOICE, "Ready", **{key: "Sideways"})
        assert (r.status_code, r.json()["statusCode"]) == (400, 10)

    def test_agent_state_on_the_device_url(self, alice: Agent) -> None:
        assert alice.op(f"/api/v2/me/devices/{alice.device_id}", "NotReady").json() == OK
        assert alice.device()["userState"]["state"] == "NotReady"

    def test_not_in_session_is_invalid_state(self, app: Any) -> None:
        a = Agent(app, "bob")
        a.login()
        r = a.op(VOICE, "Ready")
        assert (r.status_code, r.json()["statusCode"]) == (400, 2)


class TestDevice:
    def test_do_not_disturb(self, alice: Agent) -> None:
        url = f"/api/v2/me/devices/{alice.device_id}"
        assert alice.op(url, "DoNotDisturbOn").json() == OK
        dev = alice.device()
        assert dev["doNotDisturb"] == "On" and "DoNotDisturbOff" in dev["capabilities"]
        r = alice.op(url, "DoNotDisturbOn")  # not in capabilities any more
        assert (r.status_code, r.json()["statusCode"]) == (400, 2)
        assert alice.op(url, "DoNotDisturbOff").json() == OK
        assert alice.device()["doNotDisturb"] == "Off"

    @pytest.mark.parametrize("destination", ["5001", {"phoneNumber": "5001"}, 5001])
    def test_forward_destination_forms(self, alice: Agent, destination: Any) -> None:
        assert alice.op(f"/api/v2/me/devices/{alice.device_id}", "ForwardCallsOn",
                        destination=destination).json() == OK
        assert alice.device()["forwardTo"] == "5001"


class TestCallControl:
    def test_dial_string_destination_and_callee_rings(self, alice: Agent, bob: Agent) -> None:
        r = alice.op(f"/api/v2/me/devices/{alice.device_id}/calls", "Dial", destination="1002")
        assert r.json() == OK
        assert alice.wait_for_call("Dialing")["participants"][0]["phoneNumber"] == "1002"
        assert bob.wait_for_call("Ringing")["participants"][0]["phoneNumber"] == "1001"

    def test_answer_hold_retrieve_hangup(self, alice: Agent, bob: Agent) -> None:
        a_call, b_call = connected(alice, bob)
        url = f"/api/v2/me/calls/{b_call}"
        assert bob.op(url, "Hold").json() == OK
        assert bob.get(url).json()["call"]["state"] == "Held"
        assert "Retrieve" in bob.get(url).json()["call"]["capabilities"]
        assert bob.op(url, "Retrieve").json() == OK
        assert bob.get(url).json()["call"]["state"] == "Established"
        assert bob.op(url, "Hangup").json() == OK
        r = bob.get(url)  # released calls leave GET /me/calls
        assert (r.status_code, r.json()["statusCode"]) == (404, 6)
        assert bob.calls() == []

    def test_operation_not_in_capabilities(self, alice: Agent, bob: Agent) -> None:
        call = alice.dial("1002")
        assert "Answer" not in call["capabilities"]
        r = alice.op(f"/api/v2/me/calls/{call['id']}", "Answer")
        assert (r.status_code, r.json()["statusCode"]) == (400, 2)
        assert r.json()["statusMessage"]

    def test_unmute_alias(self, alice: Agent, bob: Agent) -> None:
        _, b_call = connected(alice, bob)
        url = f"/api/v2/me/calls/{b_call}"
        bob.op(url, "MuteCall")
        assert bob.op(url, "UnMuteCall").json() == OK
        assert bob.get(url).json()["call"]["mute"] == "Off"

    @pytest.mark.parametrize("key", ["digits", "dtmfDigits"])
    def test_send_dtmf(self, alice: Agent, bob: Agent, key: str) -> None:
        _, b_call = connected(alice, bob)
        assert bob.op(f"/api/v2/me/calls/{b_call}", "SendDtmf", **{key: "12#"}).json() == OK

    def test_recording_cycle(self, alice: Agent, bob: Agent) -> None:
        _, b_call = connected(alice, bob)
        url = f"/api/v2/me/calls/{b_call}"
        assert bob.op(url, "StartCallRecording").json() == OK
        assert bob.get(url).json()["call"]["recordingState"] == "Recording"
        assert bob.op(url, "StopCallRecording").json() == OK
        assert bob.get(url).json()["call"]["recordingState"] == "Stopped"

    def test_set_call_disposition(self, alice: Agent, bob: Agent) -> None:
        _, b_call = connected(alice, bob)
        url = f"/api/v2/me/calls/{b_call}"
        r = bob.op(url, "SetCallDisposition", disposition="Referred", dispositionKey="Outcome", callUuid=b_call)
        assert r.json() == OK
        assert bob.get(url).json()["call"]["userData"] == {"Outcome": "Referred"}
