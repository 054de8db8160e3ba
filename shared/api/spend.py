"""The spend routes: what a portal draws, read from the spend read model in one query (never from usage lines).

- ``GET /v1/spend?period=YYYY-MM[&by=customer|reseller][&size=]``: the partner's month (a scoped caller's: its
  grant's) per customer, or per reseller of record: totals per currency, budget, coverage, freshness; paged.
- ``GET /v1/customers/{c}/spend?from=&to=[&granularity=day|month]``: a customer's series and totals per
  currency, and every subscription's (an Azure plan's Azure subscriptions within it), with coverage.

Every figure says what it is: ``status`` (``estimated`` until billed data exists), its ``source``, and
``coverage`` (what is not in it and why). A scoped caller whose grant holds only part of a customer (a reseller
that sold some of its subscriptions) gets the sum of that part, labelled ``scope: "grant"``, with the count of the
customer's other subscriptions (``outsideGrant``), never their figures.
"""

from __future__ import annotations

import decimal
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from shared import jsonutil
from shared.api import continuation, queries, rendering
from shared.api.context import Content, Context
from shared.api.errors import ApiError, unknown_customer
from shared.api.openapi import FIGURES, PRICE_PROPERTIES
from shared.pricing.amounts import EXACT
from shared.pricing.rules import RuleBook, Rules, Whom
from shared.pricing.spend import (
    NO_LIST_PRICE,
    Priced,
    RuleOf,
    changes_within,
    month_changes,
    month_price,
    priced_subject,
    rule_of,
    summed,
)
from shared.spend.project import combined_status, spend_kind
from shared.spend.rows import (
    ESTIMATED,
    CurrencyTotals,
    Reason,
    ResellerMonth,
    Source,
    SpendMonth,
    SpendSubject,
    priceable_days_of,
)
from shared.table_store import TableStore

CODE_NOT_FOR_THIS_GRANT = 900403
LISTING = "spend"
OVERVIEW_COLUMNS = (
    "period",
    "customerId",
    "customerName",
    "resellerMpnId",
    "scope",
    "currencyCode",
    "figures",
    "total",
    "price",
    "margin",
    "priceComplete",
    "status",
    "budgetAmount",
    "percentUsed",
    "excluded",
    "outsideGrant",
)
# A caller shown prices: its price in ``total``, no budget (set on cost) and no margin.
OVERVIEW_PRICED_COLUMNS = tuple(
    c for c in OVERVIEW_COLUMNS if c not in ("price", "margin", "budgetAmount", "percentUsed")
)
CUSTOMER_COLUMNS = (
    "customerId",
    "subscriptionId",
    "azureSubscriptionId",
    "kind",
    "name",
    "resellerMpnId",
    "source",
    "status",
    "currencyCode",
    "figures",
    "date",
    "amount",
)


def _amount(text: str | Decimal) -> Decimal:
    return Decimal(text)


def _add(values: Iterable[str | Decimal]) -> Decimal:
    with decimal.localcontext(EXACT):
        return sum((Decimal(v) for v in values), Decimal(0))


def _body(value: Mapping[str, Any]) -> bytes:
    return jsonutil.dumps(value).encode("utf-8")


def _stored(stamps: Iterable[str | None]) -> datetime | None:
    found = [datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps if s]
    return max(found) if found else None


# -- whose price ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pricing:
    """How a caller's answer shows money: ``figures`` ``cost`` (the key, a grant that shows cost) with each buyer's
    ``price`` beside it (and the partner's ``margin``), or ``price`` (every other scoped caller: its own price under
    its rule, the only money it receives)."""

    figures: str
    rule: RuleOf
    rules: Rules
    whom: Whom | None
    margins: bool

    @property
    def priced(self) -> bool:
        """True when the figures themselves are prices."""
        return self.figures == "price"


_BOOKS: dict[int, tuple[TableStore, RuleBook]] = {}
_BOOKS_LOCK = threading.Lock()


def _partner_rules(ctx: Context) -> Rules:
    """The price rules, for the partner's margins (read at most every API_GRANTS_CACHE_SECONDS, as grants)."""
    with _BOOKS_LOCK:
        found = _BOOKS.get(id(ctx.store))
        if found is None or found[0] is not ctx.store:
            if len(_BOOKS) > 8:
                _BOOKS.clear()
            found = _BOOKS[id(ctx.store)] = (ctx.store, RuleBook(ctx.store, ttl=ctx.settings.api_grants_cache_seconds))
    return found[1].rules()


def pricing_of(ctx: Context) -> Pricing:
    """The caller's pricing: deny by default, a caller shown prices unless it is the key or its grant shows cost."""
    viewer = ctx.scope.viewer
    if viewer.prices_only and viewer.rules is not None:
        return Pricing("price", rule_of(viewer.rules, viewer.whom), viewer.rules, viewer.whom, False)
    rules = viewer.rules if viewer.rules is not None else _partner_rules(ctx)
    return Pricing("cost", rule_of(rules, viewer.whom), rules, viewer.whom, ctx.scope.unrestricted)


