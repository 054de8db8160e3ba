"""``python -m devhost up`` (what ``make run`` calls): the whole product on this machine, no Azure account.

Azurite (tables kept under .local/ so a second run resumes; blobs and queues in memory), the Partner Center and
Graph billing simulator, each timer function once (then the queue-triggered functions until their queues are
empty: the rated-usage export is spread over blobs, staged by ``stage_rated_blob``), then the HTTP API on
127.0.0.1:7071 until Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from devhost.azurite import REPO_ROOT, running_azurite, running_azurite_blob, running_azurite_queue
from devhost.funcapp import drain_queues
from devhost.localsettings import apply_local_settings
from devhost.serve import make_server
from devhost.simulator import Simulator, WorldConfig, invoices
from devhost.simulator.billing import entitlement_ids
from devhost.trigger import last_run_line, trigger
from shared.settings import BY_NAME
from shared.sync.jobs import JOBS


def _environment(
    sim: Simulator, connection_string: str, queue_connection_string: str, blob_connection_string: str
) -> None:
    """Point every setting at the local parts; other settings keep local.settings.json or their defaults."""
    os.environ.update(
        {
            **sim.app_settings(),
            "USAGE_STORAGE": connection_string,
            "USAGE_QUEUE": queue_connection_string,
            "USAGE_BLOB": blob_connection_string,  # the FOCUS dataset, in Azurite's blob service (in memory)
            "KEY_VAULT_URL": "",
            # Both ways in: the function key (partner-wide) and the simulator's portal tokens under /api/scoped/.
            "API_ACCESS_MODE": "both",
            "API_AUDIENCE": sim.portal.api_client_id,
        }
    )
    os.environ.pop("USAGE_STORAGE__tableServiceUri", None)
    apply_local_settings()
    # The declared defaults (the Bicep sets the deployed schedules); a setting already given wins.
    for name in (*(job.schedule_setting for job in JOBS), "LOCAL_FUNCTION_KEY"):
        os.environ.setdefault(name, BY_NAME[name].default)


def _curl_lines(port: int, key: str, customer_id: str, subscription_id: str, plan: tuple[str, str]) -> list[str]:
    """The requests to paste, after the ``export`` lines they read (the port and key of this run)."""
    base = "http://127.0.0.1:$PORT/api/v1"
    sub = f"{base}/customers/{customer_id}/subscriptions/{subscription_id}"
    header = '-H "x-functions-key: $KEY"'
    plan_customer, entitlement = plan
    return [
        f"export PORT={port} KEY={key}",
        f'curl -s {header} "{base}/spend"                                  # the partner\'s month, per customer',
        f'curl -s {header} "{base}/customers/{plan_customer}/spend"   # a customer\'s month, per day and subscription',
        f'curl -s {header} "{base}/customers/usagerecords"',
        f'curl -s {header} "{sub}/usagesummary"',
        f'curl -s {header} "{sub}/utilizations/azure?start_time={{START}}&end_time={{END}}&size=5"',
        f'curl -s {header} "{base}/customers/{plan_customer}/azureentitlements/{entitlement}/dailycost"',
        f'curl -s {header} "{base}/invoices"                              # invoices, billed or not, and tie-out',
    ]


def _grant_the_reseller_portal(sim: Simulator) -> str:
    """Give the simulated reseller's portal its customers (by the reseller's MPN id); its scoped request."""
    from devhost.simulator.billing import reseller_of
    from shared.access.grants import Grant, GrantKind, add_grant
    from shared.pricing.rules import Adjustment, Basis, PriceRule, Whom, add_rule
    from shared.settings import Settings
    from shared.table_store import TableStore

    resellers = frozenset(r for c in sim.world.customers() if (r := reseller_of(sim.world, c)))
    app = sim.portal.apps["reseller-portal"]
    store = TableStore.from_settings(Settings.from_env())
    note = "the simulated reseller's portal (devhost up)"
    add_grant(store, Grant(app.tenant_id, app.client_id, GrantKind.RESELLERS, resellers, note))
    # its customers pay list + 10 %: the scoped answers show that price, never the partner's cost
    for reseller in sorted(resellers):
        rule = PriceRule(
            whom=Whom.RESELLER,
            who=reseller,
            basis=Basis.LIST,
            effective_from="2020-01-01",
            adjustments=(Adjustment(Decimal(10)),),
            note="devhost up",
        )
        add_rule(store, rule)
    partner = sim.portal.apps["partner-portal"]
    add_grant(
        store, Grant(partner.tenant_id, partner.client_id, GrantKind.ALL, note="the partner's portal (devhost up)")
    )
    token_url = f"{sim.authority}/{app.tenant_id}/oauth2/v2.0/token"
    form = f"-d grant_type=client_credentials -d client_id={app.client_id} -d client_secret={app.client_secret}"
    read = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    return f'curl -s -H "Authorization: Bearer $(curl -s {form} -d scope={sim.portal.scope} {token_url} | {read})"'


def _copy_focus(into: Path) -> list[str]:
    """The FOCUS dataset the timers wrote to Azurite's blobs, copied to a folder; the lines that say how to read it."""
    from azure.storage.blob import ContainerClient

    from shared.settings import Settings

    settings = Settings.from_env()
    container = ContainerClient.from_connection_string(settings.blob_connection_string, settings.focus_container)
    shutil.rmtree(into, ignore_errors=True)
    files = 0
    for item in container.list_blobs():
        target = into / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(container.download_blob(item.name).readall())
        files += 1
    source = f"read_parquet('{into}/**/*.parquet', hive_partitioning = true)"
    columns = "x_CustomerName, BillingCurrency, sum(BilledCost) AS cost, sum(ListCost) AS list"
    query = " ".join(("SELECT", columns, "FROM", source, "GROUP BY ALL ORDER BY ALL"))  # printed, never run here
    return [
        f"FOCUS dataset: {files} files of the '{settings.focus_container}' container, copied to {into}; read it:",
        f'  .venv/bin/python -c "import duckdb; duckdb.sql(\\"{query}\\").show()"',
    ]


