"""Chunks of line items: many lines in one entity, the unit both the staging and ``RatedLines`` store.

An entity per line costs the ``$batch`` write path (~90 µs of app CPU) per line, more than everything else a line
costs together. A chunk holds up to ``CHUNK_LINES`` lines of one day slice, in digest order, their texts joined by
``\\n`` (a line is one JSON Lines line: it never holds a raw newline) and zlib-compressed (level 1: JSON lines shrink
about ten-fold) into one binary property of at most ``CHUNK_BYTES``. A line too large to fit compressed is a chunk
of its own, kept as text (``line``, the form a line row had before chunks).

``pack`` decides the chunks of a list of lines from the lines alone (greedy in digest order), so equal lines give
equal chunks, equal row keys and equal rows whoever stores them and however the export ordered them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CHUNK_LINES = 500  # lines in one chunk at most (a page of line items reads at most a few chunks)
CHUNK_RAW_BYTES = 384 * 1024  # UTF-8 bytes of text in one chunk at most, before compression
CHUNK_BYTES = 60 * 1024  # compressed bytes in one chunk at most (a binary property holds 64 KiB)
LEVEL = 1
SEPARATOR = b"\n"


@dataclass(frozen=True, slots=True)
class Chunk:
    """Lines of one day slice, in digest order: ``data`` compressed, or one line as ``text``."""

    count: int
    data: bytes | None = None
    text: str | None = None

    def properties(self) -> dict[str, Any]:
        """Its properties in a row (besides keys): ``n`` and ``z`` (compressed), or ``line`` (one line as text)."""
        if self.text is not None:
            return {"n": 1, "line": self.text}
        return {"n": self.count, "z": self.data}


def pack(texts: Sequence[bytes]) -> list[Chunk]:
    """The chunks of ``texts`` (UTF-8, already in digest order): greedy, at most CHUNK_LINES lines and
    CHUNK_RAW_BYTES of text each, split in two where the compressed form would not fit."""
    chunks: list[Chunk] = []
    start, size = 0, 0
    for index, text in enumerate(texts):
        if index > start and (index - start >= CHUNK_LINES or size + len(text) + 1 > CHUNK_RAW_BYTES):
            chunks.extend(_compressed(texts[start:index]))
            start, size = index, 0
        size += len(text) + 1
    if start < len(texts):
        chunks.extend(_compressed(texts[start:]))
    return chunks


def _compressed(texts: Sequence[bytes]) -> list[Chunk]:
    data = zlib.compress(SEPARATOR.join(texts), LEVEL)
    if len(data) <= CHUNK_BYTES:
        return [Chunk(len(texts), data)]
    if len(texts) == 1:
        return [Chunk(1, text=texts[0].decode("utf-8"))]
    half = len(texts) // 2
    return _compressed(texts[:half]) + _compressed(texts[half:])


def texts_of(entity: Mapping[str, Any]) -> list[str]:
    """The line texts a stored chunk holds (a row of one ``line`` too), in order."""
    line = entity.get("line")
    if line is not None:
        return [str(line)]
    data = entity.get("z")
    if not data:
        return []
    return zlib.decompress(bytes(data)).decode("utf-8").split("\n")


def raw_texts(entity: Mapping[str, Any]) -> list[bytes]:
    """``texts_of`` as UTF-8 bytes (what the commit merges)."""
    line = entity.get("line")
    if line is not None:
        return [str(line).encode("utf-8")]
    data = entity.get("z")
    return zlib.decompress(bytes(data)).split(SEPARATOR) if data else []


def count_of(entity: Mapping[str, Any]) -> int:
    """How many lines a stored chunk holds."""
    if entity.get("line") is not None:
        return 1
    value = entity.get("n")
    return int(value) if isinstance(value, int) else len(texts_of(entity))


def iter_texts(entities: Iterator[Mapping[str, Any]]) -> Iterator[str]:
    """Every line text of chunks read in order."""
    for entity in entities:
        yield from texts_of(entity)