def _month_prices(
    ctx: Context, pricing: Pricing, month: SpendMonth, part: frozenset[str] | None, whole: bool
) -> dict[str, tuple[Decimal, bool]]:
    """A customer's month at the pricing's price per currency (the grant's part of it): from its month sums when
    one rule prices the whole month, else day by day from its day sums (read with the page), or, for a month
    projected before those were kept, from its subjects (one more query)."""
    resellers = None if whole else {owner for sid, owner in month.subscriptions.items() if sid in (part or ())}
    sellers = {r for kinds in month.priceable.values() for r in kinds}
    stored = bool(month.priceable) or not month.currencies  # projected with its sums (or nothing to price)
    changes = any(
        month_changes(pricing.rules, month.period, pricing.whom, r or None, month.customer_id) for r in sellers
    )
    if stored and not changes:
        return {c: month_price(month, pricing.rule, c, resellers) for c in month.priceable}
    if stored and month.priceable_days:
        return {c: month_price(month, pricing.rule, c, resellers, by_day=True) for c in month.priceable_days}
    _, subjects = queries.customer_spend(ctx.store, month.customer_id, month.period, month.period)
    if not whole:
        subjects = [s for s in subjects if s.subject_id in (part or ())]
    priced = [priced_subject(s, pricing.rule) for s in subjects]
    return {c: summed(priced, c) for c in sorted({s.currency for s in subjects})}


def _price_fields(cost: Decimal, price: tuple[Decimal, bool] | None, pricing: Pricing) -> dict[str, Any]:
    """Beside a cost: the buyer's price, whether every amount had one, and (the partner's) the margin."""
    amount, complete = price if price is not None else (Decimal(0), True)
    fields: dict[str, Any] = {"price": amount, "priceComplete": complete}
    if pricing.margins:
        with decimal.localcontext(EXACT):
            fields["margin"] = amount - cost
    return fields


# -- the partner's month --------------------------------------------------------------------------------------------


def partner_spend(ctx: Context) -> Content:
    """The partner's spend of a month per customer (or per reseller of record), in one paged answer"""
    period = ctx.query["period"] or ctx.now.astimezone(timezone.utc).strftime("%Y-%m")
    size, after = ctx.query["size"], None
    if ctx.continuation is not None:  # the token holds the month and size of page 1
        period, size, after = continuation.decode_period_listing(ctx.continuation, LISTING)
    elif (ctx.query["by"] or "customer") == "reseller":
        return _by_reseller(ctx, period)
    keep = None if ctx.scope.unrestricted else lambda row: _in_grant(ctx, SpendMonth.of_row(row))
    rows, more = queries.spend_months_page(ctx.store, period, after=after, size=size, keep=keep)
    months = [SpendMonth.of_row(row) for row in rows]
    pricing = pricing_of(ctx)
    if months and changes_within(pricing.rules, period):  # priced by day: the page's day sums, in one query
        sums = queries.spend_month_day_sums(ctx.store, period, str(rows[0]["RowKey"]), str(rows[-1]["RowKey"]))
        months = [
            replace(m, priceable_days=priceable_days_of(sums.get(str(r["RowKey"]), {})))
            for m, r in zip(months, rows, strict=True)
        ]
    items = [_customer_item(ctx, month, pricing) for month in months]
    next_token = continuation.encode_period_listing(LISTING, period, size, rows[-1]["RowKey"]) if more else None
    links = rendering.page_links(
        LISTING, {"period": period, "size": size}, token=ctx.continuation, next_token=next_token
    )
    body = {
        "period": period,
        "by": "customer",
        "figures": pricing.figures,
        "status": combined_status(m.status for m in months) if months else ESTIMATED,
        "totalCount": len(items),
        "items": items,
        "links": links,
        "attributes": {"objectType": "SpendOverview"},
    }
    headers = {rendering.CONTINUATION_HEADER: next_token} if next_token else {}
    csv = [jsonutil.dumps(line) for item in items for line in _overview_lines(period, item, pricing.figures)]
    columns = OVERVIEW_PRICED_COLUMNS if pricing.priced else None
    stamp = _stored(m.stored_at for m in months)
    return Content(_body(body), csv_raws=csv, csv_columns=columns, headers=headers, last_modified=stamp)


def _in_grant(ctx: Context, month: SpendMonth) -> bool:
    part = ctx.scope.granted_part(month.customer_id, month.subscriptions)
    return part is None or bool(part)


def _customer_item(ctx: Context, month: SpendMonth, pricing: Pricing) -> dict[str, Any]:
    """One customer of the overview: its totals per currency (the caller's part of them), budget, coverage; at
    cost with each buyer's price beside it, or at the caller's own price."""
    part = ctx.scope.granted_part(month.customer_id, month.subscriptions)
    whole = part is None or part >= set(month.subscriptions)
    prices = _month_prices(ctx, pricing, month, part, whole)
    currencies = []
    for currency, totals in sorted(month.currencies.items()):
        price = prices.get(currency)
        if pricing.priced:
            amount, complete = price or (Decimal(0), True)
            currencies.append(
                {
                    "currencyCode": currency,
                    "total": amount,
                    "bySource": None,
                    "priceComplete": complete,
                    "status": totals.status,
                }
            )
            continue
        if whole:
            total = _amount(totals.total)
        else:
            granted = {owner for sid, owner in month.subscriptions.items() if sid in (part or ())}
            total = _add(v for r, v in totals.by_reseller.items() if (r or None) in granted)
        by_source = {k: _amount(v) for k, v in sorted(totals.by_source.items())} if whole else None
        currency_item = {"currencyCode": currency, "total": total, "bySource": by_source, "status": totals.status}
        if whole:
            currency_item |= _billed_fields(totals)
        currencies.append({**currency_item, **_price_fields(total, price, pricing)})
    outside = 0 if whole else len(set(month.subscriptions) - set(part or ()))
    record = month.usage_record or {}
    budget = record.get("budget") if whole else None
    cost_only = {
        "budget": None
        if not budget
        else {
            "amount": _amount(budget["amount"]),
            "currencyCode": record.get("currencyCode"),
            "percentUsed": None if budget.get("percentUsed") is None else _amount(budget["percentUsed"]),
        }
    }
    return {
        "customerId": month.customer_id,
        "customerName": month.customer_name,
        "relationship": month.relationship,
        "scope": "customer" if whole else "grant",
        "status": month.status,
        "currencies": currencies,
        **({} if pricing.priced else cost_only),  # a budget of cost: not beside prices
        "coverage": _coverage(month, part, whole, outside),
        "asOf": dict(month.as_of),
        "storedAt": month.stored_at,
        "links": {"spend": rendering.link(rendering.customer_path(month.customer_id) + "/spend")},
    }


