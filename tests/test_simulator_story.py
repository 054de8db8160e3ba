"""The simulator tells one story: usage records, usage summaries, rated lines and legacy usage priced with the
rate card agree to the digit, so a portal's chart and budget gauge agree (issue 21, item 5)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal, localcontext
from typing import Any

import pytest
import requests

from devhost.simulator import Fault, Simulator, WorldConfig, wire
from devhost.simulator.billing import BillingOptions, lines, reseller_of
from devhost.simulator.world import (
    _METERS,
    EXCLUDED_METER,
    INCLUDED_METER,
    TIERED_METER,
    UNPRICED_METER,
    World,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
FIRST = date(2026, 11, 1)
YESTERDAY = date(2026, 11, 19)
COMPLETE = date(2026, 11, 17)  # the last usage day whose split remainders are all reported by NOW - 2 h
SCOPE = "https://api.partnercenter.microsoft.com/.default"
CONFIG = WorldConfig(
    now=NOW,
    customers=6,  # GBP, SEK (a reseller's), EUR, USD (zero usage), DKK, GBP (forbidden)
    forbidden_customers=1,
    legacy_per_customer=1,
    plan_per_customer=1,
    licence_per_customer=1,
    records_per_day=16,  # every meter twice a day
)
EXACT = Context(prec=300)  # sums and products of these figures need ~60 digits: nothing rounds


@pytest.fixture
def world() -> World:
    return World(CONFIG)


def days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def plan_lines(world: World) -> list[dict[str, Any]]:
    currencies = sorted({c.currency for c in world.customers()})
    return [line for cur in currencies for line in lines(world, "current", cur, BillingOptions())]


def as_json(obj: Any) -> Any:
    """What the wire carries (numbers parsed as Decimal)."""
    return json.loads(wire.dumps(obj), parse_float=Decimal)


def legacy_of(world: World, cid: str) -> str:
    (sid,) = world.subscription_ids(cid, "legacy")
    return sid


# ----- the equalities ---------------------------------------------------------------------------------------


def test_the_world_has_every_kind_of_customer(world):
    customers = world.customers()
    assert any(c.zero_usage for c in customers) and any(c.forbidden for c in customers)
    assert any(reseller_of(world, c) for c in customers)
    assert {s.kind for s in world.subscriptions(customers[0].id)} == {"legacy", "azure_plan", "licence"}


def test_a_usage_record_is_its_rated_lines_plus_its_legacy_days(world):
    by_customer: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext(EXACT):
        for line in plan_lines(world):
            by_customer[line["CustomerId"]] += line["BillingPreTaxTotal"]
        checked = 0
        for customer in world.customers():
            record = world.usage_record(customer.id)
            legacy = sum(
                (world.legacy_day_cost(customer.id, legacy_of(world, customer.id), d) for d in days(FIRST, YESTERDAY)),
                Decimal(0),
            )
            expected = by_customer[customer.id] + legacy
            assert record["totalCost"] == expected
            if customer.zero_usage:
                assert record["totalCost"] == record["usdTotalCost"] == record["percentUsed"] == 0
                continue
            checked += 1
            assert by_customer[customer.id] > 0 and legacy > 0
            assert abs(record["usdTotalCost"] - record["totalCost"] * customer.usd_rate) < Decimal("0.01")
            if "amount" in record["budget"]:
                percent = (record["totalCost"] / record["budget"]["amount"] * 100).quantize(Decimal("0.01"))
                assert record["percentUsed"] == percent and 0 < percent < 150
            else:
                assert record["percentUsed"] == 0
    assert checked == 5


def test_each_usage_summary_is_the_sum_of_its_source(world):
    with localcontext(EXACT):
        for customer in world.customers():
            plan, legacy = world.subscription_ids(customer.id, "azure_plan")[0], legacy_of(world, customer.id)
            own = [ln["BillingPreTaxTotal"] for ln in plan_lines(world) if ln["SubscriptionId"] == plan]
            assert world.usage_summary(customer.id, plan)["totalCost"] == sum(own, Decimal(0))
            start, end = world.billing_period(customer.id, legacy)
            period = sum((world.legacy_day_cost(customer.id, legacy, d) for d in days(start, min(end, YESTERDAY))), 0)
            assert world.usage_summary(customer.id, legacy)["totalCost"] == period
            assert (period > 0) != customer.zero_usage and (len(own) > 0) != customer.zero_usage


def test_zero_usage_customers_report_no_usage(world):
    customer = next(c for c in world.customers() if c.zero_usage)
    sid = legacy_of(world, customer.id)
    assert world.utilization_count(customer.id, sid, NOW - timedelta(days=30), NOW) == 0
    assert list(world.utilization(customer.id, sid, NOW - timedelta(days=30), NOW)) == []
    assert world.legacy_day_quantities(customer.id, sid, YESTERDAY) == {}
    assert not [ln for ln in plan_lines(world) if ln["CustomerId"] == customer.id]


# ----- legacy cost by hand: utilization x the rate card -------------------------------------------------------


def usage_by_day(world: World, cid: str, sid: str) -> dict[date, dict[str, Decimal]]:
    """Quantities per UTC usage day and meter, from the utilization records themselves (splits added up)."""
    found: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    start = datetime(2026, 11, 2, tzinfo=timezone.utc)  # usage of Nov 1 is reported from Nov 2 on
    with localcontext(EXACT):
        for record in world.utilization(cid, sid, start, NOW):
            day = datetime.fromisoformat(record["usageStartTime"]).astimezone(timezone.utc).date()
            found[day][record["resource"]["id"]] += record["quantity"]
    return found


def card_terms(card: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], Decimal, set[str]]:
    (terms,) = card["offerTerms"]
    return {m["id"]: m for m in card["meters"]}, Decimal(terms["discount"]), set(terms["excludedMeterIds"])


def segment(c0: Decimal, c1: Decimal, lo: Decimal, hi: Decimal | None) -> Decimal:
    """How much of the cumulative range [c0, c1) lies in [lo, hi)."""
    top = c1 if hi is None else min(c1, hi)
    return max(Decimal(0), top - max(c0, lo))


def meter_cost(meter: dict[str, Any], c0: Decimal, c1: Decimal) -> Decimal:
    """The card's price of the quantity from cumulative c0 to c1: free up to includedQuantity, then tiers."""
    rates = sorted((Decimal(t), Decimal(str(r))) for t, r in meter["rates"].items())
    included = Decimal(str(meter["includedQuantity"]))
    cost = Decimal(0)
    for i, (threshold, rate) in enumerate(rates):
        upper = rates[i + 1][0] if i + 1 < len(rates) else None
        cost += segment(c0, c1, max(threshold, included), upper) * rate
    return cost


