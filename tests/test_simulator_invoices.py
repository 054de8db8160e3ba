"""The simulator's invoices and billed/reconciliation exports, over real loopback HTTP, blobs in Azurite (issue 23):
Partner Center's invoice list, the Graph billed usage, billed reconciliation and unbilled reconciliation exports,
and the one story they tell (an invoice's total is its reconciliation lines' rounded sum, whose Azure plan part is
the billed usage to the digit), the planted mismatch, the credit note and the admin API."""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import pytest
import requests

from devhost.simulator import Simulator, World, WorldConfig, invoices, reconciliation, wire

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
PC_SCOPE = "https://api.partnercenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXACT = Context(prec=300)
RERATED_DAY = "2026-10-15"  # the billed data's default re-rating of October (the `last` period at NOW)


def parse(content: bytes) -> Any:
    return json.loads(content.decode("utf-8-sig"), parse_float=Decimal)


def as_json(obj: Any) -> Any:
    """What the wire carries (numbers parsed as Decimal)."""
    return json.loads(wire.dumps(obj), parse_float=Decimal)


def total(values: Iterator[Any]) -> Decimal:
    found = Decimal(0)
    for value in values:
        found = EXACT.add(found, Decimal(value))
    return found


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP, context=EXACT)


class Client:
    """Tokens of every kind, Partner Center GETs and Graph exports run to their lines."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.http = requests.Session()
        self._tokens: dict[str, str] = {}

    def token(self, kind: str) -> str:
        if kind not in self._tokens:
            form = {"client_id": self.sim.client_id, "client_secret": self.sim.client_secret}
            if kind == "user":
                form |= {"grant_type": "refresh_token", "refresh_token": self.sim.initial_refresh_token}
            else:
                form["grant_type"] = "client_credentials"
            form["scope"] = GRAPH_SCOPE if kind == "graph" else PC_SCOPE
            response = self.http.post(self.sim.token_url, data=form, timeout=5)
            assert response.status_code == 200, response.text
            self._tokens[kind] = response.json()["access_token"]
        return self._tokens[kind]

    def pc(
        self, path: str, kind: str = "app", headers: dict[str, str] | None = None, **params: Any
    ) -> requests.Response:
        hdrs = {"Authorization": f"Bearer {self.token(kind)}", **(headers or {})}
        return self.http.get(f"{self.sim.base_url}/v1/{path}", params=params or None, headers=hdrs, timeout=10)

    def all_invoices(self, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(every invoice, every page) following links.next."""
        response = self.pc("invoices", **params)
        items, pages = [], []
        while True:
            assert response.status_code == 200, response.text
            assert response.content.startswith(wire.BOM)
            page = parse(response.content)
            pages.append(page)
            items.extend(page["items"])
            if "next" not in page["links"]:
                return items, pages
            link = page["links"]["next"]
            response = self.pc(link["uri"], headers={h["key"]: h["value"] for h in link["headers"]})

    def start(self, path: str, body: dict[str, Any], kind: str = "graph") -> requests.Response:
        url = f"{self.sim.graph_base_url}/v1.0/reports/partners/billing/{path}/export"
        return self.http.post(url, json=body, headers={"Authorization": f"Bearer {self.token(kind)}"}, timeout=10)

    def export(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """(manifest, lines) of an export run to its end; (None, []) when it failed with 5000 (no data)."""
        started = self.start(path, body)
        assert started.status_code == 202 and started.content == b"", started.text
        auth = {"Authorization": f"Bearer {self.token('graph')}"}
        for _ in range(10):
            operation = self.http.get(started.headers["Location"], headers=auth, timeout=10).json()
            if operation["status"] not in ("notStarted", "running"):
                break
        if operation["status"] == "failed":
            assert operation["error"]["code"] == "5000"
            return None, []
        link = operation["resourceLocation@odata.navigationLink"]
        manifest = self.http.get(link, headers=auth, timeout=10).json()
        lines = []
        for blob in manifest["blobs"]:
            url = f"{manifest['rootDirectory']}/{blob['name']}?{manifest['sasToken']}"
            data = self.http.get(url, timeout=10)
            assert data.status_code == 200, data.text
            lines += [parse(text) for text in gzip.decompress(data.content).splitlines() if text]
        return manifest, lines


@pytest.fixture(scope="module")
def sim(azurite_blob) -> Iterator[Simulator]:
    """The default world (three customers: GBP, SEK, EUR, the EUR one forbidden) at NOW, exports to Azurite."""
    with Simulator(world=WorldConfig(now=NOW), blob_connection_string=azurite_blob.connection_string) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def client(sim) -> Client:
    return Client(sim)


@pytest.fixture(scope="module")
def listed(client) -> list[dict[str, Any]]:
    return client.all_invoices()[0]


@pytest.fixture(scope="module")
def billed(client, listed) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None]]:
    """Invoice id -> (billed reconciliation lines, billed usage lines or None when that export has no data)."""
    found = {}
    for invoice in listed:
        body = {"invoiceId": invoice["id"], "attributeSet": "full"}
        _, recon = client.export("reconciliation/billed", body)
        manifest, usage = client.export("usage/billed", body)
        found[invoice["id"]] = (recon, None if manifest is None else usage)
    return found


