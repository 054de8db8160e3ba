"""Small test doubles for time, randomness and tokens: the only things tests fake."""

from __future__ import annotations

from shared.partner_center.auth import TokenProvider

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


class StaticTokens(TokenProvider):
    """Stands in for TokenProvider in client tests that are not about tokens: fixed tokens, no token endpoint."""

    def __init__(self) -> None:
        # Never used: both public methods are overridden, so no token request is ever sent.
        super().__init__(authority="http://tokens.invalid", tenant_id="t", client_id="c", client_secret="s")
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
