"""The route handlers: each validates its input, reads the tables and returns what to render."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from shared import jsonutil
from shared.api import continuation, csv_format, discovery, params, queries, rated, rendering
from shared.api.errors import CODE_NO_USAGE_DATA, CODE_SUBSCRIPTION_NOT_FOUND, not_found
from shared.api.health import health as health_report
from shared.api.messages import Request
from shared.api.openapi import document_bytes
from shared.api.scope import Scope
from shared.settings import Settings
from shared.table_store import TableStore
from shared.tables import LATEST, USAGE_SUMMARIES, UTILIZATION, period_key


@dataclass(frozen=True)
class Context:
    """Everything a handler needs: the request, its path parameters and the app's parts."""

    request: Request
    path: Mapping[str, str]
    store: TableStore
    settings: Settings
    now: datetime
    scope: Scope = field(default_factory=Scope.everything)  # what the caller may read (partner-wide: everything)


@dataclass
class Content:
    """A handler's answer: the JSON body, and the records again for CSV when the route offers CSV."""

    json_body: bytes
    status: int = 200
    csv_raws: list[str] | None = None
    csv_columns: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None  # when the data served was last written (fetched), for Last-Modified


def _ids(ctx: Context) -> tuple[str, str]:
    return (
        params.guid(ctx.path["customer_id"], "customer id"),
        params.guid(ctx.path["subscription_id"], "subscription id"),
    )


def _why_nothing(store: TableStore, customer_id: str, subscription_id: str, route: str, data_table: str) -> None:
    """Raise the answer for a subscription route that found nothing: no relationship (403), a subscription the
    route does not cover (404 naming the route that does), or a customer or subscription known neither to the
    inventory nor by data rows (404). Returns when the subscription is simply without data yet."""
    uncovered = discovery.coverage_error(store, customer_id, subscription_id, route)
    if uncovered:
        raise uncovered
    if queries.subscription_known(store, customer_id, subscription_id, data_table):
        return
    if not queries.customer_known(store, customer_id):
        raise not_found(f"Customer {customer_id} is not known to this service.")
    raise not_found(
        f"Subscription {subscription_id} is not known for customer {customer_id}.", CODE_SUBSCRIPTION_NOT_FOUND
    )


def usage_records(ctx: Context) -> Content:
    """Every customer's monthly usage record: ``latest``, or a stored billing month; each says its relationship."""
    month_text = params.single(ctx.request, "billing_month")
    month = None if month_text is None else params.billing_month(month_text)
    stored = list(queries.usage_records(ctx.store, month or LATEST))
    if not ctx.scope.unrestricted:  # customer-level totals: only customers wholly in the grant
        ctx.scope.load_everyone()
        stored = [entry for entry in stored if ctx.scope.customer_whole(entry[0])]
    if month and not stored:
        raise not_found(f"No usage records are stored for billing month {month}.")
    relationships = queries.customer_relationships(ctx.store)
    raws = [
        discovery.with_attributes(raw, {"relationship": relationships.get(customer_id, "unknown")})
        for customer_id, raw, _ in stored
    ]
    written = queries.newest(stamp for _, _, stamp in stored)
    body = rendering.collection(raws, {"self": rendering.link(rendering.usage_records_uri(month))})
    return Content(body, csv_raws=raws, csv_columns=csv_format.USAGE_RECORD_COLUMNS, last_modified=written)


def usage_summary(ctx: Context) -> Content:
    """A subscription's latest usage summary, or the stored one of a past billing period."""
    customer_id, subscription_id = _ids(ctx)
    start_text = params.single(ctx.request, "billing_start")
    billing_start = None if start_text is None else params.billing_start(start_text)
    row_key = LATEST if billing_start is None else period_key(billing_start)
    found = queries.usage_summary(ctx.store, customer_id, subscription_id, row_key)
    if found is None:
        _why_nothing(ctx.store, customer_id, subscription_id, "usage_summary", USAGE_SUMMARIES)
        if billing_start is None:
            raise not_found(
                f"No usage summary is stored yet for subscription {subscription_id} of customer {customer_id}; "
                "it appears after the next successful fetch_usage_summary run.",
                CODE_NO_USAGE_DATA,
            )
        raise not_found(
            f"No usage summary is stored for the billing period starting {billing_start} of subscription "
            f"{subscription_id}.",
            CODE_NO_USAGE_DATA,
        )
    raw, written = found
    return Content(
        raw.encode("utf-8"), csv_raws=[raw], csv_columns=csv_format.USAGE_SUMMARY_COLUMNS, last_modified=written
    )


