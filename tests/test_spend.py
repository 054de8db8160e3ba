"""The spend read model end to end: every timer once against the simulator, then what the spend routes answer.

The simulated world tells one story (its usage records, summaries, rated lines and priced legacy usage agree,
tests/test_simulator_story.py), so the spend this service computes can be held to it digit for digit.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from devhost.simulator import Simulator
from devhost.simulator.billing import reseller_of
from devhost.simulator.world import _METERS
from shared import jsonutil
from shared.access.grants import Grant, GrantKind, add_grant
from shared.access.tokens import TokenValidator
from shared.api.scoped import TokenGate, handle_with_token
from shared.api.spend import CUSTOMER_COLUMNS
from shared.deadline import NO_DEADLINE
from shared.pricing.amounts import EXACT
from shared.settings import Settings
from shared.spend import rows as spend_rows
from shared.spend.refresh import mark, project_marked
from shared.table_store import TableStore
from shared.tables import RATED_SLICES, RatedPointer
from tests.api_data import check, get, request_for
from tests.rated_support import NOW
from tests.spend_support import every_timer_once
from tests.sync_support import run_job, snapshot

PERIOD = "2026-11"
UNPRICED_METER = _METERS[3]  # S0 DTUs: the world's card leaves it out (it has a hidden price)


@pytest.fixture(scope="module")
def world(azurite, azurite_blob) -> Iterator[dict[str, Any]]:
    """Every timer once (the rate card last, so legacy usage is first unpriced, then priced), in its own tables."""
    with every_timer_once(azurite, azurite_blob, "sp") as (sim, store, env):
        yield {"sim": sim, "store": store, "env": env}


def months(store: TableStore) -> dict[str, spend_rows.SpendMonth]:
    return {
        m.customer_id: m for m in map(spend_rows.SpendMonth.of_row, store.partition(spend_rows.SPEND_MONTHS, PERIOD))
    }


def exact(values: Iterable[Any]) -> Decimal:
    """A sum with every digit (the default context would keep 28)."""
    with decimal.localcontext(EXACT):
        return sum((Decimal(v) for v in values), Decimal(0))


def subjects(store: TableStore, customer_id: str) -> list[spend_rows.SpendSubject]:
    from shared.api.queries import customer_spend

    return customer_spend(store, customer_id, PERIOD, PERIOD)[1]


def test_every_figure_adds_up_from_its_subjects_digit_for_digit(world):
    store = world["store"]
    found = months(store)
    assert len(found) == 4
    for customer_id, month in found.items():
        mine = subjects(store, customer_id)
        for currency, totals in month.currencies.items():
            of_currency = [s for s in mine if s.currency == currency]
            assert Decimal(totals.total) == exact(s.total for s in of_currency)
            for day, amount in totals.days.items():
                assert Decimal(amount) == exact(s.days.get(day, "0") for s in of_currency)
            assert Decimal(totals.total) == exact(totals.by_source.values())
            assert Decimal(totals.total) == exact(totals.by_reseller.values())
        for subject in mine:
            if subject.days:
                assert Decimal(subject.total) == exact(subject.days.values())


def test_azure_plan_spend_is_the_stored_rated_usage_and_the_worlds_lines(world):
    store, sim = world["store"], world["sim"]
    pointers = [RatedPointer.of_row(row) for row in store.all_rows(RATED_SLICES)]
    for pointer in (p for p in pointers if p.period == PERIOD and p.days):
        (subject,) = [s for s in subjects(store, pointer.customer_id) if s.subject_id == pointer.entitlement_id]
        assert subject.source == spend_rows.Source.RATED_USAGE
        assert subject.days == {d: v.billing_pre_tax_total for d, v in pointer.days.items()}  # the very text
    for customer in sim.world.customers():
        for plan in sim.world.subscription_ids(customer.id, "azure_plan"):
            by_day = sim.world.plan_day_costs(customer.id, plan)
            mine = [s for s in subjects(store, customer.id) if s.subscription_id == plan]
            for day, cost in by_day.items():
                assert exact(s.days.get(day.isoformat(), "0") for s in mine) == cost, (customer.index, day)


def complete_days(sim: Simulator) -> list[date]:
    """Usage days whose every record (split remainders too) was reported before the last window fetched."""
    first = date(2026, 11, 1)
    return [first + timedelta(days=n) for n in range((NOW.date() - first).days - 2)]


def test_legacy_cost_per_day_is_utilization_times_the_tiered_rate_card(world):
    store, sim = world["store"], world["sim"]
    for customer in sim.world.customers():
        if customer.forbidden:
            continue
        for sid in sim.world.subscription_ids(customer.id, "legacy"):
            (subject,) = [s for s in subjects(store, customer.id) if s.subject_id == sid]
            assert subject.source == spend_rows.Source.UTILIZATION_RATE_CARD and subject.currency == customer.currency
            unpriced_quantity = Decimal(0)
            for day in complete_days(sim):
                quantities = sim.world.legacy_day_quantities(customer.id, sid, day)
                hidden = quantities.get(UNPRICED_METER.id, Decimal(0))
                unpriced_quantity += hidden
                # the world's true cost less what only its hidden price knows: the card's tiers, the 100 free GB,
                # the 5 % discount and its excluded meter, all by the world's own arithmetic
                with decimal.localcontext(EXACT):
                    hidden_cost = hidden * sim.world.meter_price(customer.currency, 3, day)
                    expected = sim.world.legacy_day_cost(customer.id, sid, day) - hidden_cost
                assert Decimal(subject.days.get(day.isoformat(), "0")) == expected, (customer.index, sid, day)
            if unpriced_quantity:
                gap = subject.unpriced[UNPRICED_METER.id]
                assert Decimal(gap["quantity"]) >= unpriced_quantity and gap["name"] == UNPRICED_METER.name


def test_coverage_names_what_is_left_out_and_why(world):
    store, sim = world["store"], world["sim"]
    found = months(store)
    for customer in sim.world.customers():
        month = found[customer.id]
        reasons = {(e.subscription_id, str(e.reason)) for e in month.excluded}
        if customer.forbidden:
            assert month.relationship == "forbidden"
            continue
        charged = {s.subject_id for s in subjects(store, customer.id) if s.kind == "licence"}
        for licence in sim.world.subscription_ids(customer.id, "licence"):
            # a licence charged this month is in the figures (its unbilled reconciliation charge), else it is
            # named as not covered
            assert (licence in charged) != ((licence, "licenceNotCovered") in reasons), (customer.index, licence)
        if customer.zero_usage:
            continue
        for legacy in sim.world.subscription_ids(customer.id, "legacy"):
            assert (legacy, "unpriced") in reasons  # the meter its card does not price


def test_the_partner_overview_is_one_page_of_every_customers_month(world):
    store = world["store"]
    response = get(store, f"/api/v1/spend?period={PERIOD}", now=NOW)
    assert response.status == 200
    check(response, "/v1/spend")
    body = response.json()
    assert body["status"] == "estimated" and body["totalCount"] == 4 and "next" not in body["links"]
    stored = months(store)
    for item in body["items"]:
        month = stored[item["customerId"]]
        assert {c["currencyCode"]: c["total"] for c in item["currencies"]} == {
            c: Decimal(t.total) for c, t in month.currencies.items()
        }
        assert item["scope"] == "customer"
    paged = get(store, f"/api/v1/spend?period={PERIOD}&size=3", now=NOW)
    following = paged.json()["links"]["next"]
    rest = get(store, "/api/v1/" + following["uri"], headers={h["key"]: h["value"] for h in following["headers"]})
    assert [i["customerId"] for i in paged.json()["items"] + rest.json()["items"]] == [
        i["customerId"] for i in body["items"]
    ]
    csv_text = get(store, f"/api/v1/spend?period={PERIOD}&format=csv", now=NOW).body.decode()
    assert csv_text.splitlines()[0].startswith("period,customerId,customerName")
    by_reseller = get(store, f"/api/v1/spend?period={PERIOD}&by=reseller", now=NOW)
    check(by_reseller, "/v1/spend")
    totals: dict[str, Decimal] = {}
    for item in by_reseller.json()["items"]:
        for c in item["currencies"]:
            totals[c["currencyCode"]] = exact([totals.get(c["currencyCode"], 0), c["total"]])
    assert totals == {
        c: exact(m.currencies[c].total for m in stored.values() if c in m.currencies)
        for c in {c for m in stored.values() for c in m.currencies}
    }


def test_a_customers_month_is_one_answer_with_its_series_and_every_subscription(world):
    store, sim = world["store"], world["sim"]
    customer = sim.world.customer(0)
    target = f"/api/v1/customers/{customer.id}/spend?from=2026-11-01&to=2026-11-19"
    response = get(store, target, now=NOW)
    check(response, "/v1/customers/{customer_id}/spend")
    body = response.json()
    (currency,) = body["currencies"]
    assert currency["currencyCode"] == customer.currency
    assert currency["total"] == exact([*(p["amount"] for p in currency["series"]), currency["undatedTotal"]])
    kinds = {s["kind"] for s in body["subscriptions"]}
    assert {"legacy", "azure_plan"} <= kinds <= {"legacy", "azure_plan", "licence", "reservation", "marketplace"}
    for charge in (s for s in body["subscriptions"] if s["kind"] not in ("legacy", "azure_plan")):
        assert charge["source"] == "reconciliation" and charge["status"] == "estimated"  # not invoiced yet
    plan = next(s for s in body["subscriptions"] if s["kind"] == "azure_plan")
    assert plan["azureSubscriptions"] and plan["source"] == "ratedUsage"
    monthly = get(store, target + "&granularity=month", now=NOW).json()
    assert [p["date"] for p in monthly["currencies"][0]["series"]] == [PERIOD]
    assert monthly["currencies"][0]["total"] == currency["total"]
    lines = get(store, target + "&format=csv", now=NOW).body.decode().splitlines()
    assert lines[0] == ",".join(CUSTOMER_COLUMNS)
    assert all(line.startswith(customer.id) for line in lines[1:])
    assert get(store, "/api/v1/customers/00000000-0000-4000-8000-000000000999/spend", now=NOW).status == 404


def test_projection_is_idempotent_and_leaves_no_marks(world):
    store, sim = world["store"], world["sim"]
    assert list(store.partition(spend_rows.SPEND_MARKS, spend_rows.MARKS_PARTITION)) == []
    tables = (spend_rows.SPEND_DAYS, spend_rows.SPEND_MONTHS, spend_rows.SPEND_RESELLERS, spend_rows.UTILIZATION_DAYS)
    before = snapshot(store, tables)
    mark(store, [c.id for c in sim.world.customers()], [PERIOD])
    stats = project_marked(store, now=NOW, deadline=NO_DEADLINE, region="US")
    assert stats.months == 4 and stats.left == 0
    after = snapshot(store, tables)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "storedAt"} for r in rows]  # noqa: E731
    assert {t: strip(r) for t, r in after.items()} == {t: strip(r) for t, r in before.items()}


def test_a_projection_cut_at_its_deadline_is_finished_by_the_next(world):
    store, sim = world["store"], world["sim"]

    class Once:
        """A deadline that passes after its first look."""

        looks = 0

        def passed(self) -> bool:
            self.looks += 1
            return self.looks > 1

    mark(store, [c.id for c in sim.world.customers()], [PERIOD])
    first = project_marked(store, now=NOW, deadline=Once(), region="US")  # type: ignore[arg-type]
    assert first.months == 1 and first.left == 3
    second = project_marked(store, now=NOW, deadline=NO_DEADLINE, region="US")
    assert second.months == 3 and second.left == 0


def token_of(sim: Simulator, name: str) -> str:
    app = sim.portal.apps[name]
    form = {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.client_secret}
    url = f"{sim.authority}/{app.tenant_id}/oauth2/v2.0/token"
    response = requests.post(url, data={**form, "scope": sim.portal.scope}, timeout=10)
    return str(response.json()["access_token"])


def test_a_reseller_sees_its_share_of_a_customer_it_shares_labelled_as_such(world):
    store, sim = world["store"], world["sim"]
    shared = sim.world.customer(1)  # bought Azure through the reseller, its licence direct
    reseller = reseller_of(sim.world, shared)
    app = sim.portal.apps["reseller-portal"]
    add_grant(store, Grant(app.tenant_id, app.client_id, GrantKind.RESELLERS, frozenset({reseller})))
    settings = Settings.from_env({**world["env"], "API_ACCESS_MODE": "token", "API_AUDIENCE": sim.portal.api_client_id})
    validator = TokenValidator(
        authority=settings.authority, tenants=settings.api_allowed_tenants, audiences=settings.api_audiences
    )
    gate = TokenGate(settings, store, validator)
    headers = {"Authorization": f"Bearer {token_of(sim, 'reseller-portal')}"}

    def call(target: str) -> Any:
        response = handle_with_token(request_for("GET", target, headers=headers), store, settings, gate, NOW)
        assert response.status == 200, response.body
        return jsonutil.loads(response.body)

    overview = call(f"/api/v1/spend?period={PERIOD}")
    (item,) = overview["items"]
    assert item["customerId"] == shared.id and item["scope"] == "grant" and "budget" not in item
    month = months(store)[shared.id]
    mine = [s for s in subjects(store, shared.id) if s.reseller == reseller]
    (currency,) = item["currencies"]
    cost = exact(s.total for s in mine)
    listed = exact(pair[1] for s in mine for day in s.amounts.values() for pair in day.values())
    assert overview["figures"] == "price" and currency["bySource"] is None
    assert currency["total"] == listed != cost  # no rule: list prices (legacy: the card's, before its discount)
    licences = sim.world.subscription_ids(shared.id, "licence")
    assert item["coverage"]["outsideGrant"] == len(licences) == 1
    everything = exact(s.total for s in subjects(store, shared.id))  # the direct licence's charge too
    assert Decimal(month.currencies[currency["currencyCode"]].total) == everything != cost
    body = call(f"/api/v1/customers/{shared.id}/spend?from=2026-11-01")
    assert body["scope"] == "grant" and "partnerCenter" not in body
    entries = {s.subject_id if s.source == "reconciliation" else s.subscription_id for s in mine}
    assert {s["subscriptionId"] for s in body["subscriptions"]} == entries
    assert licences[0].encode() not in jsonutil.dumps(body).encode()  # counted, never named
    by_reseller = call(f"/api/v1/spend?period={PERIOD}&by=reseller")
    assert [i["resellerMpnId"] for i in by_reseller["items"]] == [reseller]


def test_each_legacy_day_is_priced_with_the_rate_card_in_force_that_day(world):
    store, sim = world["store"], world["sim"]
    customer = next(c for c in sim.world.customers() if not c.forbidden and not c.zero_usage)
    (sid,) = sim.world.subscription_ids(customer.id, "legacy")[:1]
    days = {s.subject_id: s for s in subjects(store, customer.id)}[sid].days
    partition = spend_rows.rate_card_partition(customer.currency, "US")
    stored = list(store.partition(spend_rows.RATE_CARDS, partition))
    card = jsonutil.loads(spend_rows.card_text(r for r in stored if "|" in r["RowKey"]))
    half = {**card, "meters": [{**m, "rates": {k: v / 2 for k, v in m["rates"].items()}} for m in card["meters"]]}

    def snapshot_rows(day: str, body: Any) -> list[dict[str, Any]]:
        head = spend_rows.RateCardSnapshot(
            currency=customer.currency, region="US", day=day, digest=day, meters=1, parts=0, fetched_at=day
        )
        parts = head.part_rows(jsonutil.dumps(body))
        return [*parts, {**head.head(), "parts": len(parts)}]

    dated = snapshot_rows("2026-11-01", card) + snapshot_rows("2026-11-10", half)
    try:
        store.delete_rows(spend_rows.RATE_CARDS, stored)
        store.upsert(spend_rows.RATE_CARDS, dated)
        mark(store, [customer.id], [PERIOD])
        project_marked(store, now=NOW, deadline=NO_DEADLINE, region="US")
        repriced = {s.subject_id: s for s in subjects(store, customer.id)}[sid].days
        assert [d for d in days if repriced[d] != days[d]] == [d for d in days if d >= "2026-11-10"]
        assert all(Decimal(repriced[d]) < Decimal(days[d]) for d in days if d >= "2026-11-10")
    finally:
        store.delete_rows(spend_rows.RATE_CARDS, dated)
        store.upsert(spend_rows.RATE_CARDS, stored)
        mark(store, [customer.id], [PERIOD])
        project_marked(store, now=NOW, deadline=NO_DEADLINE, region="US")
    assert {s.subject_id: s for s in subjects(store, customer.id)}[sid].days == days


def test_the_rate_card_is_fetched_once_a_day_and_stored_again_only_when_it_changed(world):
    store = world["store"]
    settings = Settings.from_env(world["env"])
    again = run_job("fetch_rate_card", settings, store, NOW + timedelta(hours=2))
    assert again.counts()["calls"] == 0  # checked today already
    tomorrow = run_job("fetch_rate_card", settings, store, NOW + timedelta(days=1))
    assert tomorrow.counts()["calls"] >= 1 and any("unchanged" in n for n in tomorrow.notes)
    heads = [r for r in store.all_rows(spend_rows.RATE_CARDS) if "|" not in r["RowKey"]]
    assert {r["RowKey"] for r in heads} == {NOW.date().isoformat()}


def test_reading_the_sources_table_by_table_or_customer_by_customer_projects_the_same_rows(world, monkeypatch):
    import shared.spend.refresh as refresh

    store, sim = world["store"], world["sim"]
    tables = (spend_rows.SPEND_DAYS, spend_rows.SPEND_MONTHS, spend_rows.SPEND_RESELLERS)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "storedAt"} for r in rows]  # noqa: E731
    one_by_one = {t: strip(r) for t, r in snapshot(store, tables).items()}
    monkeypatch.setattr(refresh, "BULK_AT", 1)
    monkeypatch.setattr(refresh, "CHUNK", 3)  # two chunks of one month
    mark(store, [c.id for c in sim.world.customers()], [PERIOD])
    stats = project_marked(store, now=NOW, deadline=NO_DEADLINE, region="US")
    assert stats.months == 4
    assert {t: strip(r) for t, r in snapshot(store, tables).items()} == one_by_one
