"""One line item of the rated-usage export: checked, keyed, and kept as received.

Keys are matched case-insensitively (the docs write PascalCase, older line items camelCase); the line's text
is what is stored and served, so every digit and every attribute (known or not) survives. What a line must
have to be placed: a customer, an Azure subscription (``EntitlementId``), a usage day, a billing currency and
a billing total that is a number. Anything else is a BadRecord, quarantined with its reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import Any

from shared.pricing.amounts import EXACT
from shared.records import BadRecord

_CURRENCY = re.compile(r"[A-Za-z]{3}")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
MAX_LINE_CHARS = 30_000  # a line is stored as one property: 64 KiB of UTF-16, with room to spare


@dataclass(frozen=True, slots=True)
class RatedLine:
    """What the ingest needs of a line; ``text`` is the line as received."""

    customer_id: str
    entitlement_id: str
    day: str  # YYYY-MM-DD of UsageDate
    currency: str  # BillingCurrency, upper-case
    billing_total: Decimal
    pricing_total: Decimal | None
    pricing_currency: str | None
    text: str
    digest: bytes  # SHA-256 of text
    names: tuple[str | None, str | None, str | None, str | None]  # customer, subscription, plan id, reseller
    category: str = ""  # MeterCategory: what a price rule's adjustment may name
    list_total: Decimal | None = None  # UnitPrice x Quantity (the retail price); None when either is missing

    @property
    def period(self) -> str:
        """The calendar month (``YYYY-MM``) the usage day falls in: an Azure plan bills calendar months."""
        return self.day[:7]


def lowered(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's members by lower-cased name (the first of two that differ only in case wins)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(key, str):
            out.setdefault(key.lower(), value)
    return out


class _Fields:
    """A line's members by name in any case: the documented (PascalCase) name is looked up directly, and only a
    line that lacks it is lowered (once), as older camelCase lines need."""

    __slots__ = ("_lowered", "_record")

    def __init__(self, record: Mapping[str, Any]) -> None:
        self._record = record
        self._lowered: dict[str, Any] | None = None

    def get(self, name: str) -> Any:
        value = self._record.get(name)
        if value is not None:
            return value
        if self._lowered is None:
            self._lowered = lowered(self._record)
        return self._lowered.get(name.lower())


class _NotFinite(float):
    """NaN or Infinity in a line (not JSON, but a broken export may hold it): a float, as simplejson reads it."""


def _constant(text: str) -> float:
    return _NotFinite(text)


# The standard library's C scanner keeps every digit: fractions as their text (Decimal only where a total is
# summed), integers as int. About twice as fast as simplejson with Decimals on an export line.
_DECODE = json.JSONDecoder(parse_float=str, parse_constant=_constant).decode


@lru_cache(maxsize=4096)
def _id_text(name: str, value: str) -> str:
    text = value.strip().lower()
    if not text:
        raise BadRecord(f"missing {name}")
    if len(text) > 100 or not text.isprintable():
        raise BadRecord(f"{name} is not an id: {value[:100]!r}")
    return text


def _id(fields: _Fields, name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise BadRecord(f"missing {name}")
    return _id_text(name, value)  # ids repeat on every line of a subscription: checked once


@lru_cache(maxsize=4096)
def _day(value: str) -> str:
    text = value.strip()
    if not text:
        raise BadRecord("missing UsageDate")
    us = _US_DATE.fullmatch(text[:10].strip()) if "/" in text else None
    try:
        if us:
            return date(int(us.group(3)), int(us.group(1)), int(us.group(2))).isoformat()
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRecord(f"UsageDate is not a date: {text[:60]!r}") from None
    return moment.date().isoformat()  # the date as written: usage dates are UTC days


def _money(fields: _Fields, name: str, *, required: bool) -> Decimal | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise BadRecord(f"missing {name}")
        return None
    if isinstance(value, bool):
        raise BadRecord(f"{name} is not a number: {value!r}")
    if isinstance(value, _NotFinite):
        raise BadRecord(f"{name} is not a finite number: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, str):
        raise BadRecord(f"{name} is not a number: {str(value)[:60]!r}")
    try:
        number = Decimal(value.strip())  # a JSON fraction (its text) or a string holding a number
    except ArithmeticError:
        raise BadRecord(f"{name} is not a number: {value[:60]!r}") from None
    if not number.is_finite():
        raise BadRecord(f"{name} is not a finite number: {value!r}")
    return number


def _optional_money(fields: _Fields, name: str) -> Decimal | None:
    """A number the ingest does not need: None, not a quarantine, when it is missing or not a number."""
    try:
        return _money(fields, name, required=False)
    except BadRecord:
        return None


def _list_total(fields: _Fields) -> Decimal | None:
    unit, quantity = _optional_money(fields, "UnitPrice"), _optional_money(fields, "Quantity")
    if unit is None or quantity is None:
        return None
    with localcontext(EXACT):
        return unit * quantity


def _required_money(fields: _Fields, name: str) -> Decimal:
    number = _money(fields, name, required=True)
    if number is None:  # _money raised already; this keeps the type exact
        raise BadRecord(f"missing {name}")
    return number


def _text(fields: _Fields, name: str) -> str | None:
    value = fields.get(name)
    if value is None or isinstance(value, Mapping | list):
        return None
    return str(value)[:500]


@lru_cache(maxsize=256)
def _currency(value: str) -> str:
    if not _CURRENCY.fullmatch(value.strip()):
        raise BadRecord(f"BillingCurrency is not a currency code: {value[:20]!r}")
    return value.strip().upper()


def decode_line(text: str) -> tuple[Mapping[str, Any], bytes]:
    """A JSON Lines line of an export as an object (fractions as their text), and its UTF-8 bytes; BadRecord says
    why it is not one that can be stored (too long for a property, unencodable, not JSON, not an object)."""
    if len(text) > MAX_LINE_CHARS:
        raise BadRecord(f"line is {len(text)} characters; at most {MAX_LINE_CHARS} can be stored")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRecord(f"line holds text that cannot be encoded (a lone surrogate at character {exc.start})") from None
    try:
        record = _DECODE(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError) as exc:
        raise BadRecord(f"line is not JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(record, Mapping):
        kind = {list: "list", str: "str", int: "int", bool: "bool"}.get(type(record), type(record).__name__)
        raise BadRecord(f"line is not a JSON object but a JSON {kind}")
    return record, encoded


def parse_line(text: str) -> RatedLine:
    """A line as received, checked; BadRecord says why it cannot be placed."""
    record, encoded = decode_line(text)
    fields = _Fields(record)
    currency = fields.get("BillingCurrency")
    if not isinstance(currency, str):
        raise BadRecord(f"BillingCurrency is not a currency code: {str(currency)[:20]!r}")
    usage_date = fields.get("UsageDate")
    if not isinstance(usage_date, str):
        raise BadRecord("missing UsageDate")
    pricing_currency = fields.get("PricingCurrency")
    return RatedLine(
        customer_id=_id(fields, "CustomerId"),
        entitlement_id=_id(fields, "EntitlementId"),
        day=_day(usage_date),
        currency=_currency(currency),
        billing_total=_required_money(fields, "BillingPreTaxTotal"),
        pricing_total=_money(fields, "PricingPreTaxTotal", required=False),
        pricing_currency=pricing_currency.strip().upper() if isinstance(pricing_currency, str) else None,
        text=text,
        digest=hashlib.sha256(encoded).digest(),
        names=(
            _text(fields, "CustomerName"),
            _text(fields, "EntitlementDescription"),
            _text(fields, "SubscriptionId"),
            _text(fields, "Tier2MpnId"),
        ),
        category=(_text(fields, "MeterCategory") or "").strip(),
        list_total=_list_total(fields),
    )
