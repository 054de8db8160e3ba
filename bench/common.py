"""What the benchmarks share: settings for the simulator and Azurite, counting stores, minimums, RSS sampling."""

from __future__ import annotations

import inspect
import math
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import psutil
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from devhost.simulator import Simulator, WorldConfig
from devhost.simulator.world import World
from shared import tables
from shared.focus.writer import FOCUS_STATE
from shared.partner_center import PartnerCenterClient
from shared.settings import Settings
from shared.spend import rows as spend_rows
from shared.sync import jobs, runner
from shared.sync.runs import SyncFailed, SyncRun
from shared.sync.utilization import PAGE_SIZE, windows_to_fetch
from shared.table_store import MAX_BATCH_OPERATIONS, ServicePage, TableStore

# A fixed "now" for the world and the sync, so every run sees the same windows and records.
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
FUNCTION = "fetch_utilization"
# the spend read model's tables, and the FOCUS dataset's marks: kept for the answers, not by the sync itself
READ_MODEL_TABLES = (*spend_rows.TABLES, FOCUS_STATE)
TABLES = (*tables.ALL_TABLES, *READ_MODEL_TABLES)
# The page size the client asks the customers listing for; the world may serve fewer per page.
CUSTOMERS_REQUEST_SIZE: int = inspect.signature(PartnerCenterClient.customers).parameters["size"].default


def sim_env(sim: Simulator, connection_string: str, prefix: str, **overrides: str) -> dict[str, str]:
    """App settings pointing at the simulator and Azurite."""
    env = {
        **sim.app_settings(),
        "USAGE_STORAGE": connection_string,
        "TABLE_PREFIX": prefix,
    }
    env.update(overrides)
    return env


def new_prefix() -> str:
    """A table prefix no other run uses."""
    return "b" + uuid.uuid4().hex[:12]


def legacy_world(
    subscriptions: int, *, days: int, records_per_day: int, others_per_customer: bool = True, seed: int = 7
) -> WorldConfig:
    """One legacy subscription per customer (plus, when asked, an Azure plan and a licence that the sync skips)."""
    extra = 1 if others_per_customer else 0
    return WorldConfig(
        customers=subscriptions,
        legacy_per_customer=1,
        plan_per_customer=extra,
        licence_per_customer=extra,
        forbidden_customers=0,
        days=days + 5,
        records_per_day=records_per_day,
        seed=seed,
        now=NOW,
    )


# -- stores -------------------------------------------------------------------------------------------------


class CountingStore(TableStore):
    """The app's TableStore, also counting transactions and rows per table (short name), and query pages."""

    def __init__(self, service: TableServiceClient, *, prefix: str = "pc") -> None:
        super().__init__(service, prefix=prefix)
        self.tx_by_table: Counter[str] = Counter()
        self.rows_by_table: Counter[str] = Counter()
        self.queries = 0
        self._count_lock = threading.Lock()

    @property
    def transactions(self) -> int:
        """Every transaction (a batch, a single upsert or a delete) sent so far."""
        return sum(self.tx_by_table.values())

    def get(self, name: str, partition_key: str, row_key: str) -> dict[str, Any] | None:
        with self._count_lock:
            self.queries += 1
        return super().get(name, partition_key, row_key)

    def query_pages(self, *args: Any, **kwargs: Any) -> Iterator[ServicePage]:
        for page in super().query_pages(*args, **kwargs):
            with self._count_lock:
                self.queries += 1
            yield page

    def drop_tables(self) -> None:
        """Delete every table under this prefix."""
        for table in list(self._service.list_tables()):
            if table.name.startswith(self.prefix):
                self._service.delete_table(table.name)

    def _count(self, name: str, transactions: int, rows: int) -> None:
        with self._count_lock:
            self.tx_by_table[name] += transactions
            self.rows_by_table[name] += rows

    def short_name(self, table: TableClient) -> str:
        """``Utilization`` for ``<prefix>Utilization``."""
        return table.table_name.removeprefix(self.prefix)

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        written = super()._submit(table, batch, mode)
        self._count(self.short_name(table), 1, len(batch))
        return written

    def delete(self, name: str, partition_key: str, row_key: str) -> None:
        super().delete(name, partition_key, row_key)
        self._count(name, 1, 0)

    def create_tables(self) -> None:
        """Create every table before timing, as they exist in a deployed app after its first run."""
        for name in TABLES:
            self.table(name)


