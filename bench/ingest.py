"""Part ``ingest``: an export of any size (10M lines in full mode) staged blob by blob and committed, as the queue
workers do it; app CPU µs per line by stage, RSS growth, and runs and wall time at 1, 4 and 16 workers.

The export is made here, not by the simulator (10M simulator lines would take longer than the ingest): the lines of
one Azure subscription's month from the simulator are the template, and each Azure subscription of the export gets
them with its own customer and subscription ids; blobs are gzip JSON Lines files served over HTTP by a server in
its own process (so their download and inflating are the app's, their making is not). Parsing, checking, digests,
staging, versions and chunks are the app's real code. The table writes go to a **counting store**: each transaction's
``$batch`` body is written as the real store writes it (that CPU is the app's) and then kept in SQLite on disk
(staging, pointers, totals: the commit reads them back) or only counted (``RatedLines``), never sent; what it costs
the app to send and parse the answer is not in these numbers (the ``rows`` part measures that path: ~40 µs a
transaction's entity, here a chunk of a day slice's lines).

Each blob is staged by one invocation of the worker (``exports.stage``, the deadline the function timeout less
the margin), then the commit (resumed by as many invocations as its deadline needs). Invocations are run one after
another in this process and timed; the wall time at N workers is the makespan of those invocations over N
instances (each message to the next free instance, the commit once every blob is staged), against the ideal 1/N
of the single worker's time.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import multiprocessing
import os
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from bench.common import RssSampler
from devhost.simulator.billing import BillingOptions, lines
from devhost.simulator.graph import _dumps
from devhost.simulator.world import World, WorldConfig, stable_guid
from shared import table_batch
from shared.deadline import Deadline, DeadlineReached
from shared.graph.client import Blob, Manifest
from shared.rated import chunks as chunks_module
from shared.rated import exports, stage
from shared.rated import lines as lines_module
from shared.rated.worker import blob_client
from shared.settings import Settings
from shared.table_store import TableStore
from shared.tables import RATED_LINES

NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
STORE = "counting store"  # SQLite standing in for Table Storage: not the app's CPU
TIMEOUT_SECONDS = 600.0  # host.json's functionTimeout
MARGIN_SECONDS = 30.0


# -- the counting store --------------------------------------------------------------------------------------------


class _Table:
    """What the counting store's SQLite needs of a TableClient for ``table_batch`` (its name) and for reads."""

    def __init__(self, name: str) -> None:
        self.table_name = name