def recurring(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in listed if i["documentType"] == "Invoice"]


# ----- Partner Center: GET /v1/invoices --------------------------------------------------------------------------


def test_invoices_have_a_bom_page_by_two_and_span_currencies(client, sim, listed):
    items, pages = client.all_invoices()
    assert [len(p["items"]) for p in pages[:-1]] == [2] * (len(pages) - 1) and 1 <= len(pages[-1]["items"]) <= 2
    for page in pages:
        assert page["totalCount"] == len(page["items"]) and page["attributes"] == {"objectType": "Collection"}
        if "next" in page["links"]:
            link = page["links"]["next"]
            assert link["uri"] == "invoices?size=2&seek_operation=Next"
            assert link["headers"] == [{"key": "MS-ContinuationToken", "value": page["continuationToken"]}]
    assert items == listed == as_json(invoices.invoices(sim.world, sim.invoice_state))
    assert len({i["id"] for i in items}) == len(items) == 3 * 3 + 1  # three currencies x three months + a credit note
    assert all(re.fullmatch(r"G\d{9}", i["id"]) for i in items)
    assert {i["currencyCode"] for i in items} == {"GBP", "SEK", "EUR"}
    assert {i["invoiceDate"] for i in recurring(items)} == {f"2026-{m:02d}-08T06:00:00Z" for m in (9, 10, 11)}
    october = next(i for i in recurring(items) if i["billingPeriodStartDate"] == "2026-10-01T00:00:00Z")
    assert october["billingPeriodEndDate"] == "2026-10-31T23:59:59Z" and october["invoiceType"] == "Recurring"
    assert october["invoiceDetails"] == [{"invoiceLineItemType": "BillingLineItems", "billingProvider": "All"}]
    assert october["links"]["self"]["uri"] == f"/invoices/{october['id']}"
    assert [i["invoiceDate"] for i in items] == sorted((i["invoiceDate"] for i in items), reverse=True)
    big = client.pc("invoices", size=4)
    assert len(parse(big.content)["items"]) == 4 and "size=4" in parse(big.content)["links"]["next"]["uri"]
    assert client.all_invoices(size=4)[0] == items
    assert client.all_invoices()[0] == items  # deterministic


def test_one_invoice_by_id_any_pc_token_and_no_graph_token(client, listed):
    one = listed[3]
    for kind in ("app", "user"):
        response = client.pc(f"invoices/{one['id']}", kind=kind)
        assert response.status_code == 200 and response.content.startswith(wire.BOM)
        assert parse(response.content) == one
    missing = client.pc("invoices/G000000000")
    assert missing.status_code == 404 and parse(missing.content)["source"] == "PartnerFD"
    assert client.pc("invoices", kind="graph").status_code == 401
    assert client.pc("invoices", headers={}, kind="app", seek_operation="Next").status_code == 400  # no token


# ----- the one story: totals, reconciliation and billed usage ----------------------------------------------------


