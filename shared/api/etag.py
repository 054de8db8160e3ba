"""Validators: strong ETags from the body with If-None-Match (weak comparison, as RFC 9110 asks), and
Last-Modified with If-Modified-Since (used only when If-None-Match is absent, as RFC 9110 says)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from werkzeug.http import parse_date, parse_etags


def etag_of(body: bytes) -> str:
    """A strong validator: a hash of exactly these bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """True when the header names this ETag (weak or strong form) or is ``*``."""
    if not if_none_match:
        return False
    return parse_etags(if_none_match).contains_weak(etag.strip('"'))


def not_modified_since(if_modified_since: str | None, last_modified: datetime | None) -> bool:
    """True when the data was last written no later than the HTTP date given (compared in whole seconds)."""
    if not if_modified_since or last_modified is None:
        return False
    since = parse_date(if_modified_since)
    return since is not None and last_modified.replace(microsecond=0) <= since