def _azure_plan_example(sim: Simulator) -> tuple[str, str]:
    """A customer with Azure plan usage and one of its Azure subscriptions (for the daily-cost curl)."""
    for customer in sim.world.customers():
        if customer.zero_usage:
            continue
        plans = sim.world.subscription_ids(customer.id, "azure_plan")
        if plans:
            return customer.id, entitlement_ids(sim.world, plans[0], 1)[0]
    return sim.world.customer(0).id, "00000000-0000-0000-0000-000000000000"


class PortInUse(Exception):
    """The API port is taken; the message says how to choose another."""


def check_port(port: int) -> None:
    """Fail at once, before anything starts, when the API port cannot be bound."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUse(
                f"port {port} is in use on 127.0.0.1: stop what holds it, or choose another with "
                f"`make run PORT={port + 1}` (python -m devhost up --port {port + 1})"
            ) from None


def up(
    *, port: int = 7071, data_dir: Path | None = None, customers: int = 3, stop: threading.Event | None = None
) -> int:
    """Run everything; returns the exit code once ``stop`` is set (Ctrl-C sets it)."""
    check_port(port)
    stop = stop or threading.Event()
    data_dir = data_dir or REPO_ROOT / ".local" / "azurite"
    say = print
    world = WorldConfig(
        customers=customers,
        legacy_per_customer=2,
        plan_per_customer=1,
        licence_per_customer=1,
        forbidden_customers=1,
        days=35,
        records_per_day=12,
    )
    with (
        running_azurite(data_dir=data_dir, log_file=data_dir.parent / "azurite.log") as azurite,
        running_azurite_blob() as blobs,
        running_azurite_queue() as queues,
        Simulator(world=world, blob_connection_string=blobs.connection_string) as sim,
    ):
        # Small blobs: the export has several, so it is staged through the rated-ingest queue, as large ones are.
        sim.graph.configure({"linesPerBlob": 100})
        # Every invoice ties out here (the planted mismatch, and the failed run it causes, are test_billing's).
        invoices.configure(sim.world, sim.invoice_state, {"mismatch": None})
        say(f"azurite      {azurite.endpoint} (data in {data_dir})")
        say(f"simulator    {sim.base_url} ({customers} customers)")
        _environment(sim, azurite.connection_string, queues.connection_string, blobs.connection_string)
        failed = 0
        for job in JOBS:
            ok = trigger(job.name)
            failed += not ok
            say(("ok     " if ok else "FAILED ") + last_run_line(job.name))
            drained = drain_queues(os.environ)
            if drained.handled or drained.failed:
                failed += drained.poisoned
                say(
                    ("ok     " if not drained.poisoned else "FAILED ")
                    + f"queues: {drained.handled} messages handled, {drained.failed} failed tries, "
                    f"{drained.poisoned} poisoned"
                )
        server = make_server(port=port)
        key = os.environ["LOCAL_FUNCTION_KEY"]
        cid, sid = sim.world.legacy_subscriptions()[0]
        end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start = end - timedelta(days=3)
        scoped = _grant_the_reseller_portal(sim)
        say(f"serving      http://127.0.0.1:{server.port}/api/ (key: {key}); try:")
        for line in _curl_lines(server.port, key, cid, sid, _azure_plan_example(sim)):
            say(
                "  "
                + line.replace("{START}", start.strftime("%Y-%m-%dT%H:%M:%SZ")).replace(
                    "{END}", end.strftime("%Y-%m-%dT%H:%M:%SZ")
                )
            )
        for line in _copy_focus(data_dir.parent / "focus"):
            say(line)
        say("a reseller's portal (list + 10 %), with an Entra ID token of the simulator (its customers only):")
        say(f'  {scoped} "http://127.0.0.1:$PORT/api/scoped/v1/spend"')
        say("Ctrl-C stops everything.")
        sys.stdout.flush()
        try:
            stop.wait()
        finally:
            say("stopping: API server, simulator, Azurite (tables, blobs and queues)")
            server.shutdown()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """CLI for ``devhost up``."""
    parser = argparse.ArgumentParser(prog="devhost up", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="HTTP API port (0 = any free port)")
    parser.add_argument("--data-dir", type=Path, default=None, help="Azurite data folder (default .local/azurite)")
    parser.add_argument("--customers", type=int, default=3, help="simulated customers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        return up(port=args.port, data_dir=args.data_dir, customers=args.customers, stop=stop)
    except PortInUse as exc:
        print(f"devhost up: {exc}", file=sys.stderr)
        return 2
