"""Scoped access: Entra ID tokens validated in the app, and each caller reads exactly its grant on every route."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.simulator import Simulator, WorldConfig
from devhost.simulator.billing import entitlement_ids, reseller_of
from shared import jsonutil
from shared.access.grants import Grant, add_grant, remove_grant
from shared.access.tokens import TokenValidator
from shared.api.scoped import TokenGate, handle_with_key, handle_with_token
from shared.settings import Settings
from shared.sync.jobs import JOB_NAMES
from tests.api_data import request_for
from tests.sync_support import run_job, sim_env
from tests.test_rated_usage import NOW

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
        add_grant(store, Grant(apps["partner-portal"].client_id, "all"))
        add_grant(store, Grant(apps["reseller-portal"].client_id, "resellers", frozenset({reseller})))
        add_grant(store, Grant(apps["customer-app"].client_id, "customers", frozenset({sim.world.customer(0).id})))
        add_grant(store, Grant(apps["no-role-app"].client_id, "all"))
        add_grant(store, Grant(apps["other-tenant-app"].client_id, "all"))
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


# -- validation ------------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def forged_tokens(sim: Simulator) -> dict[str, str | None]:
    portal = sim.portal
    app = portal.apps["partner-portal"]
    good = portal.claims(app)
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        portal._current()[1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hs_head = _unsigned({"alg": "HS256", "typ": "JWT", "kid": portal.kid}, good)
    return {
        "forged signature": portal.sign(good, key=other_key),
        "other tenant": token_of(sim, "other-tenant-app"),
        "wrong audience": portal.sign({**good, "aud": "api://someone-else"}),
        "expired": portal.sign({**good, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "not yet valid": portal.sign({**good, "nbf": now + 3600, "exp": now + 7200}),
        "alg none": _unsigned({"alg": "none", "typ": "JWT", "kid": portal.kid}, good) + ".",
        "HS256 with the public key": hs_head
        + "."
        + _b64(hmac.new(public_pem, hs_head.encode(), hashlib.sha256).digest()),
        "unknown kid": portal.sign(good, kid="not-a-published-kid"),
        "no app role": token_of(sim, "no-role-app"),
        "wrong issuer": portal.sign({**good, "iss": "https://login.example/evil/v2.0"}),
        "not a JWT": "abc.def",
        "missing": None,
    }


def test_every_bad_token_is_a_401_that_says_nothing_of_why(world_data, gate):
    sim = world_data["sim"]
    bodies = set()
    for name, token in forged_tokens(sim).items():
        response, _ = call(world_data, gate, "/api/scoped/v1/customers", token)
        assert response.status == 401, name
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        bodies.add(response.body)
    assert len(bodies) == 1 and b"expired" not in next(iter(bodies))
    ok, body = call(world_data, gate, "/api/scoped/v1/customers", token_of(sim, "partner-portal"))
    assert ok.status == 200 and body["totalCount"] == 4


def test_a_key_rollover_is_followed_and_a_kid_outside_the_keys_stays_refused(world_data, gate):
    sim = world_data["sim"]
    assert call(world_data, gate, "/api/scoped/v1/customers", token_of(sim, "partner-portal"))[0].status == 200
    sim.portal.roll(drop_old=True)
    fresh = token_of(sim, "partner-portal")
    assert call(world_data, gate, "/api/scoped/v1/customers", fresh)[0].status == 401  # keys read a moment ago
    gate.clock.now += 31  # type: ignore[attr-defined]
    assert call(world_data, gate, "/api/scoped/v1/customers", fresh)[0].status == 200  # unknown kid: keys read again
    stray = sim.portal.sign(sim.portal.claims(sim.portal.apps["partner-portal"]), kid="gone")
    gate.clock.now += 31  # type: ignore[attr-defined]
    assert call(world_data, gate, "/api/scoped/v1/customers", stray)[0].status == 401


def test_a_caller_without_a_grant_is_refused(world_data, gate):
    response, body = call(world_data, gate, "/api/scoped/v1/customers", token_of(world_data["sim"], "no-grant-app"))
    assert response.status == 403 and body["code"] == 900403


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


def test_out_of_grant_ids_answer_exactly_like_unknown_ones_on_every_route(world_data, gate):
    sim = world_data["sim"]
    token = token_of(sim, "customer-app")  # customer 0 only
    ids = unknown_ids(sim, 2)
    back = {new: old for old, new in ids.items()}
    for name, target in routes(sim, 2).items():
        response, _ = call(world_data, gate, target, token)
        unknown, _ = call(world_data, gate, swap(target, ids), token)
        assert response.status == unknown.status == 404, name
        assert response.body == swap(unknown.body.decode(), back).encode(), name  # the very same answer
    for name, target in routes(sim, 0).items():
        response, _ = call(world_data, gate, target, token)
        assert response.status == 200, (name, response.body[:300])


def test_a_reseller_reads_its_subscriptions_but_no_customer_total_it_does_not_wholly_own(world_data, gate):
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
    for name in ("licence", "customer dailycost"):
        assert call(world_data, gate, mine[name], token)[0].status == 404, name
    _, listing = call(world_data, gate, "/api/scoped/v1/customers", token)
    assert [c["id"] for c in listing["items"]] == [sim.world.customer(1).id]
    _, subs = call(world_data, gate, mine["subscriptions"], token)
    assert {s["id"] for s in subs["items"]} == set(
        sim.world.subscription_ids(sim.world.customer(1).id, "legacy")
    ) | set(sim.world.subscription_ids(sim.world.customer(1).id, "azure_plan"))
    _, records = call(world_data, gate, "/api/scoped/v1/customers/usagerecords", token)
    assert records["items"] == []  # its one customer is not wholly its own
    csv_text = call(world_data, gate, "/api/scoped/v1/customers/usagerecords?format=csv", token)[0].body.decode()
    assert len(csv_text.strip().splitlines()) == 1  # the header only
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


def test_grants_added_and_removed_take_effect_without_a_restart(world_data, gate):
    sim, store = world_data["sim"], world_data["store"]
    app = sim.portal.apps["no-grant-app"]
    token = token_of(sim, "no-grant-app")
    assert call(world_data, gate, "/api/scoped/v1/customers", token)[0].status == 403
    add_grant(store, Grant(app.client_id, "customers", frozenset({sim.world.customer(2).id})))
    assert call(world_data, gate, "/api/scoped/v1/customers", token)[0].status == 403  # the refusal is cached
    gate.grants._clock = lambda: time.monotonic() + 3600
    assert call(world_data, gate, "/api/scoped/v1/customers", token)[0].status == 200
    remove_grant(store, app.client_id)
    gate.grants._clock = lambda: time.monotonic() + 7200
    assert call(world_data, gate, "/api/scoped/v1/customers", token)[0].status == 403


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


def test_the_grants_command_adds_lists_and_removes(store, capsys):
    from tools.grants import main

    app = "5f1d2c3b-0000-4000-8000-000000000001"
    assert main(["add", app, "resellers", "1234567", "7654321", "--note", "Fabrikam portal"], store) == 0
    assert main(["add", app.upper(), "customers", "not-a-guid"], store) == 2
    assert main(["add", "nope", "all"], store) == 2
    assert main(["list"], store) == 0
    listed = capsys.readouterr().out
    assert f"{app}\tresellers\t1234567,7654321\tFabrikam portal" in listed
    assert main(["remove", app], store) == 0
    capsys.readouterr()
    assert main(["list"], store) == 0
    assert capsys.readouterr().out == ""


def test_health_names_the_access_mode(world_data):
    store, settings = world_data["store"], world_data["settings"]
    body = jsonutil.loads(handle_with_key(request_for("GET", "/api/health"), store, settings, NOW).body)
    assert body["accessMode"] == "token"


def test_an_unreachable_issuer_is_asked_at_most_every_30_seconds():
    from shared.access.tokens import TokenRejected

    calls = []

    class Down:
        def get(self, url, timeout):
            calls.append(url)
            raise requests.ConnectionError("down")

    clock = Clock()
    validator = TokenValidator(
        authority="https://login.example", tenants=["t1"], audiences=["a"], session=Down(), clock=clock
    )
    token = _unsigned({"alg": "RS256", "typ": "JWT", "kid": "k1"}, {"tid": "t1"}) + "." + _b64(b"sig")
    for _ in range(3):
        with pytest.raises(TokenRejected):
            validator.validate(f"Bearer {token}")
    assert len(calls) == 1
    clock.now += 31
    with pytest.raises(TokenRejected):
        validator.validate(f"Bearer {token}")
    assert len(calls) == 2
