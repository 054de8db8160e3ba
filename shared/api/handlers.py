"""The route handlers: each reads the tables for its parsed parameters and returns a ``Content``.

Parameters are declared in ``shared.api.routes`` and parsed by the router before a handler runs, so a handler
reads ``ctx.path`` (ids, lower-cased) and ``ctx.query`` (typed values, or their defaults) and never the raw
request.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from shared import jsonutil
from shared.api import continuation, csv_format, discovery, params, queries, rated, rendering, spend
from shared.api.context import Content, Context
from shared.api.errors import (
    CODE_COST_WITHHELD,
    CODE_NO_USAGE_DATA,
    CODE_TOTAL_WITHHELD,
    not_found,
    unknown_customer,
    unknown_subscription,
)
from shared.api.health import health as health_report
from shared.pricing.spend import AZURE_PLAN_KIND, price_amounts
from shared.pricing.view import COST_FIELDS, PRICE_COLUMNS, SCOPED_LINE_FIELDS, priced_line
from shared.tables import LATEST, USAGE_SUMMARIES, UTILIZATION, DayView, RatedPointer, period_key


def _subscription_ids(ctx: Context) -> tuple[str, str]:
    return ctx.path["customer_id"], ctx.path["subscription_id"]


def _why_nothing(ctx: Context, route: str, data_table: str) -> None:
    """Raise the answer for a subscription route that found nothing: no relationship (403), a subscription the
    route does not cover (404 naming the route that does), or a customer or subscription known neither to the
    inventory nor by data rows (404). Returns when the subscription is simply without data yet."""
    store, (customer_id, subscription_id) = ctx.store, _subscription_ids(ctx)
    uncovered = discovery.coverage_error(store, customer_id, subscription_id, route)
    if uncovered:
        raise uncovered
    if queries.subscription_known(store, customer_id, subscription_id, data_table):
        return
    if not queries.customer_known(store, customer_id):
        raise unknown_customer(customer_id)
    raise unknown_subscription(customer_id, subscription_id)


# What a usage record of a customer seen only in part may show: who and what it is, never an amount.
_IDENTITY_FIELDS = (
    "id",
    "resourceId",
    "name",
    "resourceName",
    "currencyCode",
    "currencyLocale",
    "currencySymbol",
    "isUpgraded",
    "lastModifiedDate",
    "attributes",
)


def usage_records(ctx: Context) -> Content:
    """Every customer's monthly usage record: ``latest``, or a stored billing month; each says its relationship.

    A scoped caller sees the customers it may see; a customer it sees only in part (a reseller that sold some of
    its subscriptions) is listed without its amounts, which hold what others sold: ``serviceAttributes``
    says they are withheld and where the caller's own part is."""
    month = ctx.query["billing_month"]
    stored = list(queries.usage_records(ctx.store, month or LATEST))
    withheld: dict[str, dict[str, object]] = {}
    if not ctx.scope.unrestricted:
        ctx.scope.load_everyone()
        stored = [entry for entry in stored if ctx.scope.customer_visible(entry[0])]
        withheld = {entry[0]: _shared_total(entry[0]) for entry in stored if not ctx.scope.customer_whole(entry[0])}
    if not ctx.scope.viewer.shows_cost:  # the partner's cost, to a caller shown prices only
        withheld = {entry[0]: withheld.get(entry[0]) or _cost_withheld(entry[0]) for entry in stored}
    if month and not stored:
        raise not_found(f"No usage records are stored for billing month {month}.")
    relationships = queries.customer_relationships(ctx.store)
    raws = []
    for customer_id, raw, _ in stored:
        attributes: dict[str, object] = {"relationship": relationships.get(customer_id, "unknown")}
        if customer_id in withheld:
            raw = discovery.only(raw, _IDENTITY_FIELDS)
            attributes["totalWithheld"] = withheld[customer_id]
        raws.append(discovery.with_attributes(raw, attributes))
    links = rendering.page_links("customers/usagerecords", {"billing_month": month})
    written = queries.newest(stamp for _, _, stamp in stored)
    columns = None if ctx.scope.viewer.shows_cost else csv_format.USAGE_RECORD_PRICED_COLUMNS
    return Content(rendering.collection(raws, links), csv_raws=raws, csv_columns=columns, last_modified=written)


def _shared_total(customer_id: str) -> dict[str, object]:
    return {
        "code": CODE_TOTAL_WITHHELD,
        "reason": "the customer's totals include subscriptions outside this application's grant",
        "spend": rendering.link(rendering.customer_path(customer_id) + "/spend"),
    }