def _billed_fields(totals: CurrencyTotals) -> dict[str, Any]:
    """A month's figures by kind, and once billed its invoices and how far the last estimate was (at cost)."""
    found: dict[str, Any] = {"byKind": {k: _amount(v) for k, v in sorted(totals.by_kind.items())}}
    if totals.invoice_ids:
        found["invoiceIds"] = list(totals.invoice_ids)
    if totals.estimate is not None:
        found["estimate"] = _amount(totals.estimate)
        found["estimateDelta"] = _amount(totals.estimate_delta or "0")
    return found


def _coverage(month: SpendMonth, part: frozenset[str] | None, whole: bool, outside: int) -> dict[str, Any]:
    excluded = [
        {"subscriptionId": e.subscription_id, "kind": e.kind, "reason": str(e.reason), "detail": e.detail}
        for e in month.excluded
        if whole or e.subscription_id in (part or ())
    ]
    return {"excluded": excluded, "counts": _counts(excluded, outside), "outsideGrant": outside}


def _counts(excluded: Iterable[Mapping[str, Any]], outside: int) -> dict[str, int]:
    """How many subscriptions each reason leaves out (``outsideGrant``: those of the customer not in the grant)."""
    counts: dict[str, int] = {}
    for entry in excluded:
        reason = str(entry["reason"])
        counts[reason] = counts.get(reason, 0) + 1
    if outside:
        counts[str(Reason.OUTSIDE_GRANT)] = outside
    return counts


def _overview_lines(period: str, item: Mapping[str, Any], figures: str) -> list[dict[str, Any]]:
    budget = item.get("budget") or {}
    common = {
        "period": period,
        "figures": figures,
        "customerId": item.get("customerId"),
        "customerName": item.get("customerName"),
        "resellerMpnId": item.get("resellerMpnId"),
        "scope": item.get("scope"),
        "status": item.get("status"),
        "budgetAmount": budget.get("amount"),
        "percentUsed": budget.get("percentUsed"),
        "excluded": len(item.get("coverage", {}).get("excluded", [])) if "coverage" in item else None,
        "outsideGrant": item.get("coverage", {}).get("outsideGrant") if "coverage" in item else None,
    }
    money = ("currencyCode", "total", "price", "margin", "priceComplete")
    return [{**common, **{k: c.get(k) for k in money}} for c in item["currencies"]] or [common]


def _by_reseller(ctx: Context, period: str) -> Content:
    """The month per reseller of record (``resellerMpnId`` null: what the partner sold direct)."""
    grant = ctx.scope.grant
    if grant is not None and grant.kind == "customers":
        raise ApiError(
            403,
            CODE_NOT_FOR_THIS_GRANT,
            "by=reseller is for the partner and for resellers; this application's grant names customers: ask for "
            "by=customer.",
        )
    resellers = [ResellerMonth.of_row(row) for row in queries.reseller_months(ctx.store, period)]
    if not ctx.scope.unrestricted:
        resellers = [r for r in resellers if r.reseller is not None and grant and r.reseller in grant.values]
    pricing = pricing_of(ctx)
    prices = _reseller_prices(ctx, pricing, period, {r.reseller for r in resellers})
    items = []
    for r in sorted(resellers, key=lambda r: r.reseller or ""):
        currencies = []
        for currency, total in sorted(r.totals.items()):
            price = prices.get((r.reseller, currency))
            if pricing.priced:
                amount, complete = price or (Decimal(0), True)
                currencies.append({"currencyCode": currency, "total": amount, "priceComplete": complete})
            else:
                cost = _amount(total)
                currencies.append({"currencyCode": currency, "total": cost, **_price_fields(cost, price, pricing)})
        item = {"resellerMpnId": r.reseller, "customers": r.customers, "status": ESTIMATED, "currencies": currencies}
        items.append({**item, "storedAt": r.stored_at})
    body = {
        "period": period,
        "by": "reseller",
        "figures": pricing.figures,
        "status": ESTIMATED,
        "totalCount": len(items),
        "items": items,
        "links": rendering.page_links(LISTING, {"period": period, "by": "reseller"}),
        "attributes": {"objectType": "SpendOverview"},
    }
    csv = [jsonutil.dumps(line) for item in items for line in _overview_lines(period, item, pricing.figures)]
    columns = OVERVIEW_PRICED_COLUMNS if pricing.priced else None
    return Content(
        _body(body), csv_raws=csv, csv_columns=columns, last_modified=_stored(r.stored_at for r in resellers)
    )


