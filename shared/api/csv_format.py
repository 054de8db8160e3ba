"""Records as CSV for spreadsheets: nested fields flattened to dotted columns, numbers with every digit."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from shared import jsonutil

# Known columns first, in Partner Center's documented order, so a sheet keeps its layout from day to day;
# any other field follows in sorted order.
USAGE_RECORD_COLUMNS = (
    "id",
    "resourceId",
    "name",
    "resourceName",
    "totalCost",
    "usdTotalCost",
    "currencyCode",
    "currencyLocale",
    "currencySymbol",
    "percentUsed",
    "isUpgraded",
    "budget.amount",
    "lastModifiedDate",
)
USAGE_SUMMARY_COLUMNS = (
    "id",
    "resourceId",
    "name",
    "resourceName",
    "billingStartDate",
    "billingEndDate",
    "totalCost",
    "usdTotalCost",
    "currencyCode",
    "currencyLocale",
    "lastModifiedDate",
)
UTILIZATION_COLUMNS = (
    "usageStartTime",
    "usageEndTime",
    "resource.id",
    "resource.name",
    "resource.category",
    "resource.subcategory",
    "resource.region",
    "quantity",
    "unit",
    "instanceData.resourceUri",
    "instanceData.location",
    "instanceData.partNumber",
    "instanceData.orderNumber",
)
# A spreadsheet runs a cell starting with one of these as a formula; text cells get a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def flatten(value: Any, prefix: str = "", into: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay whole (written as JSON text)."""
    into = {} if into is None else into
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(inner, f"{prefix}.{key}" if prefix else str(key), into)
    elif prefix:
        into[prefix] = value
    return into


def cell(value: Any) -> str:
    """One cell: numbers as their exact text, booleans lower-case, null empty, lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return jsonutil.dumps(value)


def to_csv(raws: Iterable[str], known_columns: tuple[str, ...]) -> bytes:
    """A header line, then one line per record; every known column always, extra columns sorted."""
    rows = [flatten(jsonutil.loads(raw)) for raw in raws]
    extra = sorted({name for row in rows for name in row} - set(known_columns))
    columns = [*known_columns, *extra]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(name)) for name in columns])
    return out.getvalue().encode("utf-8")