def hand_cost(
    world: World, cid: str, usage: dict[date, dict[str, Decimal]], day: date, card: dict[str, Any]
) -> tuple[Decimal, Decimal]:
    """(cost of the card's meters on `day`, quantity of meters missing from the card)."""
    meters, discount, excluded = card_terms(card)
    cumulative: dict[str, Decimal] = defaultdict(Decimal)
    for earlier in days(FIRST, day - timedelta(days=1)):
        for meter_id, quantity in usage[earlier].items():
            cumulative[meter_id] += quantity
    cost, missing = Decimal(0), Decimal(0)
    for meter_id, quantity in usage[day].items():
        if meter_id not in meters:
            missing += quantity
            continue
        c0 = cumulative[meter_id]
        price = meter_cost(meters[meter_id], c0, c0 + quantity)
        cost += price if meter_id in excluded else price * (1 - discount)
    return cost, missing


def crossing_day(usage: dict[date, dict[str, Decimal]], meter_id: str, mark: Decimal) -> tuple[date, Decimal, Decimal]:
    """The usage day on which the meter's cumulative quantity of the month passes `mark`, with c0 and c1."""
    total = Decimal(0)
    for day in days(FIRST, COMPLETE):
        before, total = total, total + usage[day][meter_id]
        if before < mark < total:
            return day, before, total
    raise AssertionError(f"the cumulative quantity never crosses {mark}")