def _reseller_prices(
    ctx: Context, pricing: Pricing, period: str, wanted: set[str | None]
) -> dict[tuple[str | None, str], tuple[Decimal, bool]]:
    """Per (reseller of record, currency) the month at each buyer's price, from every customer's month sums (one
    query of the month's partition); a customer whose rule changes within the month is priced day by day."""
    found: dict[tuple[str | None, str], tuple[Decimal, bool]] = {}
    by_day = changes_within(pricing.rules, period)
    for month in (SpendMonth.of_row(row) for row in queries.spend_months(ctx.store, period, by_day=by_day)):
        subjects: list[Priced] | None = None
        if month.currencies and not month.priceable:  # projected before price amounts were kept
            _, stored = queries.customer_spend(ctx.store, month.customer_id, period, period)
            subjects = [priced_subject(s, pricing.rule) for s in stored]
            for one in subjects:
                if one.subject.reseller in wanted:
                    key = (one.subject.reseller, one.subject.currency)
                    before, complete = found.get(key, (Decimal(0), True))
                    with decimal.localcontext(EXACT):
                        found[key] = (before + Decimal(one.subject.total), complete and not one.unpriced_days)
            continue
        for currency, by_reseller in month.priceable.items():
            for seller in by_reseller:
                reseller = seller or None
                if reseller not in wanted:
                    continue
                if not month_changes(pricing.rules, period, pricing.whom, reseller, month.customer_id):
                    price = month_price(month, pricing.rule, currency, [reseller])
                elif month.priceable_days:
                    price = month_price(month, pricing.rule, currency, [reseller], by_day=True)
                else:  # projected before day sums were kept
                    if subjects is None:
                        _, stored = queries.customer_spend(ctx.store, month.customer_id, period, period)
                        subjects = [priced_subject(s, pricing.rule) for s in stored]
                    price = summed((p for p in subjects if p.subject.reseller == reseller), currency)
                before, complete = found.get((reseller, currency), (Decimal(0), True))
                with decimal.localcontext(EXACT):
                    found[(reseller, currency)] = (before + price[0], complete and price[1])
    return found


# -- one customer ---------------------------------------------------------------------------------------------------


def customer_spend(ctx: Context) -> Content:
    """A customer's spend per day (or month) and per subscription, in one answer"""
    customer_id = ctx.path["customer_id"]
    today = ctx.now.astimezone(timezone.utc).date()
    last: date = ctx.query["to"] or today
    first: date = ctx.query["from"] or last.replace(day=1)
    granularity = ctx.query["granularity"] or "day"
    first_text, last_text = first.isoformat(), last.isoformat()
    months: list[SpendMonth] = []
    subjects: list[SpendSubject] = []
    if first <= last:
        months, subjects = queries.customer_spend(ctx.store, customer_id, first_text[:7], last_text[:7])
    if not months and not subjects and not queries.customer_known(ctx.store, customer_id):
        raise unknown_customer(customer_id)
    sellers: dict[str, str | None] = {}
    for month in months:
        sellers.update(month.subscriptions)
    for subject in subjects:
        sellers.setdefault(subject.subject_id, subject.reseller)
    part = ctx.scope.granted_part(customer_id, sellers)
    whole = part is None or part >= set(sellers)
    if not whole:
        subjects = [s for s in subjects if s.subject_id in (part or ())]
    in_range = [s for s in subjects if first_text[:7] <= s.period <= last_text[:7]]
    outside = 0 if whole else len(set(sellers) - set(part or ()))
    customer_name = next((m.customer_name for m in months if m.customer_name), None)
    pricing = pricing_of(ctx)
    priced = [priced_subject(s, pricing.rule) for s in in_range]
    missing = {id(p.subject): _missing(p, first_text, last_text) for p in priced}
    shown = [p.subject for p in priced] if pricing.priced else in_range
    currencies = _currencies(shown, first_text, last_text, granularity)
    subscriptions = _subscriptions(shown, first_text, last_text, granularity)
    coverage = _merged_coverage(months, part, whole, outside)
    unpriceable = [p.subject for p in priced if missing[id(p.subject)]]
    if pricing.priced:
        _no_list_price(coverage, unpriceable, missing)
    else:
        price_currencies = _currencies([p.subject for p in priced], first_text, last_text, granularity)
        _attach(currencies, price_currencies, {s.currency for s in unpriceable}, pricing)
        price_subscriptions = _subscriptions([p.subject for p in priced], first_text, last_text, granularity)
        _attach_subscriptions(subscriptions, price_subscriptions, unpriceable, pricing)
    body = {
        "customerId": customer_id,
        "customerName": customer_name,
        "relationship": months[-1].relationship if months else None,
        "from": first_text,
        "to": last_text,
        "granularity": granularity,
        "scope": "customer" if whole else "grant",
        "figures": pricing.figures,
        "status": combined_status(sub.status for sub in shown) if shown else ESTIMATED,
        "currencies": currencies,
        "subscriptions": subscriptions,
        "coverage": coverage,
        **({} if pricing.priced else {"partnerCenter": _partner_center(months) if whole else None}),
        "periods": [{"period": m.period, "storedAt": m.stored_at, "status": m.status} for m in months],
        "links": {
            "self": rendering.link(
                rendering.query_uri(
                    rendering.customer_path(customer_id) + "/spend",
                    {"from": first_text, "to": last_text, "granularity": granularity},
                )
            ),
            "subscriptions": rendering.link(rendering.customer_path(customer_id) + "/subscriptions"),
        },
        "attributes": {"objectType": "CustomerSpend"},
    }
    csv = [
        jsonutil.dumps({**line, "figures": pricing.figures})
        for subject in shown
        for line in _subject_lines(customer_id, subject, first_text, last_text, granularity)
    ]
    stamps = [m.stored_at for m in months] + [s.stored_at for s in in_range]
    return Content(_body(body), csv_raws=csv, last_modified=_stored(stamps))


