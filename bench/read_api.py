"""Part 4: the read API's utilization route against the table query it issues, and requests per second.

The data is a real first sync of one legacy subscription into Azurite. The handler is ``shared.api.handle``
called in process; the raw query is the exact ``query_entities`` call the handler made (captured on a
warm-up call), read to the end of its first service page, on the same TableClient.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import requests
from azure.data.tables import TableServiceClient

from bench.common import NOW, CountingStore, legacy_world, new_prefix, run_once, sim_env
from devhost.serve import make_server
from devhost.simulator import Simulator
from shared import jsonutil, tables
from shared.api import Request, handle
from shared.settings import Settings
from shared.tables import RunStatus

PAGE = 1000
FUNCTION_KEY = "bench-local-key"
Progress = Callable[[str], None]


def _populate(connection_string: str, prefix: str) -> tuple[str, str, Settings, CountingStore]:
    """Sync one subscription with ~3,300 rows (30 windows of ~110) into tables under ``prefix``."""
    config = legacy_world(1, days=30, records_per_day=100, others_per_customer=False)
    with Simulator(world=config) as sim:
        settings = Settings.from_env(sim_env(sim, connection_string, prefix, UTILIZATION_BACKFILL_DAYS="30"))
        store = CountingStore(TableServiceClient.from_connection_string(connection_string), prefix=prefix)
        run = run_once("fetch_utilization", settings, store)
        if run.status != RunStatus.SUCCEEDED:
            raise RuntimeError(run.summary())
        customer_id, subscription_id = sim.world.legacy_subscriptions()[0]
    return customer_id, subscription_id, settings, store


def _target(customer_id: str, subscription_id: str) -> tuple[str, dict[str, str]]:
    path = f"v1/customers/{customer_id}/subscriptions/{subscription_id}/utilizations/azure"
    start = (NOW - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    return path, {"start_time": start, "end_time": end, "size": str(PAGE)}


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def handler_vs_query(
    store: CountingStore, settings: Settings, path: str, query: dict[str, str], repeats: int
) -> dict[str, Any]:
    """Median time of the handler for one 1000-record page, and of the query it issues, interleaved."""
    request = Request.build("GET", path, query=query)
    table = store.table(tables.UTILIZATION)
    captured: dict[str, Any] = {}
    original = table.query_entities

    def recording(query_filter: str, **kwargs: Any) -> Any:
        captured.setdefault("filter", query_filter)
        captured.setdefault("kwargs", kwargs)
        return original(query_filter, **kwargs)

    table.query_entities = recording  # type: ignore[method-assign]
    try:
        response = handle(request, store, settings, now=NOW)
    finally:
        del table.query_entities
    body = jsonutil.loads(response.body)
    if response.status != 200 or len(body["items"]) != PAGE:
        raise RuntimeError(f"handler answered {response.status} with {len(body.get('items', []))} items")

    def raw_query() -> int:
        pages = table.query_entities(captured["filter"], **captured["kwargs"]).by_page()
        return sum(1 for _ in next(pages))

    handler_s, query_s = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        handle(request, store, settings, now=NOW)
        handler_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        rows = raw_query()
        query_s.append(time.perf_counter() - started)
    handler_ms, query_ms = _median_ms(handler_s), _median_ms(query_s)
    return {
        "repeats": repeats,
        "items": len(body["items"]),
        "query_rows": rows,
        "body_bytes": len(response.body),
        "filter": captured["filter"],
        "select": captured["kwargs"].get("select"),
        "results_per_page": captured["kwargs"].get("results_per_page"),
        "handler_ms": handler_ms,
        "raw_query_ms": query_ms,
        "handler_vs_query": handler_ms / query_ms,
    }


def requests_per_second(
    url: str, query: dict[str, str], *, concurrency: int, count: int, seconds: float
) -> dict[str, Any]:
    """GET ``url`` from ``concurrency`` threads (one session each) until ``count`` answers or ``seconds`` pass."""
    lock = threading.Lock()
    state = {"sent": 0, "ok": 0, "failed": 0}
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        with requests.Session() as session:
            session.headers["x-functions-key"] = FUNCTION_KEY
            while time.perf_counter() < deadline:
                with lock:
                    if state["sent"] >= count:
                        return
                    state["sent"] += 1
                response = session.get(url, params=query, timeout=60)
                ok = response.status_code == 200 and len(response.content) > 0
                with lock:
                    state["ok" if ok else "failed"] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": state["ok"] + state["failed"],
        "failed": state["failed"],
        "seconds": elapsed,
        "rps": state["ok"] / elapsed,
    }


def read_api(
    connection_string: str, *, repeats: int, rps_count: int, rps_seconds: float, progress: Progress
) -> dict[str, Any]:
    """Both measurements on one populated subscription; tables dropped afterwards."""
    prefix = new_prefix()
    customer_id, subscription_id, settings, store = _populate(connection_string, prefix)
    try:
        path, query = _target(customer_id, subscription_id)
        result = handler_vs_query(store, settings, path, query, repeats)
        progress(
            f"read handler {result['handler_ms']:.1f} ms vs raw query {result['raw_query_ms']:.1f} ms "
            f"({result['items']} items, median of {repeats})"
        )
        env = {"USAGE_STORAGE": connection_string, "TABLE_PREFIX": prefix, "LOCAL_FUNCTION_KEY": FUNCTION_KEY}
        server = make_server(port=0, env=env)
        try:
            url = f"http://127.0.0.1:{server.port}/api/{path}"
            rps = []
            for concurrency in (1, 16):
                rps.append(
                    requests_per_second(url, query, concurrency=concurrency, count=rps_count, seconds=rps_seconds)
                )
                progress(f"read API c={concurrency}: {rps[-1]['rps']:.1f} req/s ({rps[-1]['requests']} requests)")
        finally:
            server.shutdown()
        result["rps"] = rps
    finally:
        store.drop_tables()
    return result
