"""Checks that turn a record as received into row properties, or say exactly why they cannot."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from shared.timeutil import parse_time

T = TypeVar("T")


class BadRecord(ValueError):
    """A record that cannot be mapped; the message is the reason stored in quarantine."""


def require_id(record: Mapping[str, Any], *names: str) -> str:
    """The first non-empty id among ``names``, lower-cased."""
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    raise BadRecord(f"missing {' / '.join(names)}")


def optional_number(record: Mapping[str, Any], name: str) -> str | None:
    """A money or quantity field as exact text; absent is fine, anything but a number is not."""
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise BadRecord(f"{name} is not a number: {value!r}")
    return str(value)


def _present(value: T | None, name: str) -> T:
    if value is None:
        raise BadRecord(f"missing {name}")
    return value


def required_number(record: Mapping[str, Any], name: str) -> str:
    """A number that must be present."""
    return _present(optional_number(record, name), name)


def optional_time(record: Mapping[str, Any], name: str) -> datetime | None:
    """A time field; absent is fine, unparsable is not."""
    value = record.get(name)
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise BadRecord(f"{name} is not an ISO 8601 time with an offset, in range: {value!r}"[:500]) from exc


def required_time(record: Mapping[str, Any], name: str) -> datetime:
    """A time that must be present."""
    return _present(optional_time(record, name), name)


def optional_text(record: Mapping[str, Any], name: str) -> str | None:
    """A string field kept as received (open enums included)."""
    value = record.get(name)
    return None if value is None else str(value)