def test_legacy_day_cost_is_utilization_times_the_tiered_rate_card_by_hand(world):
    customer = world.customer(1)  # SEK
    cid, sid = customer.id, legacy_of(world, customer.id)
    card = as_json(world.rate_card("SEK", "SE"))
    meters, discount, excluded = card_terms(card)
    tiered, included, excl, unpriced = (
        _METERS[m].id for m in (TIERED_METER, INCLUDED_METER, EXCLUDED_METER, UNPRICED_METER)
    )
    assert unpriced not in meters and len(meters) == len(_METERS) - 1
    assert len(meters[tiered]["rates"]) >= 2 and Decimal(meters[included]["includedQuantity"]) > 0
    assert discount == Decimal("0.05") and excluded == {excl}
    usage = usage_by_day(world, cid, sid)
    with localcontext(EXACT):
        for day in days(FIRST, COMPLETE):  # the world's quantities are the utilization records' quantities
            assert world.legacy_day_quantities(cid, sid, day) == usage[day]
        # Tiers: the day LRS storage passes 100 this month is priced partly at each rate, less the discount.
        day, c0, c1 = crossing_day(usage, tiered, Decimal(100))
        assert day > FIRST and c1 < 500
        rates = meters[tiered]["rates"]
        by_hand = ((100 - c0) * rates["0"] + (c1 - 100) * rates["100"]) * (1 - discount)
        assert meter_cost(meters[tiered], c0, c1) * (1 - discount) == by_hand
        # Included quantity: the first 100 GB of egress are free; the day that passes 100 pays for the rest.
        free_day, f0, f1 = crossing_day(usage, included, Decimal(100))
        assert meter_cost(meters[included], f0, f1) == (f1 - 100) * meters[included]["rates"]["0"]
        assert meter_cost(meters[included], Decimal(0), f0) == 0  # every day before it was free
        # ... and the day it passes 500 is priced partly at the second rate and partly at the third.
        top, t0, t1 = crossing_day(usage, tiered, Decimal(500))
        assert top > day and t0 > 100
        assert meter_cost(meters[tiered], t0, t1) == (500 - t0) * rates["100"] + (t1 - 500) * rates["500"]
        # The excluded meter is charged without the discount (its rate x quantity, nothing else).
        assert meter_cost(meters[excl], Decimal(0), usage[day][excl]) == usage[day][excl] * meters[excl]["rates"]["0"]
        for check in sorted({FIRST, free_day, day, day + timedelta(days=1), top, COMPLETE}):
            priced, missing = hand_cost(world, cid, usage, check, card)
            assert missing == usage[check][unpriced] > 0  # only the unpriced meter is off the card
            hidden = world.meter_price("SEK", UNPRICED_METER, check)
            assert world.legacy_day_cost(cid, sid, check) == priced + missing * hidden, check
        # The tiers really matter: a flat first-tier price would give another figure on the crossing day.
        assert meter_cost(meters[tiered], c0, c1) != (c1 - c0) * rates["0"]


