"""Exports of any size: a rated-usage ingest cut at its deadline anywhere converges, resumes where it stopped, and
fans out over a real queue (Azurite's tables, blobs and queues; time is injected, never raced)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from devhost.funcapp import drain_queues
from shared import jsonutil, tables
from shared.deadline import NO_DEADLINE
from shared.graph.blobs import read_blob
from shared.rated import exports, stage
from shared.rated.chunks import count_of
from shared.rated.lines import parse_line
from shared.rated.worker import Worker
from shared.sync.context import DEADLINE_MARGIN_SECONDS
from shared.table_store import TableStore
from tests.api_data import get, settings_for
from tests.rated_support import NOW, rated_rows, settings_of, stored_totals, sync
from tests.stores import drop_tables
from tests.sync_support import run_job

RERATE = {"rerate": {"2026-11-03": "1.5", "2026-11-10": "0.5"}}


@pytest.fixture
def other_store(azurite) -> Iterator[TableStore]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table_store = TableStore(service, prefix="o" + __import__("uuid").uuid4().hex[:12])
    yield table_store
    drop_tables(table_store)


@pytest.fixture
def queue(azurite_queue) -> Iterator[str]:
    """The rated-ingest queue (and its poison queue), empty, for this test."""
    for name in (tables.RATED_INGEST_QUEUE, tables.RATED_INGEST_POISON_QUEUE):
        client = QueueClient.from_connection_string(azurite_queue.connection_string, name)
        try:
            client.create_queue()
        except ResourceExistsError:
            client.clear_messages()
    yield azurite_queue.connection_string


def pointers_are_whole(store: TableStore) -> None:
    """Every version any pointer names has all its lines stored (readers never see a part)."""
    for row in store.all_rows(tables.RATED_SLICES):
        pk = tables.rated_lines_partition(row["customerId"], row["entitlementId"])
        rows = list(store.partition(tables.RATED_LINES, pk))
        for day, view in jsonutil.loads(row["days"]).items():
            prefix = f"{day}|{row['currencyCode']}|{view['version']}|"
            assert sum(count_of(r) for r in rows if r["RowKey"].startswith(prefix)) == view["lines"], (pk, day)


def pointer_days(store: TableStore) -> dict[tuple[str, str], str]:
    return {(r["PartitionKey"], r["RowKey"]): r["days"] for r in store.all_rows(tables.RATED_SLICES)}


def in_progress(store: TableStore) -> list[tables.ExportProgress]:
    return [
        progress
        for row in store.partition(tables.SYNC_STATE, tables.RATED_INGEST_STATE)
        if (progress := tables.ExportProgress.of_row(row)).export_id
    ]


class Parsed:
    """Counts the lines staging parses (so a resumed blob is shown to skip, not parse, what was staged)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = parse_line

        def counting(text: str) -> Any:
            self.count += 1
            return real(text)

        monkeypatch.setattr("shared.rated.stage.parse_line", counting)


