"""Chunks of line items: decided by the lines alone, read back exactly as received, and line-item pages over them."""

from __future__ import annotations

import json

from shared.api.queries import rated_line_chunks
from shared.rated.chunks import CHUNK_BYTES, CHUNK_LINES, count_of, pack, texts_of
from shared.rated.ingest import Ingest, Snapshot
from shared.rated.queue import COMMIT, STAGE, IngestMessage
from shared.sync.runs import SyncRun
from shared.tables import RATED_LINES, rated_lines_partition
from tests.api_data import CUSTOMER, ENTITLEMENT, rated_line
from tests.rated_support import NOW


def test_equal_lines_make_equal_chunks_and_read_back_exactly():
    texts = [json.dumps({"n": i, "text": "é" * (i % 7)}, ensure_ascii=False).encode() for i in range(1200)]
    chunks = pack(texts)
    assert [c.count for c in chunks] == [CHUNK_LINES, CHUNK_LINES, 200] and pack(texts) == chunks
    read = [t for c in chunks for t in texts_of({"n": c.count, "z": c.data})]
    assert read == [t.decode() for t in texts]


def test_a_line_too_large_to_compress_into_a_chunk_is_a_row_of_its_own_as_text(monkeypatch):
    import os

    monkeypatch.setattr("shared.rated.chunks.CHUNK_BYTES", 1000)  # 60 KiB holds any line that can be stored
    noise = os.urandom(2000).hex()  # compresses to about 2,000 bytes: more than the chunk holds
    small = b'{"a":1}'
    chunks = pack([small, noise.encode(), small])
    assert [c.count for c in chunks] == [1, 1, 1] and chunks[1].text == noise
    assert all(c.data is None or len(c.data) <= 1000 for c in chunks) and CHUNK_BYTES == 60 * 1024
    assert texts_of(chunks[1].properties()) == [noise] and count_of(chunks[1].properties()) == 1


def test_a_row_written_before_chunks_reads_as_its_one_line():
    assert texts_of({"line": '{"a":1}'}) == ['{"a":1}'] and count_of({"line": "x"}) == 1


def test_line_chunks_continue_inside_a_chunk_from_a_position(store):
    texts = [rated_line(CUSTOMER, ENTITLEMENT, "2026-11-02", f"1.{i:020d}") for i in range(30)]
    with SyncRun(store, "fetch_rated_usage", unit="exports") as run:
        Ingest(store, run, Snapshot("current", "EUR", "etag-1", NOW.isoformat()), now=NOW).ingest(_blob_lines(texts))
    (row,) = store.partition(RATED_LINES, rated_lines_partition(CUSTOMER, ENTITLEMENT))
    assert row["n"] == 30 and sorted(texts_of(row)) == sorted(texts)
    resumed = list(
        rated_line_chunks(store, CUSTOMER, ENTITLEMENT, "2026-11-01", "2026-11-03", after=f"{row['RowKey']}#7")
    )
    assert [(entity["RowKey"], skip) for entity, skip in resumed] == [(row["RowKey"], 7)]
    after = list(rated_line_chunks(store, CUSTOMER, ENTITLEMENT, "2026-11-01", "2026-11-03", after=row["RowKey"]))
    assert after == []


def _blob_lines(texts):
    from shared.graph.blobs import BlobLine

    return [BlobLine(text, "part-00000.json.gz", n) for n, text in enumerate(texts, start=1)]


def test_queue_messages_name_what_to_do_and_nothing_else():
    stage = IngestMessage(STAGE, "current", "gbp", "abc", 3)
    assert IngestMessage.parse(stage.text()) == IngestMessage(STAGE, "current", "GBP", "abc", 3)
    commit = IngestMessage(COMMIT, "last", "SEK", "abc")
    assert IngestMessage.parse(commit.text()) == commit and "sas" not in commit.text().lower()
