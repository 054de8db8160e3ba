"""Each viewer's price, end to end: every timer once against the simulator, then what each caller reads.

The simulated world gives every other customer partner earned credit (its lines' retail ``UnitPrice`` is 1.25 x
what the partner pays), so list prices and cost differ there; legacy usage's list price is the rate card's before
its discount. Prices are computed when read, from the cost and list amounts per category stored at ingest.
"""

from __future__ import annotations

import csv
import decimal
import io
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from devhost.simulator.billing import reseller_of
from shared import jsonutil
from shared.access.grants import Grant, GrantBook, GrantKind, add_grant, remove_grant
from shared.access.tokens import TokenValidator
from shared.api import spend as spend_api
from shared.api.routes import ROUTES
from shared.api.scope import Access
from shared.api.scoped import TokenGate, handle_with_token
from shared.pricing.amounts import EXACT
from shared.pricing.rules import Adjustment, Basis, PriceRule, RuleBook, Whom, add_rule, remove_rule
from shared.pricing.view import COST_FIELDS
from shared.settings import Settings
from shared.spend import rows as spend_rows
from shared.table_store import TableStore
from shared.tables import RATED_SLICES, SUBSCRIPTIONS, RatedPointer, customer_key
from tests.api_data import check, get, request_for
from tests.rated_support import NOW
from tests.spend_support import every_timer_once
from tests.test_spend import token_of

PERIOD = "2026-11"
MONTH = "from=2026-11-01&to=2026-11-30"
# Names that carry the partner's cost (any case): never in an answer to a caller shown prices.
COST_NAMES = {n.lower() for n in (*COST_FIELDS, "pricingPreTaxTotals", "margin", "partnerCenter", "budget")}
COST_NAMES |= {"totalcost", "budgetamount", "percentused", "billingpretaxtotal"}


@pytest.fixture(scope="module")
def world(azurite, azurite_blob) -> Iterator[dict[str, Any]]:
    with every_timer_once(azurite, azurite_blob, "pr") as (sim, store, env):
        settings = Settings.from_env({**env, "API_ACCESS_MODE": "both", "API_AUDIENCE": sim.portal.api_client_id})
        validator = TokenValidator(
            authority=settings.authority, tenants=settings.api_allowed_tenants, audiences=settings.api_audiences
        )
        gate = TokenGate(settings, store, validator)
        clock = [0.0]
        gate.prices = RuleBook(store, ttl=60, clock=lambda: clock[0])  # the grants' bound; time moved by the test
        gate.grants = GrantBook(store, ttl=60, clock=lambda: clock[0])
        yield {"sim": sim, "store": store, "settings": settings, "gate": gate, "clock": clock}


def exact(values: Iterable[Any]) -> Decimal:
    with decimal.localcontext(EXACT):
        return sum((Decimal(v) for v in values), Decimal(0))


def times(value: Decimal, factor: str) -> Decimal:
    with decimal.localcontext(EXACT):
        return value * Decimal(factor)


def minus(a: Decimal, b: Decimal) -> Decimal:
    with decimal.localcontext(EXACT):
        return a - b


def subjects(store: TableStore, customer_id: str) -> list[spend_rows.SpendSubject]:
    from shared.api.queries import customer_spend

    return customer_spend(store, customer_id, PERIOD, PERIOD)[1]


def listed(found: Iterable[spend_rows.SpendSubject], day: str | None = None) -> Decimal:
    """The list amount of these subjects (of one day), from what ingest stored."""
    return exact(
        pair[1]
        for s in found
        for d, amounts in s.amounts.items()
        if day is None or d == day
        for pair in amounts.values()
        if pair[1] is not None
    )


def reset_clock(world: dict[str, Any]) -> None:
    world["clock"][0] += 3600  # past any cached rules


class Caller:
    """A scoped application of the simulated portal with a grant."""

    def __init__(self, world: dict[str, Any], app: str, grant: Grant) -> None:
        self.world, self.grant = world, grant
        add_grant(world["store"], grant)
        reset_clock(world)
        self.token = token_of(world["sim"], app)

    def call(self, target: str, *, accept: str = "application/json") -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": accept}
        request = request_for("GET", target, headers=headers)
        return handle_with_token(request, self.world["store"], self.world["settings"], self.world["gate"], NOW)

    def json(self, target: str) -> Any:
        response = self.call(target)
        assert response.status == 200, response.body
        return jsonutil.loads(response.body)

    def close(self) -> None:
        remove_grant(self.world["store"], self.grant.tenant_id, self.grant.app_id)


def grant_for(world: dict[str, Any], app: str, kind: GrantKind, values: set[str], **more: Any) -> Grant:
    portal_app = world["sim"].portal.apps[app]
    return Grant(portal_app.tenant_id, portal_app.client_id, kind, frozenset(values), **more)


