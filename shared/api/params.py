"""Query and path parameters, validated strictly: every malformed value is a 400 naming the parameter."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from shared.api.errors import bad_request
from shared.api.messages import Request
from shared.timeutil import UTC_KEY_FORMAT

MAX_PAGE_SIZE = 1000
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_DATE_PREFIX = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(T.*)?", re.DOTALL)
# A "+" in an unencoded query string arrives as a space: "...T00:00:00 01:00" means "+01:00".
_SPACE_FOR_PLUS = re.compile(r"^(.*[0-9]) ([0-9]{2}(?::?[0-9]{2})?)$")
_MAX_TIME_TEXT = 64


def _preview(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def single(request: Request, name: str) -> str | None:
    """A query parameter given at most once, with a value (as the OpenAPI document says: no parameter is empty)."""
    values = request.query.get(name, ())
    if len(values) > 1:
        raise bad_request(f"Parameter '{name}' was given {len(values)} times; give it once.")
    if not values:
        return None
    if values[0] == "":
        raise bad_request(f"Parameter '{name}' is empty; give it a value or leave it out.")
    return values[0].strip()  # a value of spaces reaches its own check (a token of spaces names no page)


def is_guid(value: str) -> bool:
    """True for a GUID (any case)."""
    return _GUID.fullmatch(value) is not None


def guid(value: str, what: str) -> str:
    """A customer or subscription id: a GUID, lower-cased (ids become table keys lower-cased)."""
    if not _GUID.fullmatch(value):
        raise bad_request(f"The {what} {_preview(value)} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).")
    return value.lower()


def billing_month(value: str, name: str = "billing_month") -> str:
    """``YYYY-MM``."""
    match = _MONTH.fullmatch(value)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise bad_request(f"Parameter '{name}' {_preview(value)} is not a month written YYYY-MM.")
    return value


def billing_start(value: str) -> str:
    """The date part of ``YYYY-MM-DD`` or of a full ISO 8601 timestamp, as written (not converted to UTC)."""
    match = _DATE_PREFIX.fullmatch(value) if len(value) <= _MAX_TIME_TEXT else None
    problem = f"Parameter 'billing_start' {_preview(value)} is not a date YYYY-MM-DD or an ISO 8601 timestamp."
    if not match:
        raise bad_request(problem)
    try:
        date.fromisoformat(match.group(1))
        if match.group(2):
            datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(problem) from None
    return match.group(1)


def utc_time(value: str, name: str) -> datetime:
    """An ISO 8601 time with an offset or ``Z``, converted to UTC."""
    problem = f"Parameter '{name}' {_preview(value)} is not an ISO 8601 time with a UTC offset or Z."
    if len(value) > _MAX_TIME_TEXT or not value.isascii():
        raise bad_request(problem)
    text = _SPACE_FOR_PLUS.sub(r"\1+\2", value.upper())  # RFC 3339 allows a lower-case t and z
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(problem) from None
    if parsed.tzinfo is None:
        raise bad_request(problem)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # before 0001-01-01 or after 9999-12-31 in UTC: the range's end, which holds no usage
        return (
            datetime.min.replace(tzinfo=timezone.utc) if parsed.year == 1 else datetime.max.replace(tzinfo=timezone.utc)
        )


def time_key(moment: datetime) -> str:
    """The RowKey prefix of a UTC time, rounded up to a whole second.

    Usage times are whole seconds, so ``usageStart >= t`` is ``usageStart >= ceil(t)`` and the same holds for
    ``<``: a RowKey range on the rounded-up text selects exactly ``[start, end)``.
    """
    if moment.microsecond:
        if moment >= datetime.max.replace(tzinfo=timezone.utc) - timedelta(seconds=1):
            return "9999-12-31T23:59:59Z"  # no usage is that late: the range stays exact in practice
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime(UTC_KEY_FORMAT)


def page_size(value: str | None) -> int:
    """``size``: an integer 1..1000, default 1000."""
    if value is None:
        return MAX_PAGE_SIZE
    if not (value.isascii() and value.isdigit()) or len(value) > 6 or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise bad_request(f"Parameter 'size' {_preview(value)} must be an integer from 1 to {MAX_PAGE_SIZE}.")
    return int(value)


def boolean(value: str | None, name: str, default: bool) -> bool:
    """``true`` or ``false`` (any case)."""
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"Parameter '{name}' {_preview(value)} must be true or false.")


def choice(value: str | None, name: str, allowed: tuple[str, ...]) -> str | None:
    """One of a few words (any case), lower-cased."""
    if value is None:
        return None
    if value.lower() in allowed:
        return value.lower()
    raise bad_request(f"Parameter '{name}' {_preview(value)} must be one of: {', '.join(allowed)}.")


def accepts_csv(accept: str | None) -> bool:
    """True when the Accept header names ``text/csv`` above any JSON type (wildcards do not count)."""
    if not accept:
        return False
    best_csv = best_json = 0.0
    for value, quality in parse_accept_header(accept, MIMEAccept):
        media = value.split(";", 1)[0].strip().lower()
        if media == "text/csv":
            best_csv = max(best_csv, quality)
        elif media in ("application/json", "text/json"):
            best_json = max(best_json, quality)
    return best_csv > 0 and best_csv > best_json


# -- declared parameters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One declared parameter of a route: how it is parsed, and how the OpenAPI document describes it.

    The router parses every declared query parameter before the handler runs (a malformed value is a 400
    naming it) and refuses any query parameter a route does not declare; the OpenAPI document's parameters are
    generated from the same declarations (component name: the camel-case name, unless given).
    """

    name: str
    description: str
    schema: Mapping[str, Any]
    parse: Callable[[str], Any] = str
    where: str = field(default="query", kw_only=True)  # query or path
    default: Any = field(default=None, kw_only=True)  # the value a handler sees when the parameter is absent
    component: str = field(default="", kw_only=True)

    @property
    def reference(self) -> str:
        """Its name under the OpenAPI document's components/parameters."""
        head, *rest = self.name.split("_")
        return self.component or head + "".join(part.title() for part in rest)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI parameter object."""
        parameter: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "description": self.description,
            "schema": dict(self.schema),
        }
        return {**parameter, "required": True} if self.where == "path" else parameter


GUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_GUID_SCHEMA = {"type": "string", "pattern": GUID_PATTERN}


def _id(name: str, what: str, description: str) -> Param:
    return Param(name, description, _GUID_SCHEMA, lambda value: guid(value, what), where="path")


def _day(name: str) -> Callable[[str], date]:
    def parse(value: str) -> date:
        try:
            if len(value) != 10:
                raise ValueError
            return date.fromisoformat(value)
        except ValueError:
            raise bad_request(f"Parameter '{name}' {_preview(value)} is not a date written YYYY-MM-DD.") from None

    return parse


def _one_of(name: str, words: tuple[str, ...]) -> Callable[[str], str | None]:
    return lambda value: choice(value, name, words)


CUSTOMER_ID = _id("customer_id", "customer id", "Customer tenant id (GUID, any case).")
SUBSCRIPTION_ID = _id("subscription_id", "subscription id", "Subscription id (GUID, any case).")
ENTITLEMENT_ID = _id(
    "entitlement_id",
    "Azure subscription (entitlement) id",
    "The Azure subscription id (EntitlementId of the export; GUID, any case).",
)
_INVOICE_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def invoice_id(value: str) -> str:
    """An invoice id (letters, digits, ``-``; any case), upper-cased as Partner Center writes it."""
    text = value.strip().upper()
    if not 1 <= len(text) <= 40 or not set(text) <= _INVOICE_ID_CHARS:
        raise bad_request(f"{_preview(value)} is not an invoice id (letters, digits and -, at most 40).")
    return text


INVOICE_ID = Param(
    "invoice_id",
    "Invoice (or credit note) id as Partner Center lists it, e.g. G016907411 (any case).",
    {"type": "string", "pattern": "^[A-Za-z0-9-]{1,40}$"},
    invoice_id,
    where="path",
)
PATH_PARAMS: Mapping[str, Param] = {p.name: p for p in (CUSTOMER_ID, SUBSCRIPTION_ID, ENTITLEMENT_ID, INVOICE_ID)}
CUSTOMER = Param(
    "customer",
    "Only this customer's lines (customer tenant id, GUID, any case).",
    _GUID_SCHEMA,
    lambda value: guid(value, "customer id"),
)

_SIZE_TEXT = f"Records per page, default and maximum {MAX_PAGE_SIZE} (a next-page call keeps page 1's)."
SIZE = Param(
    "size", _SIZE_TEXT, {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}, page_size, default=MAX_PAGE_SIZE
)
BILLING_MONTH = Param(
    "billing_month",
    "Serve the snapshot stored for this month (UTC month of the fetch) instead of the latest.",
    {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
    billing_month,
)
BILLING_START = Param(
    "billing_start",
    "Serve the stored summary of the billing period starting on this date (`YYYY-MM-DD`, or an ISO 8601 timestamp "
    "whose date part, as written, is used).",
    {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]},
    billing_start,
)
_TIME = {"type": "string", "format": "date-time"}
START_TIME = Param(
    "start_time",
    "Usage start, inclusive: ISO 8601 with offset or Z. Default: the first day of the current UTC month. Not used "
    "on next-page calls (the token holds the range).",
    _TIME,
    lambda value: utc_time(value, "start_time"),
)
END_TIME = Param(
    "end_time",
    "Usage start, exclusive: ISO 8601 with offset or Z. Default: the end of the current UTC day. A range whose end "
    "is not after its start holds no records.",
    _TIME,
    lambda value: utc_time(value, "end_time"),
)
GRANULARITY = Param(
    "granularity",
    "Must be the granularity the cache stores (`UTILIZATION_GRANULARITY`, default daily).",
    {"type": "string", "enum": ["daily", "hourly"]},
    _one_of("granularity", ("daily", "hourly")),
)
_DETAILS_TEXT = "Default true; false drops `instanceData` from the records."
SHOW_DETAILS = Param(
    "show_details", _DETAILS_TEXT, {"type": "boolean"}, lambda v: boolean(v, "show_details", True), default=True
)
_DAY = {"type": "string", "format": "date"}
FROM_DAY = Param(
    "from",
    "First usage day, inclusive (YYYY-MM-DD, UTC). Default: the first day of the `to` month (of today's when `to` "
    "is absent).",
    _DAY,
    _day("from"),
)
_TO_TEXT = "Last usage day, inclusive (YYYY-MM-DD, UTC). Default: today. A range ending before it starts holds nothing."
TO_DAY = Param("to", _TO_TEXT, _DAY, _day("to"))
_FORMAT_TEXT = "`csv` or `json`; overrides the Accept header (`text/csv` there gives CSV too)."
FORMAT = Param("format", _FORMAT_TEXT, {"type": "string", "enum": ["json", "csv"]}, _one_of("format", ("json", "csv")))
_JSON_TEXT = "`json`, the only format of this operation (it offers no CSV)."
FORMAT_JSON = Param("format", _JSON_TEXT, {"type": "string", "enum": ["json"]}, FORMAT.parse, component="formatJson")
_SEEK_TEXT = "`Next` on next-page calls (with the MS-ContinuationToken header)."
SEEK_OPERATION = Param(
    "seek_operation", _SEEK_TEXT, {"type": "string", "enum": ["Next"]}, _one_of("seek_operation", ("next",))
)
_CONTINUATION_TEXT = "The token of `links.next` as a query parameter, for clients that cannot send headers."
CONTINUATION_TOKEN = Param("continuation_token", _CONTINUATION_TEXT, {"type": "string", "minLength": 1})
PERIOD = Param(
    "period",
    "The month (`YYYY-MM`, UTC calendar month). Default: the current month.",
    {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
    lambda value: billing_month(value, "period"),
)
BY = Param(
    "by",
    "`customer` (default): one item per customer; `reseller`: one per reseller of record (null: sold direct).",
    {"type": "string", "enum": ["customer", "reseller"]},
    _one_of("by", ("customer", "reseller")),
)
SPEND_GRANULARITY = Param(
    "granularity",
    "`day` (default): a point per day; `month`: a point per month.",
    {"type": "string", "enum": ["day", "month"]},
    _one_of("granularity", ("day", "month")),
    component="spendGranularity",
)
FUNCTION_KEY = "code"  # the Functions host's own query parameter for the function key: accepted on every route