# -- cut at the deadline anywhere ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["download", "stage", "commit"])
def test_an_ingest_cut_at_its_deadline_converges_to_the_rows_of_one_uninterrupted_run(
    billing_sim, azurite, store, other_store, monkeypatch, where
):
    """Runs cut mid-download (the blob reader's check), mid-stage (staging's) or mid-commit (between slices)
    end with exactly the rows of one uninterrupted run; between runs every pointer names one snapshot, whole; and
    no line is parsed twice (a resumed blob skips what its last segment staged)."""
    billing_sim.graph.configure({"linesPerBlob": 60})
    sync(billing_sim, azurite, store)
    sync(billing_sim, azurite, other_store)
    before = pointer_days(store)
    billing_sim.graph.configure(RERATE)
    parsed = Parsed(monkeypatch)
    if where == "download":
        monkeypatch.setattr("shared.graph.blobs.CHUNK_BYTES", 2048)  # the reader asks the deadline often
        monkeypatch.setattr(stage, "DEADLINE_EVERY_LINES", 10**9)
    elif where == "stage":
        monkeypatch.setattr(stage, "DEADLINE_EVERY_LINES", 7)
    settings = settings_of(billing_sim, azurite, store.prefix)

    def clock() -> float:  # time is work done: lines parsed while staging, data rows written while committing
        if where == "commit":
            return float(store.stats.by_table[tables.RATED_LINES] + store.stats.by_table[tables.RATED_SLICES])
        return float(parsed.count)

    runs = []
    for _ in range(40):
        limit = 3 if where == "commit" else 25  # data rows, or lines
        run = run_job("fetch_rated_usage", settings, store, NOW, clock=clock, timeout=DEADLINE_MARGIN_SECONDS + limit)
        runs.append(run)
        assert not run.errors, run.errors
        pointers_are_whole(store)
        after = pointer_days(store)
        assert all(after[key] in (before.get(key), days) for key, days in after.items())
        if not in_progress(store) and run.counters["done"] == 4:
            break
    assert len(runs) > 2 and any("deadline" in " ".join(run.notes) for run in runs), [r.notes for r in runs[:4]]
    total = parsed.count
    sync(billing_sim, azurite, other_store)  # one uninterrupted run of the same export
    assert rated_rows(store) == rated_rows(other_store)
    assert total == parsed.count - total  # every line parsed once across all the cut runs, as in the one run
    assert not store.table_names(tables.RATED_STAGING_PREFIX)  # staging is dropped once committed


def test_a_new_manifest_during_an_ingest_restarts_it_cleanly(billing_sim, azurite, store, other_store, monkeypatch):
    billing_sim.graph.configure({"linesPerBlob": 60})
    monkeypatch.setattr(stage, "DEADLINE_EVERY_LINES", 7)
    parsed = Parsed(monkeypatch)
    settings = settings_of(billing_sim, azurite, store.prefix, RATED_USAGE_CURRENCIES="GBP")
    first = run_job(
        "fetch_rated_usage",
        settings,
        store,
        NOW,
        clock=lambda: float(parsed.count),
        timeout=DEADLINE_MARGIN_SECONDS + 30,
    )
    assert first.counters["pending"] and not first.errors
    (old,) = in_progress(store)
    assert store.table_names(tables.staging_table(old.export_id or ""))
    # The export expires; the next one holds re-rated data: a new eTag, new blobs
    for row in store.partition(tables.SYNC_STATE, tables.RATED_USAGE_STATE):
        store.upsert_one(tables.SYNC_STATE, {**dict(row), "operationUrl": ""})
    billing_sim.graph.configure(RERATE)
    for _ in range(40):
        run = run_job(
            "fetch_rated_usage",
            settings,
            store,
            NOW,
            clock=lambda: float(parsed.count),
            timeout=DEADLINE_MARGIN_SECONDS + 30,
        )
        assert not run.errors, run.errors
        if not in_progress(store) and run.counters["done"] == 2:
            break
    assert not store.table_names(tables.RATED_STAGING_PREFIX)  # the stale export's staging went with it
    run_job(
        "fetch_rated_usage",
        settings_of(billing_sim, azurite, other_store.prefix, RATED_USAGE_CURRENCIES="GBP"),
        other_store,
        NOW,
    )
    assert rated_rows(store) == rated_rows(other_store)


# -- fan-out over the queue -------------------------------------------------------------------------------------


def drain(
    settings_env: dict[str, str], store: TableStore, *, now: datetime = NOW, handle: Callable[..., Any] | None = None
):
    """Run stage_rated_blob on the real queue until it is empty, at ``now`` (the tests' clock)."""
    from shared.settings import Settings

    settings = Settings.from_env(settings_env)

    def run(spec: Any, message: Any) -> None:
        if handle is not None:
            handle(message)
        Worker(settings, store, now=now, deadline=NO_DEADLINE).handle(
            message.get_body().decode(), dequeue_count=message.dequeue_count
        )

    return drain_queues({"USAGE_QUEUE": settings_env["USAGE_QUEUE"]}, handle=run)