def _first_page_query(ctx: Context, customer_id: str, subscription_id: str) -> continuation.UtilizationQuery:
    """The range of a first page: by default the current UTC month to date; an empty range holds no records."""
    request = ctx.request
    start_text = params.single(request, "start_time")
    end_text = params.single(request, "end_time")
    today = ctx.now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today.replace(day=1) if start_text is None else params.utc_time(start_text, "start_time")
    end = today + timedelta(days=1) if end_text is None else params.utc_time(end_text, "end_time")
    return continuation.UtilizationQuery(
        customer_id=customer_id,
        subscription_id=subscription_id,
        start_key=params.time_key(start),
        end_key=params.time_key(end),
        size=params.page_size(params.single(request, "size")),
        show_details=params.boolean(params.single(request, "show_details"), "show_details", True),
    )


def _continuation_token(request: Request) -> str | None:
    """The token of a next-page call: ``seek_operation=Next`` with the header, or the query parameter (which wins).

    A next-page call without a token names no page: 404, like a token that is not one of this subscription's.
    """
    seek = params.choice(params.single(request, "seek_operation"), "seek_operation", ("next",))
    in_query = params.single(request, "continuation_token")
    in_header = (request.header(rendering.CONTINUATION_HEADER) or "").strip() or None
    token = in_query or (in_header if seek else None)
    if seek and token is None:
        raise not_found(
            "seek_operation=Next continues from the MS-ContinuationToken header of the previous page; without it "
            "there is no page to serve. Start from page 1 with start_time and end_time."
        )
    return token


def utilization(ctx: Context) -> Content:
    """A page of a subscription's stored Azure utilization, selected by usage start time."""
    customer_id, subscription_id = _ids(ctx)
    granularity = params.choice(params.single(ctx.request, "granularity"), "granularity", ("daily", "hourly"))
    if granularity and granularity != ctx.settings.utilization_granularity:
        raise not_found(
            f"This service stores {ctx.settings.utilization_granularity} utilization records; "
            f"granularity={granularity} is not available."
        )
    token = _continuation_token(ctx.request)
    if token is None:
        query = _first_page_query(ctx, customer_id, subscription_id)
    else:
        query = continuation.decode(token, customer_id=customer_id, subscription_id=subscription_id)
    page = queries.utilization_page(ctx.store, query)
    if not page.rows and query.after is None:
        # Only an empty first page costs these reads: a page with rows is its own answer.
        _why_nothing(ctx.store, customer_id, subscription_id, "utilization", UTILIZATION)
    raws = [raw for _, raw in page.rows]
    if not query.show_details:
        raws = [rendering.without_instance_data(raw) for raw in raws]
    path = rendering.utilization_path(customer_id, subscription_id)
    if token is None:
        self_query = {
            "start_time": query.start_key,
            "end_time": query.end_key,
            "size": str(query.size),
            "show_details": "true" if query.show_details else "false",
        }
        if granularity:
            self_query["granularity"] = granularity
        links = {"self": rendering.link(rendering.utilization_self_uri(customer_id, subscription_id, self_query))}
    else:
        links = {"self": rendering.link(path + "?seek_operation=Next", [(rendering.CONTINUATION_HEADER, token)])}
    headers = {}
    if page.more:
        next_token = continuation.encode(query, page.rows[-1][0])
        links["next"] = rendering.utilization_next(customer_id, subscription_id, next_token)
        headers[rendering.CONTINUATION_HEADER] = next_token
    body = rendering.collection(raws, links)
    return Content(
        body,
        csv_raws=raws,
        csv_columns=csv_format.UTILIZATION_COLUMNS,
        headers=headers,
        last_modified=page.written,
    )