def _missing(priced: Priced, first: str, last: str) -> list[str]:
    """The days of a priced subject within [first, last] that have no price (a period total: its month)."""
    if priced.subject.amounts or priced.subject.days:
        return [day for day in priced.unpriced_days if first <= day <= last]
    return [day for day in priced.unpriced_days if first[:7] <= day[:7] <= last[:7]]


def _no_list_price(coverage: dict[str, Any], subjects: list[SpendSubject], missing: Mapping[int, list[str]]) -> None:
    """Name in the coverage each subscription whose figures are in part without a price (no list price known)."""
    for subject in subjects:
        days = missing[id(subject)]
        coverage["excluded"].append(
            {
                "period": subject.period,
                "subscriptionId": subject.subscription_id or subject.subject_id,
                "kind": subject.rule_kind,
                "reason": NO_LIST_PRICE,
                "detail": f"{len(days)} day(s) without a list price ({subject.source} gives none): not in the prices",
            }
        )
    coverage["counts"] = _counts(coverage["excluded"], coverage["outsideGrant"])


def _attach(costs: list[dict[str, Any]], prices: list[dict[str, Any]], incomplete: set[str], pricing: Pricing) -> None:
    """Beside each currency's cost: its price (and margin), from the same figures priced."""
    by_currency = {p["currencyCode"]: p["total"] for p in prices}
    for entry in costs:
        code = entry["currencyCode"]
        entry.update(
            _price_fields(entry["total"], (by_currency.get(code, Decimal(0)), code not in incomplete), pricing)
        )


def _attach_subscriptions(
    costs: list[dict[str, Any]], prices: list[dict[str, Any]], unpriceable: list[SpendSubject], pricing: Pricing
) -> None:
    """Beside each subscription's (and Azure subscription's) cost: its price, from the same subjects priced."""
    for entry, price_entry in zip(costs, prices, strict=True):
        owner = entry["subscriptionId"]
        incomplete = {s.currency for s in unpriceable if (s.subscription_id or s.subject_id) == owner}
        _attach(entry["currencies"], price_entry["currencies"], incomplete, pricing)
        azure_prices = price_entry.get("azureSubscriptions", [])
        for azure, price_azure in zip(entry.get("azureSubscriptions", []), azure_prices, strict=True):
            gaps = {s.currency for s in unpriceable if s.subject_id == azure["azureSubscriptionId"]}
            _attach(azure["currencies"], price_azure["currencies"], gaps, pricing)


def _series(days: Mapping[str, str], first: str, last: str, granularity: str) -> dict[str, Decimal]:
    """Amounts by day (or month) within [first, last]."""
    points: dict[str, Decimal] = {}
    with decimal.localcontext(EXACT):
        for day, amount in days.items():
            if first <= day <= last:
                key = day if granularity == "day" else day[:7]
                points[key] = points.get(key, Decimal(0)) + Decimal(amount)
    return points


def _undated(subject: SpendSubject, first: str, last: str) -> Decimal | None:
    """A period total without days (a usage summary), when its month is within the range."""
    if subject.days or not first[:7] <= subject.period <= last[:7]:
        return None
    return _amount(subject.total)


def _currency_view(points: Mapping[str, Decimal], undated: Decimal, currency: str) -> dict[str, Any]:
    dated = _add(points.values())
    return {
        "currencyCode": currency,
        "total": _add((dated, undated)),
        "datedTotal": dated,
        "undatedTotal": undated,
        "series": [{"date": key, "amount": amount} for key, amount in sorted(points.items())],
    }


def _currencies(subjects: list[SpendSubject], first: str, last: str, granularity: str) -> list[dict[str, Any]]:
    """The customer's (or the grant's part's) series and totals per currency, by source too."""
    out = []
    for currency in sorted({s.currency for s in subjects}):
        mine = [s for s in subjects if s.currency == currency]
        points: dict[str, Decimal] = {}
        by_source: dict[str, Decimal] = {}
        undated = Decimal(0)
        with decimal.localcontext(EXACT):
            for subject in mine:
                series = _series(subject.days, first, last, granularity)
                for key, amount in series.items():
                    points[key] = points.get(key, Decimal(0)) + amount
                extra = _undated(subject, first, last) or Decimal(0)
                undated += extra
                source = str(subject.source)
                by_source[source] = by_source.get(source, Decimal(0)) + _add(series.values()) + extra
        view = {**_currency_view(points, undated, currency), "bySource": dict(sorted(by_source.items()))}
        out.append({**view, **_kinds_and_status(mine, first, last)})
    return out


def _kinds_and_status(subjects: list[SpendSubject], first: str, last: str) -> dict[str, Any]:
    """Figures by kind and their status over [first, last]; once billed, the invoices and the last estimate
    (those two only where the subjects carry them: never at a price)."""
    by_kind: dict[str, Decimal] = {}
    with decimal.localcontext(EXACT):
        for subject in subjects:
            amount = _add(_series(subject.days, first, last, "day").values()) + (
                _undated(subject, first, last) or Decimal(0)
            )
            kind = spend_kind(subject)
            by_kind[kind] = by_kind.get(kind, Decimal(0)) + amount
    found: dict[str, Any] = {
        "status": combined_status(s.status for s in subjects),
        "byKind": dict(sorted(by_kind.items())),
    }
    return found | _estimate_of(subjects, delta=True)


