"""Continuation tokens of the utilization route: opaque to clients, strictly validated on use.

A token is the url-safe base64 (unpadded) of compact JSON holding the original query and the last RowKey
served. It is not signed: it grants nothing the query parameters do not already grant (the same customer,
subscription and time range, readable with the same function key), so a forged but well-formed token can
only ask for a page the caller could ask for anyway. Everything in it is checked before it reaches a query:
exact field set and types, the ids of the path, a time range in the page-1 form, a size in range, and a
last RowKey inside that range. Anything else names no page: a 404 (a token is a resource name, and a
portal reacts by starting again from page 1).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from shared.api.errors import not_found
from shared.api.params import MAX_PAGE_SIZE
from shared.timeutil import UTC_KEY_FORMAT

VERSION = 1
MAX_TOKEN_CHARS = 2048
_FIELDS = {"v", "c", "s", "st", "en", "n", "d", "k"}
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_TIME_KEY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_MAX_ROW_KEY_CHARS = 512


@dataclass(frozen=True, kw_only=True)
class UtilizationQuery:
    """What a utilization page reads: a RowKey range, a size, and whether instanceData is served."""

    customer_id: str
    subscription_id: str
    start_key: str  # usage start, inclusive, as a RowKey prefix
    end_key: str  # usage start, exclusive
    size: int
    show_details: bool
    after: str | None = None  # the last RowKey already served


def encode(query: UtilizationQuery, last_row_key: str) -> str:
    """The token of the page after ``last_row_key``."""
    payload = {
        "v": VERSION,
        "c": query.customer_id,
        "s": query.subscription_id,
        "st": query.start_key,
        "en": query.end_key,
        "n": query.size,
        "d": query.show_details,
        "k": last_row_key,
    }
    return _encode(payload)


def _encode(payload: dict[str, Any]) -> str:
    """A token: the url-safe base64 (unpadded) of the payload's compact JSON."""
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _is_time_key(value: Any) -> bool:
    if not isinstance(value, str) or not _TIME_KEY.fullmatch(value):
        return False
    try:
        datetime.strptime(value, UTC_KEY_FORMAT)  # noqa: DTZ007 (a UTC key, only checked for validity)
    except ValueError:
        return False
    return True


def _payload(token: str, fields: set[str], invalid: Exception) -> dict[str, Any]:
    """The JSON object inside a token of this API's version with exactly ``fields``; ``invalid`` otherwise."""
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        raise invalid
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii"))
    except (binascii.Error, ValueError):
        raise invalid from None
    if not isinstance(payload, dict) or set(payload) != fields or type(payload["v"]) is not int:
        raise invalid
    if payload["v"] != VERSION:
        raise invalid
    return payload


def decode(token: str, *, customer_id: str, subscription_id: str) -> UtilizationQuery:
    """The query a token continues; 404 for anything this API did not write for this subscription."""
    invalid = not_found(
        "The continuation token names no page of this subscription's utilization (it was not written by this "
        "API for this request, or is damaged); start again from page 1."
    )
    payload = _payload(token, _FIELDS, invalid)
    start, end, size, details, last = payload["st"], payload["en"], payload["n"], payload["d"], payload["k"]
    if (
        payload["c"] != customer_id
        or payload["s"] != subscription_id
        or not (_is_time_key(start) and _is_time_key(end) and start < end)
        or type(size) is not int
        or not 1 <= size <= MAX_PAGE_SIZE
        or type(details) is not bool
        or not isinstance(last, str)
        or not 0 < len(last) <= _MAX_ROW_KEY_CHARS
        or not last.isprintable()
        or not start <= last < end
    ):
        raise invalid
    return UtilizationQuery(
        customer_id=customer_id,
        subscription_id=subscription_id,
        start_key=start,
        end_key=end,
        size=size,
        show_details=details,
        after=last,
    )


def encode_listing(resource: str, size: int, last_row_key: str) -> str:
    """The token of the next page of a listing (``customers``): its page size and the last key served."""
    return _encode({"v": VERSION, "r": resource, "n": size, "k": last_row_key})


def decode_listing(token: str, resource: str) -> tuple[int, str]:
    """(size, last key) of a listing token; 404 for a token this API did not write for this listing."""
    invalid = not_found(f"The continuation token names no page of {resource}; start again from page 1.")
    payload = _payload(token, {"v", "r", "n", "k"}, invalid)
    size, last = payload["n"], payload["k"]
    if payload["r"] != resource or type(size) is not int or not 1 <= size <= MAX_PAGE_SIZE:
        raise invalid
    if not isinstance(last, str) or not 0 < len(last) <= _MAX_ROW_KEY_CHARS or not last.isprintable():
        raise invalid
    return size, last


@dataclass(frozen=True)
class LineItemsQuery:
    """A rated-usage line-item page: its day range, size, the stamp of the pointers it was served under, last key."""

    first: str  # YYYY-MM-DD, inclusive
    last: str  # YYYY-MM-DD, inclusive
    size: int
    stamp: str
    after: str | None = None


_LINE_ITEM_FIELDS = {"v", "c", "e", "f", "t", "n", "s", "k"}


def encode_line_items(customer_id: str, entitlement_id: str, query: LineItemsQuery, last_row_key: str) -> str:
    """The token of the line-item page after ``last_row_key``."""
    payload = {"v": VERSION, "c": customer_id, "e": entitlement_id, "f": query.first, "t": query.last}
    return _encode({**payload, "n": query.size, "s": query.stamp, "k": last_row_key})


def decode_line_items(token: str, *, customer_id: str, entitlement_id: str) -> LineItemsQuery:
    """The query a line-item token continues; 404 for anything this API did not write for this Azure subscription."""
    invalid = not_found(
        "The continuation token names no page of this Azure subscription's line items (it was not written by "
        "this API for this request, or is damaged); start again from page 1."
    )
    payload = _payload(token, _LINE_ITEM_FIELDS, invalid)
    first, last, size, stamp, key = payload["f"], payload["t"], payload["n"], payload["s"], payload["k"]
    if payload["c"] != customer_id or payload["e"] != entitlement_id:
        raise invalid
    if not all(isinstance(v, str) for v in (first, last, stamp, key)) or type(size) is not int:
        raise invalid
    try:
        first_day, last_day = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise invalid from None
    valid = 1 <= size <= MAX_PAGE_SIZE and first_day <= last_day and 0 < len(key) <= _MAX_ROW_KEY_CHARS
    if not valid or not key.isprintable() or not first <= key[:10] <= last:
        raise invalid
    return LineItemsQuery(first, last, size, stamp, key)
