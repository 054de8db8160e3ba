"""Partner Center's collection and link shapes, with each record's stored JSON text spliced in verbatim.

Records are never parsed into floats: the stored text (every digit as received) goes into the body as is.
Only ``show_details=false`` parses a record, with Decimals, to drop ``instanceData``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from shared import jsonutil

CONTINUATION_HEADER = "MS-ContinuationToken"


def link(uri: str, headers: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """A Partner Center ``Link``."""
    return {"uri": uri, "method": "GET", "headers": [{"key": k, "value": v} for k, v in headers]}


def collection(raws: list[str], links: dict[str, Any]) -> bytes:
    """``{"totalCount", "items", "links", "attributes"}`` with the items' JSON text inserted unchanged."""
    head = '{"totalCount":%d,"items":[' % len(raws)  # noqa: UP031 (a JSON fragment, not a message)
    tail = '],"links":' + jsonutil.dumps(links) + ',"attributes":{"objectType":"Collection"}}'
    return (head + ",".join(raws) + tail).encode("utf-8")


def without_instance_data(raw: str) -> str:
    """A record without ``instanceData``; numbers keep their digits (parsed as Decimal, written back)."""
    record = jsonutil.loads(raw)
    if isinstance(record, dict) and "instanceData" in record:
        del record["instanceData"]
        return jsonutil.dumps(record)
    return raw


def usage_records_uri(month: str | None) -> str:
    """The self link of usagerecords, as upstream writes it (leading slash, relative to v1)."""
    return "/customers/usagerecords" + (f"?billing_month={month}" if month else "")


def customer_path(customer_id: str) -> str:
    """``customers/{id}``, relative to ``/v1/``."""
    return f"customers/{quote(customer_id)}"


def subscription_path(customer_id: str, subscription_id: str) -> str:
    """``customers/{c}/subscriptions/{s}``, relative to ``/v1/``."""
    return f"{customer_path(customer_id)}/subscriptions/{quote(subscription_id)}"


def utilization_path(customer_id: str, subscription_id: str) -> str:
    """The utilization path relative to ``/v1/``."""
    return subscription_path(customer_id, subscription_id) + "/utilizations/azure"


def utilization_self_uri(customer_id: str, subscription_id: str, query: dict[str, str]) -> str:
    """The self link of a first utilization page: the query as given."""
    return "/" + utilization_path(customer_id, subscription_id) + ("?" + urlencode(query) if query else "")


def utilization_next(customer_id: str, subscription_id: str, token: str) -> dict[str, Any]:
    """``links.next`` exactly as upstream: relative uri with ``seek_operation=Next``, token in a header."""
    uri = utilization_path(customer_id, subscription_id) + "?seek_operation=Next"
    return link(uri, [(CONTINUATION_HEADER, token)])
