"""The README's curl walkthrough, run literally (its bash blocks, in order) against `voice-gateway serve`,
so the README cannot drift from what the gateway does. Only the base URL is changed (free ports)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from tests.e2e.peers.audio import assert_tone, read_wav
from tests.integration.test_cli import VENV_BIN, _start, _stop

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough_script(http_port: int) -> str:
    text = README.read_text()
    section = text[text.index("## Walkthrough with curl"):text.index("## What is implemented")]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) >= 4, "the walkthrough's bash blocks moved"
    script = "set -euo pipefail\n" + "\n".join(blocks)
    assert "GW=http://127.0.0.1:8080" in script
    return script.replace("GW=http://127.0.0.1:8080", f"GW=http://127.0.0.1:{http_port}")


async def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    # recordings/ under the shell's working directory, as for the embedded default run from the repository
    proc, port, _ = await _start(tmp_path, str(VENV_BIN / "voice-gateway"), "serve", recordings=tmp_path / "recordings")
    try:
        shell = await asyncio.create_subprocess_exec(
            "bash", "-c", walkthrough_script(port), cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(shell.communicate(), 90)
    finally:
        await _stop(proc)
    assert shell.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    health = json.loads(lines[0])
    assert health["status"] == "ok" and health["http"]["port"] == port
    assert lines.count('{"statusCode":0}') >= 7  # 2 logins, Ready, Dial, Answer, StartCallRecording, Hangup
    ringing = [json.loads(line) for line in lines if '"state":"Ringing"' in line]
    assert ringing and ringing[0][0]["data"]["call"]["capabilities"] == ["Answer", "Reject"]
    (wav,) = (tmp_path / "recordings").glob("*_1001_1002_*.wav")
    assert wav.name in out.decode()
    audio = read_wav(wav)
    assert (audio.rate, audio.channels) == (8000, 2) and audio.duration >= 2.5
    assert_tone(audio, 600, channel=0)  # the remote party: line 1002's tone
    assert_tone(audio, 440, channel=1)  # this line, 1001