def test_totals_are_the_reconciliation_rounded_half_up_but_for_the_planted_mismatch(listed, billed):
    mismatched = []
    for invoice in listed:
        recon, _ = billed[invoice["id"]]
        assert recon and all(line["InvoiceNumber"] == invoice["id"] for line in recon)
        assert all(list(line) == list(reconciliation.MEMBERS) for line in recon)
        true = cents(total(line["Total"] for line in recon))
        if invoice["totalCharges"] != true:
            assert invoice["totalCharges"] == true + Decimal("1.00")
            mismatched.append(invoice)
    sek = [i for i in recurring(listed) if i["currencyCode"] == "SEK"]  # the alphabetically last currency
    assert [i["id"] for i in mismatched] == [min(sek, key=lambda i: i["invoiceDate"])["id"]]


def test_the_azure_plan_part_per_customer_is_the_billed_usage_to_the_digit(sim, listed, billed):
    for invoice in recurring(listed):
        recon, usage = billed[invoice["id"]]
        assert usage and all(line["InvoiceNumber"] == invoice["id"] for line in usage)
        plan: dict[str, list[Any]] = defaultdict(list)
        used: dict[str, list[Any]] = defaultdict(list)
        for line in recon:
            if line["ChargeType"] == "usage":
                assert line["ProductId"] == "DZH318Z0BPS6" and line["Quantity"] == line["BillableQuantity"] == 1
                assert line["UnitPrice"] == line["EffectiveUnitPrice"] == line["Subtotal"] == line["Total"]
                plan[line["CustomerId"]].append(line["Total"])
        for line in usage:
            used[line["CustomerId"]].append(line["BillingPreTaxTotal"])
        assert plan.keys() == used.keys() and plan
        for customer, parts in plan.items():
            assert total(iter(parts)) == total(iter(used[customer]))
        options = sim.graph.options
        assert recon == as_json(list(reconciliation.billed_lines(sim.world, invoice, options)))
        assert usage == as_json(list(reconciliation.billed_usage_lines(sim.world, invoice, options)))


def test_billed_usage_differs_from_the_last_estimate_only_on_the_rerated_day(client, listed, billed):
    factor = Decimal("1.0125")
    for invoice in recurring(listed):
        if invoice["billingPeriodStartDate"] != "2026-10-01T00:00:00Z":
            continue
        _, estimate = client.export(
            "usage/unbilled", {"currencyCode": invoice["currencyCode"], "billingPeriod": "last"}
        )
        final = billed[invoice["id"]][1]
        assert final is not None and len(final) == len(estimate) and estimate
        rerated = 0
        for was, now in zip(estimate, final, strict=True):
            assert was["InvoiceNumber"] == "" and now["InvoiceNumber"] == invoice["id"]
            changed = {k for k in was if k != "InvoiceNumber" and was[k] != now[k]}
            if was["UsageDate"][:10] == RERATED_DAY:
                rerated += 1
                assert changed == {"UnitPrice", "EffectiveUnitPrice", "BillingPreTaxTotal", "PricingPreTaxTotal"}
                for key in changed:
                    assert now[key] == EXACT.multiply(was[key], factor)
            else:
                assert not changed
        assert rerated


