"""The OpenAPI 3.1 document of the API, served at ``/api/openapi.json`` and checked against real responses."""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any

from shared import jsonutil, shapes
from shared.api import params
from shared.api.params import GUID_PATTERN, Param
from shared.sync.jobs import JOB_NAMES

if TYPE_CHECKING:
    from shared.api.routes import Route

__all__ = ["GUID_PATTERN", "document", "document_bytes"]


DESCRIPTION = """\
Azure usage of a Cloud Solution Provider's customers, cached from Partner Center by timer functions and served
with Partner Center's paths and shapes: a portal written against Partner Center switches by base URL
(`https://<app>.azurewebsites.net/api/v1/` instead of `https://api.partnercenter.microsoft.com/v1/`).

Records are served as received: each record's stored JSON text is spliced into the body, so money and
quantities are JSON numbers with exactly the digits Partner Center sent (parse them as decimals). What this
service adds (relationship, subscription kind, which stored data covers a subscription and where) is in one
object of its own, `serviceAttributes`, never mixed into the upstream fields.

Start with `GET /v1/customers` (paged like upstream), then `/v1/customers/{id}/subscriptions`: each
subscription's `serviceAttributes` says which of the usage routes cover it and links to them. Every data
answer has `Last-Modified` (when its data was last fetched) beside its `ETag`.

Differences from Partner Center:
- **Utilization is selected by usage time**: `start_time <= usageStartTime < end_time` (UTC). Partner Center
  selects by the time usage was *reported*; the cache stores aligned reported-time windows and serves them by
  usage time, so a record appears once whatever window reported it.
- `granularity` must be the one the cache stores (app setting `UTILIZATION_GRANULARITY`, `daily` by default);
  the other value is a 404. `show_details=false` drops `instanceData` from the records (the remaining JSON is
  re-written from decimals, digits unchanged); `show_details=true` serves what was stored.
- Links have one form on every route: relative to `/api/v1/` (as Partner Center's `links.next`). Page 1's
  `self` is the path with the query that produced it, defaults filled in; a next page's `self`, and every
  `links.next`, is `...?seek_operation=Next` with the `MS-ContinuationToken` header. Clients that cannot send
  headers may pass the token as the `continuation_token` query parameter, also sent back in the
  `MS-ContinuationToken` response header. A token carries the original query (range, size, options); other
  query parameters of a next-page call are not used, except `format`.
- A query parameter an operation does not declare is a 400 naming it (a misspelt `fromm` is never silently
  ignored); `code` (the function key) and `format` are accepted everywhere.
  Tokens are not signed (they grant nothing the query parameters do not) but strictly validated: a token this
  API did not write for the request names no page (404).
- `usagerecords?billing_month=YYYY-MM` serves the snapshot stored for a past month (UTC month of the fetch);
  `usagesummary?billing_start=YYYY-MM-DD` a stored past billing period.
- `Accept: text/csv` or `?format=csv` returns the same records as CSV: a fixed header per route, the same on
  every page (nested fields as dotted columns, a nested object as its JSON, a missing field empty).
- Every 200 has a strong `ETag`; `If-None-Match` with it answers 304. `Vary` names every request header an
  answer depends on (`Accept` where CSV is offered; `Origin` and `Authorization` under `/api/scoped/`).
- Unknown customers or subscriptions (in neither the inventory nor the data) are 404.

Scoped access (API_ACCESS_MODE `token` or `both`): the same routes under `/api/scoped/` (server `/api/scoped`)
answer an Entra ID access token (`Authorization: Bearer`, client credentials for this API's app ID URI, app role
`Usage.Read`) instead of the function key, and each caller reads only its grant: ids outside it answer exactly
like unknown ones, lists leave them out. Each operation's `x-access` names its access class (`public`,
`partner`: the function key only, `listing`: rows filtered per caller, `customer`, `customer_totals`,
`subscription`, `azure_subscription`). 401 (code 900401) for a token that is not valid, 403 (900403) for a caller
without a grant.

Error codes: 20003 subscription not found and 3000 no usage data (as Partner Center); 900400 invalid input,
900404 not found, 900405 method not allowed, 900500 internal error (with a correlation id). A missing or
wrong function key is answered by the Functions host: 401 with an empty body.
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema_type: str) -> dict[str, Any]:
    return {"type": [schema_type, "null"]}


def _open_object(description: str, **properties: Any) -> dict[str, Any]:
    """An object schema that may grow members (clients keep what they do not know)."""
    return {"type": "object", "description": description, "properties": properties, "additionalProperties": True}


def _maybe(description: str) -> dict[str, Any]:
    """A string or null, with what it means."""
    return {"type": ["string", "null"], "description": description}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _collection(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["totalCount", "items", "links", "attributes"],
        "properties": {
            "totalCount": {"type": "integer", "minimum": 0, "description": "records on this page"},
            "items": {"type": "array", "items": _ref(item)},
            "links": _ref("ResourceLinks"),
            "attributes": _ref("ResourceAttributes"),
        },
        "additionalProperties": True,
    }


def _coverage(**stored: Any) -> dict[str, Any]:
    """Whether a usage route covers a subscription, what of it is stored, and the link to read it."""
    return {
        "type": "object",
        "properties": {"covered": {"type": "boolean"}, **stored, "link": {"anyOf": [_ref("Link"), {"type": "null"}]}},
    }


def _as_received_with(attributes: str) -> dict[str, Any]:
    """A Partner Center record as received (every field), with this service's own ``serviceAttributes``."""
    return {
        "type": "object",
        "description": "As Partner Center returned it (every field), plus this service's serviceAttributes.",
        "required": ["id", "serviceAttributes"],
        "properties": {"id": {"type": "string"}, "serviceAttributes": _ref(attributes)},
        "additionalProperties": True,
    }


