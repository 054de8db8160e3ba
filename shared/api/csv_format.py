"""Records as CSV for spreadsheets: a fixed, documented header per route, numbers with every digit.

The columns are the same, in the same order, on every page, so pages can be joined; a field a record lacks
is an empty cell, and a column naming a nested object (``instanceData.tags``) holds its JSON. Fields outside
the documented columns are in the JSON answer only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from shared import jsonutil

# In Partner Center's documented order, so a sheet keeps its layout from day to day.
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
    "attributes.objectType",
    "serviceAttributes.relationship",
    "serviceAttributes.totalWithheld.code",
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
# What a caller shown prices receives of them: no amount (those are the partner's cost), the rest as is.
COST_COLUMNS = frozenset({"totalCost", "usdTotalCost", "percentUsed", "budget.amount"})
USAGE_RECORD_PRICED_COLUMNS = tuple(c for c in USAGE_RECORD_COLUMNS if c not in COST_COLUMNS)
USAGE_SUMMARY_PRICED_COLUMNS = tuple(c for c in USAGE_SUMMARY_COLUMNS if c not in COST_COLUMNS)
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
    "instanceData.tags",
    "instanceData.additionalInfo",
    "infoFields",
)
# A spreadsheet runs a cell starting with one of these as a formula; text cells get a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def lookup(record: Any, column: str) -> Any:
    """The value at a dotted column (``resource.id``), or None when any step is missing."""
    value = record
    for step in column.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


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


def to_csv(raws: Iterable[str], columns: tuple[str, ...]) -> bytes:
    """The header line of the route's columns, then one line per record."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for raw in raws:
        record = jsonutil.loads(raw)
        writer.writerow([cell(lookup(record, name)) for name in columns])
    return out.getvalue().encode("utf-8")