def test_the_credit_note_amends_the_newest_invoice_of_the_first_currency(listed, billed):
    (note,) = [i for i in listed if i["documentType"] == "Credit Note"]
    original = max((i for i in recurring(listed) if i["currencyCode"] == "EUR"), key=lambda i: i["invoiceDate"])
    assert note["amendsOf"] == original["id"] and note["invoiceType"] == "OneTime" and note["id"] != original["id"]
    dated = datetime.fromisoformat(original["invoiceDate"].replace("Z", "+00:00")) + timedelta(days=3)
    assert note["invoiceDate"] == dated.strftime("%Y-%m-%dT%H:%M:%SZ")
    for key in ("billingPeriodStartDate", "billingPeriodEndDate", "currencyCode"):
        assert note[key] == original[key]
    assert note["totalCharges"] < 0 and note["amendments"] == []
    short = {k: note[k] for k in ("id", "invoiceDate", "totalCharges", "currencyCode", "documentType", "amendsOf")}
    assert original["amendments"] == [short]
    assert all(i["amendments"] == [] for i in listed if i["id"] != original["id"])
    (refund,), usage = billed[note["id"]]
    assert usage is None  # a credit note's billed usage export has no data
    first = next(line for line in billed[original["id"]][0] if line["ProductCategory"] == "License")
    assert refund["ChargeType"] == "cancelImmediate" and refund["Quantity"] == -1
    assert refund["Subtotal"] == refund["Total"] == -first["EffectiveUnitPrice"]
    assert refund["CreditReasonCode"] == "Customer cancellation" and refund["InvoiceNumber"] == note["id"]
    for key in ("CustomerId", "SubscriptionId", "ProductId", "SkuId", "ProductName", "EffectiveUnitPrice"):
        assert refund[key] == first[key]
    assert note["totalCharges"] == cents(refund["Total"])


def test_every_kind_of_line_is_on_the_invoices(listed, billed):
    lines = [line for invoice in recurring(listed) for line in billed[invoice["id"]][0]]
    kinds = {(line["ProductCategory"], line["ChargeType"]) for line in lines}
    assert kinds == {("Azure", "usage"), ("License", "cycleCharge"), ("License", "new"), ("Azure", "cycleCharge")} | {
        ("SaaS", "cycleCharge")
    }
    new = [line for line in lines if line["ChargeType"] == "new"]
    assert len(new) == len(recurring(listed))  # one prorated line per invoice
    for line in new:
        assert line["ChargeStartDate"][8:10] == "16" and line["Total"] < line["EffectiveUnitPrice"]
    for line in lines:
        if line["ProductCategory"] == "License" and line["ChargeType"] == "cycleCharge":
            assert line["EffectiveUnitPrice"] == EXACT.multiply(line["UnitPrice"], Decimal("0.95"))
            assert line["Total"] == line["Subtotal"] == EXACT.multiply(line["EffectiveUnitPrice"], line["Quantity"])
    reservation = [line for line in lines if line["ReservationOrderId"]]
    assert reservation and all(line["MeterDescription"] == "Reservation-Base VM" for line in reservation)
    saas = [line for line in lines if line["ProductCategory"] == "SaaS"]
    assert saas and all(line["PublisherId"] == "contoso" and line["Quantity"] == 2 for line in saas)


# ----- the Graph export routes ----------------------------------------------------------------------------------


def test_the_new_exports_answer_202_with_location_and_produce_manifests(client, sim, listed):
    october = next(i for i in recurring(listed) if i["billingPeriodStartDate"].startswith("2026-10"))
    bodies = {
        "reconciliation/billed": {"invoiceId": october["id"], "attributeSet": "full"},
        "usage/billed": {"invoiceId": october["id"], "attributeSet": "full"},
        "reconciliation/unbilled": {"currencyCode": "GBP", "billingPeriod": "current", "attributeSet": "full"},
    }
    for path, body in bodies.items():
        started = client.start(path, body)
        assert started.status_code == 202 and started.headers["Location"].startswith(sim.graph_base_url)
        assert started.headers["Retry-After"] == "1"
        manifest, lines = client.export(path, body)
        assert manifest is not None and manifest["blobCount"] == len(manifest["blobs"]) >= 1 and lines
        assert manifest["partnerTenantId"] == sim.tenant_id and manifest["dataFormat"] == "compressedJSON"
        again, _ = client.export(path, body)
        assert again is not None and again["eTag"] == manifest["eTag"]  # unchanged data, the same eTag
    _, unbilled = client.export("reconciliation/unbilled", bodies["reconciliation/unbilled"])
    assert unbilled == as_json(list(reconciliation.unbilled_lines(sim.world, "GBP", "current", sim.graph.options)))
    assert all(line["InvoiceNumber"] == "" and line["ChargeType"] != "usage" for line in unbilled)
    assert all(line["ChargeStartDate"].startswith("2026-11") for line in unbilled)