def _subscriptions(subjects: list[SpendSubject], first: str, last: str, granularity: str) -> list[dict[str, Any]]:
    """Each subscription's figures; an Azure plan's Azure subscriptions within it."""
    grouped: dict[str, list[SpendSubject]] = {}
    for subject in subjects:
        charge = subject.source == Source.RECONCILIATION  # a charge is its own entry (a reservation is not its plan)
        key = subject.subject_id if charge else subject.subscription_id or subject.subject_id
        grouped.setdefault(key, []).append(subject)
    out = []
    for subscription_id, members in sorted(grouped.items()):
        azure = [s for s in members if s.kind == "azure_subscription"]
        own = [s for s in members if s.kind != "azure_subscription"]
        kind = own[0].kind if own else "azure_plan"
        entry: dict[str, Any] = {
            "subscriptionId": subscription_id,
            "kind": kind,
            "name": own[0].name if own else None,
            "resellerMpnId": (own or members)[0].reseller,
            "source": str((own or members)[0].source),
            "status": combined_status(s.status for s in members),
            "currencies": _figures(members, first, last, granularity),
            "unpriced": [{"meterId": meter, **gap} for s in own for meter, gap in sorted(s.unpriced.items())],
            "asOf": min((s.as_of for s in members if s.as_of), default=None),
        }
        billing = next((s.billing for s in own if s.billing), None)
        if billing:
            entry["billing"] = dict(billing)
        entry |= _estimate_of(members)
        if azure:
            entry["azureSubscriptions"] = [
                {
                    "azureSubscriptionId": s.subject_id,
                    "name": s.name,
                    "resellerMpnId": s.reseller,
                    "source": str(s.source),
                    "status": s.status,
                    "currencies": _figures([s], first, last, granularity),
                    "asOf": s.as_of,
                    **_estimate_of([s]),
                }
                for s in sorted(azure, key=lambda s: (s.subject_id, s.period, s.currency))
            ]
        out.append(entry)
    return out


def _estimate_of(subjects: list[SpendSubject], *, delta: bool = False) -> dict[str, Any]:
    """Billed figures' invoices and last estimate, and with ``delta`` how far it was off (billed - estimate, of the
    figures that had one); only where the subjects carry them: never at a price."""
    invoices = sorted({i for s in subjects for i in s.invoice_ids})
    estimated = [s for s in subjects if s.estimate is not None]
    found: dict[str, Any] = {"invoiceIds": invoices} if invoices else {}
    if estimated:
        estimate = _add(s.estimate or "0" for s in estimated)
        found["estimate"] = estimate
        if delta:
            with decimal.localcontext(EXACT):
                found["estimateDelta"] = _add(s.total for s in estimated) - estimate
    return found


def _figures(subjects: list[SpendSubject], first: str, last: str, granularity: str) -> list[dict[str, Any]]:
    out = []
    for currency in sorted({s.currency for s in subjects}):
        points: dict[str, Decimal] = {}
        undated = Decimal(0)
        with decimal.localcontext(EXACT):
            for subject in (s for s in subjects if s.currency == currency):
                for key, amount in _series(subject.days, first, last, granularity).items():
                    points[key] = points.get(key, Decimal(0)) + amount
                undated += _undated(subject, first, last) or Decimal(0)
        out.append(_currency_view(points, undated, currency))
    return out


def _merged_coverage(
    months: list[SpendMonth], part: frozenset[str] | None, whole: bool, outside: int
) -> dict[str, Any]:
    """What the figures leave out, month by month (a scoped caller sees only its part's)."""
    excluded = [
        {"period": m.period, **entry} for m in months for entry in _coverage(m, part, whole, outside)["excluded"]
    ]
    return {"excluded": excluded, "counts": _counts(excluded, outside), "outsideGrant": outside}


def _partner_center(months: list[SpendMonth]) -> list[dict[str, Any]]:
    """Partner Center's own month-to-date figure and budget of each month (its usage record), for comparison."""
    out = []
    for month in months:
        record = month.usage_record
        if not record:
            continue
        budget = record.get("budget")
        out.append(
            {
                "period": month.period,
                "source": "usageRecord",
                "totalCost": None if record.get("totalCost") is None else _amount(str(record["totalCost"])),
                "currencyCode": record.get("currencyCode"),
                "budget": None
                if not budget
                else {
                    "amount": _amount(budget["amount"]),
                    "percentUsed": None if budget.get("percentUsed") is None else _amount(budget["percentUsed"]),
                },
                "asOf": record.get("asOf"),
            }
        )
    return out


def _subject_lines(
    customer_id: str, subject: SpendSubject, first: str, last: str, granularity: str
) -> list[dict[str, Any]]:
    """CSV lines of one subject: one per date (or month) with an amount."""
    azure = subject.kind == "azure_subscription"
    common = {
        "customerId": customer_id,
        "subscriptionId": subject.subscription_id,
        "azureSubscriptionId": subject.subject_id if azure else None,
        "kind": subject.kind,
        "name": subject.name,
        "resellerMpnId": subject.reseller,
        "source": str(subject.source),
        "status": subject.status,
        "currencyCode": subject.currency,
    }
    lines = [
        {**common, "date": key, "amount": amount}
        for key, amount in sorted(_series(subject.days, first, last, granularity).items())
    ]
    undated = _undated(subject, first, last)
    if undated is not None:
        lines.append({**common, "date": subject.period, "amount": undated})
    return lines


