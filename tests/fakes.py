"""Small test doubles for time, randomness and tokens: the only things tests fake."""

from __future__ import annotations

BOM = b"\xef\xbb\xbf"


class FakeClock:
    """A monotonic clock that moves only when something sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class StaticTokens:
    """Stands in for TokenProvider in client tests that are not about tokens."""

    def __init__(self) -> None:
        self.issued = 0
        self.invalidated = 0

    def token(self, *, app_only: bool = False) -> str:
        self.issued += 1
        return ("app-" if app_only else "user-") + f"secret-token-{self.invalidated}"

    def invalidate(self, *, app_only: bool = False) -> None:
        self.invalidated += 1


def pc_json(text: str) -> bytes:
    """A Partner Center body: UTF-8 with a byte-order mark."""
    return BOM + text.encode("utf-8")