def fanout_env(sim, azurite, store: TableStore, queue: str, **overrides: str) -> dict[str, str]:
    from tests.sync_support import sim_env

    defaults = {"RATED_USAGE_CURRENCIES": "GBP,SEK", "USAGE_QUEUE": queue, "RATED_USAGE_FANOUT_BLOBS": "2"}
    return sim_env(sim, azurite, store.prefix, **{**defaults, **overrides})


def test_a_fanout_over_the_queue_converges_when_two_workers_stage_one_blob_and_one_dies(
    billing_sim, azurite, store, other_store, queue, monkeypatch
):
    from shared.settings import Settings

    billing_sim.graph.configure({"linesPerBlob": 50})
    sync(billing_sim, azurite, other_store)  # the rows of one run without a queue
    env = fanout_env(billing_sim, azurite, store, queue)
    timer = run_job("fetch_rated_usage", Settings.from_env(env), store, NOW)
    assert timer.status == "succeeded" and timer.counters["pending"] == 4, timer.notes
    assert all(progress.fanout for progress in in_progress(store))
    assert not list(store.all_rows(tables.RATED_SLICES))  # nothing is served before a commit
    messages = Counter[str]()
    died = {"done": False}
    real_read = read_blob

    def dies_halfway(client, manifest, name, into):  # the first worker on a blob is recycled after 20 lines
        if died["done"]:
            return real_read(client, manifest, name, into)
        died["done"] = True
        seen = {"n": 0}

        def sink(line):
            seen["n"] += 1
            if seen["n"] > 20:
                raise ConnectionAbortedError("the instance was recycled")
            into(line)

        return real_read(client, manifest, name, sink)

    monkeypatch.setattr("shared.rated.exports.read_blob", dies_halfway)

    def twice(message):  # a second worker stages the same blob too (a redelivered message)
        messages[message.get_body().decode()] += 1
        text = message.get_body().decode()
        if '"kind":"stage"' in text and messages[text] == 1:
            Worker(Settings.from_env(env), store, now=NOW, deadline=NO_DEADLINE).handle(text)
        pointers_are_whole(store)

    drained = drain(env, store, handle=twice)
    assert drained.failed == 1 and drained.poisoned == 0  # the dead worker's message was delivered again
    assert not in_progress(store) and not store.table_names(tables.RATED_STAGING_PREFIX)
    assert stored_totals(store) == stored_totals(other_store)
    assert {k: v["days"] for k, v in _slices(store).items()} == {k: v["days"] for k, v in _slices(other_store).items()}
    assert {r["RowKey"]: count_of(r) for r in store.all_rows(tables.RATED_LINES)} == {
        r["RowKey"]: count_of(r) for r in other_store.all_rows(tables.RATED_LINES)
    }


def _slices(store: TableStore) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["PartitionKey"], r["RowKey"]): r for r in store.all_rows(tables.RATED_SLICES)}