# -- the OpenAPI schemas these routes bring ---------------------------------------------------------------------

_MONEY = {"$ref": "#/components/schemas/Money"}
_LINK = {"$ref": "#/components/schemas/Link"}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_STATUS = {
    "type": "string",
    "description": "`estimated` (unbilled figures, revised until the invoice), `billed` (from the invoice's billed "
    "data, final), or `partlyBilled` (some of each: e.g. legacy usage, which the billed exports do not cover)",
}
_BILLED = {
    "byKind": {
        "type": "object",
        "additionalProperties": _MONEY,
        "description": "the total by kind: `azureUsage` (consumption, by day) and each charge kind of the "
        "reconciliation data (`licence`, `reservation`, `savingsPlan`, `marketplace`, `software`, `other`: "
        "period totals, never spread over days)",
    },
    "invoiceIds": {
        "type": "array",
        "items": {"type": "string"},
        "description": "billed: the invoices (and credit notes) the figures come from",
    },
    "estimate": {**_MONEY, "description": "billed: the last estimate of the billed figures that had one (cost)"},
    "estimateDelta": {**_MONEY, "description": "billed: billed - `estimate`: how far the estimate was off (cost)"},
}
_BILLING = {
    "type": "object",
    "description": "a charge's billing: `billingCycle` (as sent, e.g. Monthly, Annual), `term`, `chargeTypes`, "
    "`chargeStart`, `chargeEnd`, `prorated` (a monthly charge for part of a month)",
}
_SCOPE = {
    "type": "string",
    "enum": ["customer", "grant"],
    "description": "`customer`: the customer's own figures; `grant`: the sum of the caller's part of the customer "
    "(a reseller that sold some of its subscriptions), `coverage.outsideGrant` counting the rest",
}
_SOURCES = "`ratedUsage` (Azure plan, Graph billing export), `utilization×rateCard` (legacy usage priced by the rate card), `usageSummary` (a period total without days), `billedUsage` (an invoice's billed usage export), `reconciliation` (an invoice's charges)"  # noqa: RUF001, E501


_PRICE_BESIDE = {
    **PRICE_PROPERTIES,
    "price": {
        **_MONEY,
        "description": "beside cost (the function key, showCost grants): the price its buyer is charged under the "
        "buyer's rule (the reseller's, else the customer's, else the default, else list)",
    },
    "margin": {**_MONEY, "description": "the function key only: `price` - `total`, exact"},
}


