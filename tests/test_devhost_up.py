"""`make run`'s flow end to end: start, sync, serve, the printed requests answer, a clean stop (issue 5)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


def test_devhost_up_syncs_serves_answers_the_printed_curls_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "azurite"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARTNER_CENTER_", "USAGE_STORAGE"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost", "up", "--port", "0", "--data-dir", str(data_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("Ctrl-C"):
                break
        output = "\n".join(lines)
        assert "Ctrl-C stops everything." in output, output
        assert output.count("ok     fetch_") == 3, output
        curls = [line.strip() for line in lines if line.strip().startswith("curl ")]
        assert len(curls) == 3
        for curl in curls:
            key = re.search(r'x-functions-key: ([^"]+)"', curl).group(1)
            url = re.search(r'"?(http://127\.0\.0\.1:\d+/api/[^" ]+)"?$', curl).group(1)
            response = requests.get(url, headers={"x-functions-key": key}, timeout=30)
            assert response.status_code == 200, (url, response.text)
            body = response.json()
            assert body.get("items") or body.get("totalCost") is not None, body
            assert requests.get(url, timeout=30).status_code == 401  # the key is required
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopping" in rest
    azurite_left = subprocess.run(["pgrep", "-f", f"--location {data_dir}"], capture_output=True, text=True)
    assert azurite_left.stdout.strip() == ""
    assert any(data_dir.iterdir()), "Azurite kept its data for the next run"
