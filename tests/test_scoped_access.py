"""Scoped access: Entra ID tokens validated in the app, and each caller reads exactly its grant on every route."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devhost.simulator import Simulator, WorldConfig
from devhost.simulator.billing import entitlement_ids, reseller_of
from shared import jsonutil
from shared.access.grants import Grant, GrantKind, add_grant
from shared.access.tokens import TokenValidator
from shared.api import params
from shared.api.routes import ROUTES, Route
from shared.api.scope import Access
from shared.api.scoped import TokenGate, handle_with_key, handle_with_token
from shared.settings import Settings
from shared.sync.jobs import JOB_NAMES
from tests.api_data import request_for
from tests.rated_support import NOW
from tests.sync_support import run_job, sim_env

UNKNOWN = "00000000-0000-4000-8000-00000000abcd"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def world_data(azurite, azurite_blob, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A synced world (every timer once) in its own tables, with the simulator still serving tokens."""
    from azure.data.tables import TableServiceClient

    from shared.table_store import TableStore
    from tests.stores import drop_tables

    world = WorldConfig(now=NOW, customers=4, forbidden_customers=1, days=5)
    with Simulator(world=world, blob_connection_string=azurite_blob.connection_string) as sim:
        prefix = "s" + uuid.uuid4().hex[:12]
        store = TableStore(TableServiceClient.from_connection_string(azurite.connection_string), prefix=prefix)
        env = sim_env(sim, azurite, prefix, RATED_USAGE_CURRENCIES="GBP,SEK")
        for name in JOB_NAMES:
            run_job(name, Settings.from_env(env), store, NOW)
        apps = sim.portal.apps
        reseller = reseller_of(sim.world, sim.world.customer(1))
        for name, kind, ids in (
            ("partner-portal", GrantKind.ALL, ()),
            ("reseller-portal", GrantKind.RESELLERS, (reseller,)),
            ("customer-app", GrantKind.CUSTOMERS, (sim.world.customer(0).id,)),
            ("no-role-app", GrantKind.ALL, ()),
            ("other-tenant-app", GrantKind.ALL, ()),
        ):
            show_cost = name == "partner-portal"  # the partner's own portal sees its cost, as the function key
            add_grant(store, Grant(apps[name].tenant_id, apps[name].client_id, kind, frozenset(ids), "", show_cost))
        settings = Settings.from_env(
            {
                **env,
                "API_ACCESS_MODE": "token",
                "API_AUDIENCE": sim.portal.api_client_id,
                "API_CORS_ORIGINS": "https://portal.example",
            }
        )
        yield {"sim": sim, "store": store, "settings": settings, "env": env}
        drop_tables(store)


@pytest.fixture
def gate(world_data) -> TokenGate:
    clock = Clock()
    settings = world_data["settings"]
    validator = TokenValidator(
        authority=settings.authority,
        tenants=settings.api_allowed_tenants,
        audiences=settings.api_audiences,
        required_role=settings.api_required_role,
        clock=clock,
    )
    gate = TokenGate(settings, world_data["store"], validator)
    gate.clock = clock  # type: ignore[attr-defined]
    return gate


