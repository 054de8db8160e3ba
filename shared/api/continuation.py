"""Continuation tokens of the paged routes: opaque to clients, strictly validated on use.

A token is the url-safe base64 (unpadded) of compact JSON holding the original query and the last RowKey
served. It is not signed: it grants nothing the query parameters do not already grant (the same ids and range,
and every page is guarded and filtered again for the caller), so a forged but well-formed token can only ask
for a page the caller could ask for anyway. Everything in it is checked before it reaches a query: its version,
exact field set and each field's type (``_decode``), the ids of the path, a range in the page-1 form, a size in
range, and a last RowKey inside that range. Anything else names no page: a 404 (a token is a resource name,
and a portal reacts by starting again from page 1).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from shared.api.errors import ApiError, not_found
from shared.api.params import MAX_PAGE_SIZE
from shared.timeutil import UTC_KEY_FORMAT

VERSION = 1
MAX_TOKEN_CHARS = 2048
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


@dataclass(frozen=True)
class LineItemsQuery:
    """A rated-usage line-item page: its day range, size, the stamp of the pointers it was served under, last key."""

    first: str  # YYYY-MM-DD, inclusive
    last: str  # YYYY-MM-DD, inclusive
    size: int
    stamp: str
    after: str | None = None


# -- the codec ----------------------------------------------------------------------------------------------------


def _encode(payload: Mapping[str, Any]) -> str:
    """A token: the url-safe base64 (unpadded) of the payload's compact JSON, with this API's version."""
    raw = json.dumps({"v": VERSION, **payload}, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _invalid(what: str) -> ApiError:
    return not_found(
        f"The continuation token names no page of {what} (it was not written by this API for this request, or is "
        "damaged); start again from page 1."
    )


def _decode(token: str, fields: Mapping[str, type], what: str, ids: Mapping[str, str]) -> dict[str, Any]:
    """The payload of a token of this API's version with exactly ``fields``, each of its type (``bool`` is not an
    ``int`` here), the ids of the request (``ids``: field -> value), a size in range and a printable last key of
    bounded length; a 404 naming ``what`` otherwise."""
    invalid = _invalid(what)
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        raise invalid
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii"))
    except (binascii.Error, ValueError):
        raise invalid from None
    expected = {"v": int, **fields}
    if not isinstance(payload, dict) or set(payload) != set(expected) or payload["v"] != VERSION:
        raise invalid
    if any(type(payload[name]) is not kind for name, kind in expected.items()):
        raise invalid
    size, last = payload.get("n", 1), payload.get("k", "k")
    if not 1 <= size <= MAX_PAGE_SIZE or not 0 < len(last) <= _MAX_ROW_KEY_CHARS or not last.isprintable():
        raise invalid
    if any(payload[name] != value for name, value in ids.items()):
        raise invalid
    return payload


def _is_time_key(value: str) -> bool:
    if not _TIME_KEY.fullmatch(value):
        return False
    try:
        datetime.strptime(value, UTC_KEY_FORMAT)  # noqa: DTZ007 (a UTC key, only checked for validity)
    except ValueError:
        return False
    return True


def _is_day(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


# -- utilization ------------------------------------------------------------------------------------------------


def encode(query: UtilizationQuery, last_row_key: str) -> str:
    """The token of the utilization page after ``last_row_key``."""
    values = (query.customer_id, query.subscription_id, query.start_key, query.end_key, query.size, query.show_details)
    return _encode(dict(zip(_UTILIZATION, (*values, last_row_key), strict=True)))


_UTILIZATION = {"c": str, "s": str, "st": str, "en": str, "n": int, "d": bool, "k": str}


def decode(token: str, *, customer_id: str, subscription_id: str) -> UtilizationQuery:
    """The query a token continues; 404 for anything this API did not write for this subscription."""
    what = "this subscription's utilization"
    payload = _decode(token, _UTILIZATION, what, {"c": customer_id, "s": subscription_id})
    start, end, last = payload["st"], payload["en"], payload["k"]
    if not (_is_time_key(start) and _is_time_key(end) and start <= last < end):
        raise _invalid(what)
    return UtilizationQuery(
        customer_id=customer_id,
        subscription_id=subscription_id,
        start_key=start,
        end_key=end,
        size=payload["n"],
        show_details=payload["d"],
        after=last,
    )


# -- listings -----------------------------------------------------------------------------------------------------


def encode_listing(resource: str, size: int, last_row_key: str) -> str:
    """The token of the next page of a listing (``customers``): its page size and the last key served."""
    return _encode({"r": resource, "n": size, "k": last_row_key})


def decode_listing(token: str, resource: str) -> tuple[int, str]:
    """(size, last key) of a listing token; 404 for a token this API did not write for this listing."""
    payload = _decode(token, {"r": str, "n": int, "k": str}, resource, {"r": resource})
    return payload["n"], payload["k"]


def encode_period_listing(resource: str, period: str, size: int, last_row_key: str) -> str:
    """The token of the next page of a listing of one month (``spend``): the month, page size and last key."""
    return _encode({"r": resource, "p": period, "n": size, "k": last_row_key})


def decode_period_listing(token: str, resource: str) -> tuple[str, int, str]:
    """(month, size, last key) of a month listing's token; 404 for a token this API did not write for it."""
    payload = _decode(token, {"r": str, "p": str, "n": int, "k": str}, resource, {"r": resource})
    if not _is_month(payload["p"]):
        raise _invalid(resource)
    return payload["p"], payload["n"], payload["k"]


def _is_month(value: str) -> bool:
    return len(value) == 7 and _is_day(value + "-01")


# -- rated-usage line items ---------------------------------------------------------------------------------------


def encode_line_items(customer_id: str, entitlement_id: str, query: LineItemsQuery, last_row_key: str) -> str:
    """The token of the line-item page after ``last_row_key``."""
    values = (customer_id, entitlement_id, query.first, query.last, query.size, query.stamp, last_row_key)
    return _encode(dict(zip(_LINE_ITEMS, values, strict=True)))


_LINE_ITEMS = {"c": str, "e": str, "f": str, "t": str, "n": int, "s": str, "k": str}


def decode_line_items(token: str, *, customer_id: str, entitlement_id: str) -> LineItemsQuery:
    """The query a line-item token continues; 404 for anything this API did not write for this Azure subscription."""
    what = "this Azure subscription's line items"
    payload = _decode(token, _LINE_ITEMS, what, {"c": customer_id, "e": entitlement_id})
    first, last, key = payload["f"], payload["t"], payload["k"]
    if not (_is_day(first) and _is_day(last) and first <= key[:10] <= last):
        raise _invalid(what)
    return LineItemsQuery(first, last, payload["n"], payload["s"], key)