def test_unknown_invoices_and_missing_fields_are_400_and_a_pc_token_is_401(client):
    for path in ("reconciliation/billed", "usage/billed"):
        unknown = client.start(path, {"invoiceId": "G000000000", "attributeSet": "full"})
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "InvalidInvoiceId"
        assert client.start(path, {"attributeSet": "full"}).status_code == 400
        assert client.start(path, {"invoiceId": "G000000000"}, kind="app").status_code == 401
    bad = client.start("reconciliation/unbilled", {"billingPeriod": "current"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"


# ----- the admin API ---------------------------------------------------------------------------------------------


def test_admin_amends_moves_the_mismatch_and_rerates(azurite_blob):
    world = WorldConfig(now=NOW)
    with Simulator(world=world, blob_connection_string=azurite_blob.connection_string) as own:
        client = Client(own)

        def admin(body: Any, method: str = "POST") -> requests.Response:
            return requests.request(method, f"{own.base_url}/_sim/invoices", json=body, timeout=10)

        before = client.all_invoices()[0]
        gbp = min(recurring(before), key=lambda i: (i["currencyCode"] != "GBP", i["invoiceDate"]))
        state = admin({"amend": gbp["id"]})
        assert state.status_code == 200, state.text
        after = client.all_invoices()[0]
        (note,) = [i for i in after if i["amendsOf"] == gbp["id"]]
        assert note["documentType"] == "Credit Note" and note["invoiceDate"] == "2026-11-20T12:00:00Z"
        assert after[0] == note and note["totalCharges"] < 0 and len(after) == len(before) + 1
        amended = next(i for i in after if i["id"] == gbp["id"])
        assert [a["id"] for a in amended["amendments"]] == [note["id"]]
        _, refund = client.export("reconciliation/billed", {"invoiceId": note["id"]})
        assert [line["ChargeType"] for line in refund] == ["cancelImmediate"]
        described = parse(admin(None, "GET").content)
        assert note["id"] in {n["id"] for n in described["creditNotes"]} and described["mismatch"]

        assert parse(admin({"mismatch": gbp["id"]}).content)["mismatch"] == gbp["id"]
        moved = {i["id"]: i for i in client.all_invoices()[0]}
        truth = {i["id"]: i["trueTotalCharges"] for i in parse(admin(None, "GET").content)["invoices"]}
        assert {k for k, i in moved.items() if i["totalCharges"] != truth[k]} == {gbp["id"]}
        cleared = parse(admin({"mismatch": None, "billedRerate": {}}).content)
        assert cleared["mismatch"] is None and cleared["billedRerate"] == {}
        plain = client.all_invoices()[0]
        assert all(i["totalCharges"] == i["trueTotalCharges"] for i in cleared["invoices"])
        assert plain == as_json(invoices.invoices(own.world, own.invoice_state))
        assert [i["totalCharges"] for i in plain] != [moved[i["id"]]["totalCharges"] for i in plain]  # not re-rated
        october = next(i for i in recurring(plain) if i["billingPeriodStartDate"].startswith("2026-10"))
        _, usage = client.export("usage/billed", {"invoiceId": october["id"]})
        _, estimate = client.export(
            "usage/unbilled", {"currencyCode": october["currencyCode"], "billingPeriod": "last"}
        )
        assert [{**line, "InvoiceNumber": ""} for line in usage] == estimate  # no re-rating: the estimate was final

        for body in ({"bogus": 1}, {"amend": "G000000000"}, {"mismatch": "G000000000"}, {"billedRerate": [1]}, [1]):
            assert admin(body).status_code == 400, body


def test_equal_worlds_give_equal_invoices():
    first = invoices.invoices(World(WorldConfig(now=NOW)))
    assert first == invoices.invoices(World(WorldConfig(now=NOW)))
    other = invoices.invoices(World(WorldConfig(now=NOW, seed=2)))
    assert {i["id"] for i in first}.isdisjoint(i["id"] for i in other)
    early = invoices.invoices(World(WorldConfig(now=NOW.replace(day=7))))
    assert {i["invoiceDate"][:7] for i in early} == {"2026-09", "2026-10"}  # November's invoices are not dated yet