def customers(ctx: Context) -> Content:
    """The partner's customers, paged like ``GET /v1/customers``."""
    keep = None
    if not ctx.scope.unrestricted:
        ctx.scope.load_everyone()
        keep = ctx.scope.keep_customer_row
    body, headers, written = discovery.customers(
        ctx.store, params.single(ctx.request, "size"), _continuation_token(ctx.request), keep
    )
    return Content(body, headers=headers, last_modified=written)


def customer(ctx: Context) -> Content:
    """One customer."""
    body, written = discovery.customer(ctx.store, params.guid(ctx.path["customer_id"], "customer id"))
    return Content(body, last_modified=written)


def customer_subscriptions(ctx: Context) -> Content:
    """A customer's subscriptions."""
    customer_id = params.guid(ctx.path["customer_id"], "customer id")
    keep = None if ctx.scope.unrestricted else lambda sid: ctx.scope.subscription_visible(customer_id, sid)
    body, written = discovery.subscriptions(ctx.store, customer_id, keep)
    return Content(body, last_modified=written)


def subscription(ctx: Context) -> Content:
    """One subscription."""
    customer_id, subscription_id = _ids(ctx)
    body, written = discovery.subscription(ctx.store, customer_id, subscription_id)
    return Content(body, last_modified=written)


def _customer_and_entitlement(ctx: Context) -> tuple[str, str]:
    return (
        params.guid(ctx.path["customer_id"], "customer id"),
        params.guid(ctx.path["entitlement_id"], "Azure subscription (entitlement) id"),
    )


def customer_daily_cost(ctx: Context) -> Content:
    """A customer's Azure plan cost per day."""
    customer_id = params.guid(ctx.path["customer_id"], "customer id")
    days = rated.day_range(ctx.request, ctx.now)
    body, raws, written = rated.customer_daily_cost(ctx.store, customer_id, days)
    return Content(body, csv_raws=raws, csv_columns=rated.DAILY_COLUMNS, last_modified=written)


def azure_entitlements(ctx: Context) -> Content:
    """A customer's Azure subscriptions with stored rated usage."""
    customer_id = params.guid(ctx.path["customer_id"], "customer id")
    keep = None if ctx.scope.unrestricted else lambda eid: ctx.scope.entitlement_visible(customer_id, eid)
    body, written = rated.entitlements(ctx.store, customer_id, keep)
    return Content(body, last_modified=written)


def entitlement_daily_cost(ctx: Context) -> Content:
    """One Azure subscription's cost per day."""
    customer_id, entitlement_id = _customer_and_entitlement(ctx)
    days = rated.day_range(ctx.request, ctx.now)
    body, raws, written = rated.entitlement_daily_cost(ctx.store, customer_id, entitlement_id, days)
    return Content(body, csv_raws=raws, csv_columns=rated.DAILY_COLUMNS, last_modified=written)


def line_items(ctx: Context) -> Content:
    """A page of one Azure subscription's line items."""
    customer_id, entitlement_id = _customer_and_entitlement(ctx)
    token = _continuation_token(ctx.request)
    body, raws, headers, written = rated.line_items(ctx.store, ctx.request, customer_id, entitlement_id, ctx.now, token)
    return Content(body, csv_raws=raws, csv_columns=rated.LINE_ITEM_COLUMNS, headers=headers, last_modified=written)


def health(ctx: Context) -> Content:
    """The timer functions' last runs; 503 when any is unhealthy."""
    status, report = health_report(ctx.store, ctx.settings, ctx.now)
    return Content(jsonutil.dumps(report).encode("utf-8"), status=status, headers={"Cache-Control": "no-store"})


def openapi(ctx: Context) -> Content:
    """The OpenAPI document of this API."""
    return Content(document_bytes())


Handler = Callable[[Context], Content]
