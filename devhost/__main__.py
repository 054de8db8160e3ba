"""Development host: ``python -m devhost {up,simulate,trigger,serve}``. Never deployed."""

from __future__ import annotations

import argparse
import errno
import logging
import sys

USAGE = """usage: python -m devhost COMMAND [options]

commands:
  up                 everything locally: Azurite, simulator, each timer function once, the HTTP API
  simulate           the Partner Center simulator alone
  trigger NAME       run one timer function once, in-process, through its function.json
  serve [--port N]   serve every HTTP-triggered function (function keys as in Azure)
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "up":
        from devhost.up import main as up_main

        return up_main(rest)
    if command == "simulate":
        from devhost.simulator.__main__ import main as simulate_main

        return simulate_main(rest) or 0
    if command == "trigger":
        return _trigger(rest)
    if command == "serve":
        return _serve(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _trigger(argv: list[str]) -> int:
    from devhost.funcapp import FunctionAppError
    from devhost.localsettings import apply_local_settings
    from devhost.trigger import TriggerError, last_run_line, trigger
    from shared.settings import SettingsError

    parser = argparse.ArgumentParser(prog="devhost trigger")
    parser.add_argument("name", help="function folder name, e.g. fetch_utilization")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    apply_local_settings()
    try:
        ok = trigger(args.name)
    except (TriggerError, FunctionAppError, SettingsError) as exc:
        fix = " (set it in local.settings.json or the environment)" if "is not set" in str(exc) else ""
        print(f"devhost trigger: {exc}{fix}", file=sys.stderr)
        return 2
    print(last_run_line(args.name))
    return 0 if ok else 1


def _serve(argv: list[str]) -> int:
    from devhost.localsettings import apply_local_settings
    from devhost.serve import serve

    parser = argparse.ArgumentParser(prog="devhost serve")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    apply_local_settings()
    try:
        serve(host=args.host, port=args.port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"devhost serve: port {args.port} is in use on {args.host}: choose another with --port", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