def test_a_poisoned_blob_goes_to_the_poison_queue_and_its_reason_reaches_the_run_record_and_health(
    billing_sim, azurite, store, queue, monkeypatch
):
    from shared.settings import Settings

    billing_sim.graph.configure({"linesPerBlob": 50})
    env = fanout_env(billing_sim, azurite, store, queue, RATED_USAGE_CURRENCIES="GBP")
    run_job("fetch_rated_usage", Settings.from_env(env), store, NOW)
    (progress,) = [p for p in in_progress(store) if p.billing_period == "current"] or in_progress(store)[:1]
    broken = exports.blobs_of(store, progress)[0].name
    real_read = read_blob

    def refuses(client, manifest, name, into):
        if name == broken:
            raise ValueError("this blob is not what the manifest said")
        return real_read(client, manifest, name, into)

    monkeypatch.setattr("shared.rated.exports.read_blob", refuses)
    drained = drain(env, store)
    assert drained.poisoned == 1 and drained.failed == 5  # maxDequeueCount tries, then the poison queue
    poison = QueueClient.from_connection_string(queue, tables.RATED_INGEST_POISON_QUEUE)
    assert len(list(poison.peek_messages(max_messages=5))) == 1
    (blob,) = [b for b in exports.blobs_of(store, progress) if b.poisoned]
    assert blob.attempts == 5 and "not what the manifest said" in (blob.last_error or "")
    report = get(store, "/api/health", now=NOW).json()["functions"]["fetch_rated_usage"]
    assert any(
        "poisoned after 5 tries" in reason and "not what the manifest said" in reason for reason in report["reasons"]
    )
    (view,) = [v for v in report["exports"] if v["billingPeriod"] == progress.billing_period]
    assert view["blobsStaged"] == view["blobsTotal"] - 1 and view["poisoned"][0]["blob"] == broken
    monkeypatch.setattr("shared.rated.exports.read_blob", real_read)
    again = run_job("fetch_rated_usage", Settings.from_env(env), store, NOW)  # names it, and queues it again
    assert again.status == "failed" and any("poisoned after 5 tries" in e.message for e in again.errors)
    drain(env, store)
    assert not in_progress(store)


def test_an_export_that_makes_no_progress_over_the_set_runs_fails_its_runs_and_health(
    billing_sim, azurite, store, queue
):
    from shared.settings import Settings

    billing_sim.graph.configure({"linesPerBlob": 50})
    env = fanout_env(billing_sim, azurite, store, queue, RATED_USAGE_CURRENCIES="GBP", RATED_USAGE_STALLED_RUNS="2")
    settings = Settings.from_env(env)
    first = run_job("fetch_rated_usage", settings, store, NOW)  # queued; no worker ever runs
    assert first.status == "succeeded"
    report = get(store, "/api/health", now=NOW).json()["functions"]["fetch_rated_usage"]
    assert {(v["blobsStaged"], v["runs"]) for v in report["exports"]} == {(0, 1)}
    assert [v["blobsTotal"] > 1 for v in report["exports"]] == [True] * len(report["exports"])
    runs = [run_job("fetch_rated_usage", settings, store, NOW + timedelta(hours=h)) for h in (1, 2)]
    assert runs[0].status == "succeeded" and runs[1].status == "failed"
    assert any("no progress over 2 runs" in e.message for e in runs[1].errors)
    stalled = settings_for(store, rated_usage_stalled_runs=2)
    report = get(store, "/api/health", now=NOW + timedelta(hours=2), settings=stalled).json()
    report = report["functions"]["fetch_rated_usage"]
    assert not report["healthy"] and any("made no progress over 2 runs" in r for r in report["reasons"])
    drain(env, store, now=NOW + timedelta(hours=2))
    assert not in_progress(store)


def test_a_large_export_that_only_the_timer_stages_converges_over_runs_with_its_progress_in_health(
    billing_sim, azurite, store, monkeypatch
):
    billing_sim.graph.configure({"linesPerBlob": 40})
    monkeypatch.setattr(stage, "DEADLINE_EVERY_LINES", 5)
    parsed = Parsed(monkeypatch)
    settings = settings_of(billing_sim, azurite, store.prefix, RATED_USAGE_CURRENCIES="GBP")
    first = run_job(
        "fetch_rated_usage",
        settings,
        store,
        NOW,
        clock=lambda: float(parsed.count),
        timeout=DEADLINE_MARGIN_SECONDS + 50,
    )
    assert first.status == "succeeded" and first.counters["pending"] >= 1, first.notes
    report = get(store, "/api/health", now=NOW).json()["functions"]["fetch_rated_usage"]
    (view,) = report["exports"][:1]
    assert 0 < view["linesStaged"] and view["blobsStaged"] < view["blobsTotal"] and view["runs"] == 1
    assert report["healthy"], report["reasons"]
