"""JSON in and out with every digit kept: Partner Center money has ~20 significant digits."""

from __future__ import annotations

from typing import Any

import simplejson


def loads(body: bytes | str) -> Any:
    """Parse a Partner Center body: strip the UTF-8 byte-order mark, numbers with a fraction as Decimal."""
    text = body.decode("utf-8-sig") if isinstance(body, bytes) else body.removeprefix("\ufeff")
    return simplejson.loads(text, use_decimal=True)


def dumps(value: Any) -> str:
    """Serialise compactly, writing Decimals with exactly their digits."""
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False)
