"""Strong ETags from the body, and If-None-Match matching (weak comparison, as RFC 9110 asks for it)."""

from __future__ import annotations

import hashlib

from werkzeug.http import parse_etags


def etag_of(body: bytes) -> str:
    """A strong validator: a hash of exactly these bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """True when the header names this ETag (weak or strong form) or is ``*``."""
    if not if_none_match:
        return False
    return parse_etags(if_none_match).contains_weak(etag.strip('"'))
