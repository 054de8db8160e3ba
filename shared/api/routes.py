"""The route table: the one declaration of the HTTP API.

Each route names its path, handler, access class, query parameters, response schema and CSV columns. The
router serves exactly these routes (and refuses query parameters a route does not declare), the scope guard
reads each route's access class, the CSV writer its columns, and the OpenAPI document's paths are generated from
it. A route without an access class cannot be declared: ``Route`` refuses it when this module is imported.

To add a read route: its handler, its table reads in ``queries.py``, one ``Route(...)`` here (and its README row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.api import csv_format, handlers, invoices, params, rated, spend
from shared.api.context import Handler
from shared.api.errors import ApiError, no_rated_usage, no_such_route, unknown_customer
from shared.api.params import Param
from shared.api.scope import REQUIRED_PATH, Access
from shared.pricing.view import PRICE_COLUMNS, SCOPED_LINE_FIELDS

Unknown = Callable[[Mapping[str, str]], ApiError]  # the 404 for ids that name nothing (or nothing in the grant)


@dataclass(frozen=True)
class Route:
    """One route: served by the router, guarded by its access class, described by the OpenAPI document.

    Its name (logs, ``operationId``) is the handler's, its OpenAPI summary the first line of the handler's docstring.
    """

    path: str  # relative to /api/, ``{name}`` segments are path parameters (one segment each)
    handler: Handler
    access: Access
    response: str  # the OpenAPI schema of a 200's JSON body: one of openapi.py's, or one in ``schemas``
    query: tuple[Param, ...] = field(default=(), kw_only=True)
    paged: bool = field(default=False, kw_only=True)  # links.next + MS-ContinuationToken; seek_operation accepted
    csv_columns: tuple[str, ...] | None = field(default=None, kw_only=True)  # offers text/csv with these columns
    scoped_csv_columns: tuple[str, ...] | None = field(default=None, kw_only=True)  # a priced caller's, if others
    not_found: Unknown | None = field(default=None, kw_only=True)  # unknown (or out-of-grant) ids, if not the class's
    responses: Mapping[str, Any] = field(default_factory=dict, kw_only=True)  # OpenAPI responses beside the usual
    conditional: bool = field(default=True, kw_only=True)  # answers If-Modified-Since (it has Last-Modified)
    schemas: Mapping[str, Any] = field(default_factory=dict, kw_only=True)  # schemas this route brings
    template: tuple[str, ...] = field(init=False)

    @property
    def name(self) -> str:
        """The handler's name."""
        return self.handler.__name__

    @property
    def summary(self) -> str:
        """The first line of the handler's docstring."""
        return (self.handler.__doc__ or self.name).strip().splitlines()[0].rstrip(".")

    def __post_init__(self) -> None:
        if not isinstance(self.access, Access):
            raise TypeError(f"route {self.name}: access must be an Access class, not {self.access!r}")
        template = tuple(self.path.strip("/").lower().split("/"))
        object.__setattr__(self, "template", template)
        names = [part[1:-1] for part in template if part.startswith("{")]
        unknown = [name for name in names if name not in params.PATH_PARAMS]
        if unknown:
            raise ValueError(f"route {self.name}: path parameters {unknown} are not declared in params.PATH_PARAMS")
        missing = REQUIRED_PATH[self.access] - set(names)
        if missing:
            raise ValueError(f"route {self.name}: access {self.access} needs path parameters {sorted(missing)}")
        query = [p.name for p in self.query]
        reserved = {params.FORMAT.name, params.FUNCTION_KEY, *(p.name for p in PAGING)}
        if len(set(query)) != len(query) or reserved & set(query):
            raise ValueError(f"route {self.name}: query parameters repeat or reuse a reserved name")

    @property
    def path_params(self) -> tuple[Param, ...]:
        """The path parameters, in path order."""
        return tuple(params.PATH_PARAMS[part[1:-1]] for part in self.template if part.startswith("{"))

    @property
    def accepted(self) -> frozenset[str]:
        """Every query parameter name the route accepts."""
        names = {p.name for p in self.query} | {params.FORMAT.name, params.FUNCTION_KEY}
        if self.paged:
            names |= {p.name for p in PAGING}
        return frozenset(names)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Path parameters (as written) when the segments fit the template; literals compare case-insensitively."""
        if len(segments) != len(self.template):
            return None
        found = {}
        for part, segment in zip(self.template, segments, strict=True):
            if part.startswith("{"):
                found[part[1:-1]] = segment
            elif part != segment.lower():
                return None
        return found

    def unknown(self, path: Mapping[str, str]) -> ApiError:
        """The 404 for ids that name nothing, which is also the answer for ids outside a scoped caller's grant."""
        if self.not_found is not None:
            return self.not_found(path)
        if self.access is Access.AZURE_SUBSCRIPTION:
            return no_rated_usage(path["customer_id"], path["entitlement_id"])
        if "customer_id" in path:
            return unknown_customer(path["customer_id"])
        return no_such_route()


