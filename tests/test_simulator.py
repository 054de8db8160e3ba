"""The Partner Center simulator itself, over real loopback HTTP: quirks, paging, auth and faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.simulator import Fault, Simulator, WorldConfig

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SCOPE = "https://api.partnercenter.microsoft.com/.default"
ROOT = Path(__file__).resolve().parents[1]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def day(n: int) -> datetime:
    """Midnight UTC, n days before NOW's date."""
    return datetime(NOW.year, NOW.month, NOW.day, tzinfo=timezone.utc) - timedelta(days=n)


def parse(response: requests.Response) -> Any:
    return json.loads(response.content.decode("utf-8-sig"), parse_float=Decimal)


class Api:
    """A minimal client for poking the simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.http = requests.Session()
        self._tokens: dict[str, str] = {}

    def token(self, kind: str = "user") -> str:
        if kind not in self._tokens:
            form = {"client_id": self.sim.client_id, "client_secret": self.sim.client_secret, "scope": SCOPE}
            if kind == "user":
                form |= {"grant_type": "refresh_token", "refresh_token": self.sim.initial_refresh_token}
            else:
                form["grant_type"] = "client_credentials"
            response = self.http.post(self.sim.token_url, data=form, timeout=5)
            assert response.status_code == 200, response.text
            self._tokens[kind] = response.json()["access_token"]
        return self._tokens[kind]

    def get(
        self, path: str, *, kind: str = "user", headers: dict[str, str] | None = None, **params: str | int
    ) -> requests.Response:
        return self.query(path, params, kind=kind, headers=headers)

    def query(
        self, path: str, params: Mapping[str, str | int], *, kind: str = "user", headers: dict[str, str] | None = None
    ) -> requests.Response:
        hdrs = {"Authorization": f"Bearer {self.token(kind)}", **(headers or {})}
        return self.http.get(f"{self.sim.base_url}/v1/{path}", params=params or None, headers=hdrs, timeout=10)

    def follow(self, link: dict, kind: str = "user") -> requests.Response:
        headers = {h["key"]: h["value"] for h in link["headers"]}
        return self.get(link["uri"], kind=kind, headers=headers)

    def utilization(self, cid: str, sid: str, start: datetime, end: datetime, **params: str | int) -> requests.Response:
        return self.query(
            f"customers/{cid}/subscriptions/{sid}/utilizations/azure",
            {"start_time": iso(start), "end_time": iso(end), **params},
        )

    def all_utilization(self, cid: str, sid: str, start: datetime, end: datetime, **params: str | int) -> list:
        response = self.utilization(cid, sid, start, end, **params)
        items = []
        while True:
            assert response.status_code == 200, response.text
            body = parse(response)
            assert body["totalCount"] == len(body["items"])
            items.extend(body["items"])
            if "next" not in body["links"]:
                return items
            response = self.follow(body["links"]["next"])


def plain(records: list) -> list:
    """Records as the wire carries them (Decimals compared by value)."""
    return json.loads(json.dumps(records, default=str), parse_float=Decimal)


def decimals(records: list) -> list:
    return [{**r, "quantity": Decimal(str(r["quantity"]))} for r in plain(records)]


@pytest.fixture(scope="module")
def sim():
    world = WorldConfig(
        customers=3,
        legacy_per_customer=1,
        plan_per_customer=1,
        licence_per_customer=1,
        forbidden_customers=1,
        days=10,
        records_per_day=25,
        now=NOW,
    )
    with Simulator(world=world) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def clean(request):
    yield
    if "sim" in request.fixturenames:
        simulator = request.getfixturevalue("sim")
        simulator.faults.clear()
        simulator.set_latency(0)


@pytest.fixture
def api(sim):
    return Api(sim)


@pytest.fixture
def legacy(sim):
    return sim.world.legacy_subscriptions()[0]


def test_every_body_starts_with_a_bom_and_ids_are_echoed(api, sim):
    response = api.get("customers", headers={"MS-RequestId": "req-1", "MS-CorrelationId": "corr-1"})
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["MS-RequestId"] == "req-1" and response.headers["MS-CorrelationId"] == "corr-1"
    assert response.headers["MS-CV"]
    with pytest.raises(ValueError):
        json.loads(response.content.decode("utf-8"))
    assert api.get("customers/nope/subscriptions").content.startswith(b"\xef\xbb\xbf")


def test_refresh_tokens_rotate_and_old_ones_stay_valid(sim):
    http = requests.Session()
    form = {"grant_type": "refresh_token", "client_id": sim.client_id, "client_secret": sim.client_secret}
    form["scope"] = SCOPE
    first = http.post(sim.token_url, data={**form, "refresh_token": sim.initial_refresh_token}).json()
    assert first["token_type"] == "Bearer" and first["expires_in"] == 3599
    assert first["refresh_token"] != sim.initial_refresh_token
    second = http.post(sim.token_url, data={**form, "refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] not in (first["refresh_token"], sim.initial_refresh_token)
    again = http.post(sim.token_url, data={**form, "refresh_token": sim.initial_refresh_token})
    assert again.status_code == 200


def test_an_unknown_refresh_token_is_invalid_grant_700082(sim):
    form = {"grant_type": "refresh_token", "client_id": sim.client_id, "client_secret": sim.client_secret}
    response = requests.post(sim.token_url, data={**form, "scope": SCOPE, "refresh_token": "0.Anope"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_grant" and body["error_codes"] == [700082]
    assert body["error_description"].startswith("AADSTS700082")


def test_revoked_refresh_tokens_fail_like_after_90_days():
    with Simulator(world=WorldConfig(customers=1, now=NOW)) as own:
        form = {"grant_type": "refresh_token", "client_id": own.client_id, "client_secret": own.client_secret}
        form |= {"scope": SCOPE, "refresh_token": own.initial_refresh_token}
        assert requests.post(own.token_url, data=form).status_code == 200
        own.revoke_refresh_tokens()
        assert requests.post(own.token_url, data=form).json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_invalid_client(sim):
    form = {"grant_type": "client_credentials", "client_id": sim.client_id, "client_secret": "nope", "scope": SCOPE}
    response = requests.post(sim.token_url, data=form)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_missing_or_unknown_bearer_is_401_800001(sim):
    for headers in ({}, {"Authorization": "Bearer made-up"}):
        response = requests.get(f"{sim.base_url}/v1/customers", headers=headers)
        assert response.status_code == 401
        assert parse(response) == {
            "code": 800001,
            "description": "Missing partner token",
            "data": [],
            "source": "PartnerFD",
        }


def test_expired_access_tokens_are_refused():
    with Simulator(world=WorldConfig(customers=1, now=NOW, token_lifetime_s=1)) as own:
        api = Api(own)
        assert api.get("customers").status_code == 200
        own.expire_access_tokens()
        assert api.get("customers").status_code == 401


def test_app_only_tokens_serve_inventory_and_utilization_but_not_usage(api, sim, legacy):
    cid, sid = legacy
    assert api.get("customers", kind="app").status_code == 200
    assert api.get(f"customers/{cid}/subscriptions", kind="app").status_code == 200
    assert (
        api.get(
            f"customers/{cid}/subscriptions/{sid}/utilizations/azure",
            kind="app",
            start_time=iso(day(2)),
            end_time=iso(day(1)),
        ).status_code
        == 200
    )
    for path in ("customers/usagerecords", f"customers/{cid}/subscriptions/{sid}/usagesummary"):
        response = api.get(path, kind="app")
        assert response.status_code in (401, 403)
        assert parse(response)["source"] == "PartnerFD"
        assert api.get(path).status_code == 200


def test_forbidden_customers_are_listed_but_answer_403_20002(api, sim):
    forbidden = [c for c in sim.world.customers() if c.forbidden]
    assert len(forbidden) == 1
    listed = [c["id"] for c in parse(api.get("customers"))["items"]]
    assert forbidden[0].id in listed
    cid = forbidden[0].id
    sid = sim.world.subscriptions(cid)[0].id
    for path in (
        f"customers/{cid}/subscriptions",
        f"customers/{cid}/subscriptions/{sid}/usagesummary",
        f"customers/{cid}/subscriptions/{sid}/utilizations/azure?start_time={iso(day(2))}&end_time={iso(day(1))}",
    ):
        response = api.get(path)
        assert response.status_code == 403
        assert parse(response)["code"] == 20002


def test_unknown_subscriptions_and_azure_plan_utilization_are_404_20003(api, sim):
    cid = sim.world.customers()[0].id
    plan = next(s for s in sim.world.subscriptions(cid) if s.kind == "azure_plan")
    for sid in ("00000000-0000-0000-0000-000000000000", plan.id):
        response = api.utilization(cid, sid, day(2), day(1))
        assert response.status_code == 404 and parse(response)["code"] == 20003
    assert api.get("customers/00000000-0000-0000-0000-000000000000/subscriptions").status_code == 404


def test_subscriptions_carry_offers_and_open_enum_statuses(api, sim):
    statuses, offers = set(), set()
    for customer in sim.world.customers():
        if customer.forbidden:
            continue
        items = parse(api.get(f"customers/{customer.id}/subscriptions"))["items"]
        assert [i["id"] for i in items] == [s.id for s in sim.world.subscriptions(customer.id)]
        statuses |= {i["status"] for i in items}
        offers |= {(i["offerId"].split(":")[0], i["billingType"]) for i in items}
    assert {("MS-AZR-0145P", "usage"), ("DZH318Z0BPS6", "usage")} <= offers
    assert any(b == "license" for _, b in offers)
    assert statuses - {"active"}


def test_usage_records_keep_twenty_digits_and_follow_the_month(api, sim):
    body = parse(api.get("customers/usagerecords"))
    assert body["totalCount"] == len(body["items"]) == len(sim.world.customers())
    money = [i["totalCost"] for i in body["items"] if i["totalCost"]]
    assert money and any(len(str(m).replace(".", "")) >= 20 for m in money)
    for item in body["items"]:
        expected = sim.world.usage_record(item["id"])
        assert str(item["totalCost"]) == str(expected["totalCost"])
        assert ("currencyCode" in item) == item["isUpgraded"] and ("currencyLocale" in item) != item["isUpgraded"]
    budgets = [i["budget"] for i in body["items"]]
    assert any("amount" in b for b in budgets) and any("amount" not in b for b in budgets)
    sim.world.set_now(NOW + timedelta(days=15))
    try:
        turned = parse(api.get("customers/usagerecords"))["items"]
    finally:
        sim.world.set_now(NOW)
    assert [i["totalCost"] for i in turned] != [i["totalCost"] for i in body["items"]]


def test_usage_records_page_with_a_body_token_and_links_next():
    with Simulator(world=WorldConfig(customers=5, forbidden_customers=0, usage_record_page_size=2, now=NOW)) as own:
        api = Api(own)
        body = parse(api.get("customers/usagerecords"))
        ids = [i["id"] for i in body["items"]]
        while "next" in body["links"]:
            assert body["continuationToken"] == body["links"]["next"]["headers"][0]["value"]
            body = parse(api.follow(body["links"]["next"]))
            ids += [i["id"] for i in body["items"]]
        assert ids == own.world.usage_record_customers() and len(ids) == 5


def test_customers_page_with_links_next_and_continuation_token(api, sim):
    body = parse(api.get("customers", size=1))
    ids = [c["id"] for c in body["items"]]
    while "next" in body["links"]:
        assert body["links"]["next"]["uri"] == "customers?size=1&seek_operation=Next"
        assert body["continuationToken"]
        body = parse(api.follow(body["links"]["next"]))
        ids += [c["id"] for c in body["items"]]
    assert ids == [c.id for c in sim.world.customers()]


def test_usage_summaries_are_bare_with_pacific_periods_or_wrapped_when_asked(api, sim, legacy):
    cid, sid = legacy
    summary = parse(api.get(f"customers/{cid}/subscriptions/{sid}/usagesummary"))
    assert summary["resourceId"] == sid and "items" not in summary
    assert summary["billingStartDate"].endswith(("-07:00", "-08:00"))
    assert str(summary["totalCost"]) == str(sim.world.usage_summary(cid, sid)["totalCost"])
    plan = next(s for s in sim.world.subscriptions(cid) if s.kind == "azure_plan")
    plan_summary = parse(api.get(f"customers/{cid}/subscriptions/{plan.id}/usagesummary"))
    assert plan_summary["billingStartDate"] == "2026-11-01T00:00:00-07:00" and "usdTotalCost" in plan_summary
    with Simulator(world=WorldConfig(customers=2, forbidden_customers=0, wrap_summary=True, now=NOW)) as own:
        wcid, wsid = own.world.legacy_subscriptions()[0]
        wrapped = parse(Api(own).get(f"customers/{wcid}/subscriptions/{wsid}/usagesummary"))
        assert wrapped["totalCount"] == 1 and wrapped["items"][0]["resourceId"] == wsid


def test_utilization_selects_by_reported_time(api, sim, legacy):
    cid, sid = legacy
    splits = sum(1 for j in range(25) if j % 10 == 1)  # remainders of the day before, reported with this day
    items = api.all_utilization(cid, sid, day(3), day(2))
    assert len(items) == 25 + splits == sim.world.utilization_count(cid, sid, day(3), day(2))
    assert decimals(items) == decimals(list(sim.world.utilization(cid, sid, day(3), day(2))))
    # Reported on the 17th (UTC): usage of the 16th and split remainders of the 15th, in Pacific time.
    assert {i["usageStartTime"] for i in items} == {"2026-11-15T16:00:00-08:00", "2026-11-14T16:00:00-08:00"}
    half = api.all_utilization(cid, sid, day(3), day(3) + timedelta(hours=16))
    assert 0 < len(half) < len(items) and half == items[: len(half)]


def test_any_window_selects_exactly_the_records_reported_in_it(sim, legacy):
    cid, sid = legacy
    world = sim.world
    reported = [
        world.reported_at(d, p)
        for d in (day(n).date() for n in range(12, -2, -1))
        for p in range(world.reported_day_size(d))
    ]
    exists_before = NOW - timedelta(hours=2)
    for hours, minutes in ((7, 13), (24, 0), (1, 1), (50, 59)):
        start = day(9) + timedelta(hours=5, minutes=7)
        while start < NOW:
            end = start + timedelta(hours=hours, minutes=minutes)
            expected = sum(1 for t in reported if start <= t < end and t < exists_before)
            assert world.utilization_count(cid, sid, start, end) == expected
            start = end


def test_split_records_add_up_across_two_adjacent_windows(api, sim, legacy):
    cid, sid = legacy
    usage_start = "2026-11-15T16:00:00-08:00"  # UTC day 2026-11-16, reported on the 17th and 18th
    parts: dict[tuple, list[Decimal]] = defaultdict(list)
    for start in (day(3), day(2)):
        for item in api.all_utilization(cid, sid, start, start + timedelta(days=1)):
            if item["usageStartTime"] == usage_start:
                uri = (item.get("instanceData") or {}).get("resourceUri")
                parts[(item["resource"]["id"], uri)].append(item["quantity"])
    assert len(parts) == 25
    split = {key[1].rsplit("/", 1)[1]: values for key, values in parts.items() if len(values) == 2}
    usage_day = day(4).date()
    assert set(split) == {"st-0", "db-1", "st-2"}  # records 1, 11, 21: meter j % 8, instance j // 8
    for name, j in (("st-0", 1), ("db-1", 11), ("st-2", 21)):
        total = sim.world.usage_total(cid, sid, usage_day, j)
        assert all(0 < q < total for q in split[name]) and sum(split[name]) == total


def test_paging_is_complete_and_deterministic(api, sim, legacy):
    cid, sid = legacy
    first = api.all_utilization(cid, sid, day(8), day(1), size=7)
    second = api.all_utilization(cid, sid, day(8), day(1), size=7)
    assert first == second
    assert decimals(first) == decimals(list(sim.world.utilization(cid, sid, day(8), day(1))))
    assert len(first) == sim.world.utilization_count(cid, sid, day(8), day(1)) > 7
    pages = [r for r in sim.requests if r.url_path.endswith("/azure") and r.query.get("seek_operation") == ["Next"]]
    assert pages and all(set(r.query) == {"seek_operation"} for r in pages)
    assert all(r.headers.get("ms-continuationtoken") for r in pages)


def test_a_page_of_a_huge_subscription_costs_o_page():
    world = WorldConfig(
        customers=1,
        legacy_per_customer=1,
        plan_per_customer=0,
        licence_per_customer=0,
        forbidden_customers=0,
        days=30,
        records_per_day=40_000,
        now=NOW,
    )
    with Simulator(world=world) as big:
        api = Api(big)
        cid, sid = big.world.legacy_subscriptions()[0]
        assert big.world.utilization_count(cid, sid, day(30), day(1)) > 1_000_000
        started = time.perf_counter()
        response = api.utilization(cid, sid, day(20), day(1))
        for _ in range(2):
            body = parse(response)
            assert len(body["items"]) == 1000
            response = api.follow(body["links"]["next"])
        assert len(parse(response)["items"]) == 1000
        assert time.perf_counter() - started < 5


def test_data_near_now_is_not_ready_204(api, sim, legacy):
    cid, sid = legacy
    response = api.utilization(cid, sid, day(1), NOW - timedelta(hours=1))
    assert response.status_code == 204 and response.headers["Retry-After"] == "1" and not response.content
    assert api.utilization(cid, sid, day(1), NOW - timedelta(hours=3)).status_code == 200


def test_bad_utilization_queries_are_400(api, sim, legacy):
    cid, sid = legacy
    path = f"customers/{cid}/subscriptions/{sid}/utilizations/azure"
    for params in (
        {"start_time": iso(day(3)), "end_time": iso(day(2)), "size": 1001},
        {"end_time": iso(day(2))},
        {"start_time": iso(day(2)), "end_time": iso(day(3))},
        {"start_time": "2026-11-17T00:00:00+00:00", "end_time": iso(day(2))},  # raw '+' arrives as a space
        {"start_time": iso(day(3)), "end_time": iso(day(2)), "granularity": "weekly"},
    ):
        url = f"{sim.base_url}/v1/{path}?" + "&".join(f"{k}={v}" for k, v in params.items())
        response = requests.get(url, headers={"Authorization": f"Bearer {api.token()}"})
        assert response.status_code == 400, params
        assert parse(response)["source"] == "PartnerFD"


def test_hourly_and_no_details_shape_the_records(api, sim, legacy):
    cid, sid = legacy
    hourly = api.all_utilization(cid, sid, day(3), day(2), granularity="hourly", show_details="false")
    assert all("instanceData" not in r for r in hourly)
    start = datetime.fromisoformat(hourly[1]["usageStartTime"])
    assert datetime.fromisoformat(hourly[1]["usageEndTime"]) - start == timedelta(hours=1)
    detailed = api.all_utilization(cid, sid, day(3), day(2))
    assert any(r.get("instanceData") is None for r in detailed)
    assert any(r["infoFields"] == {} for r in detailed)
    summer = datetime(2026, 7, 10, tzinfo=timezone.utc)
    with Simulator(world=WorldConfig(customers=1, forbidden_customers=0, days=5, now=summer)) as own:
        ((ocid, osid),) = own.world.legacy_subscriptions()
        items = list(own.world.utilization(ocid, osid, summer - timedelta(days=2), summer - timedelta(days=1)))
        assert items and all(r["usageStartTime"].endswith("T17:00:00-07:00") for r in items)


def test_429_has_its_own_body_shape_and_retry_after(api, sim):
    fault = sim.faults.add(Fault(kind="429", path=r"/v1/customers$", times=2, retry_after=57))
    for _ in range(2):
        response = api.get("customers")
        assert response.status_code == 429 and response.headers["Retry-After"] == "57"
        assert parse(response) == {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 57 seconds."}
    assert api.get("customers").status_code == 200 and fault.hits == 2


def test_500_503_204_and_error_faults(api, sim, legacy):
    cid, sid = legacy
    sim.faults.add(Fault(kind="500", path="/utilizations/azure"))
    sim.faults.add(Fault(kind="503", path="/utilizations/azure", retry_after=3))
    sim.faults.add(Fault(kind="204", path="/utilizations/azure", retry_after=2))
    sim.faults.add(
        Fault(
            kind="error",
            path="/utilizations/azure",
            status=400,
            body={"code": 3000, "description": "Customer does not have usage data"},
        )
    )
    r500, r503, r204, r400 = (api.utilization(cid, sid, day(2), day(1)) for _ in range(4))
    assert r500.status_code == 500 and parse(r500)["code"] == 800003
    assert r503.status_code == 503 and r503.headers["Retry-After"] == "3"
    assert r204.status_code == 204 and r204.headers["Retry-After"] == "2"
    assert r400.status_code == 400 and parse(r400)["code"] == 3000
    assert api.utilization(cid, sid, day(2), day(1)).status_code == 200


def test_every_and_forever_faults(api, sim):
    sim.faults.add(Fault(kind="500", path=r"/v1/customers$", times=None, every=2))
    statuses = [api.get("customers").status_code for _ in range(6)]
    assert statuses == [200, 500] * 3


def test_default_faults_hit_the_api_but_not_the_token_endpoint_or_admin(sim):
    sim.faults.add(Fault(kind="500", times=None))
    api = Api(sim)
    assert api.token("app")
    assert requests.get(f"{sim.base_url}/_sim/stats").status_code == 200
    assert api.get("customers", kind="app").status_code == 500


def test_slow_fault_lets_a_client_timeout_fire(api, sim):
    sim.faults.add(Fault(kind="slow", path="customers", delay_s=1.0))
    with pytest.raises(requests.Timeout):
        api.http.get(f"{sim.base_url}/v1/customers", headers={"Authorization": f"Bearer {api.token()}"}, timeout=0.3)
    assert api.get("customers").status_code == 200


def test_drop_fault_closes_the_connection(api, sim):
    sim.faults.add(Fault(kind="drop", path="customers"))
    with pytest.raises(requests.ConnectionError):
        api.get("customers")
    assert api.get("customers").status_code == 200


def test_repeat_first_page_bug_returns_the_same_token_forever():
    world = WorldConfig(
        customers=1, forbidden_customers=0, records_per_day=30, days=5, repeat_first_page_bug=True, now=NOW
    )
    with Simulator(world=world) as own:
        api = Api(own)
        cid, sid = own.world.legacy_subscriptions()[0]
        first = parse(api.utilization(cid, sid, day(3), day(1), size=10))
        token = first["links"]["next"]["headers"][0]["value"]
        for _ in range(3):
            page = parse(api.follow(first["links"]["next"]))
            assert page["links"]["next"]["headers"][0]["value"] == token
            assert page["items"] == first["items"]


def test_latency_is_added_and_settable(api, sim):
    sim.set_latency(250)
    started = time.perf_counter()
    api.get("customers")
    assert time.perf_counter() - started >= 0.25
    sim.set_latency(0)


def test_requests_are_recorded_with_case_insensitive_headers(api, sim):
    sim.requests.clear()
    api.get("customers", headers={"MS-RequestId": "abc"})
    (recorded,) = [r for r in sim.requests if r.url_path == "/v1/customers"]
    assert recorded.headers["ms-requestid"] == "abc" and recorded.headers.get("MS-REQUESTID") == "abc"
    assert recorded.status == 200 and sim.calls(r"^/v1/customers$") == 1


def test_admin_api_steers_faults_and_reports_stats(api, sim):
    admin = f"{sim.base_url}/_sim"
    added = requests.post(f"{admin}/faults", json={"kind": "429", "path": "customers", "retry_after": 5})
    assert added.status_code == 201
    assert api.get("customers").status_code == 429
    stats = requests.get(f"{admin}/stats").json()
    assert stats["routes"]["customers"] >= 1 and stats["statuses"]["429"] >= 1
    assert requests.post(f"{admin}/faults", json={"kind": "nope"}).status_code == 400
    requests.post(f"{admin}/faults", json={"kind": "500"})
    assert requests.delete(f"{admin}/faults").status_code == 200
    assert api.get("customers").status_code == 200


def test_a_stopped_simulator_cuts_keep_alive_connections():
    own = Simulator(world=WorldConfig(customers=1, now=NOW)).start()
    api = Api(own)
    assert api.get("customers").status_code == 200
    own.stop()
    with pytest.raises(requests.ConnectionError):
        api.get("customers")


def test_cli_prints_credentials_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost.simulator", "--port", "0", "--customers", "2", "--now", "2026-11-20T12:00:00Z"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None  # stdout=PIPE
        line = process.stdout.readline().split()
        assert line[:3] == ["simulator", "listening", "on"]
        fields = dict(part.split("=", 1) for part in line[4:])
        form = {
            "grant_type": "refresh_token",
            "client_id": fields["client_id"],
            "client_secret": fields["client_secret"],
            "refresh_token": fields["refresh_token"],
            "scope": SCOPE,
        }
        token = requests.post(f"{line[3]}/{fields['tenant']}/oauth2/v2.0/token", data=form).json()["access_token"]
        customers = requests.get(f"{line[3]}/v1/customers", headers={"Authorization": f"Bearer {token}"})
        assert len(parse(customers)["items"]) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
