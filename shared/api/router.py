"""``handle``: route, negotiate JSON or CSV, add ETags, and turn every failure into Partner Center's error shape."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from werkzeug.http import http_date

from shared.api import csv_format, etag, handlers, params
from shared.api.errors import (
    CODE_METHOD_NOT_ALLOWED,
    ApiError,
    bad_request,
    error_response,
    internal_error_response,
    not_found,
)
from shared.api.messages import CSV_TYPE, JSON_TYPE, Request, Response
from shared.api.scope import Scope
from shared.settings import Settings
from shared.table_store import TableStore

log = logging.getLogger(__name__)

ALLOWED_METHODS = "GET"


@dataclass(frozen=True)
class Route:
    """A path template (``{name}`` segments match one segment) and its handler."""

    name: str
    template: tuple[str, ...]
    handler: handlers.Handler
    offers_csv: bool

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Path parameters when the segments fit the template (literals compare case-insensitively)."""
        if len(segments) != len(self.template):
            return None
        found = {}
        for part, segment in zip(self.template, segments, strict=True):
            if part.startswith("{"):
                found[part[1:-1]] = segment
            elif part != segment.lower():
                return None
        return found


def _route(name: str, template: str, handler: handlers.Handler, *, offers_csv: bool = False) -> Route:
    return Route(name, tuple(template.lower().split("/")), handler, offers_csv)


SUBSCRIPTION = "v1/customers/{customer_id}/subscriptions/{subscription_id}"
ENTITLEMENTS = "v1/customers/{customer_id}/azureentitlements"
ROUTES = (
    _route("usage_records", "v1/customers/usagerecords", handlers.usage_records, offers_csv=True),
    _route("customers", "v1/customers", handlers.customers),
    _route("customer", "v1/customers/{customer_id}", handlers.customer),
    _route("subscriptions", "v1/customers/{customer_id}/subscriptions", handlers.customer_subscriptions),
    _route("subscription", SUBSCRIPTION, handlers.subscription),
    _route("usage_summary", SUBSCRIPTION + "/usagesummary", handlers.usage_summary, offers_csv=True),
    _route("utilization", SUBSCRIPTION + "/utilizations/azure", handlers.utilization, offers_csv=True),
    _route(
        "customer_daily_cost", "v1/customers/{customer_id}/dailycost", handlers.customer_daily_cost, offers_csv=True
    ),
    _route("azure_entitlements", ENTITLEMENTS, handlers.azure_entitlements),
    _route(
        "entitlement_daily_cost",
        ENTITLEMENTS + "/{entitlement_id}/dailycost",
        handlers.entitlement_daily_cost,
        offers_csv=True,
    ),
    _route("line_items", ENTITLEMENTS + "/{entitlement_id}/lineitems", handlers.line_items, offers_csv=True),
    _route("health", "health", handlers.health),
    _route("openapi", "openapi.json", handlers.openapi),
)


def resolve(path: str) -> tuple[Route, dict[str, str]]:
    """The route of a path (relative to the API root), with its path parameters; 404 when none fits."""
    segments = path.strip("/").split("/")
    for route in ROUTES:
        found = route.match(segments)
        if found is not None:
            return route, found
    raise not_found("No such resource. See /api/openapi.json for the routes this API serves.")


def wants_csv(request: Request, route: Route) -> bool:
    """``?format=csv|json`` wins; otherwise the Accept header decides."""
    fmt = params.choice(params.single(request, "format"), "format", ("json", "csv"))
    if fmt == "csv" and not route.offers_csv:
        raise bad_request("format=csv is offered on the usage routes only.")
    if fmt is not None:
        return fmt == "csv"
    return route.offers_csv and params.accepts_csv(request.header("accept"))


def _render(request: Request, route: Route, content: handlers.Content, csv: bool) -> Response:
    if csv and content.csv_raws is not None:
        body, media = csv_format.to_csv(content.csv_raws, content.csv_columns), CSV_TYPE
    else:
        body, media = content.json_body, JSON_TYPE
    headers = {"Cache-Control": "private, no-cache", **content.headers}
    if route.offers_csv:
        headers["Vary"] = "Accept"
    if content.status != 200:
        return Response(status=content.status, headers={"Content-Type": media, **headers}, body=body)
    tag = etag.etag_of(body)
    headers["ETag"] = tag
    if content.last_modified is not None:
        headers["Last-Modified"] = http_date(content.last_modified)
    if_none_match = request.header("if-none-match")
    if etag.matches(if_none_match, tag) or (
        if_none_match is None and etag.not_modified_since(request.header("if-modified-since"), content.last_modified)
    ):
        return Response(status=304, headers=headers)
    return Response(status=200, headers={"Content-Type": media, **headers}, body=body)


def handle(
    request: Request,
    store: TableStore,
    settings: Settings,
    now: datetime | None = None,
    scope: Scope | None = None,
) -> Response:
    """Answer one request within ``scope`` (default: everything). Bad input is a 4xx; an unexpected failure is a
    500 with only a correlation id."""
    started = time.perf_counter()
    route_name = "-"
    try:
        route, path_params = resolve(request.path)
        route_name = route.name
        if request.method != "GET":
            raise ApiError(
                405,
                CODE_METHOD_NOT_ALLOWED,
                f"Method {request.method[:20]} is not allowed here; use GET.",
                headers={"Allow": ALLOWED_METHODS},
            )
        csv = wants_csv(request, route)
        moment = now or datetime.now(timezone.utc)
        scope = scope or Scope.everything()
        scope.guard(route.name, path_params)
        content = route.handler(handlers.Context(request, path_params, store, settings, moment, scope))
        response = _render(request, route, content, csv)
    except ApiError as error:
        response = error_response(error)
    except Exception:
        correlation_id = str(uuid.uuid4())
        log.exception("api %s failed; correlation id %s", route_name, correlation_id)
        response = internal_error_response(correlation_id)
    log.info(
        "api %s %s -> %d in %.1f ms",
        request.method[:20],
        route_name,
        response.status,
        (time.perf_counter() - started) * 1000,
    )
    return response