_RUN = {
    "type": "object",
    "properties": {
        "runId": _nullable("string"),
        "correlationId": _nullable("string"),
        "status": _nullable("string"),
        "startedAt": _nullable("string"),
        "finishedAt": _nullable("string"),
        "ageSeconds": _nullable("number"),
        "rows": _nullable("integer"),
        "errorCount": _nullable("integer"),
        "notes": {
            "type": "array",
            "items": {"type": "string"},
            "description": "What the run said about how it went: why it stalled, what it left for the next run.",
        },
        "lastError": {
            "type": ["object", "null"],
            "properties": {
                "subject": _nullable("string"),
                "status": {"type": ["integer", "string", "null"]},
                "code": {"type": ["integer", "string", "null"]},
                "requestId": _nullable("string"),
                "correlationId": _nullable("string"),
                "message": _nullable("string"),
            },
            "additionalProperties": True,
        },
    },
    "additionalProperties": True,
}

# Which export a figure comes from: Graph's manifest eTag (a new value is new data) and when Graph made it.
_SNAPSHOT_VERSION = {
    "snapshotETag": _maybe(
        "the export's manifest eTag (a new value is new data); on a stored period, the export that last changed it"
    ),
    "snapshotCreatedAt": _maybe("when Graph created that export"),
}

FIGURES = {
    "type": "string",
    "enum": ["cost", "price"],
    "description": "What the amounts are: `cost` (what the partner pays; the function key and grants with showCost) "
    "or `price` (the caller's price under its price rule: every other scoped caller, which never receives cost)",
}
PRICE_PROPERTIES = {
    "price": {**_ref("Money"), "description": "the price under the viewer's (or, beside cost, the buyer's) rule"},
    "priceComplete": {
        "type": "boolean",
        "description": "false when some amounts came without a list price (usage summaries, lines without UnitPrice) "
        "and are not in `price`",
    },
}
# Fields that carry the partner's cost: never in an answer under /api/scoped/ to a caller shown prices.
COST_ONLY = frozenset(
    {"billingPreTaxTotal", "pricingPreTaxTotals", "margin", "partnerCenter", "budget", "estimate", "estimateDelta"}
    | {"invoiceIds"}  # the partner's Microsoft invoices: not a buyer's
)
# The schemas of answers that carry money: each has a ``Scoped...`` twin without the cost-only fields.
PRICED_SCHEMAS = (
    "DailyCost",
    "DailyCostItem",
    "StoredPeriod",
    "AzureEntitlement",
    "AzureEntitlementCollection",
    "SpendTotal",
    "SpendSeries",
    "CustomerSpendItem",
    "ResellerSpendItem",
    "SpendOverview",
    "SpendSubscription",
    "CustomerSpend",
)