class BaselineStore(CountingStore):
    """The common approach (PowerShell module, SDK samples): one ``upsert_entity`` request per row."""

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        for entity in batch:
            table.upsert_entity(entity, mode=mode)
            self._count(self.short_name(table), 1, 1)
        return len(batch)


class RecycleStore(CountingStore):
    """Sends every Utilization transaction to Azurite unchanged except for its RowKeys, which cycle through
    100 slots, so Azurite holds at most 100 data rows however many the sync writes. Everything on the
    app's side (mapping, buffering, batching, SDK serialisation, the request) is the same."""

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        if self.short_name(table) == tables.UTILIZATION:
            batch = [{**entity, "RowKey": f"slot{i:03d}"} for i, entity in enumerate(batch)]
        return super()._submit(table, batch, mode)


class DiscardStore(CountingStore):
    """Counts Utilization transactions without sending them (every other table goes to Azurite)."""

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        if self.short_name(table) != tables.UTILIZATION:
            return super()._submit(table, batch, mode)
        self._count(tables.UTILIZATION, 1, len(batch))
        return len(batch)


STORES: dict[str, type[CountingStore]] = {
    "azurite": CountingStore,
    "recycle": RecycleStore,
    "discard": DiscardStore,
    "baseline": BaselineStore,
}


# -- minimums -----------------------------------------------------------------------------------------------


@dataclass
class Minimum:
    """The fewest Partner Center calls and table transactions a complete first sync of a world needs.

    Calls: every window of every legacy subscription needs max(1, ceil(records / 1000)) pages (an empty
    window still costs the one call that says so), plus the inventory: the customers listing's pages and
    one subscriptions call per customer. Token requests are not counted (reported apart).
    Data transactions: per Utilization partition (one per subscription), ceil(rows / 100).
    Other transactions: the inventory (Customers: ceil(customers / 100); Subscriptions: one per customer
    partition), watermarks (ceil(subscriptions / 100) in the one SyncState partition, + 1 inventory
    meta row) and the run record (2: the ``running`` row at start and the outcome at the end).
    """

    subscriptions: int
    windows: int
    records: int
    utilization_pages: int
    customer_pages: int
    subscription_calls: int
    longest_chain_calls: int
    data_transactions: int
    other_transactions: int

    @property
    def calls(self) -> int:
        """Every Partner Center API call (tokens excluded)."""
        return self.utilization_pages + self.customer_pages + self.subscription_calls

    @property
    def transactions(self) -> int:
        """Every table transaction, data and bookkeeping."""
        return self.data_transactions + self.other_transactions

    def as_dict(self) -> dict[str, int]:
        """JSON shape."""
        return {**asdict(self), "calls": self.calls, "transactions": self.transactions}


def minimum_for(world: World, settings: Settings, now: datetime = NOW) -> Minimum:
    """The minimum of a first sync (no watermarks yet) of every legacy subscription of ``world``."""
    windows = windows_to_fetch(None, now=now, settings=settings)
    customers = world.config.customers
    per_page = min(CUSTOMERS_REQUEST_SIZE, world.config.customers_page_size)
    customer_pages = max(1, math.ceil(customers / per_page))
    pages = records = data_tx = longest = 0
    subscriptions = world.legacy_subscriptions()
    for cid, sid in subscriptions:
        counts = [world.utilization_count(cid, sid, start, end) for start, end in windows]
        sub_pages = sum(max(1, math.ceil(count / PAGE_SIZE)) for count in counts)
        pages += sub_pages
        records += sum(counts)
        data_tx += math.ceil(sum(counts) / MAX_BATCH_OPERATIONS)
        longest = max(longest, sub_pages)
    customers_with_subs = customers if world.config.subscriptions_per_customer else 0
    other = (
        math.ceil(customers / MAX_BATCH_OPERATIONS)
        + customers_with_subs
        + math.ceil(len(subscriptions) / MAX_BATCH_OPERATIONS)
        + 1
        + 2
    )
    return Minimum(
        subscriptions=len(subscriptions),
        windows=len(windows) * len(subscriptions),
        records=records,
        utilization_pages=pages,
        customer_pages=customer_pages,
        subscription_calls=customers,
        # customers pages, then this customer's subscriptions call, then its windows' pages, one after another
        longest_chain_calls=customer_pages + 1 + longest,
        data_transactions=data_tx,
        other_transactions=other,
    )


# -- memory -------------------------------------------------------------------------------------------------


def cpu_seconds(*pids: int | None) -> float:
    """User + system CPU of processes (and their children) so far; missing ones count 0."""
    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        try:
            process = psutil.Process(pid)
            for proc in (process, *process.children(recursive=True)):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


