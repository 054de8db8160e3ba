"""A disk spool for one export: its lines, grouped by (customer, Azure subscription, day) without holding them.

An export is one snapshot of every customer's period to date, in no particular order, and can be millions of
lines. The ingest needs them grouped by slice and in a stable order (so a slice's digest and its rows' keys do
not depend on the order Graph wrote them). SQLite (standard library) on a temporary file sorts them on disk:
memory stays at its page cache, whatever the export's size. Line text is kept zlib-compressed (level 1).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from shared.rated.lines import RatedLine

_BATCH = 2000
_SCHEMA = """
CREATE TABLE line (
    c TEXT NOT NULL, e TEXT NOT NULL, day TEXT NOT NULL, h BLOB NOT NULL, z BLOB NOT NULL,
    bt TEXT NOT NULL, pt TEXT, pc TEXT, cn TEXT, en TEXT, sid TEXT, t2 TEXT
)
"""


@dataclass(frozen=True, slots=True)
class SpooledLine:
    """A line's figures and names as the grouping pass reads them (its text is read only when it is written)."""

    customer_id: str
    entitlement_id: str
    day: str
    digest: bytes
    billing_total: str
    pricing_total: str | None
    pricing_currency: str | None
    names: tuple[str | None, str | None, str | None, str | None]


class Spool:
    """Append lines, then read them back grouped and ordered; the file is deleted on close."""

    def __init__(self, directory: str | None = None) -> None:
        handle, name = tempfile.mkstemp(prefix="rated-usage-", suffix=".sqlite", dir=directory)
        os.close(handle)
        self.path = Path(name)
        self._db = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", "cache_size=-4096"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(_SCHEMA)
        self._db.execute("BEGIN")
        self._buffer: list[tuple[object, ...]] = []
        self.count = 0
        self._sealed = False

    def add(self, line: RatedLine) -> None:
        """Keep one line."""
        customer, subscription, plan, reseller = line.names
        self._buffer.append(
            (
                line.customer_id,
                line.entitlement_id,
                line.day,
                line.digest,
                zlib.compress(line.text.encode("utf-8"), 1),
                str(line.billing_total),
                None if line.pricing_total is None else str(line.pricing_total),
                line.pricing_currency,
                customer,
                subscription,
                plan,
                reseller,
            )
        )
        self.count += 1
        if len(self._buffer) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany("INSERT INTO line VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", self._buffer)
        self._buffer.clear()

    def seal(self) -> None:
        """No more lines: commit and index them by slice."""
        if self._sealed:
            return
        self._flush()
        self._db.execute("COMMIT")
        self._db.execute("CREATE INDEX slice ON line (c, e, day, h)")
        self._sealed = True

    def grouped(self) -> Iterator[SpooledLine]:
        """Every line without its text, ordered by customer, Azure subscription, day and line digest."""
        self.seal()
        cursor = self._db.execute("SELECT c, e, day, h, bt, pt, pc, cn, en, sid, t2 FROM line ORDER BY c, e, day, h")
        for c, e, day, h, bt, pt, pc, cn, en, sid, t2 in cursor:
            yield SpooledLine(c, e, day, h, bt, pt, pc, (cn, en, sid, t2))

    def texts(self, customer_id: str, entitlement_id: str, day: str) -> Iterator[str]:
        """The texts of one day slice's lines, in the order ``grouped`` gives them."""
        self.seal()
        cursor = self._db.execute(
            "SELECT z FROM line WHERE c = ? AND e = ? AND day = ? ORDER BY h", (customer_id, entitlement_id, day)
        )
        for (z,) in cursor:
            yield zlib.decompress(z).decode("utf-8")

    def close(self) -> None:
        """Drop the spool and its file."""
        try:
            self._db.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