def token_of(sim: Simulator, name: str) -> str:
    app = sim.portal.apps[name]
    form = {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.client_secret}
    response = requests.post(
        f"{sim.authority}/{app.tenant_id}/oauth2/v2.0/token", data={**form, "scope": sim.portal.scope}, timeout=10
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def call(world_data, gate, target: str, token: str | None, headers: dict[str, str] | None = None, method: str = "GET"):
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    as_routed = target.replace("/api/scoped/", "/api/", 1)  # serve_scoped's route is scoped/{*route}
    response = handle_with_token(
        request_for(method, as_routed, headers=sent), world_data["store"], world_data["settings"], gate, NOW
    )
    body = (
        jsonutil.loads(response.body)
        if response.body and response.headers.get("Content-Type", "").startswith("application/json")
        else response.body
    )
    return response, body


# -- the grant on every route --------------------------------------------------------------------------------


def routes(sim: Simulator, customer_index: int) -> dict[str, str]:
    """Every id-taking route for one customer's subscriptions (legacy, plan, licence, an Azure subscription)."""
    customer = sim.world.customer(customer_index)
    legacy = sim.world.subscription_ids(customer.id, "legacy")[0]
    plan = sim.world.subscription_ids(customer.id, "azure_plan")[0]
    licence = sim.world.subscription_ids(customer.id, "licence")[0]
    azure = entitlement_ids(sim.world, plan, 1)[0]
    c = f"/api/scoped/v1/customers/{customer.id}"
    return {
        "customer": c,
        "subscriptions": c + "/subscriptions",
        "legacy": f"{c}/subscriptions/{legacy}",
        "legacy usagesummary": f"{c}/subscriptions/{legacy}/usagesummary",
        "legacy utilization": f"{c}/subscriptions/{legacy}/utilizations/azure",
        "plan usagesummary": f"{c}/subscriptions/{plan}/usagesummary",
        "licence": f"{c}/subscriptions/{licence}",
        "azureentitlements": c + "/azureentitlements",
        "customer dailycost": c + "/dailycost?from=2026-11-01",
        "azure dailycost": f"{c}/azureentitlements/{azure}/dailycost?from=2026-11-01",
        "azure lineitems": f"{c}/azureentitlements/{azure}/lineitems?from=2026-11-01&size=5",
        "azure lineitems csv": f"{c}/azureentitlements/{azure}/lineitems?from=2026-11-01&format=csv",
    }


def unknown_ids(sim: Simulator, customer_index: int) -> dict[str, str]:
    """Each id of a customer (its subscriptions' and Azure subscriptions' too) and an unknown id in its place."""
    customer = sim.world.customer(customer_index)
    ids = {customer.id: UNKNOWN}
    for n, sid in enumerate(sim.world.subscription_ids(customer.id)):
        ids[sid] = f"00000000-0000-4000-8000-0000000001{n:02d}"
        for k, azure in enumerate(entitlement_ids(sim.world, sid, 2)):
            ids[azure] = f"00000000-0000-4000-8000-0000000002{n}{k}"
    return ids


def swap(text: str, ids: dict[str, str]) -> str:
    for old, new in ids.items():
        text = text.replace(old, new)
    return text


def concrete(route: Route, sim: Simulator, customer_index: int) -> str:
    """The route's path for one customer: its legacy subscription, its Azure plan's first Azure subscription."""
    customer = sim.world.customer(customer_index)
    plan = sim.world.subscription_ids(customer.id, "azure_plan")[0]
    ids = {
        "customer_id": customer.id,
        "subscription_id": sim.world.subscription_ids(customer.id, "legacy")[0],
        "entitlement_id": entitlement_ids(sim.world, plan, 1)[0],
        "invoice_id": "G000000001",  # partner routes: refused to every token before anything is read
    }
    path = "/".join(ids[part[1:-1]] if part.startswith("{") else part for part in route.template)
    return f"/api/scoped/{path}" + ("?from=2026-11-01" if params.FROM_DAY in route.query else "")


GRANTED = {"partner-portal": GrantKind.ALL, "customer-app": GrantKind.CUSTOMERS, "reseller-portal": GrantKind.RESELLERS}
MINE = {"customer-app": 0, "reseller-portal": 1}  # the customer each scoped app's grant covers (wholly or in part)
OUTSIDE = 2  # a customer no scoped grant but ``all`` covers


@pytest.mark.parametrize("app", sorted(GRANTED))
def test_every_declared_route_answers_each_grant_kind_by_its_access_class(world_data, gate, app):
    """Driven by the route table: a route added tomorrow is checked here without editing this test."""
    sim, store = world_data["sim"], world_data["store"]
    token = token_of(sim, app)
    key_mode = Settings.from_env(world_data["env"])
    no_route, _ = call(world_data, gate, "/api/scoped/v1/no/such/route", token)
    ids = unknown_ids(sim, OUTSIDE)
    back = {new: old for old, new in ids.items()}
    others = [sim.world.customer(i).id for i in range(4) if i != MINE.get(app)]
    for route in ROUTES:
        target = concrete(route, sim, OUTSIDE)
        response, _ = call(world_data, gate, target, token)
        if route.access is Access.PUBLIC:
            assert response.status == 200, route.name
        elif route.access is Access.PARTNER:  # refused to every token, an ``all`` grant too, like no route at all
            assert (response.status, response.body) == (no_route.status, no_route.body), route.name
        elif GRANTED[app] is GrantKind.ALL:  # an ``all`` grant reads what the function key reads, byte for byte
            by_key = handle_with_key(request_for("GET", target.replace("/scoped", "")), store, key_mode, NOW)
            assert (response.status, response.body) == (by_key.status, by_key.body), route.name
        elif "{customer_id}" in route.template:
            unknown, _ = call(world_data, gate, swap(target, ids), token)
            assert unknown.status == response.status == 404, route.name
            assert response.body == swap(unknown.body.decode(), back).encode(), route.name  # the very same answer
            mine, _ = call(world_data, gate, concrete(route, sim, MINE[app]), token)
            whole = route.access is not Access.CUSTOMER_TOTALS or GRANTED[app] is GrantKind.CUSTOMERS
            assert (mine.status == 200) is whole, (route.name, mine.body[:300])
        else:  # a listing of every customer: nothing of a customer outside the grant appears in it
            assert response.status == 200, route.name
            assert not any(other.encode() in response.body for other in others), route.name


def test_a_route_cannot_be_declared_without_an_access_class_or_the_ids_it_guards():
    def newthing(ctx):
        """A new thing."""

    declared = {"path": "v1/customers/{customer_id}/newthing", "handler": newthing, "response": "Error"}
    with pytest.raises(TypeError):
        Route(**declared)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Route(**declared, access="customer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs path parameters"):
        Route(**{**declared, "path": "v1/newthing"}, access=Access.CUSTOMER)  # type: ignore[arg-type]
    assert Route(**declared, access=Access.CUSTOMER).access is Access.CUSTOMER  # type: ignore[arg-type]


def test_an_all_grant_does_not_read_health_and_the_answer_is_the_unknown_routes(world_data, gate):
    token = token_of(world_data["sim"], "partner-portal")
    health, _ = call(world_data, gate, "/api/scoped/health", token)
    nothing, _ = call(world_data, gate, "/api/scoped/nothing", token)
    assert health.status == 404 and health.body == nothing.body


def test_answers_to_a_token_vary_by_origin_authorization_and_accept(world_data, gate):
    token = token_of(world_data["sim"], "partner-portal")
    customer = world_data["sim"].world.customer(0).id
    target = f"/api/scoped/v1/customers/{customer}/dailycost?from=2026-11-01"
    response, _ = call(world_data, gate, target, token, {"Origin": "https://portal.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://portal.example"
    assert {v.strip() for v in response.headers["Vary"].split(",")} == {"Accept", "Origin", "Authorization"}
    plain, _ = call(world_data, gate, f"/api/scoped/v1/customers/{customer}", token)
    assert {v.strip() for v in plain.headers["Vary"].split(",")} == {"Origin", "Authorization"}


def test_a_reseller_reads_its_subscriptions_and_is_told_why_a_customer_total_it_shares_is_withheld(world_data, gate):
    sim = world_data["sim"]
    token = token_of(sim, "reseller-portal")
    mine = routes(sim, 1)  # customer 1 bought Azure through the reseller, its licences direct
    for name in (
        "customer",
        "subscriptions",
        "legacy",
        "legacy usagesummary",
        "legacy utilization",
        "plan usagesummary",
        "azureentitlements",
        "azure dailycost",
        "azure lineitems",
        "azure lineitems csv",
    ):
        response, _ = call(world_data, gate, mine[name], token)
        assert response.status == 200, (name, response.body[:300])
    assert call(world_data, gate, mine["licence"], token)[0].status == 404  # sold direct: as if unknown
    withheld, body = call(world_data, gate, mine["customer dailycost"], token)
    assert withheld.status == 403 and body["code"] == 900451 and "/spend" in body["description"]  # stored, not its own
    _, listing = call(world_data, gate, "/api/scoped/v1/customers", token)
    assert [c["id"] for c in listing["items"]] == [sim.world.customer(1).id]
    _, subs = call(world_data, gate, mine["subscriptions"], token)
    assert {s["id"] for s in subs["items"]} == set(
        sim.world.subscription_ids(sim.world.customer(1).id, "legacy")
    ) | set(sim.world.subscription_ids(sim.world.customer(1).id, "azure_plan"))
    _, records = call(world_data, gate, "/api/scoped/v1/customers/usagerecords", token)
    (record,) = records["items"]  # its one customer, listed with its amounts withheld (they hold what others sold)
    assert record["id"] == sim.world.customer(1).id and record["serviceAttributes"]["totalWithheld"]["code"] == 900451
    assert not {"totalCost", "usdTotalCost", "percentUsed", "budget"} & set(record)
    csv_text = call(world_data, gate, "/api/scoped/v1/customers/usagerecords?format=csv", token)[0].body.decode()
    assert len(csv_text.strip().splitlines()) == 2 and csv_text.strip().endswith("900451")
    for name, target in routes(sim, 0).items():
        assert call(world_data, gate, target, token)[0].status == 404, name


def test_a_customer_grant_sees_its_customer_whole_and_nothing_else(world_data, gate):
    sim = world_data["sim"]
    token = token_of(sim, "customer-app")
    _, records = call(world_data, gate, "/api/scoped/v1/customers/usagerecords", token)
    assert [r["id"] for r in records["items"]] == [sim.world.customer(0).id]
    _, listing = call(world_data, gate, "/api/scoped/v1/customers?size=1", token)
    assert [c["id"] for c in listing["items"]] == [sim.world.customer(0).id] and "next" not in listing["links"]


def test_a_continuation_token_of_one_caller_gives_another_nothing_outside_its_grant(world_data, gate):
    sim = world_data["sim"]
    first, body = call(world_data, gate, "/api/scoped/v1/customers?size=1", token_of(sim, "partner-portal"))
    assert "next" in body["links"]
    next_token = first.headers["MS-ContinuationToken"]
    _, page = call(
        world_data, gate, f"/api/scoped/v1/customers?continuation_token={next_token}", token_of(sim, "customer-app")
    )
    assert all(c["id"] == sim.world.customer(0).id for c in page["items"])
    legacy = sim.world.subscription_ids(sim.world.customer(2).id, "legacy")[0]
    target = f"/api/scoped/v1/customers/{sim.world.customer(2).id}/subscriptions/{legacy}/utilizations/azure?size=1"
    full, _ = call(world_data, gate, target, token_of(sim, "partner-portal"))
    stolen = full.headers["MS-ContinuationToken"]
    again, _ = call(
        world_data, gate, target.split("?")[0] + f"?continuation_token={stolen}", token_of(sim, "customer-app")
    )
    assert again.status == 404


# -- modes and CORS -------------------------------------------------------------------------------------------


def test_token_mode_keeps_health_and_openapi_for_the_key_and_nothing_else(world_data):
    store, settings = world_data["store"], world_data["settings"]
    assert handle_with_key(request_for("GET", "/api/openapi.json"), store, settings, NOW).status == 200
    assert handle_with_key(request_for("GET", "/api/health"), store, settings, NOW).status in (200, 503)
    refused = handle_with_key(request_for("GET", "/api/v1/customers"), store, settings, NOW)
    assert refused.status == 403 and b"/api/scoped/" in refused.body
    key_mode = Settings.from_env(world_data["env"])
    assert handle_with_key(request_for("GET", "/api/v1/customers"), store, key_mode, NOW).status == 200
    off = handle_with_token(request_for("GET", "/api/scoped/v1/customers"), store, key_mode, None, NOW)
    assert off.status == 404


def test_cors_preflight_and_answers_name_only_the_allowed_origins(world_data, gate):
    allowed = {"Origin": "https://portal.example", "Access-Control-Request-Method": "GET"}
    preflight, _ = call(world_data, gate, "/api/scoped/v1/customers", None, allowed, method="OPTIONS")
    assert preflight.status == 204 and preflight.headers["Access-Control-Allow-Origin"] == "https://portal.example"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other, _ = call(
        world_data, gate, "/api/scoped/v1/customers", None, {"Origin": "https://evil.example"}, method="OPTIONS"
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    answer, _ = call(
        world_data,
        gate,
        "/api/scoped/v1/customers",
        token_of(world_data["sim"], "partner-portal"),
        {"Origin": "https://portal.example"},
    )
    assert answer.headers["Access-Control-Allow-Origin"] == "https://portal.example"
    assert "MS-ContinuationToken" in answer.headers["Access-Control-Expose-Headers"]


def test_health_names_the_access_mode(world_data):
    store, settings = world_data["store"], world_data["settings"]
    body = jsonutil.loads(handle_with_key(request_for("GET", "/api/health"), store, settings, NOW).body)
    assert body["accessMode"] == "token"
