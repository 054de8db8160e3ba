"""Part ``rows``: app CPU per stored Utilization row, by stage, against the SDK's transaction path in one process.

Stages, each µs of this process's CPU per row (``time.process_time``; Azurite runs in its own process):
row building (``utilization_row`` on records as the client decodes them), sizing/prepare (``sized_entity``),
batch body, send (the pipeline and the socket: the transaction measured whole, less body and answer parsing;
0 when those, measured apart, cost more), and answer parsing; total is row building + prepare + the whole
transaction. The baseline is the same rows sent with ``TableClient.submit_transaction`` (its body built by
``TableBatchOperations`` + azure-core's multipart writer, its answer read by ``response.parts()``).

Then the utilization sync itself (one first sync of fetch_utilization, the simulator in its own process so
its CPU is not the app's): app CPU µs per stored row with the app's store and with one whose transactions go
through ``submit_transaction``, in the same process.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

import psutil
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.data.tables._policies import StorageHeadersPolicy
from azure.data.tables._table_batch import TableBatchOperations

from bench.common import FUNCTION, NOW, CountingStore, ProjectionCpu, legacy_world, new_prefix, run_once
from devhost.simulator import Simulator, WorldConfig
from devhost.simulator.world import World
from shared import jsonutil, table_batch
from shared.settings import Settings
from shared.table_store import sized_entity
from shared.tables import utilization_row

BATCH = 100


def _records(count: int) -> tuple[list[tuple[str, str, Any, Any, Any]], str]:
    """``count`` utilization records of one legacy subscription as the client decodes them, with their windows."""
    world = World(legacy_world(1, days=60, records_per_day=max(24, count // 50)))
    customer_id, subscription_id = world.legacy_subscriptions()[0]
    out: list[tuple[str, str, Any, Any, Any]] = []
    end = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=59)
    while len(out) < count and start < end:
        window_end = start + timedelta(days=1)
        for record in world.utilization(customer_id, subscription_id, start, window_end):
            out.append((customer_id, subscription_id, jsonutil.loads(jsonutil.dumps(record)), start, window_end))
        start = window_end
    return out[:count], subscription_id


def _build(records: list[tuple[str, str, Any, Any, Any]]) -> list[dict[str, Any]]:
    """The rows ``fetch_window`` hands the writer: a repeated identity numbered as it does."""
    seen: dict[str, int] = {}
    rows = []
    for record in records:
        row = utilization_row(*record)
        repeat = seen.get(row["RowKey"], 0)
        seen[row["RowKey"]] = repeat + 1
        if repeat:
            row["RowKey"] += f"~{repeat}"
        rows.append(row)
    return rows


def _cpu(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    result = work()
    return time.process_time() - started, result


def _sdk_request(table: TableClient, rows: list[dict[str, Any]]) -> HttpRequest:
    """The request ``TableClient.submit_transaction`` builds (its ``_batch_send``), body not yet written."""
    batch = TableBatchOperations(
        config=table._client._config,
        endpoint=f"{table.scheme}://{table._primary_hostname}",
        table_name=table.table_name,
        is_cosmos_endpoint=False,
    )
    for row in rows:
        batch.add_operation(("upsert", row, {"mode": UpdateMode.REPLACE}))
    policies = [StorageHeadersPolicy()]
    changeset = HttpRequest("POST", "")
    changeset.set_multipart_mixed(*batch.requests, policies=policies, boundary=f"changeset_{uuid.uuid4()}")
    request = HttpRequest(
        "POST",
        f"{table.scheme}://{table._primary_hostname}/$batch",
        headers={"x-ms-version": table.api_version, "Content-Type": "application/json"},
    )
    request.set_multipart_mixed(changeset, policies=policies, enforce_https=False, boundary=f"batch_{uuid.uuid4()}")
    return request


def stages(connection_string: str, *, rows: int = 5000) -> dict[str, Any]:
    """µs of CPU per row for each stage, ours and the SDK's, on ``rows`` Utilization rows."""
    records, _ = _records(rows)
    n = len(records)
    cpu, built = _cpu(lambda: _build(records))
    result: dict[str, Any] = {"rows": n, "ours": {"rows": cpu}, "sdk": {"rows": cpu}}
    cpu, prepared = _cpu(lambda: [sized_entity("pcUtilization", row)[0] for row in built])
    result["ours"]["prepare"] = result["sdk"]["prepare"] = cpu
    batches = [prepared[i : i + BATCH] for i in range(0, n, BATCH)]
    service = TableServiceClient.from_connection_string(connection_string)
    name = new_prefix() + "Rows"
    table = service.create_table(name)
    base = f"{table.scheme}://{table._primary_hostname}"
    try:
        # Ours: body, whole transaction, answer parsing.
        ops = [table_batch.operations_of(b, UpdateMode.REPLACE) for b in batches]
        cpu, _ = _cpu(lambda: [table_batch.TransactionBody(base, name, table.api_version, o) for o in ops])
        result["ours"]["body"] = cpu
        cpu, _ = _cpu(lambda: [table_batch.submit(table, o) for o in ops])
        result["ours"]["transaction"] = cpu
        answer = table._client.send_request(_ours_request(table, ops[0]), stream=True)
        content_type, body = answer.headers["Content-Type"], answer.read()
        parse, _ = _cpu(lambda: [table_batch.parse_answer(content_type, body) for _ in batches])
        result["ours"]["parse"] = parse
        result["ours"]["send"] = max(0.0, cpu - result["ours"]["body"] - parse)
        # The SDK: body (its multipart writer, per-part policies), whole transaction, answer parsing.
        pipeline = table._client._client._pipeline

        # per-entity request objects, the per-part policies (a thread pool) and the email generator
        def sdk_bodies() -> None:
            for b in batches:
                pipeline._prepare_multipart(_sdk_request(table, b))

        body_cpu, _ = _cpu(sdk_bodies)
        result["sdk"]["body"] = body_cpu
        upserts = [[("upsert", r, {"mode": UpdateMode.REPLACE}) for r in b] for b in batches]
        cpu, _ = _cpu(lambda: [table.submit_transaction(u) for u in upserts])
        result["sdk"]["transaction"] = cpu
        sdk_answer = table._client.send_request(_sdk_request(table, batches[0]), stream=True)
        sdk_answer.read()
        parse, _ = _cpu(lambda: [list(sdk_answer.parts()) for _ in batches])  # type: ignore[attr-defined]
        result["sdk"]["parse"] = parse
        result["sdk"]["send"] = max(0.0, cpu - body_cpu - parse)
    finally:
        service.delete_table(name)
    for side in ("ours", "sdk"):
        per_row = {stage: round(seconds / n * 1e6, 1) for stage, seconds in result[side].items()}
        # total: what a row costs end to end, the transaction measured whole (its stages are measured apart)
        per_row["total"] = round(per_row["rows"] + per_row["prepare"] + per_row.pop("transaction"), 1)
        result[side] = per_row
    result["vs_sdk"] = {
        stage: round(result["ours"][stage] / result["sdk"][stage], 2) if result["sdk"][stage] else None
        for stage in result["ours"]
    }
    return result


