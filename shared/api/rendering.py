"""Partner Center's collection and link shapes, with each record's stored JSON text spliced in verbatim.

Records are never parsed into floats: the stored text (every digit as received) goes into the body as is.
Only ``show_details=false`` parses a record, with Decimals, to drop ``instanceData``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def customer_path(customer_id: str) -> str:
    """``customers/{id}``, relative to ``/v1/``."""
    return f"customers/{quote(customer_id)}"


def subscription_path(customer_id: str, subscription_id: str) -> str:
    """``customers/{c}/subscriptions/{s}``, relative to ``/v1/``."""
    return f"{customer_path(customer_id)}/subscriptions/{quote(subscription_id)}"


def query_uri(path: str, query: Mapping[str, Any] | None = None) -> str:
    """``path?query`` relative to ``/api/v1/``: values written as given (booleans as ``true``/``false``),
    parameters without a value left out."""
    pairs = [(name, _text(value)) for name, value in (query or {}).items() if value is not None]
    return path + ("?" + urlencode(pairs) if pairs else "")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def page_links(
    path: str, query: Mapping[str, Any] | None, *, token: str | None = None, next_token: str | None = None
) -> dict[str, Any]:
    """``self`` and ``next`` of a page, in one form for every route (relative to ``/api/v1/``, as Partner Center's
    ``links.next``): page 1's self is ``path?query``; a later page's self, and every next link, is
    ``path?seek_operation=Next`` with the token in the ``MS-ContinuationToken`` header."""
    seek = path + "?seek_operation=Next"
    links = {"self": link(seek, [(CONTINUATION_HEADER, token)]) if token else link(query_uri(path, query))}
    if next_token:
        links["next"] = link(seek, [(CONTINUATION_HEADER, next_token)])
    return links