def _object(description: str, required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


SCHEMAS: dict[str, Any] = {
    "SpendCoverage": _object(
        "What the figures leave out and why",
        ["excluded", "counts", "outsideGrant"],
        excluded={
            "type": "array",
            "items": _object(
                "A subscription left out (or in only in part: `unpriced`)",
                ["subscriptionId", "kind", "reason"],
                period={"type": "string", "description": "YYYY-MM (customer route)"},
                subscriptionId={"type": "string"},
                kind={"type": "string", "description": "`azure_plan`, `legacy`, `other` (licences and the rest)"},
                reason={
                    "type": "string",
                    "description": "`unpriced` (meters the rate card does not price; quantities under the "
                    "subscription's `unpriced`), `notYetFetched`, `forbidden` (no relationship, 403/20002), "
                    "`licenceNotCovered` (their charges come with billed data), `noListPrice` (prices only: days "
                    "whose figures came without a list price, left out of a price on the list basis), "
                    "`notInBilledExports` (legacy usage in a month its invoice closed: in the figures, still the "
                    "estimate, as Microsoft's billed exports do not cover legacy commerce)",
                },
                detail=_TEXT_OR_NULL,
            ),
        },
        counts={
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "subscriptions per reason, `outsideGrant` included",
        },
        outsideGrant={"type": "integer", "description": "the customer's subscriptions outside the caller's grant"},
    ),
    "SpendBudget": _object(
        "The customer's spending budget set in Partner Center (null when none is set)",
        ["amount"],
        amount=_MONEY,
        currencyCode=_TEXT_OR_NULL,
        percentUsed={"anyOf": [_MONEY, {"type": "null"}], "description": "as Partner Center reports it"},
    ),
    "SpendTotal": _object(
        "A total in one currency",
        ["currencyCode", "total"],
        currencyCode={"type": "string"},
        total={**_MONEY, "description": "at the answer's `figures`: the partner's cost, or the caller's price"},
        **_PRICE_BESIDE,
        bySource={
            "anyOf": [{"type": "object", "additionalProperties": _MONEY}, {"type": "null"}],
            "description": f"the total by source: {_SOURCES}; null for a `grant` scope",
        },
        status=_STATUS,
        **_BILLED,
    ),
    "SpendSeries": _object(
        "A series and its totals in one currency",
        ["currencyCode", "total", "datedTotal", "undatedTotal", "series"],
        currencyCode={"type": "string"},
        total={**_MONEY, "description": "at the answer's `figures`: the partner's cost, or the caller's price"},
        **_PRICE_BESIDE,
        datedTotal={**_MONEY, "description": "the sum of the series"},
        undatedTotal={**_MONEY, "description": "period totals without days (usage summaries) of the months in range"},
        series={
            "type": "array",
            "items": _object("One day (or month)", ["date", "amount"], date={"type": "string"}, amount=_MONEY),
        },
        bySource={"type": "object", "additionalProperties": _MONEY, "description": _SOURCES},
        status=_STATUS,
        **_BILLED,
    ),
    "CustomerSpendItem": _object(
        "One customer's month",
        ["customerId", "scope", "status", "currencies", "coverage"],
        customerId={"type": "string"},
        customerName=_TEXT_OR_NULL,
        relationship={"type": "string"},
        scope=_SCOPE,
        status=_STATUS,
        currencies={"type": "array", "items": {"$ref": "#/components/schemas/SpendTotal"}},
        budget={"anyOf": [{"$ref": "#/components/schemas/SpendBudget"}, {"type": "null"}]},
        coverage={"$ref": "#/components/schemas/SpendCoverage"},
        asOf={
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "per source, how fresh its oldest figure is (export created, utilization stored through, "
            "summary modified)",
        },
        storedAt={**_TEXT_OR_NULL, "description": "when these figures were computed (at ingest)"},
        links={"type": "object", "additionalProperties": _LINK},
    ),
    "ResellerSpendItem": _object(
        "One reseller of record's month over its customers",
        ["resellerMpnId", "customers", "currencies"],
        resellerMpnId={**_TEXT_OR_NULL, "description": "null: what the partner sold direct"},
        customers={"type": "integer"},
        status=_STATUS,
        currencies={"type": "array", "items": {"$ref": "#/components/schemas/SpendTotal"}},
        storedAt=_TEXT_OR_NULL,
    ),
    "SpendOverview": _object(
        "The partner's (a scoped caller's: its grant's) spend of a month, one item per customer or reseller",
        ["period", "by", "status", "totalCount", "items", "links"],
        period={"type": "string"},
        by={"type": "string", "enum": ["customer", "reseller"]},
        figures=FIGURES,
        status=_STATUS,
        totalCount={"type": "integer"},
        items={
            "type": "array",
            "items": {
                "anyOf": [
                    {"$ref": "#/components/schemas/CustomerSpendItem"},
                    {"$ref": "#/components/schemas/ResellerSpendItem"},
                ]
            },
        },
        links={"$ref": "#/components/schemas/ResourceLinks"},
        attributes={"$ref": "#/components/schemas/ResourceAttributes"},
    ),
    "SpendSubscription": _object(
        "One subscription's figures (an Azure plan's per Azure subscription within it)",
        ["subscriptionId", "kind", "source", "status", "currencies"],
        subscriptionId={"type": "string"},
        kind={
            "type": "string",
            "description": "`azure_plan`, `legacy`, or a charge kind of billed data (`licence`, `reservation`, "
            "`savingsPlan`, `marketplace`, `software`, `other`)",
        },
        name=_TEXT_OR_NULL,
        resellerMpnId=_TEXT_OR_NULL,
        source={"type": "string", "description": _SOURCES},
        status=_STATUS,
        billing=_BILLING,
        invoiceIds=_BILLED["invoiceIds"],
        estimate=_BILLED["estimate"],
        currencies={"type": "array", "items": {"$ref": "#/components/schemas/SpendSeries"}},
        unpriced={
            "type": "array",
            "items": _object(
                "Usage of a meter the rate card does not price (not in the figures)",
                ["meterId", "quantity"],
                meterId={"type": "string"},
                name=_TEXT_OR_NULL,
                unit=_TEXT_OR_NULL,
                quantity={"type": "string", "description": "exact decimal text"},
            ),
        },
        asOf={**_TEXT_OR_NULL, "description": "how fresh the source is: export created, utilization stored through"},
        azureSubscriptions={
            "type": "array",
            "items": _object(
                "An Azure subscription under the plan",
                ["azureSubscriptionId", "currencies"],
                azureSubscriptionId={"type": "string"},
                name=_TEXT_OR_NULL,
                resellerMpnId=_TEXT_OR_NULL,
                source={"type": "string"},
                status=_STATUS,
                currencies={"type": "array", "items": {"$ref": "#/components/schemas/SpendSeries"}},
                asOf=_TEXT_OR_NULL,
                invoiceIds=_BILLED["invoiceIds"],
                estimate=_BILLED["estimate"],
            ),
        },
    ),
    "CustomerSpend": _object(
        "A customer's spend (a scoped caller's part of it) per day or month, in total and per subscription",
        ["customerId", "from", "to", "granularity", "scope", "status", "currencies", "subscriptions", "coverage"],
        customerId={"type": "string"},
        customerName=_TEXT_OR_NULL,
        relationship=_TEXT_OR_NULL,
        **{"from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"}},
        granularity={"type": "string", "enum": ["day", "month"]},
        scope=_SCOPE,
        figures=FIGURES,
        status=_STATUS,
        currencies={"type": "array", "items": {"$ref": "#/components/schemas/SpendSeries"}},
        subscriptions={"type": "array", "items": {"$ref": "#/components/schemas/SpendSubscription"}},
        coverage={"$ref": "#/components/schemas/SpendCoverage"},
        partnerCenter={
            "anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "null"}],
            "description": "Partner Center's own month-to-date figure and budget (usage record) per month, for "
            "comparison; null for a `grant` scope",
        },
        periods={"type": "array", "items": {"type": "object"}},
        links={"type": "object", "additionalProperties": _LINK},
        attributes={"$ref": "#/components/schemas/ResourceAttributes"},
    ),
}
