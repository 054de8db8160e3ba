"""Run the simulator out of process: `python -m devhost.simulator --port 8090 --customers 3 ...`."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from datetime import datetime, timezone
from types import FrameType

from devhost.simulator.server import Simulator
from devhost.simulator.world import WorldConfig


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def build_parser() -> argparse.ArgumentParser:
    """Command-line options: the server's, then one per WorldConfig field."""
    parser = argparse.ArgumentParser(prog="python -m devhost.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--blob-connection-string", default=None, help="Azurite blob service for the Graph billing export's files"
    )
    for f in dataclasses.fields(WorldConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "now":
            parser.add_argument(flag, type=_aware, default=None, help="ISO 8601 instant the world treats as now")
        elif f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=int, default=f.default)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    args = vars(build_parser().parse_args(argv))
    host, port, latency = args.pop("host"), args.pop("port"), args.pop("latency_ms")
    blobs = args.pop("blob_connection_string")
    sim = Simulator(world=WorldConfig(**args), latency_ms=latency, host=host, port=port, blob_connection_string=blobs)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim.start()
    print(
        f"simulator listening on {sim.base_url} tenant={sim.tenant_id} client_id={sim.client_id} "
        f"client_secret={sim.client_secret} refresh_token={sim.initial_refresh_token}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