def _scoped_twin(node: Any) -> Any:
    """A schema as a caller shown prices receives it: its cost-only fields gone, its references to the twins."""
    if isinstance(node, list):
        return [_scoped_twin(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.rsplit("/", 1)[-1] in PRICED_SCHEMAS:
            out[key] = value.rsplit("/", 1)[0] + "/Scoped" + value.rsplit("/", 1)[-1]
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: _scoped_twin(v) for k, v in value.items() if k not in COST_ONLY}
            if "figures" in out[key]:
                out[key]["figures"] = {**FIGURES, "const": "price"}
        elif key == "required" and isinstance(value, list):
            out[key] = [k for k in value if k not in COST_ONLY]
        else:
            out[key] = _scoped_twin(value)
    return out


def scoped_twins(schemas: dict[str, Any]) -> dict[str, Any]:
    """The ``Scoped...`` twin of each priced schema."""
    return {"Scoped" + name: _scoped_twin(schemas[name]) for name in PRICED_SCHEMAS}


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {
            "code": {"type": ["integer", "string"]},
            "description": {"type": "string"},
            "correlationId": {"type": "string", "description": "500 only: quote it to the operator"},
        },
        "additionalProperties": True,
    },
    "Link": {
        "type": "object",
        "required": ["uri", "method", "headers"],
        "properties": {
            "uri": {"type": "string", "description": "relative to /api/v1/ (upstream: relative to /v1/)"},
            "method": {"type": "string"},
            "headers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "value"],
                    "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
                },
            },
        },
        "additionalProperties": True,
    },
    "ResourceLinks": {
        "type": "object",
        "required": ["self"],
        "properties": {"self": _ref("Link"), "next": _ref("Link")},
        "additionalProperties": True,
    },
    "ResourceAttributes": shapes.RESOURCE_ATTRIBUTES,
    "CustomerMonthlyUsageRecord": {
        **shapes.CUSTOMER_MONTHLY_USAGE_RECORD,
        "properties": {
            **shapes.CUSTOMER_MONTHLY_USAGE_RECORD["properties"],
            "serviceAttributes": {
                "type": "object",
                "description": "This service's: `relationship` of the customer (`ok`, `forbidden`, `unknown`); under "
                "/api/scoped/, `totalWithheld` when the caller sees the customer only in part (its amounts, which "
                "hold what others sold, are then left out of the record; the caller's part is at `spend`)",
                "properties": {
                    "relationship": {"type": "string"},
                    "totalWithheld": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "integer", "description": "900451"},
                            "reason": {"type": "string"},
                            "spend": _ref("Link"),
                        },
                    },
                },
            },
        },
    },
    "SubscriptionUsageSummary": shapes.SUBSCRIPTION_USAGE_SUMMARY,
    "AzureUtilizationRecord": shapes.AZURE_UTILIZATION_RECORD,
    "UsageRecordCollection": _collection("CustomerMonthlyUsageRecord"),
    "Customer": _as_received_with("CustomerServiceAttributes"),
    "CustomerServiceAttributes": {
        "type": "object",
        "description": "This service's own view of a customer; never a Partner Center field.",
        "required": ["relationship", "links"],
        "properties": {
            "relationship": {"type": "string", "description": "`ok`, or `forbidden` (Partner Center 403/20002)"},
            "errorCode": {"type": "string"},
            "subscriptionsListedAt": _maybe("when its subscriptions were listed"),
            "billingMonths": {
                "type": "array",
                "items": {"type": "string"},
                "description": "single-customer route: the months (`YYYY-MM`) whose usage record is stored",
            },
            "links": {
                "type": "object",
                "properties": {"subscriptions": _ref("Link")},
                "additionalProperties": True,
            },
        },
        "additionalProperties": True,
    },
    "CustomerCollection": _collection("Customer"),
    "Subscription": _as_received_with("SubscriptionServiceAttributes"),
    "SubscriptionServiceAttributes": {
        "type": "object",
        "description": "This service's own view of a subscription: its kind and which stored data covers it, where.",
        "required": ["kind", "relationship", "usageSummary", "utilization"],
        "properties": {
            "kind": {"type": "string", "description": "`legacy` (MS-AZR-0145P), `azure_plan`, or `other`"},
            "relationship": {"type": "string"},
            "usageSummary": _coverage(billingPeriods={"type": "array", "items": {"type": "string"}}),
            "utilization": _coverage(storedThrough=_maybe("end of the last window fully stored")),
            "ratedUsage": {
                **_coverage(),
                "description": "Azure plan: cost per day and line items of its Azure subscriptions (Graph billing "
                "export), listed at the link",
            },
        },
        "additionalProperties": True,
    },
    "SubscriptionCollection": _collection("Subscription"),
    "UtilizationCollection": _collection("AzureUtilizationRecord"),
    "Run": _RUN,
    "Snapshot": _open_object(
        "One export stream of the Graph billing export and the snapshot of it this service stores.",
        billingPeriod={"type": "string", "description": "`current` or `last` (unbilled)"},
        currencyCode={"type": "string"},
        **_SNAPSHOT_VERSION,
        ingestedAt=_maybe("when this service stored it"),
        checkedAt=_maybe("when this service last asked for a new one"),
        ageSeconds=_nullable("number"),
    ),
    "Money": {
        "type": "number",
        "description": "Exact: every digit of the sum of the lines (parse as a decimal, not a float)",
    },
    "DailyCostItem": {
        "type": "object",
        "required": ["usageDate", "currencyCode", "lineCount"],
        "properties": {
            "usageDate": {"type": "string", "format": "date"},
            "currencyCode": {"type": "string", "description": "billing currency (BillingCurrency)"},
            "billingPreTaxTotal": {**_ref("Money"), "description": "the partner's cost (function key, showCost)"},
            **PRICE_PROPERTIES,
            "lineCount": {"type": "integer"},
            "subscriptionCount": {"type": "integer", "description": "customer route: Azure subscriptions that day"},
            "pricingPreTaxTotals": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"currencyCode": _nullable("string"), "amount": _ref("Money")},
                },
            },
        },
        "additionalProperties": False,
    },
    "StoredPeriod": {
        "type": "object",
        "description": "What is stored for one billing period (calendar month) and currency.",
        "properties": {
            "period": {"type": "string", "description": "YYYY-MM"},
            "currencyCode": {"type": "string"},
            "lineCount": {"type": ["integer", "null"]},
            "billingPreTaxTotal": {**_ref("Money"), "description": "the partner's cost (function key, showCost)"},
            **PRICE_PROPERTIES,
            "storedAt": _maybe("when this data last changed here"),
            **_SNAPSHOT_VERSION,
        },
        "additionalProperties": True,
    },
    "DailyCost": {
        "type": "object",
        "description": "Cost per day (days without charges have no item), from the stored export snapshots.",
        "required": ["customerId", "from", "to", "totalCount", "items", "periods", "snapshots", "links"],
        "properties": {
            "customerId": {"type": "string"},
            "customerName": _nullable("string"),
            "entitlementId": {"type": "string", "description": "the Azure subscription (entitlement) id"},
            "entitlementDescription": _nullable("string"),
            "subscriptionId": _maybe("the Azure plan's Partner Center subscription"),
            "tier2MpnId": _maybe("the indirect reseller of record"),
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "figures": FIGURES,
            "totalCount": {"type": "integer"},
            "items": {"type": "array", "items": _ref("DailyCostItem")},
            "periods": {"type": "array", "items": _ref("StoredPeriod")},
            "snapshots": {"type": "array", "items": _ref("Snapshot")},
            "links": {"type": "object", "additionalProperties": _ref("Link")},
            "attributes": _ref("ResourceAttributes"),
        },
        "additionalProperties": False,
    },
    "AzureEntitlement": {
        "type": "object",
        "required": ["entitlementId", "customerId", "periods", "links"],
        "properties": {
            "entitlementId": {"type": "string"},
            "entitlementDescription": _nullable("string"),
            "subscriptionId": _nullable("string"),
            "tier2MpnId": _nullable("string"),
            "customerId": {"type": "string"},
            "customerName": _nullable("string"),
            "periods": {"type": "array", "items": _ref("StoredPeriod")},
            "links": {"type": "object", "additionalProperties": _ref("Link")},
        },
        "additionalProperties": False,
    },
    "AzureEntitlementCollection": {
        **_collection("AzureEntitlement"),
        "properties": {
            **_collection("AzureEntitlement")["properties"],
            "snapshots": {"type": "array", "items": _ref("Snapshot")},
        },
    },
    "RatedUsageLine": {
        "type": "object",
        "description": "A line item exactly as the Graph billing export holds it (attribute names as received: "
        "PascalCase, or camelCase in older data); money and prices as JSON numbers with every digit.",
        "additionalProperties": True,
    },
    "LineItemCollection": _collection("RatedUsageLine"),
    "FunctionHealth": {
        "type": "object",
        "required": ["healthy", "reasons", "lastRun", "running"],
        "properties": {
            "healthy": {"type": "boolean"},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "lastRun": {"anyOf": [_ref("Run"), {"type": "null"}], "description": "newest finished run"},
            "running": {"anyOf": [_ref("Run"), {"type": "null"}], "description": "newest run, if running"},
            "progress": {
                "type": ["object", "null"],
                "description": "How far each subscription's data reaches (null for usage records): the oldest and "
                "newest mark (utilization: end of the last window stored; summaries: last success) and how many "
                "subscriptions lag more than a day behind the newest possible mark.",
                "properties": {
                    "field": {"type": "string"},
                    "subscriptions": {"type": "integer"},
                    "oldest": _nullable("string"),
                    "newest": _nullable("string"),
                    "laggingMoreThanADay": {"type": "integer"},
                },
            },
            "snapshots": {
                "type": "array",
                "description": "fetch_rated_usage only: each export stream (billing period, currency), the snapshot "
                "stored (its eTag, when Graph made it, when it was stored) and when it was last checked.",
                "items": _ref("Snapshot"),
            },
            "exports": {
                "type": "array",
                "description": "fetch_rated_usage only: each export being staged and committed (issue 22): blobs "
                "staged of all its blobs, lines staged, the runs that worked on it and those without progress, "
                "whether its blobs go through the rated-ingest queue, and its poisoned blobs with their reason.",
                "items": {
                    "type": "object",
                    "properties": {
                        "billingPeriod": {"type": "string"},
                        "currencyCode": {"type": "string"},
                        "exportId": {"type": "string"},
                        "manifestETag": _nullable("string"),
                        "fanout": {"type": "boolean"},
                        "blobsTotal": {"type": "integer"},
                        "blobsStaged": {"type": "integer"},
                        "linesStaged": {"type": "integer"},
                        "runs": {"type": "integer"},
                        "stalledRuns": {"type": "integer"},
                        "startedAt": _nullable("string"),
                        "progressAt": _nullable("string"),
                        "poisoned": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "blob": {"type": "string"},
                                    "attempts": {"type": "integer"},
                                    "lastError": {"type": "string"},
                                },
                            },
                        },
                    },
                    "additionalProperties": True,
                },
            },
        },
        "additionalProperties": False,
    },
    "OpenApiDocument": {"type": "object", "description": "An OpenAPI 3.1 document"},
    "Health": {
        "type": "object",
        "required": ["status", "checkedAt", "maxAgeHours", "functions"],
        "properties": {
            "status": {"enum": ["healthy", "unhealthy"]},
            "checkedAt": {"type": "string"},
            "maxAgeHours": {"type": "number"},
            "accessMode": {
                "enum": ["key", "both", "token"],
                "description": "API_ACCESS_MODE: who reads customer data (the function key, tokens under /api/scoped/, "
                "or both)",
            },
            "functions": {
                "type": "object",
                "required": list(JOB_NAMES),
                "additionalProperties": _ref("FunctionHealth"),
            },
            "invoices": {
                "type": "object",
                "description": "invoices stored (`listed`), with their billed data stored (`billed`) or not yet "
                "(`pending`), and those whose tie-out failed (`tieOutFailed`: id and why)",
                "properties": {
                    "listed": {"type": "integer"},
                    "billed": {"type": "integer"},
                    "pending": {"type": "integer"},
                    "tieOutFailed": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
        "additionalProperties": False,
    },
}


_HEADER_PARAMETERS: dict[str, Any] = {
    "ifNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "description": "An ETag from an earlier 200: an unchanged body answers 304.",
        "schema": {"type": "string"},
    },
    "ifModifiedSince": {
        "name": "If-Modified-Since",
        "in": "header",
        "description": "An HTTP date (a Last-Modified from an earlier 200): data not fetched since answers 304. "
        "Ignored with If-None-Match.",
        "schema": {"type": "string"},
    },
    "continuationTokenHeader": {
        "name": "MS-ContinuationToken",
        "in": "header",
        "description": "The token from `links.next` (used with seek_operation=Next).",
        "schema": {"type": "string"},
    },
}


def _param_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _route_parameters(route: Route) -> list[Param]:
    """The declared parameters of a route, in the order the document lists them."""
    paging = [params.SEEK_OPERATION, params.CONTINUATION_TOKEN] if route.paged else []
    formats = params.FORMAT if route.csv_columns is not None else params.FORMAT_JSON
    return [*route.path_params, *route.query, *paging, formats]


def _operation(route: Route) -> dict[str, Any]:
    """One route's GET operation, from its declaration."""
    refs = [_param_ref(p.reference) for p in _route_parameters(route)]
    if route.paged:
        refs.append(_param_ref("continuationTokenHeader"))
    refs.append(_param_ref("ifNoneMatch"))
    if route.conditional:
        refs.append(_param_ref("ifModifiedSince"))
    schema: dict[str, Any] = _ref(route.response)
    if route.response in PRICED_SCHEMAS:
        schema = {
            "anyOf": [schema, _ref("Scoped" + route.response)],
            "description": f"`{route.response}` with the function key (and grants that show cost); "
            f"`Scoped{route.response}` under /api/scoped/ for every other grant: prices, no cost field",
        }
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if route.csv_columns is not None:
        content["text/csv"] = {
            "schema": {
                "type": "string",
                "description": "A header line, then one line per record, with exactly these columns: "
                + ", ".join(route.csv_columns)
                + (
                    ""
                    if route.scoped_csv_columns is None
                    else "; under /api/scoped/ to a caller shown prices (cost columns only with showCost): "
                    + ", ".join(route.scoped_csv_columns)
                ),
            }
        }
    headers = {"ETag": {"$ref": "#/components/headers/ETag"}}
    if route.conditional:
        headers["Last-Modified"] = {"$ref": "#/components/headers/LastModified"}
    if route.paged:
        headers["MS-ContinuationToken"] = {"$ref": "#/components/headers/ContinuationToken"}
    responses: dict[str, Any] = {
        "200": {"description": route.summary, "headers": headers, "content": content},
        "304": {"$ref": "#/components/responses/NotModified"},
        "400": {"$ref": "#/components/responses/BadRequest"},
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "403": {"$ref": "#/components/responses/Forbidden"},
        "404": {"$ref": "#/components/responses/NotFound"},
        "405": {"$ref": "#/components/responses/MethodNotAllowed"},
        "500": {"$ref": "#/components/responses/InternalError"},
        "503": {"$ref": "#/components/responses/TokenUncheckable"},
        **route.responses,
    }
    return {
        "operationId": "get" + "".join(part.title() for part in route.name.split("_")),
        "summary": route.summary,
        "x-access": str(route.access),
        "parameters": refs,
        "responses": dict(sorted(responses.items())),
    }


def _document() -> dict[str, Any]:
    from shared.api.routes import ROUTES  # the routes name the handlers, one of which serves this document

    used = {p.reference: p.openapi() for route in ROUTES for p in _route_parameters(route)}
    schemas = {**_SCHEMAS, **{name: schema for route in ROUTES for name, schema in route.schemas.items()}}
    schemas.update(scoped_twins(schemas))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Partner Center usage cache", "version": "1.0.0", "description": DESCRIPTION},
        "servers": [
            {"url": "/api", "description": "the function key (partner-wide)"},
            {"url": "/api/scoped", "description": "Entra ID access tokens, each caller within its grant"},
        ],
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}, {"entraIdToken": []}],
        "paths": {"/" + route.path: {"get": _operation(route)} for route in ROUTES},
        "components": {
            "securitySchemes": {
                "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
                "entraIdToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Under /api/scoped/ only: an Entra ID access token for this API (RS256)",
                },
            },
            "schemas": schemas,
            "parameters": {**dict(sorted(used.items())), **_HEADER_PARAMETERS},
            "headers": {
                "ETag": {"description": "Strong validator of the body", "schema": {"type": "string"}},
                "LastModified": {
                    "description": "When the data served was last fetched from Partner Center (its newest row's write)",
                    "schema": {"type": "string"},
                },
                "ContinuationToken": {
                    "description": "Token of the next page (paged routes, when one follows)",
                    "schema": {"type": "string"},
                },
            },
            "responses": {
                "NotModified": {
                    "description": "The body is unchanged since the ETag given in If-None-Match; no body",
                    "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
                },
                "BadRequest": _error("A parameter is missing, malformed, repeated, empty or not one the route takes"),
                "Unauthorized": {
                    "description": "Missing or wrong function key (an empty body, from the Functions host), or under "
                    "/api/scoped/ a token this API does not accept (code 900401; WWW-Authenticate says why)",
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
                "Forbidden": _error(
                    "The partner has no relationship with the customer (code 20002, as Partner Center): nothing of "
                    "it can be read; or, under /api/scoped/, the caller has no grant (code 900403)"
                ),
                "NotFound": _error(
                    "Unknown route, customer or subscription, no stored data for the request, or a subscription the "
                    "route does not cover (code 900409, the description names the route that does); under "
                    "/api/scoped/ also anything outside the caller's grant, with the very same answer"
                ),
                "MethodNotAllowed": {
                    "description": "Only GET is served",
                    "headers": {"Allow": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
                "InternalError": _error("Unexpected failure; the body holds only a correlation id"),
                "TokenUncheckable": {
                    "description": "Under /api/scoped/ only: the token could not be checked now, because the issuer's "
                    "signing keys cannot be read (code 900503); send it again after Retry-After seconds",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
            },
        },
    }


@functools.cache
def _built() -> dict[str, Any]:
    return _document()


def document() -> dict[str, Any]:
    """A copy of the document (callers may change theirs)."""
    return copy.deepcopy(_built())


@functools.cache
def document_bytes() -> bytes:
    """The document as served (built once per process)."""
    return jsonutil.dumps(_built()).encode("utf-8")
