"""Strong ETags from the body, and If-None-Match matching (weak comparison, as RFC 9110 asks for it)."""

from __future__ import annotations

import hashlib


def etag_of(body: bytes) -> str:
    """A strong validator: a hash of exactly these bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """True when the header names this ETag (weak or strong form) or is ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(",")[:100]:
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False