def _ours_request(table: TableClient, operations: list[table_batch.Operation]) -> HttpRequest:
    body = table_batch.TransactionBody(
        f"{table.scheme}://{table._primary_hostname}", table.table_name, table.api_version, operations
    )
    return HttpRequest(
        "POST",
        f"{table.scheme}://{table._primary_hostname}/$batch",
        headers={"x-ms-version": table.api_version, "DataServiceVersion": "3.0", "Content-Type": body.content_type},
        content=body.content,
    )


# -- the sync, simulator out of process ------------------------------------------------------------------------


def _serve(config: WorldConfig, conn: Connection) -> None:
    with Simulator(world=config) as sim:
        conn.send(sim.app_settings())
        conn.recv()  # until the parent is done


@contextmanager
def _simulator_process(config: WorldConfig) -> Iterator[dict[str, str]]:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(config, child), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(10)


class SdkTransactionStore(CountingStore):
    """The app's store with each transaction sent by ``TableClient.submit_transaction`` (the path before)."""

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        if len(batch) == 1:
            return super()._submit(table, batch, mode)
        table.submit_transaction([("upsert", e, {"mode": mode}) for e in batch])
        self._count(self.short_name(table), 1, len(batch))
        return len(batch)


def sync_cpu(connection_string: str, *, subscriptions: int, days: int, records_per_day: int) -> dict[str, Any]:
    """App CPU µs per stored row of one first utilization sync, ours and through submit_transaction; the spend
    projection at the run's end is measured apart (``projection_ms``)."""
    config = legacy_world(subscriptions, days=days, records_per_day=records_per_day)
    me = psutil.Process(os.getpid())
    out: dict[str, Any] = {"subscriptions": subscriptions, "days": days, "records_per_day": records_per_day}
    for label, store_type in (("ours", CountingStore), ("sdk_transactions", SdkTransactionStore)):
        with _simulator_process(config) as sim_settings:
            prefix = new_prefix()
            env = {
                **sim_settings,
                "USAGE_STORAGE": connection_string,
                "TABLE_PREFIX": prefix,
                "UTILIZATION_BACKFILL_DAYS": str(days),
            }
            settings = Settings.from_env(env)
            store = store_type(TableServiceClient.from_connection_string(connection_string), prefix=prefix)
            try:
                store.create_tables()
                before = me.cpu_times()
                started = time.perf_counter()
                with ProjectionCpu() as projection:
                    run = run_once(FUNCTION, settings, store)
                wall = time.perf_counter() - started
                after = me.cpu_times()
            finally:
                store.drop_tables()
        cpu = (after.user - before.user) + (after.system - before.system) - projection.seconds
        rows = run.counters["rows"]
        out[label] = {
            "status": str(run.status),
            "rows": rows,
            "wall_s": round(wall, 2),
            "app_cpu_s": round(cpu, 2),
            "cpu_us_per_row": round(cpu / max(1, rows) * 1e6, 1),
            "projection_ms": round(projection.seconds * 1e3, 1),
        }
    out["vs_sdk"] = round(out["ours"]["cpu_us_per_row"] / out["sdk_transactions"]["cpu_us_per_row"], 2)
    return out