class CountingStore(TableStore):
    """A TableStore whose transactions are written as ``$batch`` bodies (the app's CPU), then kept in SQLite on disk
    (read back by the commit) or, for RatedLines, only counted."""

    def __init__(self, directory: str) -> None:
        self.prefix = ""  # short names are the names: the counting store has no tables of its own
        self._db = sqlite3.connect(os.path.join(directory, "store.sqlite"), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE e (t TEXT, pk TEXT, rk TEXT, v BLOB, PRIMARY KEY (t, pk, rk))")
        self._lock = threading.Lock()
        self.rows: Counter[str] = Counter()
        self.transactions: Counter[str] = Counter()
        self._etag = 0

    def table(self, name: str) -> TableClient:
        return _Table(name)  # type: ignore[return-value]

    def _submit(self, table: TableClient, batch: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> int:
        name = table.table_name
        body = table_batch.TransactionBody("http://bench", name, "2019-02-02", table_batch.operations_of(batch, mode))
        if len(body.content) > table_batch.MAX_BODY_BYTES:
            raise table_batch.TransactionTooLarge("over 4 MiB")
        self.rows[name] += len(batch)
        self.transactions[name] += 1
        if name != RATED_LINES:
            self._put(name, batch)
        return len(batch)

    def _put(self, name: str, entities: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO e VALUES (?,?,?,?)",
                [(name, e["PartitionKey"], e["RowKey"], _pack(e)) for e in entities],
            )

    def get(self, name: str, partition_key: str, row_key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._db.execute(
                "SELECT v FROM e WHERE t=? AND pk=? AND rk=?", (name, partition_key, row_key)
            ).fetchone()
        return None if found is None else _Entity(_unpack(found[0]), metadata={"etag": "*"})

    def replace_if(self, name: str, entity: Mapping[str, Any], etag: str | None) -> str | None:
        self._put(name, [self.check(name, entity)])
        self._etag += 1
        return str(self._etag)

    def query(self, name: str, query_filter: str, parameters: Mapping[str, Any] | None = None, **options: Any) -> Any:
        clauses = query_filter.split(" and ")
        sql, args = ["t=?"], [name]
        post: list[tuple[str, str, Any]] = []
        for clause in clauses:
            field, op, ref = clause.split(" ")
            value = (parameters or {})[ref[1:]]
            column = {"PartitionKey": "pk", "RowKey": "rk"}.get(field)
            sign = {"eq": "=", "ge": ">=", "gt": ">", "lt": "<", "le": "<="}[op]
            if column is None:
                post.append((field, sign, value))
            else:
                sql.append(f"{column}{sign}?")
                args.append(value)
        return self._rows(" AND ".join(sql), args, post, options.get("limit"))

    def _rows(self, where: str, args: list[Any], post: list[tuple[str, str, Any]], limit: int | None) -> Iterator[Any]:
        with self._lock:
            found = self._db.execute(f"SELECT v FROM e WHERE {where} ORDER BY pk, rk", args).fetchall()
        kept = []
        for (value,) in found:
            entity = _unpack(value)
            if all(entity.get(field) == want for field, _, want in post):
                kept.append(entity)
        return iter(kept if limit is None else kept[:limit])

    def partition(self, name: str, partition_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return self._rows("t=? AND pk=?", [name, partition_key], [], kwargs.get("limit"))

    def delete_rows(self, name: str, rows: Iterable[Mapping[str, Any]]) -> int:
        keys = [(name, r["PartitionKey"], r["RowKey"]) for r in rows]
        with self._lock:
            self._db.executemany("DELETE FROM e WHERE t=? AND pk=? AND rk=?", keys)
        return len(keys)

    def drop(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM e WHERE t=?", (name,))

    def table_names(self, starting: str) -> list[str]:
        with self._lock:
            found = self._db.execute("SELECT DISTINCT t FROM e WHERE t >= ? AND t < ?", (starting, starting + "~"))
            return [name for (name,) in found]

    def upsert_one(self, name: str, entity: Mapping[str, Any]) -> None:
        self.upsert(name, [entity])


class _Entity(dict[str, Any]):
    def __init__(self, values: Mapping[str, Any], *, metadata: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.metadata = metadata


def _pack(entity: Mapping[str, Any]) -> bytes:
    import pickle

    return pickle.dumps(dict(entity), protocol=5)


def _unpack(value: bytes) -> dict[str, Any]:
    import pickle

    loaded: dict[str, Any] = pickle.loads(value)
    return loaded


# -- the export ---------------------------------------------------------------------------------------------------


def _template(days: int = 30) -> tuple[list[str], str, str]:
    """One Azure subscription's month of simulator lines (80 a day), with its customer and subscription ids."""
    world = World(WorldConfig(now=NOW, customers=1, forbidden_customers=0, legacy_per_customer=0, days=days))
    texts = [
        _dumps(line).decode("utf-8")
        for line in lines(world, "current", world.customer(0).currency, BillingOptions(meters=8, resources=10))
    ]
    first = json.loads(texts[0])
    return texts, first["CustomerId"], first["EntitlementId"]


def make_export(directory: Path, total_lines: int, lines_per_blob: int) -> tuple[list[str], int, str]:
    """Gzip JSON Lines blobs of about ``total_lines`` lines in ``directory``; (blob names, lines, currency)."""
    texts, customer, entitlement = _template()
    currency = json.loads(texts[0])["BillingCurrency"]
    subscriptions = max(1, round(total_lines / len(texts)))
    names: list[str] = []
    batch: list[bytes] = []
    count = 0

    def flush() -> None:
        name = f"part-{len(names):05d}.c000.json.gz"
        (directory / name).write_bytes(gzip.compress(b"\n".join(batch) + b"\n", compresslevel=1, mtime=0))
        names.append(name)
        batch.clear()

    for k in range(subscriptions):
        new_customer = stable_guid(7, "bench-customer", k // 2)  # customers of two Azure subscriptions each
        new_entitlement = stable_guid(7, "bench-subscription", k)
        for text in texts:
            batch.append(text.replace(customer, new_customer).replace(entitlement, new_entitlement).encode("utf-8"))
            count += 1
            if len(batch) >= lines_per_blob:
                flush()
    if batch:
        flush()
    return names, count, currency


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(directory: str, port: Any) -> None:
    handler = lambda *a, **k: _Quiet(*a, directory=directory, **k)  # noqa: E731
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        port.value = server.server_address[1]
        server.serve_forever()


@contextmanager
def serving(directory: Path) -> Iterator[str]:
    """The blobs over HTTP from a server in its own process; its root URL."""
    context = multiprocessing.get_context("spawn")
    port = context.Value("i", 0)
    process = context.Process(target=_serve, args=(str(directory), port), daemon=True)
    process.start()
    try:
        while not port.value:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port.value}"
    finally:
        process.terminate()
        process.join(5)


# -- stages -------------------------------------------------------------------------------------------------------


class Stages:
    """CPU seconds by stage, from wrappers around the functions each stage is (``time.process_time``)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.phase = "stage"

    @contextmanager
    def installed(self) -> Iterator[None]:
        originals = []

        def wrap(module: Any, name: str, stage_name: str) -> None:
            real = getattr(module, name)

            def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.process_time()
                try:
                    return real(*args, **kwargs)
                finally:
                    key = f"{self.phase}: {stage_name}"
                    self.cpu[key] = self.cpu.get(key, 0.0) + time.process_time() - started

            originals.append((module, name, real))
            setattr(module, name, timed)

        wrap(stage, "parse_line", "parse, check, digest")
        wrap(stage, "pack", "chunks (compress)")
        wrap(table_batch, "TransactionBody", "$batch bodies")
        wrap(CountingStore, "_put", STORE)
        wrap(CountingStore, "_rows", STORE)
        try:
            yield
        finally:
            for module, name, real in originals:
                setattr(module, name, real)


def _read_only(client: Any, manifest: Manifest, names: list[str]) -> float:
    """CPU seconds to download and inflate the blobs, lines handed to nothing (the reader's own cost)."""
    from shared.graph.blobs import read_blob

    started = time.process_time()
    for name in names:
        read_blob(client, manifest, name, lambda line: None)
    return time.process_time() - started


def measure(total_lines: int, *, lines_per_blob: int, workers: tuple[int, ...] = (1, 4, 16)) -> dict[str, Any]:
    """Make an export of about ``total_lines`` lines, stage and commit it, and report."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        directory = Path(folder)
        blobs_dir = directory / "blobs"
        blobs_dir.mkdir()
        made = time.perf_counter()
        names, count, currency = make_export(blobs_dir, total_lines, lines_per_blob)
        made = time.perf_counter() - made
        store = CountingStore(folder)
        with serving(blobs_dir) as root:
            manifest = Manifest(
                id="bench",
                etag=hashlib.sha256(f"{count}".encode()).hexdigest()[:32],
                created="2026-11-30T12:00:00Z",
                root_directory=root,
                sas_token="sv=bench",
                data_format="compressedJSON",
                blobs=tuple(Blob(name) for name in names),
                raw={},
            )
            settings = Settings()
            limit = TIMEOUT_SECONDS - MARGIN_SECONDS
            progress = exports.begin(
                store,
                exports.load_progress(store, "current", currency),
                manifest,
                now=NOW,
                fanout=True,
                settles=None,
            )
            stages = Stages()
            invocations: list[tuple[str, float]] = []  # (kind, wall seconds)
            quarantined = Counter[str]()
            with RssSampler(0.05) as rss:
                cpu0 = time.process_time()
                with stages.installed():
                    for blob in exports.blobs_of(store, progress):
                        while True:
                            started = time.perf_counter()
                            deadline = Deadline.after(limit)
                            how = exports.Staging(
                                blob_client(settings, deadline),
                                lambda s, r, why: quarantined.update([why]),
                                deadline,
                                NOW,
                            )
                            current = next(b for b in exports.blobs_of(store, progress) if b.index == blob.index)
                            try:
                                exports.stage(store, progress, current, how)
                                invocations.append(("stage", time.perf_counter() - started))
                                break
                            except DeadlineReached:
                                invocations.append(("stage", time.perf_counter() - started))
                    staged_cpu = time.process_time() - cpu0
                    stages.phase = "commit"
                    commit_cpu0 = time.process_time()
                    blobs = exports.blobs_of(store, progress)
                    while True:
                        started = time.perf_counter()
                        try:
                            done = exports.commit(store, progress, blobs, now=NOW, deadline=Deadline.after(limit))
                            invocations.append(("commit", time.perf_counter() - started))
                            break
                        except DeadlineReached:
                            invocations.append(("commit", time.perf_counter() - started))
                    exports.finalize(store, progress, blobs, done, now=NOW)
                    commit_cpu = time.process_time() - commit_cpu0
                total_cpu = time.process_time() - cpu0
            reader = blob_client(settings, Deadline(None))
            sample = names[: max(1, len(names) // 10)]
            sample_lines = sum(min(lines_per_blob, count - i * lines_per_blob) for i in range(len(sample)))
            read_cpu = _read_only(reader, manifest, sample) / sample_lines * count
    cpu = stages.cpu
    app_cpu = total_cpu - cpu.get(f"stage: {STORE}", 0.0) - cpu.get(f"commit: {STORE}", 0.0)
    named = ("parse, check, digest", "chunks (compress)", "$batch bodies")
    seconds = {
        "stage: download, inflate, split": read_cpu,
        **{f"stage: {name}": cpu.get(f"stage: {name}", 0.0) for name in named},
    }
    seconds["stage: buffers, totals, blob records"] = (
        staged_cpu - cpu.get(f"stage: {STORE}", 0.0) - sum(seconds.values())
    )
    seconds["commit: $batch bodies"] = cpu.get("commit: $batch bodies", 0.0)
    seconds["commit: read chunks, versions, pointers, totals"] = (
        commit_cpu - cpu.get(f"commit: {STORE}", 0.0) - seconds["commit: $batch bodies"]
    )
    per_line = {name: round(max(0.0, value) / count * 1e6, 1) for name, value in seconds.items()}
    stage_times = [seconds for kind, seconds in invocations if kind == "stage"]
    commit_times = [seconds for kind, seconds in invocations if kind == "commit"]
    single = sum(stage_times) + sum(commit_times)
    fanout = {}
    for n in workers:
        wall = _makespan(stage_times, n) + sum(commit_times)
        fanout[str(n)] = {
            "invocations": len(invocations) + 1,  # and the timer run that queued the blobs
            "runs_of_the_timeout": -(-wall // limit) if n == 1 else None,
            "wall_s": round(wall, 1),
            "ideal_s": round(single / n, 1),
            "vs_ideal": round(wall / (single / n), 2),
        }
    return {
        "lines": count,
        "blobs": len(names),
        "lines_per_blob": lines_per_blob,
        "export_made_s": round(made, 1),
        "app_cpu_us_per_line": round(app_cpu / count * 1e6, 1),
        "stage_cpu_us_per_line": per_line,
        "rss_growth_mb": round(rss.growth_mb, 1),
        "rows": dict(store.rows),
        "transactions": dict(store.transactions),
        "slices": done.slices,
        "line_rows_written": done.line_rows_written,
        "quarantined": sum(quarantined.values()),
        "invocations": {"stage": len(stage_times), "commit": len(commit_times)},
        "deadline_s": limit,
        "workers": fanout,
        "chunk_lines": chunks_module.CHUNK_LINES,
        "parse_line": lines_module.__name__,
    }


def _makespan(durations: list[float], workers: int) -> float:
    """Messages in order, each to the instance that is free first."""
    free = [0.0] * workers
    for seconds in durations:
        at = free.index(min(free))
        free[at] += seconds
    return max(free) if durations else 0.0