def _cost_withheld(customer_id: str) -> dict[str, object]:
    return {
        "code": CODE_COST_WITHHELD,
        "reason": "these are the partner's costs; this application is shown prices under its price rule",
        "spend": rendering.link(rendering.customer_path(customer_id) + "/spend"),
    }


# What a usage summary shows a caller that may not see cost: its period, never an amount.
_SUMMARY_IDENTITY: tuple[str, ...] = ("id", "resourceId", "name", "resourceName", "billingStartDate")
_SUMMARY_IDENTITY += ("billingEndDate", "currencyCode", "currencyLocale", "lastModifiedDate", "links", "attributes")


def usage_summary(ctx: Context) -> Content:
    """A subscription's latest usage summary, or the stored one of a past billing period."""
    customer_id, subscription_id = _subscription_ids(ctx)
    billing_start = ctx.query["billing_start"]
    row_key = LATEST if billing_start is None else period_key(billing_start)
    found = queries.usage_summary(ctx.store, customer_id, subscription_id, row_key)
    if found is None:
        _why_nothing(ctx, "usage_summary", USAGE_SUMMARIES)
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
    if ctx.scope.viewer.shows_cost:
        return Content(raw.encode("utf-8"), csv_raws=[raw], last_modified=written)
    raw = discovery.with_attributes(
        discovery.only(raw, _SUMMARY_IDENTITY), {"totalWithheld": _cost_withheld(customer_id)}
    )
    columns = csv_format.USAGE_SUMMARY_PRICED_COLUMNS
    return Content(raw.encode("utf-8"), csv_raws=[raw], csv_columns=columns, last_modified=written)


def _first_page_query(ctx: Context) -> continuation.UtilizationQuery:
    """The range of a first page: by default the current UTC month to date; an empty range holds no records."""
    customer_id, subscription_id = _subscription_ids(ctx)
    today = ctx.now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = ctx.query["start_time"] or today.replace(day=1)
    end = ctx.query["end_time"] or today + timedelta(days=1)
    return continuation.UtilizationQuery(
        customer_id=customer_id,
        subscription_id=subscription_id,
        start_key=params.time_key(start),
        end_key=params.time_key(end),
        size=ctx.query["size"],
        show_details=ctx.query["show_details"],
    )


def utilization(ctx: Context) -> Content:
    """A page of a subscription's stored Azure utilization, selected by usage start time."""
    customer_id, subscription_id = _subscription_ids(ctx)
    granularity = ctx.query["granularity"]
    if granularity and granularity != ctx.settings.utilization_granularity:
        raise not_found(
            f"This service stores {ctx.settings.utilization_granularity} utilization records; "
            f"granularity={granularity} is not available."
        )
    token = ctx.continuation
    if token is None:
        query = _first_page_query(ctx)
    else:
        query = continuation.decode(token, customer_id=customer_id, subscription_id=subscription_id)
    page = queries.utilization_page(ctx.store, query)
    if not page.rows and query.after is None:
        # Only an empty first page costs these reads: a page with rows is its own answer.
        _why_nothing(ctx, "utilization", UTILIZATION)
    raws = [raw for _, raw in page.rows]
    if not query.show_details:
        raws = [rendering.without_instance_data(raw) for raw in raws]
    self_query = {
        "start_time": query.start_key,
        "end_time": query.end_key,
        "size": query.size,
        "show_details": query.show_details,
        "granularity": granularity,
    }
    next_token = continuation.encode(query, page.rows[-1][0]) if page.more else None
    path = rendering.subscription_path(customer_id, subscription_id) + "/utilizations/azure"
    return paged(raws, path, self_query, token, next_token, page.written)


def paged(
    raws: list[str],
    path: str,
    self_query: dict[str, object] | None,
    token: str | None,
    next_token: str | None,
    last_modified: datetime | None,
    csv_raws: list[str] | None = None,
    csv_columns: tuple[str, ...] | None = None,
) -> Content:
    """A page of records: the collection with its links, the next token also as a response header (for CSV)."""
    links = rendering.page_links(path, self_query, token=token, next_token=next_token)
    headers = {rendering.CONTINUATION_HEADER: next_token} if next_token else {}
    body = rendering.collection(raws, links)
    csv = raws if csv_raws is None else csv_raws
    return Content(body, csv_raws=csv, csv_columns=csv_columns, headers=headers, last_modified=last_modified)


def customers(ctx: Context) -> Content:
    """The partner's customers, paged like ``GET /v1/customers``."""
    keep = None
    if not ctx.scope.unrestricted:
        ctx.scope.load_everyone()
        keep = ctx.scope.keep_customer_row
    return discovery.customers(ctx.store, ctx.query["size"], ctx.continuation, keep)


