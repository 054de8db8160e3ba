"""Thread-safe named counts: what a client did, reported into counters that the run owning it reads."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """Counts by name; a name never added counts 0."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        """Add to named counts."""
        with self._lock:
            self._counts.update(counts)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]