def cost_values(store: TableStore) -> set[Decimal]:
    """Every cost figure stored (days, totals, billed totals of each day), of enough digits not to meet by chance."""
    found: set[Decimal] = set()
    for row in store.all_rows(spend_rows.SPEND_DAYS):
        if spend_rows.is_month_row(row):
            continue
        subject = spend_rows.SpendSubject.of_row(row)
        found.update(Decimal(v) for v in (*subject.days.values(), subject.total))
    for row in store.all_rows(RATED_SLICES):
        pointer = RatedPointer.of_row(row)
        found.update(Decimal(v.billing_pre_tax_total) for v in pointer.days.values())
        found.add(Decimal(pointer.billing_pre_tax_total))
    return {v for v in found if len(v.as_tuple().digits) >= 6}


def assert_no_cost(body: bytes, media: str, costs: set[Decimal], where: str) -> None:
    """No cost field name and no cost value anywhere in an answer (JSON or CSV)."""
    if media == "text/csv":
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        names, cells = rows[0], [cell for row in rows[1:] for cell in row]
    else:
        names, cells = [], []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                names.extend(node)
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
            else:
                cells.append(str(node))

        walk(jsonutil.loads(body))
    leaked = {n for n in names if n.lower() in COST_NAMES}
    assert not leaked, (where, leaked)
    for cell in cells:
        try:
            value = Decimal(cell)
        except decimal.InvalidOperation:
            continue
        assert value not in costs, (where, cell)


def targets(customer_id: str, store: TableStore) -> list[tuple[str, str]]:
    """(route path, a filled target) of every route a scoped caller may call, for one customer."""
    subscriptions = [
        str(row["subscriptionId"]) for row in store.partition(SUBSCRIPTIONS, customer_key(customer_id))
    ] or [s.subscription_id or s.subject_id for s in subjects(store, customer_id)]
    entitlements = [s.subject_id for s in subjects(store, customer_id) if s.kind == "azure_subscription"]
    found = []
    for route in ROUTES:
        if route.access in (Access.PARTNER, Access.PUBLIC):
            continue
        query = {"period": PERIOD, "from": "2026-11-01", "to": "2026-11-30", "billing_month": PERIOD}
        query_text = "&".join(f"{k}={v}" for k, v in query.items() if k in route.accepted)
        path = route.path.replace("{customer_id}", customer_id)
        for sid in subscriptions if "{subscription_id}" in path else [None]:
            for eid in entitlements if "{entitlement_id}" in path else [None]:
                filled = path.replace("{subscription_id}", sid or "").replace("{entitlement_id}", eid or "")
                found.append((route.path, f"/api/{filled}" + (f"?{query_text}" if query_text else "")))
    return found


MONEY_ROUTES = {
    r.path
    for r in ROUTES
    if r.response in ("SpendOverview", "CustomerSpend", "DailyCost", "LineItemCollection", "AzureEntitlementCollection")
}


def walk_every_route(caller: Caller, customers: Iterable[str], store: TableStore) -> set[str]:
    """Call every route the caller may call for its customers, as JSON and CSV; assert no cost in any answer; the
    routes that answered 200."""
    costs = cost_values(store)
    served: set[str] = set()
    for customer_id in sorted(customers):
        for route_path, target in targets(customer_id, store):
            route = next(r for r in ROUTES if r.path == route_path)
            for media in ["application/json"] + (["text/csv"] if route.csv_columns else []):
                response = caller.call(target, accept=media)
                assert response.status < 500, (target, response.body)
                if response.status == 200:
                    served.add(route_path)
                    assert_no_cost(response.body, media, costs, f"{target} {media}")
    return served