def test_a_price_change_is_a_new_dated_card_and_prices_the_days_from_then(world):
    customer = world.customer(0)  # GBP
    cid, sid = customer.id, legacy_of(world, customer.id)
    before = as_json(world.rate_card("GBP"))
    old = {d: world.legacy_day_cost(cid, sid, d) for d in days(FIRST, YESTERDAY)}
    record = world.usage_record(cid)["totalCost"]
    world.set_rate_card_factor(Decimal("1.1"), date(2026, 11, 10))
    after = as_json(world.rate_card("GBP"))
    assert {m["effectiveDate"] for m in after["meters"]} == {"2026-11-10T00:00:00Z"}
    assert all(m["effectiveDate"] < "2026-01-01" for m in before["meters"])
    with localcontext(EXACT):
        for b, a in zip(before["meters"], after["meters"], strict=True):
            assert {t: r * Decimal("1.1") for t, r in b["rates"].items()} == a["rates"]
        usage = usage_by_day(world, cid, sid)
        for d in days(FIRST, COMPLETE):
            if d < date(2026, 11, 10):
                assert world.legacy_day_cost(cid, sid, d) == old[d]
            else:
                priced, missing = hand_cost(world, cid, usage, d, after)
                hidden = world.meter_price("GBP", UNPRICED_METER, d)
                assert world.legacy_day_cost(cid, sid, d) == priced + missing * hidden
                assert world.legacy_day_cost(cid, sid, d) > old[d]
        new_total = world.usage_record(cid)["totalCost"]
        plan = world.plan_cost(cid, world.subscription_ids(cid, "azure_plan")[0])
        assert new_total == plan + sum((world.legacy_day_cost(cid, sid, d) for d in days(FIRST, YESTERDAY)), 0)
        assert new_total > record
    world.reset_rate_card()
    assert world.usage_record(cid)["totalCost"] == record


# ----- exchange rate and weekday shape --------------------------------------------------------------------------


def test_the_exchange_rate_converts_pricing_to_billing_currency(world):
    for line in plan_lines(world):
        rate = line["PCToBCExchangeRate"]
        assert line["PricingCurrency"] == "USD"
        with localcontext(EXACT):
            assert line["PricingPreTaxTotal"] * rate == line["BillingPreTaxTotal"]  # exact: no rounding anywhere
        if line["BillingCurrency"] == "SEK":
            assert rate == Decimal("10.5042")
        if line["BillingCurrency"] == "USD":
            assert rate == 1


def test_usage_has_a_weekday_shape(world):
    plan: dict[date, Decimal] = defaultdict(Decimal)
    for line in plan_lines(world):
        plan[date.fromisoformat(line["UsageDate"][:10])] += line["Quantity"]
    cid = world.customer(0).id
    legacy = {
        d: sum(world.legacy_day_quantities(cid, legacy_of(world, cid), d).values(), Decimal(0))
        for d in days(date(2026, 10, 20), YESTERDAY)
    }
    for per_day in (plan, legacy):
        weekend = [q for d, q in per_day.items() if d.weekday() >= 5]
        weekdays = [q for d, q in per_day.items() if d.weekday() < 5]
        assert weekend and weekdays
        assert sum(weekend) / len(weekend) < Decimal("0.7") * sum(weekdays) / len(weekdays)


# ----- over HTTP -----------------------------------------------------------------------------------------------


def token(sim: Simulator, kind: str) -> str:
    form = {"client_id": sim.client_id, "client_secret": sim.client_secret, "scope": SCOPE}
    if kind == "user":
        form |= {"grant_type": "refresh_token", "refresh_token": sim.initial_refresh_token}
    else:
        form["grant_type"] = "client_credentials"
    response = requests.post(sim.token_url, data=form, timeout=5)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def parse(response: requests.Response) -> Any:
    return json.loads(response.content.decode("utf-8-sig"), parse_float=Decimal)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(world=CONFIG) as simulator:
        yield simulator