PAGING = (params.SEEK_OPERATION, params.CONTINUATION_TOKEN)
CUSTOMER = "v1/customers/{customer_id}"
SUBSCRIPTION = CUSTOMER + "/subscriptions/{subscription_id}"
ENTITLEMENTS = CUSTOMER + "/azureentitlements"
LINE_ITEMS_409 = {
    "409": {
        "description": "A newer snapshot was stored after page 1 (code 900410): start again from page 1, so no two "
        "pages come from different snapshots",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
}


def _no_rated_usage_of_customer(path: Mapping[str, str]) -> ApiError:
    return no_rated_usage(path["customer_id"])


DAY_RANGE = (params.FROM_DAY, params.TO_DAY)
HEALTH_503 = {
    "503": {
        "description": "At least one function is unhealthy; `reasons` say why",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
    }
}


def _daily_cost(owner: str, handler: Handler, access: Access, not_found: Unknown | None = None) -> Route:
    """A ``.../dailycost`` route: a day range in, cost per day out (JSON or CSV)."""
    return Route(
        owner + "/dailycost",
        handler,
        access,
        "DailyCost",
        query=DAY_RANGE,
        csv_columns=rated.DAILY_COLUMNS,
        scoped_csv_columns=rated.PRICED_DAILY_COLUMNS,
        not_found=not_found,
    )


ROUTES: tuple[Route, ...] = (
    Route(
        "v1/customers/usagerecords",
        handlers.usage_records,
        Access.LISTING,
        "UsageRecordCollection",
        query=(params.BILLING_MONTH,),
        csv_columns=csv_format.USAGE_RECORD_COLUMNS,
        scoped_csv_columns=csv_format.USAGE_RECORD_PRICED_COLUMNS,
    ),
    Route("v1/customers", handlers.customers, Access.LISTING, "CustomerCollection", query=(params.SIZE,), paged=True),
    Route(CUSTOMER, handlers.customer, Access.CUSTOMER, "Customer"),
    Route(CUSTOMER + "/subscriptions", handlers.customer_subscriptions, Access.LISTING, "SubscriptionCollection"),
    Route(SUBSCRIPTION, handlers.subscription, Access.SUBSCRIPTION, "Subscription"),
    Route(
        SUBSCRIPTION + "/usagesummary",
        handlers.usage_summary,
        Access.SUBSCRIPTION,
        "SubscriptionUsageSummary",
        query=(params.BILLING_START,),
        csv_columns=csv_format.USAGE_SUMMARY_COLUMNS,
        scoped_csv_columns=csv_format.USAGE_SUMMARY_PRICED_COLUMNS,
    ),
    Route(
        SUBSCRIPTION + "/utilizations/azure",
        handlers.utilization,
        Access.SUBSCRIPTION,
        "UtilizationCollection",
        query=(params.START_TIME, params.END_TIME, params.SIZE, params.GRANULARITY, params.SHOW_DETAILS),
        paged=True,
        csv_columns=csv_format.UTILIZATION_COLUMNS,
    ),
    _daily_cost(CUSTOMER, handlers.customer_daily_cost, Access.CUSTOMER_TOTALS, _no_rated_usage_of_customer),
    Route(
        ENTITLEMENTS,
        handlers.azure_entitlements,
        Access.LISTING,
        "AzureEntitlementCollection",
        not_found=_no_rated_usage_of_customer,
    ),
    _daily_cost(ENTITLEMENTS + "/{entitlement_id}", handlers.entitlement_daily_cost, Access.AZURE_SUBSCRIPTION),
    Route(
        ENTITLEMENTS + "/{entitlement_id}/lineitems",
        handlers.line_items,
        Access.AZURE_SUBSCRIPTION,
        "LineItemCollection",
        query=(*DAY_RANGE, params.SIZE),
        paged=True,
        csv_columns=rated.LINE_ITEM_COLUMNS,
        scoped_csv_columns=SCOPED_LINE_FIELDS + PRICE_COLUMNS,
        responses=LINE_ITEMS_409,
    ),
    Route(
        "v1/spend",
        spend.partner_spend,
        Access.LISTING,
        "SpendOverview",
        query=(params.PERIOD, params.BY, params.SIZE),
        paged=True,
        csv_columns=spend.OVERVIEW_COLUMNS,
        scoped_csv_columns=spend.OVERVIEW_PRICED_COLUMNS,
        schemas=spend.SCHEMAS,
    ),
    Route(
        CUSTOMER + "/spend",
        spend.customer_spend,
        Access.CUSTOMER,
        "CustomerSpend",
        query=(*DAY_RANGE, params.SPEND_GRANULARITY),
        csv_columns=spend.CUSTOMER_COLUMNS,
    ),
    Route("v1/invoices", invoices.invoices, Access.PARTNER, "InvoiceCollection", schemas=invoices.SCHEMAS),
    Route("v1/invoices/{invoice_id}", invoices.invoice, Access.PARTNER, "Invoice"),
    Route(
        "v1/invoices/{invoice_id}/lineitems",
        invoices.invoice_line_items,
        Access.PARTNER,
        "InvoiceLineCollection",
        query=(params.CUSTOMER, params.SIZE),
        paged=True,
    ),
    Route("health", handlers.health, Access.PARTNER, "Health", conditional=False, responses=HEALTH_503),
    Route("openapi.json", handlers.openapi, Access.PUBLIC, "OpenApiDocument", conditional=False),
)


def _check_unique(routes: tuple[Route, ...]) -> None:
    names = [route.name for route in routes]
    templates = [tuple("{}" if p.startswith("{") else p for p in route.template) for route in routes]
    if len(set(names)) != len(names) or len(set(templates)) != len(templates):
        raise ValueError("two routes share a name or a path")


_check_unique(ROUTES)
BY_NAME: Mapping[str, Route] = {route.name: route for route in ROUTES}