def test_a_reseller_with_a_markup_sees_list_times_110_on_every_route_and_no_cost_anywhere(world):
    store, sim = world["store"], world["sim"]
    customer = sim.world.customer(1)  # sold by a reseller, with partner earned credit: list is 1.25 x cost
    reseller = reseller_of(sim.world, customer)
    rule = PriceRule(
        whom=Whom.RESELLER, who=reseller, basis=Basis.LIST, effective_from="2026-01-01",
        adjustments=(Adjustment(Decimal(10)),),
    )  # fmt: skip
    add_rule(store, rule)
    reset_clock(world)
    caller = Caller(world, "reseller-portal", grant_for(world, "reseller-portal", GrantKind.RESELLERS, {reseller}))
    try:
        customers = {c.id for c in sim.world.customers() if reseller_of(sim.world, c) == reseller}
        served = walk_every_route(caller, customers, store)
        # its customer's licence was bought direct: the customer's own totals are not the reseller's to read
        assert MONEY_ROUTES - served == {"v1/customers/{customer_id}/dailycost"}

        # Every money figure is list x 1.10, digit for digit.
        mine = [s for s in subjects(store, customer.id) if s.reseller == reseller]
        overview = caller.json(f"/api/v1/spend?period={PERIOD}")
        item = next(i for i in overview["items"] if i["customerId"] == customer.id)
        assert overview["figures"] == "price"
        (total,) = item["currencies"]
        assert total["total"] == times(listed(mine), "1.1") and total["priceComplete"] is True
        assert total["total"] != times(exact(s.total for s in mine), "1.1")  # list, not cost
        spend = caller.json(f"/api/v1/customers/{customer.id}/spend?{MONTH}")
        (series,) = spend["currencies"]
        assert series["total"] == total["total"]
        for point in series["series"]:
            assert point["amount"] == times(listed(mine, point["date"]), "1.1")
        by_reseller = caller.json(f"/api/v1/spend?period={PERIOD}&by=reseller")
        everyone = [s for c in customers for s in subjects(store, c) if s.reseller == reseller]
        assert [c["total"] for c in by_reseller["items"][0]["currencies"]] == [times(listed(everyone), "1.1")]
        azure = next(s for s in mine if s.kind == "azure_subscription")
        daily = caller.json(f"/api/v1/customers/{customer.id}/azureentitlements/{azure.subject_id}/dailycost?{MONTH}")
        assert daily["items"] and all(
            i["price"] == times(listed([azure], i["usageDate"]), "1.1") for i in daily["items"]
        )
        lines_path = f"/api/v1/customers/{customer.id}/azureentitlements/{azure.subject_id}/lineitems?{MONTH}&size=50"
        partner_lines = get(store, lines_path, now=NOW).json()["items"]
        scoped_lines = caller.json(lines_path)["items"]
        assert len(scoped_lines) == len(partner_lines) > 0
        for seen, full in zip(scoped_lines, partner_lines, strict=True):
            listed_line = times(Decimal(full["UnitPrice"]), "1") * Decimal(full["Quantity"])
            assert seen["price"]["total"] == times(listed_line, "1.1")
            assert Decimal(full["UnitPrice"]) == times(Decimal(full["EffectiveUnitPrice"]), "1.25")
    finally:
        caller.close()
        remove_rule(store, Whom.RESELLER, reseller, "2026-01-01")


def test_a_customer_app_without_a_rule_sees_list_prices_never_cost(world):
    store, sim = world["store"], world["sim"]
    customer = sim.world.customer(1)
    reset_clock(world)
    caller = Caller(world, "customer-app", grant_for(world, "customer-app", GrantKind.CUSTOMERS, {customer.id}))
    try:
        mine = subjects(store, customer.id)
        body = caller.json(f"/api/v1/customers/{customer.id}/spend?{MONTH}")
        check_scoped(body, "ScopedCustomerSpend")
        (series,) = body["currencies"]
        assert body["figures"] == "price" and series["total"] == listed(mine) != exact(s.total for s in mine)
        assert MONEY_ROUTES <= walk_every_route(caller, [customer.id], store)
        # a month projected before the price amounts were kept is priced from its subjects: the same figure
        row = dict(store.get(spend_rows.SPEND_MONTHS, PERIOD, customer_key(customer.id)) or {})
        try:
            store.upsert_one(spend_rows.SPEND_MONTHS, {k: v for k, v in row.items() if not k.startswith("priceable")})
            (item,) = caller.json(f"/api/v1/spend?period={PERIOD}")["items"]
            assert item["currencies"][0]["total"] == series["total"] and item["currencies"][0]["priceComplete"]
        finally:
            store.upsert_one(spend_rows.SPEND_MONTHS, row)
    finally:
        caller.close()


def check_scoped(body: Any, schema: str) -> None:
    """The answer matches its Scoped schema twin (which has no cost field)."""
    import jsonschema

    from shared.api.openapi import document

    doc = document()
    jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
    ).validate(body)