def customer(ctx: Context) -> Content:
    """One customer."""
    return discovery.customer(ctx.store, ctx.path["customer_id"])


def customer_subscriptions(ctx: Context) -> Content:
    """A customer's subscriptions (those in the caller's grant)."""
    customer_id = ctx.path["customer_id"]
    keep = None if ctx.scope.unrestricted else lambda sid: ctx.scope.subscription_visible(customer_id, sid)
    return discovery.subscriptions(ctx.store, customer_id, keep)


def subscription(ctx: Context) -> Content:
    """One subscription."""
    return discovery.subscription(ctx.store, *_subscription_ids(ctx))


def _day_price(ctx: Context) -> rated.DayPrice | None:
    """A scoped caller's price of a stored day of an Azure subscription (None: the caller sees cost, and no price
    rule is read for it)."""
    if not ctx.scope.viewer.prices_only:
        return None
    pricing = spend.pricing_of(ctx)
    customer_id = ctx.path["customer_id"]

    def price(pointer: RatedPointer, day: str, view: DayView) -> Decimal | None:
        reseller = (pointer.tier2_mpn_id or "").strip().lower() or None
        return price_amounts(pricing.rule(day, reseller, customer_id), view.amounts(), AZURE_PLAN_KIND)

    return price


def _priced_columns(content: Content, price: rated.DayPrice | None) -> Content:
    if price is not None:
        content.csv_columns = rated.PRICED_DAILY_COLUMNS
    return content


def customer_daily_cost(ctx: Context) -> Content:
    """A customer's Azure plan cost per day."""
    days = rated.day_range(ctx.query["from"], ctx.query["to"], ctx.now)
    price = _day_price(ctx)
    return _priced_columns(rated.customer_daily_cost(ctx.store, ctx.path["customer_id"], days, price), price)


def azure_entitlements(ctx: Context) -> Content:
    """A customer's Azure subscriptions with stored rated usage (those in the caller's grant)."""
    customer_id = ctx.path["customer_id"]
    keep = None if ctx.scope.unrestricted else lambda eid: ctx.scope.entitlement_visible(customer_id, eid)
    return rated.entitlements(ctx.store, customer_id, keep, _day_price(ctx))


def entitlement_daily_cost(ctx: Context) -> Content:
    """One Azure subscription's cost per day."""
    days = rated.day_range(ctx.query["from"], ctx.query["to"], ctx.now)
    price = _day_price(ctx)
    found = rated.entitlement_daily_cost(ctx.store, ctx.path["customer_id"], ctx.path["entitlement_id"], days, price)
    return _priced_columns(found, price)


def line_items(ctx: Context) -> Content:
    """A page of one Azure subscription's line items."""
    customer_id, entitlement_id = ctx.path["customer_id"], ctx.path["entitlement_id"]
    if ctx.continuation is None:
        first = rated.day_range(ctx.query["from"], ctx.query["to"], ctx.now), ctx.query["size"]
        page = rated.line_items(ctx.store, customer_id, entitlement_id, first)
    else:
        query = continuation.decode_line_items(ctx.continuation, customer_id=customer_id, entitlement_id=entitlement_id)
        page = rated.line_items(ctx.store, customer_id, entitlement_id, query)
    self_query = {"from": page.query.first, "to": page.query.last, "size": page.query.size}
    viewer = ctx.scope.viewer
    if not viewer.priced:
        return paged(page.texts, page.path, self_query, ctx.continuation, page.next_token, page.written, page.csv_raws)
    # A scoped caller: each line's cost-free fields and its price under the caller's rule (cost only if shown).
    shown = [jsonutil.dumps(priced_line(jsonutil.loads(text), viewer, customer_id)) for text in page.texts]
    columns = SCOPED_LINE_FIELDS + (COST_FIELDS if viewer.shows_cost else ()) + PRICE_COLUMNS
    return paged(shown, page.path, self_query, ctx.continuation, page.next_token, page.written, shown, columns)


def health(ctx: Context) -> Content:
    """The timer functions' last runs; 503 when any is unhealthy."""
    status, report = health_report(ctx.store, ctx.settings, ctx.now)
    return Content(jsonutil.dumps(report).encode("utf-8"), status=status, headers={"Cache-Control": "no-store"})


def openapi(ctx: Context) -> Content:
    """The OpenAPI document of this API."""
    from shared.api.openapi import document_bytes  # the document is generated from the routes, which name us

    return Content(document_bytes())
