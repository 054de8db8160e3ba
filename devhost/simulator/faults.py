"""Switchable, deterministic faults: which requests fail, and how."""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import unquote

KINDS = ("429", "500", "503", "204", "slow", "drop", "error")


@dataclass
class Fault:
    """One fault rule.

    `path` is a regex searched in the request target (path and query string, as sent and percent-decoded,
    so `start_time=2024-01-01T00:00:00Z` matches `start_time=2024-01-01T00%3A00%3A00Z`); None matches every
    Partner Center API request (`/v1/...`) but not the token endpoint, which needs an explicit regex
    such as `oauth2`. Admin paths (`/_sim/...`) never fault. Every matching request is counted; the
    fault hits every `every`-th one, `times` times in all (None: forever). `hits` counts the hits so far.
    """

    kind: str
    path: str | None = None
    times: int | None = 1
    every: int = 1
    retry_after: int | str = 1
    delay_s: float = 0.0
    status: int | None = None
    body: dict[str, Any] | str | None = None
    method: str | None = None
    seen: int = field(default=0, init=False, compare=False)
    hits: int = field(default=0, init=False, compare=False)

    def __post_init__(self) -> None:
        self.kind = str(self.kind)
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {KINDS}")
        if self.every < 1:
            raise ValueError("every must be >= 1")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")
        if self.path is not None:
            re.compile(self.path)
        if self.kind == "slow" and self.delay_s <= 0:
            raise ValueError("a slow fault needs delay_s > 0")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """A fault from admin-API JSON (its init fields only)."""
        names = {f.name for f in fields(cls) if f.init}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The fault and its counters as JSON."""
        return asdict(self)

    def _matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return target.startswith("/v1/") or target == "/v1"
        pattern = re.compile(self.path)
        return pattern.search(target) is not None or pattern.search(unquote(target)) is not None

    @property
    def exhausted(self) -> bool:
        """True once the fault has hit `times` times."""
        return self.times is not None and self.hits >= self.times


class FaultSet:
    """The faults of a simulator, consulted for every API request (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Append a fault; returns it so its `hits` can be read later."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        """A snapshot of the faults, in order."""
        with self._lock:
            return list(self._faults)

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def pick(self, method: str, target: str) -> Fault | None:
        """Count the request against every matching fault; return the first that hits it."""
        chosen: Fault | None = None
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or not fault._matches(method, target):
                    continue
                fault.seen += 1
                if chosen is None and fault.seen % fault.every == 0:
                    fault.hits += 1
                    chosen = fault
        return chosen