def test_a_rule_dated_mid_month_prices_the_days_before_and_after_differently(world):
    store, sim = world["store"], world["sim"]
    customer = sim.world.customer(0)
    before = PriceRule(whom=Whom.CUSTOMER, who=customer.id, basis=Basis.LIST, effective_from="2026-10-01")
    after = PriceRule(
        whom=Whom.CUSTOMER, who=customer.id, basis=Basis.COST, effective_from="2026-11-15",
        adjustments=(Adjustment(Decimal(50)),),
    )  # fmt: skip
    add_rule(store, before)
    add_rule(store, after)
    reset_clock(world)
    caller = Caller(world, "customer-app", grant_for(world, "customer-app", GrantKind.CUSTOMERS, {customer.id}))
    try:
        mine = subjects(store, customer.id)
        body = caller.json(f"/api/v1/customers/{customer.id}/spend?{MONTH}")
        (series,) = body["currencies"]
        dated = [s for s in mine if s.days]  # the series: charges (licences...) are period totals, undated
        for point in series["series"]:
            day = point["date"]
            cost = exact(s.days.get(day, "0") for s in dated)
            expected = listed(dated, day) if day < "2026-11-15" else times(cost, "1.5")
            assert point["amount"] == expected, day
        overview = caller.json(f"/api/v1/spend?period={PERIOD}")
        (item,) = overview["items"]
        assert item["currencies"][0]["total"] == series["total"]  # the month priced day by day there too
        # a month projected before its day sums were kept is priced from its subjects: the same figure
        row = dict(store.get(spend_rows.SPEND_MONTHS, PERIOD, customer_key(customer.id)) or {})
        store.upsert_one(spend_rows.SPEND_MONTHS, {k: v for k, v in row.items() if not k.startswith("priceableDays")})
        (again,) = caller.json(f"/api/v1/spend?period={PERIOD}")["items"]
        assert again["currencies"][0]["total"] == series["total"]
    finally:
        caller.close()
        remove_rule(store, Whom.CUSTOMER, customer.id, "2026-10-01")
        remove_rule(store, Whom.CUSTOMER, customer.id, "2026-11-15")


def test_a_rule_change_takes_effect_within_the_cache_bound_without_ingesting_again(world):
    store, sim = world["store"], world["sim"]
    customer = sim.world.customer(0)
    reset_clock(world)
    caller = Caller(world, "customer-app", grant_for(world, "customer-app", GrantKind.CUSTOMERS, {customer.id}))
    target = f"/api/v1/spend?period={PERIOD}"
    try:
        first = caller.json(target)["items"][0]["currencies"][0]["total"]
        rule = PriceRule(
            whom=Whom.DEFAULT, who=None, basis=Basis.LIST, effective_from="2026-01-01",
            adjustments=(Adjustment(Decimal(-20)),),
        )  # fmt: skip
        add_rule(store, rule)
        world["clock"][0] += 59  # within the bound: the rules read a minute ago still price
        assert caller.json(target)["items"][0]["currencies"][0]["total"] == first
        world["clock"][0] += 2  # past it: the new rule, with nothing stored again
        assert caller.json(target)["items"][0]["currencies"][0]["total"] == times(first, "0.8")
    finally:
        caller.close()
        remove_rule(store, Whom.DEFAULT, None, "2026-01-01")


def test_the_partner_sees_cost_each_buyers_price_and_the_margin_digit_for_digit(world):
    store, sim = world["store"], world["sim"]
    customer = sim.world.customer(1)
    reseller = reseller_of(sim.world, customer)
    rule = PriceRule(
        whom=Whom.RESELLER, who=reseller, basis=Basis.COST, effective_from="2026-01-01",
        adjustments=(Adjustment(Decimal("12.5")),),
    )  # fmt: skip
    add_rule(store, rule)
    try:
        spend_api._BOOKS.clear()  # the key's rules are cached per process like the grants: start this test afresh
        overview = get(store, f"/api/v1/spend?period={PERIOD}", now=NOW)
        check(overview, "/v1/spend")
        body = overview.json()
        assert body["figures"] == "cost"
        for item in body["items"]:
            for c in item["currencies"]:
                assert c["margin"] == minus(c["price"], c["total"])
        item = next(i for i in body["items"] if i["customerId"] == customer.id)
        sold = [s for s in subjects(store, customer.id) if s.reseller == reseller]
        others = [s for s in subjects(store, customer.id) if s.reseller != reseller]
        (c,) = item["currencies"]
        assert c["total"] == exact(s.total for s in sold + others)
        assert c["price"] == exact([times(exact(s.total for s in sold), "1.125"), listed(others)])
        by_reseller = get(store, f"/api/v1/spend?period={PERIOD}&by=reseller", now=NOW).json()
        for entry in by_reseller["items"]:
            for c in entry["currencies"]:
                assert c["margin"] == minus(c["price"], c["total"])
        theirs = next(e for e in by_reseller["items"] if e["resellerMpnId"] == reseller)
        (c,) = theirs["currencies"]
        assert c["price"] == times(c["total"], "1.125") and c["margin"] == times(c["total"], "0.125")
        spend = get(store, f"/api/v1/customers/{customer.id}/spend?{MONTH}", now=NOW)
        check(spend, "/v1/customers/{customer_id}/spend")
        for subscription in spend.json()["subscriptions"]:
            for c in subscription["currencies"]:
                assert c["margin"] == minus(c["price"], c["total"])
    finally:
        remove_rule(store, Whom.RESELLER, reseller, "2026-01-01")
        spend_api._BOOKS.clear()