def test_the_rate_card_endpoint_answers_like_partner_center(sim):
    url = f"{sim.base_url}/v1/ratecards/azure"
    for kind in ("app", "user"):
        headers = {"Authorization": f"Bearer {token(sim, kind)}"}
        response = requests.get(url, params={"currency": "SEK", "region": "SE"}, headers=headers, timeout=5)
        assert response.status_code == 200 and response.content.startswith(b"\xef\xbb\xbf")
        assert response.headers["Content-Type"].startswith("application/json") and response.headers["MS-RequestId"]
        card = parse(response)
        assert set(card) == {"offerTerms", "meters", "currency", "isTaxIncluded", "locale"}
        assert card["currency"] == "SEK" and card["isTaxIncluded"] is False and card["locale"] == "sv-SE"
        assert set(card["offerTerms"][0]) == {"name", "discount", "excludedMeterIds", "effectiveDate"}
        for meter in card["meters"]:
            assert set(meter) == {
                "id",
                "name",
                "rates",
                "tags",
                "category",
                "subcategory",
                "region",
                "unit",
                "includedQuantity",
                "effectiveDate",
            }
            assert all(isinstance(r, Decimal) for r in meter["rates"].values())
        assert max(len(str(r)) for m in card["meters"] for r in m["rates"].values()) >= 20
        assert card == as_json(sim.world.rate_card("SEK"))
        other = parse(requests.get(url, params={"currency": "sek", "region": "US"}, headers=headers, timeout=5))
        assert other == card  # the region changes nothing
    user = {"Authorization": f"Bearer {token(sim, 'user')}"}
    for params in ({"currency": "XYZ"}, {"region": "SE"}, {"currency": ""}):
        bad = requests.get(url, params=params, headers=user, timeout=5)
        assert bad.status_code == 400 and bad.content.startswith(b"\xef\xbb\xbf")
        assert {"code", "description"} <= set(parse(bad))
    assert requests.get(url, params={"currency": "SEK"}, timeout=5).status_code == 401
    sim.faults.add(Fault(kind="429", path="/ratecards/azure", times=1, retry_after=7))
    throttled = requests.get(url, params={"currency": "SEK"}, headers=user, timeout=5)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"


def test_the_admin_price_factor_dates_a_new_card(sim):
    url = f"{sim.base_url}/v1/ratecards/azure"
    user = {"Authorization": f"Bearer {token(sim, 'user')}"}
    before = parse(requests.get(url, params={"currency": "GBP"}, headers=user, timeout=5))
    try:
        answer = requests.post(f"{sim.base_url}/_sim/ratecard", json={"priceFactor": "1.25"}, timeout=5)
        assert answer.status_code == 200
        assert answer.json()["priceChanges"] == [{"effectiveDate": "2026-11-20", "priceFactor": 1.25}]
        after = parse(requests.get(url, params={"currency": "GBP"}, headers=user, timeout=5))
        assert {m["effectiveDate"] for m in after["meters"]} == {"2026-11-20T00:00:00Z"}
        assert after["meters"][0]["rates"]["0"] == before["meters"][0]["rates"]["0"] * Decimal("1.25")
        bad = requests.post(f"{sim.base_url}/_sim/ratecard", json={"priceFactor": "lots"}, timeout=5)
        assert bad.status_code == 400
    finally:
        assert requests.delete(f"{sim.base_url}/_sim/ratecard", timeout=5).json() == {"priceChanges": []}
    assert parse(requests.get(url, params={"currency": "GBP"}, headers=user, timeout=5)) == before


def test_the_usage_summary_follows_the_exports_rerating(sim):
    customer = sim.world.customer(0)
    plan = sim.world.subscription_ids(customer.id, "azure_plan")[0]
    user = {"Authorization": f"Bearer {token(sim, 'user')}"}
    url = f"{sim.base_url}/v1/customers/{customer.id}/subscriptions/{plan}/usagesummary"
    before = parse(requests.get(url, headers=user, timeout=5))["totalCost"]
    try:
        requests.post(f"{sim.base_url}/_sim/graph", json={"rerate": {"2026-11-05": "2"}}, timeout=5).raise_for_status()
        after = parse(requests.get(url, headers=user, timeout=5))["totalCost"]
        lines_now = [ln for ln in lines(sim.world, "current", customer.currency, sim.graph.options)]
        with localcontext(EXACT):
            assert after == sum((ln["BillingPreTaxTotal"] for ln in lines_now if ln["SubscriptionId"] == plan), 0)
        assert after > before
    finally:
        requests.post(f"{sim.base_url}/_sim/graph", json={"rerate": {}}, timeout=5).raise_for_status()
    assert parse(requests.get(url, headers=user, timeout=5))["totalCost"] == before
