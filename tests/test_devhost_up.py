"""`make run`'s flow end to end: start, sync, serve, the printed requests answer, a clean stop (issue 5)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from shared.settings import BY_NAME
from shared.sync.jobs import JOBS

REPO = Path(__file__).resolve().parent.parent


def readme_block() -> str:
    """The README's paste-as-is block (the bash block after the readme-curls marker)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text.split("<!-- readme-curls", 1)[1]
    return after.split("```bash\n", 1)[1].split("```", 1)[0]


def run_readme_block(port: str) -> subprocess.CompletedProcess[str]:
    """Every line of the block, in bash with -e: each curl -f must answer 2xx."""
    script = "set -euo pipefail\n" + readme_block()
    env = {**os.environ, "PORT": port}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)


def captured(pattern: str, text: str) -> str:
    """The first group of ``pattern``'s first match in ``text``, which must match."""
    match = re.search(pattern, text)
    assert match is not None, (pattern, text)
    return match.group(1)


def test_the_readme_block_calls_every_route_a_portal_starts_with():
    block = readme_block()
    for route in (
        '/v1/customers"',
        '/subscriptions"',
        "usagerecords?billing_month=",
        "/usagesummary",
        "/utilizations/azure",
        "/health",
        '/v1/spend"',
        '/spend"',
    ):
        assert route in block, route
    assert "$CUSTOMER" in block and "CUSTOMER=$(" in block  # ids come from the discovery routes


def test_devhost_up_syncs_serves_answers_the_printed_curls_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "azurite"
    # A fresh machine: none of the app's settings inherited (other tests in this process may have set some).
    env = {k: v for k, v in os.environ.items() if k not in BY_NAME and not k.startswith("USAGE_STORAGE")}
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
        assert process.stdout is not None  # stdout=PIPE
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("Ctrl-C"):
                break
        output = "\n".join(lines)
        assert "Ctrl-C stops everything." in output, output
        assert output.count("ok     fetch_") == len(JOBS), output
        (export,) = [line.strip() for line in lines if line.strip().startswith("export PORT=")]
        scoped = [line.strip() for line in lines if "/api/scoped/" in line]
        assert len(scoped) == 1
        reseller = subprocess.run(
            ["bash", "-c", f"{export}; {scoped[0]}"], capture_output=True, text=True, timeout=60, check=False
        )
        listed = json.loads(reseller.stdout)
        assert listed["totalCount"] == 1 and listed["items"][0]["scope"] == "grant", reseller.stdout  # its customer
        assert listed["figures"] == "price", reseller.stdout  # list + 10 %, never the partner's cost
        (duck,) = [line.strip() for line in lines if line.strip().startswith(".venv/bin/python -c")]
        focus = subprocess.run(["bash", "-c", duck], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        assert focus.returncode == 0 and "x_CustomerName" in focus.stdout, (focus.stdout, focus.stderr)
        curls = [line.strip() for line in lines if line.strip().startswith("curl ") and "/api/scoped/" not in line]
        assert len(curls) == 7 and '/api/v1/spend"' in curls[0] and curls[1].split('"')[3].endswith("/spend")
        assert any("/azureentitlements/" in curl and "/dailycost" in curl for curl in curls)
        assert curls[-1].split('"')[3].endswith("/api/v1/invoices")
        values = dict(part.split("=", 1) for part in export.removeprefix("export ").split())
        for curl in curls:
            url = captured(r'"(http://127\.0\.0\.1:\$PORT/api/[^"]+)"', curl).replace("$PORT", values["PORT"])
            response = requests.get(url, headers={"x-functions-key": values["KEY"]}, timeout=30)
            assert response.status_code == 200, (url, response.text)
            body = response.json()
            assert body.get("items") or body.get("totalCost") is not None or body.get("currencies"), body
            assert requests.get(url, timeout=30).status_code == 401  # the key is required
        port = captured(r"serving +http://127\.0\.0\.1:(\d+)/api/", output)
        readme = run_readme_block(port)
        assert readme.returncode == 0, (readme.stdout[-2000:], readme.stderr[-2000:])
        assert readme.stdout.count("HTTP/1.") == 1 and '"status":"healthy"' in readme.stdout
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopping" in rest
    azurite_left = subprocess.run(["pgrep", "-f", f"--location {data_dir}"], capture_output=True, text=True)
    assert azurite_left.stdout.strip() == ""
    assert any(data_dir.iterdir()), "Azurite kept its data for the next run"


def test_a_taken_port_is_one_line_naming_the_fix_before_anything_starts(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "devhost", "up", "--port", str(port), "--data-dir", str(tmp_path / "a")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"devhost up: port {port} is in use on 127.0.0.1: stop what holds it, or choose another with "
        f"`make run PORT={port + 1}` (python -m devhost up --port {port + 1})"
    ]
    assert not (tmp_path / "a").exists()  # Azurite never started, no timer ran


def test_devhost_trigger_with_a_missing_schedule_says_so_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SCHEDULE")}
    done = subprocess.run(
        [sys.executable, "-m", "devhost", "trigger", "fetch_usage_records"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [entry for entry in done.stderr.splitlines() if entry.startswith("devhost trigger:")]
    assert "USAGE_RECORDS_SCHEDULE" in line and "local.settings.json" in line
