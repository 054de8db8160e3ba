"""Start and stop the Azurite table, blob and queue emulators from node_modules (tests, local runs, benchmarks).

The blob service holds the simulated Graph billing export's files; the app itself never writes blobs. The queue
service holds the ``rated-ingest`` queue (USAGE_QUEUE), which ``devhost.funcapp.drain_queues`` runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's published, well-known development key: not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class _Service:
    """A running Azurite service (one process, one port)."""

    port: int
    process: subprocess.Popen[bytes]
    _kind = "Table"

    @property
    def endpoint(self) -> str:
        """The service's endpoint URL (the account included, as Azurite addresses it)."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A connection string for this service (for the tables: USAGE_STORAGE)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"{self._kind}Endpoint={self.endpoint};"
        )


class Azurite(_Service):
    """A running Azurite table service."""


class AzuriteBlob(_Service):
    """A running Azurite blob service."""

    _kind = "Blob"


class AzuriteQueue(_Service):
    """A running Azurite queue service."""

    _kind = "Queue"


def azurite_binary(service: str = "table") -> str:
    """The azurite-table (or azurite-blob) launcher installed by ``npm ci``."""
    name = f"azurite-{service}"
    local = REPO_ROOT / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} not found: run `npm ci` in the repository (make does it for you)")


def _start(service: str, port: int, data_dir: Path | None) -> subprocess.Popen[bytes]:
    args = [azurite_binary(service), f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    args += ["--disableTelemetry", "--skipApiVersionCheck", "--loose"]
    if data_dir is None:
        args.append("--inMemoryPersistence")
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--location", str(data_dir)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def running_azurite_blob(*, data_dir: Path | None = None, port: int | None = None) -> Iterator[AzuriteBlob]:
    """Run Azurite's blob service on a free loopback port; in memory unless ``data_dir`` is given."""
    port = port or free_port()
    process = _start("blob", port, data_dir)
    try:
        _wait_for_port(port, process)
        yield AzuriteBlob(port=port, process=process)
    finally:
        stop(process)


@contextlib.contextmanager
def running_azurite_queue(*, data_dir: Path | None = None, port: int | None = None) -> Iterator[AzuriteQueue]:
    """Run Azurite's queue service on a free loopback port; in memory unless ``data_dir`` is given."""
    port = port or free_port()
    process = _start("queue", port, data_dir)
    try:
        _wait_for_port(port, process)
        yield AzuriteQueue(port=port, process=process)
    finally:
        stop(process)


@contextlib.contextmanager
def running_azurite(
    *, data_dir: Path | None = None, port: int | None = None, log_file: Path | None = None
) -> Iterator[Azurite]:
    """Run Azurite (tables only) on a free loopback port; in memory unless ``data_dir`` is given."""
    port = port or free_port()
    args = [
        azurite_binary(),
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        str(port),
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
    ]
    if data_dir is None:
        args.append("--inMemoryPersistence")
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--location", str(data_dir)]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(port, process)
        yield Azurite(port=port, process=process)
    finally:
        stop(process)
        if log_file:
            out.close()  # type: ignore[union-attr]


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGINT first so Azurite flushes its data; kill only if it does not exit."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"Azurite did not listen on port {port} within {timeout:.0f}s")
