"""Settings: the embedded default, VG_* environment overrides, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, ConfigError, load_settings


def test_embedded_default_defines_the_documented_users_devices_and_ports() -> None:
    s = load_settings(None, env={})
    assert (s.http.host, s.http.port, s.http.csrf) == ("127.0.0.1", 8080, True)
    assert (s.sip.host, s.sip.port, s.sip.registrar) == ("127.0.0.1", 5060, "")
    users = {u.username: (u.password, u.roles, u.devices) for u in s.users}
    assert users == {
        "agent1": ("agent1pw", ["agent"], ["1001"]),
        "agent2": ("agent2pw", ["agent"], ["1002"]),
        "agent3": ("agent3pw", ["agent"], ["1003"]),
        "supervisor1": ("supervisor1pw", ["agent", "supervisor"], ["1004"]),
    }
    assert [(d.number, d.sip_user, d.sip_password) for d in s.devices] == [
        (n, n, f"pw{n}") for n in ("1001", "1002", "1003", "1004")
    ]
    # relative paths of the embedded default resolve against the project, not the caller's directory
    assert s.recordings_path == PROJECT_ROOT / "recordings"


def test_environment_overrides_single_values() -> None:
    env = {
        "VG_HTTP_HOST": "127.0.0.2", "VG_HTTP_PORT": "0", "VG_SIP_HOST": "127.0.0.3", "VG_SIP_PORT": "0",
        "VG_SIP_REGISTRAR": "sip:127.0.0.1:5070", "VG_RTP_PORT_MIN": "30000", "VG_RTP_PORT_MAX": "30010",
        "VG_RECORDINGS_DIR": "/tmp/vg-rec", "VG_DATA_DIR": "/tmp/vg-data", "VG_HTTP_CSRF": "off",
    }
    s = load_settings(None, env=env)
    assert (s.http.host, s.http.port, s.http.csrf) == ("127.0.0.2", 0, False)
    assert (s.sip.host, s.sip.port, s.sip.registrar) == ("127.0.0.3", 0, "sip:127.0.0.1:5070")
    assert (s.media.rtp_port_min, s.media.rtp_port_max) == (30000, 30010)
    assert s.recordings_path == Path("/tmp/vg-rec") and s.data_path == Path("/tmp/vg-data")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VG_HTTP_PORT": "eighty"}, "VG_HTTP_PORT='eighty': expected an integer"),
        ({"VG_SIP_PORT": "70000"}, "sip.port"),
        ({"VG_SIP_REGISTRAR": "127.0.0.1:5070"}, "sip.registrar"),
        ({"VG_RTP_PORT_MIN": "0"}, "rtp_port_min and rtp_port_max must both be 0"),
        ({"VG_HTTP_CSRF": "maybe"}, "expected true or false"),
    ],
)
def test_bad_overrides_name_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(None, env=env)


def test_config_file_errors_name_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[http\nport = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(bad, env={})
    bad.write_text('[[devices]]\nnumber = "1001"\naudio_source = "tone:9000"\n'
                   '[[users]]\nusername = "a"\npassword = "p"\ndevices = ["1002"]\n')
    with pytest.raises(ConfigError) as err:
        load_settings(bad, env={})
    text = str(err.value)
    assert "devices.0.audio_source: tone: freq_hz must be in (0, 4000) Hz" in text and "Value error" not in text
    bad.write_text('[http]\nprot = 1\n')
    with pytest.raises(ConfigError, match="http.prot"):
        load_settings(bad, env={})


def test_device_defaults_and_user_file_paths_from_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[media]\nrecordings_dir = "rec"\n[[devices]]\nnumber = "2001"\nauto_answer = true\n'
                   'audio_source = "tone:440"\n')
    monkeypatch.chdir(tmp_path)
    s = load_settings(cfg, env={})
    d = s.devices[0]
    assert (d.sip_user, d.auto_answer, d.audio_source) == ("2001", True, "tone:440")
    assert s.recordings_path == tmp_path / "rec"
    assert DEFAULT_CONFIG_PATH.is_file()


def test_errors_name_the_environment_variable_that_set_the_value() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"VG_SIP_PORT": "-1"})
    assert "sip.port: Input should be greater than or equal to 0 (set by VG_SIP_PORT)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"VG_RTP_PORT_MIN": "30000", "VG_RTP_PORT_MAX": "29000"})
    assert "rtp_port_min must not exceed rtp_port_max (set by VG_RTP_PORT_MAX, VG_RTP_PORT_MIN)" in str(err.value)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ('audio_source = "nope.wav"', "device '2001' audio_source 'nope.wav': audio file"),
        ('audio_source = "beep"', "device '2001' audio_source 'beep': audio file"),
        ('audio_source = "tone:abc"', "expected tone:<Hz>"),
        ('auto_answer = "yes"', "devices.0.auto_answer: Input should be a valid boolean"),
    ],
)
def test_device_audio_sources_and_flags_are_checked_at_load(tmp_path: Path, device: str, message: str) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[media]\naudio_dir = "{tmp_path}"\n[[devices]]\nnumber = "2001"\n{device}\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert message in str(err.value)


def test_a_wav_audio_source_relative_to_audio_dir_loads(tmp_path: Path) -> None:
    import wave

    with wave.open(str(tmp_path / "prompt.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 800)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[media]\naudio_dir = "{tmp_path}"\n[[devices]]\nnumber = "2001"\naudio_source = "prompt.wav"\n'
                   '[http]\npublic_url = "https://voice.example.com/"\n')
    s = load_settings(cfg, env={})
    assert s.devices[0].audio_source == "prompt.wav" and s.http.public_url == "https://voice.example.com"
    with pytest.raises(ConfigError, match="public_url: must be empty or an absolute http"):
        load_settings(cfg, env={"VG_HTTP_PUBLIC_URL": "notaurl"})
