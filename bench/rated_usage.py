"""Rated-usage ingest: lines/s, CPU µs per line and RSS growth, against reading the same export (the baseline).

The export is produced first by the simulator (gzip JSON Lines blobs in Azurite's blob service), so what is
measured is only the app's side: download, inflate, parse, check, spool, group, version and store. The
baseline, in the same process, is the least any reader must do: download, inflate and parse every line with
Decimals. ``azurite`` stores every row in Azurite through the SDK; ``discard`` counts the line rows and sends
the rest (for sizes whose table writes would take far longer than the rest, e.g. 1M lines). Then the same
export is ingested again (unchanged: no data rows), and one with one day re-rated.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from bench.common import CountingStore, RssSampler, cpu_seconds, new_prefix
from devhost.simulator import Simulator, WorldConfig
from shared import jsonutil, tables
from shared.graph.blobs import BlobLine, read_lines
from shared.graph.client import GraphBillingClient, Manifest
from shared.partner_center.auth import TokenProvider
from shared.rated.ingest import Ingest, Snapshot
from shared.sync.runs import SyncRun

NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
DAYS = 29  # usage days of the current period at NOW
METERS, RESOURCES = 8, 10  # 80 lines per Azure subscription and day
LINES_PER_CUSTOMER = int(1.5 * DAYS * METERS * RESOURCES)  # customers alternate one and two Azure subscriptions


class DiscardLines(CountingStore):
    """Counts RatedLines transactions without sending them; every other table goes to Azurite."""

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        if self.short_name(table) != tables.RATED_LINES:
            return super()._submit(table, batch, mode)
        self._count(tables.RATED_LINES, 1, len(batch))
        return len(batch)


def _export(sim: Simulator, billing_period: str = "current") -> Manifest:
    """Have the simulator produce the GBP export now, outside any measurement."""
    body = json.dumps({"currencyCode": "GBP", "billingPeriod": billing_period})
    started = sim.graph.start("usage/unbilled", body)
    operation_id = dict(started.headers)["Location"].rsplit("/", 1)[1]
    reply = sim.graph.operation(operation_id)
    while "resourceLocation@odata.navigationLink" not in (reply.body or {}):
        reply = sim.graph.operation(operation_id)
    manifest_id = reply.body["resourceLocation@odata.navigationLink"].rsplit("/", 1)[1]
    return Manifest.parse(sim.graph.manifests[manifest_id])


def _reader() -> GraphBillingClient:
    tokens = TokenProvider(authority="http://unused", tenant_id="t", client_id="c", client_secret="s")
    return GraphBillingClient(base_url="http://unused", tokens=tokens, sleep=lambda s: None)


def _measure(work: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """(result, wall s, CPU s of this process, peak RSS growth MiB)."""
    gc.collect()
    cpu0, wall0 = cpu_seconds(_pid()), time.perf_counter()
    with RssSampler(0.02) as rss:
        result = work()
    return result, time.perf_counter() - wall0, cpu_seconds(_pid()) - cpu0, rss.growth_mb


def _pid() -> int:
    return os.getpid()


def _baseline(manifest: Manifest) -> int:
    count = 0

    def parse(line: BlobLine) -> None:
        nonlocal count
        jsonutil.loads(line.text)
        count += 1

    read_lines(_reader(), manifest, parse)
    return count


def _ingest(store: CountingStore, manifest: Manifest, now: datetime) -> dict[str, Any]:
    with SyncRun(store, "fetch_rated_usage", unit="exports") as run:
        snapshot = Snapshot("current", "GBP", manifest.etag, manifest.created)
        stats = Ingest(store, run, snapshot, now=now).ingest_from(lambda into: read_lines(_reader(), manifest, into))
    return {
        "lines": stats.lines,
        "data_rows_written": stats.data_rows_written,
        "line_rows_written": stats.line_rows_written,
        "days_written": stats.days_written,
        "slices": stats.slices,
    }


def measure(lines: int, connection_string: str, blob_connection_string: str, *, sink: str) -> dict[str, Any]:
    """One export of about ``lines`` lines: baseline, ingest, unchanged re-ingest, one re-rated day."""
    customers = 5 * max(1, round(lines / LINES_PER_CUSTOMER))  # every fifth customer bills in GBP
    world = WorldConfig(now=NOW, customers=customers, forbidden_customers=0, legacy_per_customer=0)
    service = TableServiceClient.from_connection_string(connection_string)
    store_type = DiscardLines if sink == "discard" else CountingStore
    store = store_type(service, prefix=new_prefix())
    with Simulator(world=world, blob_connection_string=blob_connection_string) as sim:
        sim.graph.configure({"polls": 0, "meters": METERS, "resources": RESOURCES, "linesPerBlob": 20_000})
        manifest = _export(sim)
        try:
            count, base_wall, base_cpu, base_rss = _measure(lambda: _baseline(manifest))
            first, wall, cpu, rss = _measure(lambda: _ingest(store, manifest, NOW))
            again, _, again_cpu, _ = _measure(lambda: _ingest(store, manifest, NOW))
            sim.graph.configure({"rerate": {"2026-11-10": "0.97"}})
            changed_manifest = _export(sim)
            changed, _, _, _ = _measure(lambda: _ingest(store, changed_manifest, NOW))
        finally:
            store.drop_tables()
    return {
        "lines": count,
        "sink": sink,
        "customers_gbp": customers // 5,
        "blobs": len(manifest.blobs),
        "baseline": {"seconds": round(base_wall, 2), "cpu_us_per_line": round(base_cpu / count * 1e6, 1)},
        "ingest": {
            "seconds": round(wall, 2),
            "lines_per_s": round(count / wall),
            "cpu_us_per_line": round(cpu / count * 1e6, 1),
            "rss_growth_mb": round(rss, 1),
            "baseline_rss_growth_mb": round(base_rss, 1),
            **first,
        },
        "vs_baseline_cpu": round(cpu / base_cpu, 2),
        "unchanged": {
            "data_rows_written": again["data_rows_written"],
            "cpu_us_per_line": round(again_cpu / count * 1e6, 1),
        },
        "one_day_rerated": {
            "data_rows_written": changed["data_rows_written"],
            "line_rows_written": changed["line_rows_written"],
            "days_written": changed["days_written"],
        },
    }
