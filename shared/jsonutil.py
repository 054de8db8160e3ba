"""JSON in and out with every digit kept: Partner Center money has ~20 significant digits."""

from __future__ import annotations

from typing import Any

import simplejson


def loads(body: bytes | str) -> Any:
    """Parse a Partner Center body: strip the UTF-8 byte-order mark, numbers with a fraction as Decimal.

    ``NaN`` and ``Infinity`` (not JSON, but a broken service may send them) parse as floats, so the one record
    holding one is quarantined (``shared.shapes.conform``) instead of its whole page being unreadable.
    """
    text = body.decode("utf-8-sig") if isinstance(body, bytes) else body.removeprefix("\ufeff")
    return simplejson.loads(text, use_decimal=True, allow_nan=True)


def dumps(value: Any, *, allow_nan: bool = False) -> str:
    """Serialise compactly, writing Decimals with exactly their digits; NaN only when asked (quarantine)."""
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan)
