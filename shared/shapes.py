"""The shapes of the Partner Center records this service stores and serves, defined once.

Each is a JSON Schema (the OpenAPI document publishes them as they are) and the ingest checks every record
against it (``conform``), so whatever the API serves conforms to what it publishes: a record whose field has
another type is quarantined with the path and the types, never stored. Unknown fields are kept; values the
service owns (statuses, units, categories) are open strings, never enums.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from shared.records import BadRecord

JsonSchema = dict[str, Any]


def _nullable(*types: str) -> JsonSchema:
    return {"type": [*types, "null"]}


def _open_object(**properties: JsonSchema) -> JsonSchema:
    return {"type": ["object", "null"], "properties": properties, "additionalProperties": True}


# Partner Center's envelope object (``objectType``, ``etag``): it says nothing about the data, and upstream has been
# seen to send it as null, so null is stored as received like the other envelope objects (``links``, ``budget``).
RESOURCE_ATTRIBUTES: JsonSchema = {
    "type": ["object", "null"],
    "properties": {"objectType": {"type": "string"}, "etag": {"type": "string"}},
    "additionalProperties": True,
}

# The name and money fields usage records and usage summaries share.
_NAMED_MONEY: dict[str, JsonSchema] = {
    "name": _nullable("string"),
    "resourceName": _nullable("string"),
    "totalCost": _nullable("number"),
    "usdTotalCost": _nullable("number"),
    "currencyCode": _nullable("string"),
    "currencyLocale": _nullable("string"),
}

CUSTOMER_MONTHLY_USAGE_RECORD: JsonSchema = {
    "type": "object",
    "description": "As received from Partner Center; money with every digit received.",
    "properties": {
        "id": {"type": "string"},
        "resourceId": {"type": "string"},
        **_NAMED_MONEY,
        "currencySymbol": _nullable("string"),
        "percentUsed": {
            **_nullable("number", "string"),
            "description": 'Usually a number; Partner Center has been seen to send text such as "NaN".',
        },
        "isUpgraded": _nullable("boolean"),
        "budget": _open_object(),
        "customerSpendingBudget": _open_object(),
        "lastModifiedDate": _nullable("string"),
        "attributes": RESOURCE_ATTRIBUTES,
    },
    "additionalProperties": True,
}

SUBSCRIPTION_USAGE_SUMMARY: JsonSchema = {
    "type": "object",
    "description": "As received from Partner Center; money with every digit received.",
    "required": ["billingStartDate", "billingEndDate"],
    "properties": {
        "id": _nullable("string"),
        "resourceId": _nullable("string"),
        "billingStartDate": {"type": "string"},
        "billingEndDate": {"type": "string"},
        **_NAMED_MONEY,
        "lastModifiedDate": _nullable("string"),
        "links": _open_object(),
        "attributes": RESOURCE_ATTRIBUTES,
    },
    "additionalProperties": True,
}

AZURE_UTILIZATION_RECORD: JsonSchema = {
    "type": "object",
    "description": "As received from Partner Center; quantity with every digit received.",
    "required": ["usageStartTime", "usageEndTime", "quantity"],
    "properties": {
        "usageStartTime": {"type": "string"},
        "usageEndTime": {"type": "string"},
        "resource": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "name": _nullable("string"),
                "category": _nullable("string"),
                "subcategory": _nullable("string"),
                "region": _nullable("string"),
            },
            "additionalProperties": True,
        },
        "quantity": {"type": "number"},
        "unit": _nullable("string"),
        "infoFields": _open_object(),
        "instanceData": _open_object(
            resourceUri=_nullable("string"),
            location=_nullable("string"),
            partNumber=_nullable("string"),
            orderNumber=_nullable("string"),
            tags=_open_object(),
            additionalInfo=_open_object(),
        ),
        "attributes": RESOURCE_ATTRIBUTES,
    },
    "additionalProperties": True,
}


def json_type(value: Any) -> str:
    """The JSON type of a parsed value (numbers are Decimal or int; a non-finite number is 'NaN')."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal):
        return "number" if value.is_finite() else "NaN"
    if isinstance(value, float):
        return "NaN"  # simplejson reads NaN and Infinity as floats: not JSON numbers
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _allowed(schema: JsonSchema) -> tuple[str, ...]:
    declared = schema.get("type", ())
    return (declared,) if isinstance(declared, str) else tuple(declared)


def _any_non_finite(value: Any) -> bool:
    """Whether a NaN or Infinity is anywhere in a parsed record: one walk without paths (the common case)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is Decimal:
            if not item.is_finite():
                return True
        elif isinstance(item, float) or (isinstance(item, Decimal) and not item.is_finite()):
            return True
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _finite(value: Any, path: str) -> None:
    """Raise BadRecord for a NaN or Infinity anywhere (unknown fields too): stored, it would not be JSON."""
    if isinstance(value, float) or (isinstance(value, Decimal) and not value.is_finite()):
        raise BadRecord(f"{path} is not a finite number")
    if isinstance(value, Mapping):
        for name, inner in value.items():
            _finite(inner, f"{path}.{name}" if path != "record" else str(name))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _finite(inner, f"{path}[{index}]")


def _fits(value: Any, schema: JsonSchema) -> bool:
    """Whether ``value`` conforms, without naming anything (the common case: no path text is built)."""
    kind = json_type(value)
    allowed = _allowed(schema)
    if allowed and kind not in allowed and not (kind == "integer" and "number" in allowed):
        return False
    if kind != "object":
        return True
    for name in schema.get("required", ()):
        if name not in value:
            return False
    for name, inner in schema.get("properties", {}).items():
        if name in value and not _fits(value[name], inner):
            return False
    return True


def conform(value: Any, schema: JsonSchema, path: str = "record") -> None:
    """Raise BadRecord naming the first field whose JSON type the schema does not allow, or a missing field."""
    if path == "record" and _any_non_finite(value):
        _finite(value, path)  # the walk again, naming where
    if not _fits(value, schema):
        _explain(value, schema, path)


def _explain(value: Any, schema: JsonSchema, path: str) -> None:
    allowed = _allowed(schema)
    kind = json_type(value)
    if allowed and kind not in allowed and not (kind == "integer" and "number" in allowed):
        raise BadRecord(
            f"{path} is {'a ' + kind if kind != 'NaN' else 'not a finite number'}; expected {' or '.join(allowed)}"
        )
    if kind != "object":
        return
    for name in schema.get("required", ()):
        if name not in value:
            raise BadRecord(f"missing {name}" if path == "record" else f"missing {path}.{name}")
    for name, inner in schema.get("properties", {}).items():
        if name in value:
            _explain(value[name], inner, name if path == "record" else f"{path}.{name}")