class RssSampler:
    """Peak resident set size of this process while the block runs, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.01) -> None:
        self._interval = interval
        self._process = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.start = 0
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        """Peak RSS above the RSS at the start, in MiB."""
        return (self.peak - self.start) / 2**20


# -- one sync -----------------------------------------------------------------------------------------------


class ProjectionCpu:
    """Process CPU seconds spent projecting the spend read model at the end of runs (the run's threads are done
    by then, so the process's CPU is the projection's), to report the sync's own CPU apart from it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = runner.refresh_spend

    def __enter__(self) -> ProjectionCpu:
        me = psutil.Process(os.getpid())

        def measured(ctx: Any) -> None:
            before = me.cpu_times()
            try:
                self._original(ctx)
            finally:
                after = me.cpu_times()
                self.seconds += (after.user - before.user) + (after.system - before.system)

        runner.refresh_spend = measured
        return self

    def __exit__(self, *exc: object) -> None:
        runner.refresh_spend = self._original


def run_once(function: str, settings: Settings, store: TableStore, now: datetime = NOW) -> SyncRun:
    """One run of a timer function's job at ``now``, with no time budget; a failed run is returned, not raised."""
    try:
        return runner.run_job(jobs.get(function), settings, store, budget_seconds=None, now=lambda: now)
    except SyncFailed as failed:
        return failed.run


def run_utilization_sync(
    config: WorldConfig,
    *,
    connection_string: str,
    latency_ms: float,
    concurrency: int,
    backfill_days: int,
    store: str = "azurite",
    azurite_pid: int | None = None,
) -> dict[str, Any]:
    """One first sync of ``fetch_utilization`` over a fresh world and fresh tables; counts, time, CPU, memory.

    CPU: this process (the app and the in-process simulator) and Azurite, during the sync.
    """
    with Simulator(world=config, latency_ms=latency_ms) as sim:
        prefix = new_prefix()
        env = sim_env(
            sim,
            connection_string,
            prefix,
            UTILIZATION_BACKFILL_DAYS=str(backfill_days),
            SYNC_CONCURRENCY=str(concurrency),
        )
        settings = Settings.from_env(env)
        table_store = STORES[store](TableServiceClient.from_connection_string(connection_string), prefix=prefix)
        minimum = minimum_for(sim.world, settings)
        try:
            table_store.create_tables()
            with RssSampler() as rss:
                cpu_before, azurite_before = cpu_seconds(os.getpid()), cpu_seconds(azurite_pid)
                started = time.perf_counter()
                run = run_once(FUNCTION, settings, table_store)
                wall = time.perf_counter() - started
                cpu = cpu_seconds(os.getpid()) - cpu_before
                azurite_cpu = cpu_seconds(azurite_pid) - azurite_before
            routes = sim.stats()["routes"]
        finally:
            table_store.drop_tables()
    data_tx = table_store.tx_by_table[tables.UTILIZATION]
    # the spend read model (its usage days, marks, projections) and the FOCUS dataset's marks are reported apart
    # from the sync's own writes
    spend_tx = sum(table_store.tx_by_table[name] for name in READ_MODEL_TABLES)
    sync_tx = table_store.transactions - spend_tx
    return {
        "store": store,
        "subscriptions": minimum.subscriptions,
        "concurrency": concurrency,
        "latency_ms": latency_ms,
        "status": run.status,
        "errors": [e.as_record() for e in run.errors[:5]],
        "wall_s": wall,
        "cpu_s": cpu,
        "azurite_cpu_s": azurite_cpu if azurite_pid else None,
        "rss_growth_mb": rss.growth_mb,
        "rows": run.counters["rows"],
        "calls": run.counters["calls"],
        "pages": run.counters["pages"],
        "retries": run.counters["retries"],
        "token_requests": routes.get("token", 0),
        "calls_by_route": {k: v for k, v in routes.items() if k != "token"},
        "transactions": sync_tx,
        "spend_transactions": spend_tx,
        "data_transactions": data_tx,
        "queries": table_store.queries,
        "transactions_by_table": dict(table_store.tx_by_table),
        "rows_by_table": dict(table_store.rows_by_table),
        "minimum": minimum.as_dict(),
        "calls_vs_min": run.counters["calls"] / minimum.calls,
        "data_tx_vs_min": data_tx / max(1, minimum.data_transactions),
        "all_tx_vs_min": sync_tx / max(1, minimum.transactions),
    }
