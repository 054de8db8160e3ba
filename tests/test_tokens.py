"""Token validation and grants: what a token must be, how signing keys are kept through issuer outages, how a
refusal reads (RFC 6750), and grants by (tenant, application).

Each test has its own simulator (its own signing keys and faults) and its own tables; key caching runs on an
injected clock, so nothing waits. Token lifetimes (exp/nbf) are checked against the real time, as in production.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.simulator import Simulator, WorldConfig
from devhost.simulator.faults import Fault
from shared import jsonutil
from shared.access.grants import GrantBook, add_grant, list_grants, remove_grant
from shared.access.tokens import JWKS_MAX_AGE, JWKS_STALE_GRACE, Refusal, TokenRejected, TokenValidator
from shared.api.messages import Response
from shared.api.scoped import TokenGate, handle_with_token
from shared.settings import Settings
from shared.tables import API_GRANTS, GRANT_PARTITION, Grant, GrantKind
from tests.api_data import request_for
from tests.sync_support import sim_env

ISSUER_PATHS = r"openid-configuration|discovery/v2\.0/keys"
# RFC 6750 3: error_description is %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
RFC6750_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")
CHALLENGE = re.compile(r'^Bearer error="invalid_token", error_description="([^"]*)"$')


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SecondTenantDiscovery(requests.Session):
    """The simulator answers OpenID discovery for the partner's tenant only; this session answers the second
    tenant's with the simulator's own document for it (``PortalIssuer.discovery``) and sends the rest."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__()
        self.sim = sim
        tenant = sim.portal.other_tenant_id
        self.url = f"{sim.authority}/{tenant}/v2.0/.well-known/openid-configuration"

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        if url != self.url:
            return super().get(url, **kwargs)
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(self.sim.portal.discovery(self.sim.portal.other_tenant_id)).encode()
        return response


@dataclass
class World:
    sim: Simulator
    store: Any
    settings: Settings
    clock: Clock
    gate: TokenGate

    @property
    def validator(self) -> TokenValidator:
        return self.gate.validator


def make_world(sim: Simulator, azurite: Any, store: Any, **overrides: str) -> World:
    env = {
        **sim_env(sim, azurite, store.prefix),
        "API_ACCESS_MODE": "token",
        "API_AUDIENCE": sim.portal.api_client_id,
        **overrides,
    }
    settings = Settings.from_env(env)
    clock = Clock()
    validator = TokenValidator(
        authority=settings.authority,
        tenants=settings.api_allowed_tenants,
        audiences=settings.api_audiences,
        required_role=settings.api_required_role,
        session=SecondTenantDiscovery(sim),
        clock=clock,
    )
    gate = TokenGate(settings, store, validator)
    gate.grants = GrantBook(store, ttl=settings.api_grants_cache_seconds, clock=clock)
    return World(sim, store, settings, clock, gate)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(world=WorldConfig(customers=1)) as simulator:
        yield simulator


@pytest.fixture
def world(sim, azurite, store) -> World:
    """The partner's tenant only is allowed; the partner's portal has an ``all`` grant."""
    w = make_world(sim, azurite, store)
    grant(w, "partner-portal", GrantKind.ALL)
    return w


def grant(w: World, name: str, kind: GrantKind, *ids: str) -> Grant:
    app = w.sim.portal.apps[name]
    given = Grant(app.tenant_id, app.client_id, kind, frozenset(ids))
    add_grant(w.store, given)
    return given


def token_of(sim: Simulator, name: str) -> str:
    """A token from the simulator's token endpoint, as a portal's backend gets it."""
    app = sim.portal.apps[name]
    form = {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.client_secret}
    response = requests.post(
        f"{sim.authority}/{app.tenant_id}/oauth2/v2.0/token", data={**form, "scope": sim.portal.scope}, timeout=10
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def signed(sim: Simulator, name: str = "partner-portal", **changes: Any) -> str:
    portal = sim.portal
    return portal.sign({**portal.claims(portal.apps[name]), **changes})


def call(w: World, token: str | None) -> tuple[Response, Any]:
    """GET /api/scoped/v1/customers with the token, as serve_scoped answers it."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = handle_with_token(request_for("GET", "/api/v1/customers", headers=headers), w.store, w.settings, w.gate)
    body = jsonutil.loads(response.body) if response.body else None
    return response, body


def accepted(w: World, token: str) -> bool:
    """Does the token pass validation (TokenRejected otherwise)?"""
    try:
        w.validator.validate(f"Bearer {token}")
    except TokenRejected:
        return False
    return True


def refusal(w: World, token: str | None) -> Refusal:
    with pytest.raises(TokenRejected) as rejected:
        w.validator.validate(None if token is None else f"Bearer {token}")
    return rejected.value.refusal


def issuer_reads(sim: Simulator) -> int:
    """Reads of a tenant's signing keys (each starts with its discovery document)."""
    return sum(1 for r in sim.requests if r.url_path.endswith("openid-configuration"))


def issuer_down(sim: Simulator) -> None:
    sim.faults.add(Fault(kind="503", path=ISSUER_PATHS, times=None))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def forged_kid(sim: Simulator, kid: str) -> str:
    """A token naming a kid the issuer never published (its signature is never looked at)."""
    claims = sim.portal.claims(sim.portal.apps["partner-portal"])
    return _unsigned({"alg": "RS256", "typ": "JWT", "kid": kid}, claims) + "." + _b64(b"\x00" * 256)


# -- what a token must be, and what a refusal says ---------------------------------------------------------------


def bad_tokens(sim: Simulator) -> dict[str, tuple[Refusal, str | None]]:
    """Tokens every rule refuses, with the class of each refusal."""
    portal = sim.portal
    good = portal.claims(portal.apps["partner-portal"])
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        portal._current()[1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hs_head = _unsigned({"alg": "HS256", "typ": "JWT", "kid": portal.kid}, good)
    return {
        "forged signature": (Refusal.SIGNATURE, portal.sign(good, key=other_key)),
        "other tenant": (Refusal.TENANT, token_of(sim, "other-tenant-app")),
        "wrong audience": (Refusal.AUDIENCE, portal.sign({**good, "aud": "api://someone-else"})),
        "expired": (Refusal.EXPIRED, portal.sign({**good, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})),
        "not yet valid": (Refusal.NOT_YET_VALID, portal.sign({**good, "nbf": now + 3600, "exp": now + 7200})),
        "alg none": (Refusal.SIGNATURE, _unsigned({"alg": "none", "typ": "JWT", "kid": portal.kid}, good) + "."),
        "HS256 with the public key": (
            Refusal.SIGNATURE,
            hs_head + "." + _b64(hmac.new(public_pem, hs_head.encode(), hashlib.sha256).digest()),
        ),
        "unknown kid": (Refusal.SIGNATURE, portal.sign(good, kid="not-a-published-kid")),
        "no app role": (Refusal.ROLE, token_of(sim, "no-role-app")),
        "wrong issuer": (Refusal.ISSUER, portal.sign({**good, "iss": "https://login.example/evil/v2.0"})),
        "no expiry": (Refusal.MALFORMED, portal.sign({k: v for k, v in good.items() if k != "exp"})),
        "not a JWT": (Refusal.MALFORMED, "abc.def"),
        "missing": (Refusal.MISSING, None),
    }


def test_every_bad_token_is_a_401_that_names_only_the_class_of_its_problem(world, caplog):
    sim = world.sim
    secrets = [sim.authority, sim.tenant_id, sim.portal.other_tenant_id, sim.portal.kid, "not-a-published-kid"]
    secrets += [app.client_id for app in sim.portal.apps.values()] + ["login.example", "someone-else"]
    assert call(world, token_of(sim, "partner-portal"))[0].status == 200  # the keys are read once, then cached
    caplog.set_level(logging.WARNING, logger="shared.api.scoped")
    for name, (expected, token) in bad_tokens(sim).items():
        response, body = call(world, token)
        assert response.status == 401 and body["code"] == 900401, name
        correlation_id = response.headers["MS-CorrelationId"]
        assert body["correlationId"] == correlation_id, name
        assert body["description"] == f"{expected.description} Correlation id {correlation_id}.", name
        challenge = response.headers["WWW-Authenticate"]
        if expected == Refusal.MISSING:
            assert challenge == "Bearer", name  # RFC 6750 3.1: no error code without a token
        else:
            match = CHALLENGE.match(challenge)
            assert match is not None and match.group(1) == expected.description, (name, challenge)
            assert RFC6750_TEXT.fullmatch(match.group(1)), name
        said = response.body.decode() + json.dumps(dict(response.headers))
        assert not [s for s in secrets if s.lower() in said.lower()], name
        assert any(correlation_id in r.getMessage() for r in caplog.records), name  # the detail is in the log


def test_user_tokens_are_refused_and_application_tokens_with_idtyp_app_accepted(world):
    portal = world.sim.portal
    app = portal.apps["partner-portal"]
    assert refusal(world, portal.sign(portal.delegated_claims(app))) == Refusal.DELEGATED
    assert refusal(world, portal.sign(portal.delegated_claims(app, idtyp=False))) == Refusal.DELEGATED  # scp alone
    assert refusal(world, portal.sign(portal.delegated_claims(app, scp=False))) == Refusal.DELEGATED  # idtyp alone
    response, body = call(world, portal.sign(portal.delegated_claims(app)))
    assert response.status == 401 and body["description"].startswith(Refusal.DELEGATED.description)
    assert accepted(world, portal.sign(portal.claims(app, idtyp=True)))
    assert accepted(world, portal.sign(portal.claims(app)))  # idtyp is an optional claim: absent is fine


def test_a_key_rollover_is_followed_and_a_kid_outside_the_keys_stays_refused(world):
    sim = world.sim
    assert accepted(world, token_of(sim, "partner-portal"))
    sim.portal.roll(drop_old=True)
    fresh = token_of(sim, "partner-portal")
    assert refusal(world, fresh) == Refusal.SIGNATURE  # the keys were read a moment ago: not again yet
    world.clock.now += 31
    assert accepted(world, fresh)  # an unknown kid: the keys are read again
    stray = sim.portal.sign(sim.portal.claims(sim.portal.apps["partner-portal"]), kid="gone")
    world.clock.now += 31
    assert refusal(world, stray) == Refusal.SIGNATURE
    assert issuer_reads(sim) == 3


# -- signing keys through issuer outages ------------------------------------------------------------------------


def test_an_issuer_outage_and_a_forged_kid_do_not_lock_out_valid_callers(world):
    sim = world.sim
    valid = token_of(sim, "partner-portal")
    assert accepted(world, valid)  # the keys are read
    issuer_down(sim)
    forged = forged_kid(sim, "forged-kid")
    for _ in range(6 * 60 * 3):  # three hours, every 10 s: the forged token, then a valid caller
        world.clock.now += 10
        assert not accepted(world, forged)
        assert accepted(world, valid)
    assert refusal(world, forged) == Refusal.KEYS_UNAVAILABLE  # it could not be checked: it is not known refused
    assert 2 <= issuer_reads(sim) <= 1 + 5 + 3 * 3600 // 300  # backing off 30, 60, 120, 240 s, then 300 s
    sim.faults.clear()
    world.clock.now += 300
    assert refusal(world, forged) == Refusal.SIGNATURE  # the issuer is back: the kid is read and is not there


def test_a_flood_of_unknown_kids_costs_one_read_per_interval_and_refuses_only_itself(world):
    sim = world.sim
    valid = token_of(sim, "partner-portal")
    assert accepted(world, valid)
    for second in range(600):  # ten minutes, five forged kids a second; the issuer goes down halfway
        if second == 300:
            issuer_down(sim)
        world.clock.now += 1
        for n in range(5):
            assert not accepted(world, forged_kid(sim, f"k{second}-{n}"))
        assert accepted(world, valid)
    # One read at first, one per 30 s while the issuer is up (10), then backing off 30, 60, 120, 240 s (4).
    assert issuer_reads(sim) == 1 + 10 + 4


def test_stale_keys_serve_through_an_outage_within_the_grace_and_not_after(world, caplog):
    sim = world.sim
    valid = token_of(sim, "partner-portal")
    assert accepted(world, valid)
    issuer_down(sim)
    caplog.set_level(logging.WARNING, logger="shared.access.tokens")
    world.clock.now += JWKS_MAX_AGE + 3600
    assert accepted(world, valid)  # a read was tried, failed, and the keys read 25 h ago serve
    assert issuer_reads(sim) == 2
    assert any("using the ones read 25.0 h ago" in r.getMessage() for r in caplog.records)
    world.clock.now += JWKS_STALE_GRACE
    assert refusal(world, valid) == Refusal.KEYS_UNAVAILABLE  # 49 h: beyond the grace
    response, body = call(world, valid)
    assert response.status == 503 and body["code"] == 900503
    assert int(response.headers["Retry-After"]) >= 1 and "WWW-Authenticate" not in response.headers
    assert body["description"].startswith(Refusal.KEYS_UNAVAILABLE.description)
    sim.faults.clear()
    world.clock.now += 300
    assert accepted(world, valid)  # the issuer is back: read again, fresh


def test_an_unreachable_issuer_is_asked_again_after_a_growing_back_off(world):
    sim = world.sim
    issuer_down(sim)
    token = token_of(sim, "partner-portal")
    asked_at = []
    for second in range(0, 1200):  # a token every second for 20 minutes; no keys were ever read
        world.clock.now = 1000.0 + second
        before = issuer_reads(sim)
        assert refusal(world, token) == Refusal.KEYS_UNAVAILABLE
        if issuer_reads(sim) > before:
            asked_at.append(second)
    assert asked_at == [0, 30, 90, 210, 450, 750, 1050]


# -- grants -------------------------------------------------------------------------------------------------------


def test_a_caller_without_a_grant_is_refused(world):
    response, body = call(world, token_of(world.sim, "no-grant-app"))
    assert response.status == 403 and body["code"] == 900403


def test_grants_added_and_removed_take_effect_without_a_restart(world):
    sim, store = world.sim, world.store
    app = sim.portal.apps["no-grant-app"]
    token = token_of(sim, "no-grant-app")
    assert call(world, token)[0].status == 403
    grant(world, "no-grant-app", GrantKind.CUSTOMERS, sim.world.customer(0).id)
    assert call(world, token)[0].status == 403  # the refusal is cached
    world.clock.now += 3600
    assert call(world, token)[0].status == 200
    remove_grant(store, app.tenant_id, app.client_id)
    world.clock.now += 3600
    assert call(world, token)[0].status == 403


def test_a_token_of_another_allowed_tenant_does_not_read_the_grant_of_the_same_application(sim, azurite, store):
    portal = sim.portal
    w = make_world(sim, azurite, store, API_ALLOWED_TENANTS=f"{sim.tenant_id},{portal.other_tenant_id}")
    home, elsewhere = portal.apps["reseller-portal"], portal.apps["reseller-portal-other-tenant"]
    assert home.client_id == elsewhere.client_id and home.tenant_id != elsewhere.tenant_id
    grant(w, "reseller-portal", GrantKind.ALL)
    request = request_for("GET", "/api/v1/customers", headers={"Authorization": f"Bearer {token_of(sim, home.name)}"})
    assert w.gate.scope(request, store).grant == Grant(home.tenant_id, home.client_id, GrantKind.ALL)
    other = token_of(sim, elsewhere.name)
    response, body = call(w, other)
    assert response.status == 403 and body["code"] == 900403
    customer = sim.world.customer(0).id
    grant(w, "reseller-portal-other-tenant", GrantKind.CUSTOMERS, customer)
    w.clock.now += 3600
    request = request_for("GET", "/api/v1/customers", headers={"Authorization": f"Bearer {other}"})
    assert w.gate.scope(request, store).grant == Grant(
        elsewhere.tenant_id, elsewhere.client_id, GrantKind.CUSTOMERS, frozenset({customer})
    )


def test_a_grant_stored_before_grants_named_a_tenant_grants_nothing_and_is_listed(world, capsys):
    from tools.grants import main

    sim, store = world.sim, world.store
    app = sim.portal.apps["customer-app"]
    old_row = {"PartitionKey": GRANT_PARTITION, "RowKey": app.client_id, "appId": app.client_id, "kind": "all"}
    store.upsert_one(API_GRANTS, {**old_row, "values": "", "note": "", "grantedAt": "2026-01-01T00:00:00+00:00"})
    assert call(world, token_of(sim, "customer-app"))[0].status == 403
    assert main(["list"], store) == 0
    assert f"?\t{app.client_id}\t(grants nothing: stored before grants named a tenant" in capsys.readouterr().out
    assert main(["add", app.tenant_id, app.client_id, "all"], store) == 0  # added again with its tenant
    listing = list_grants(store)
    assert (app.tenant_id, app.client_id) in [(g.tenant_id, g.app_id) for g in listing.grants]
    assert listing.unusable == []  # the old row is replaced
    world.clock.now += 3600
    assert call(world, token_of(sim, "customer-app"))[0].status == 200


def test_the_grants_command_adds_lists_and_removes(store, capsys):
    from tools.grants import main

    tenant, app = "72f988bf-0000-4000-8000-000000000001", "5f1d2c3b-0000-4000-8000-000000000001"
    assert main(["add", tenant, app, "resellers", "1234567", "7654321", "--note", "Fabrikam portal"], store) == 0
    assert main(["add", tenant, app.upper(), "customers", "not-a-guid"], store) == 2
    assert main(["add", tenant, "nope", "all"], store) == 2
    assert main(["add", "not-a-tenant", app, "all"], store) == 2
    assert main(["add", tenant, app, "all", "1234567"], store) == 2
    assert main(["list"], store) == 0
    listed = capsys.readouterr().out
    assert f"{tenant}\t{app}\tresellers\t1234567,7654321\tFabrikam portal" in listed
    assert main(["remove", tenant, app], store) == 0
    capsys.readouterr()
    assert main(["list"], store) == 0
    assert capsys.readouterr().out == ""


def test_a_grant_row_names_its_tenant_and_application_and_reads_back_the_same(store):
    given = Grant(str(uuid.uuid4()).upper(), str(uuid.uuid4()), GrantKind.RESELLERS, frozenset({" 1234567 "}), "n")
    add_grant(store, given)
    [row] = list(store.partition(API_GRANTS, GRANT_PARTITION))
    assert (row["tenantId"], row["appId"], row["kind"], row["values"]) == (
        given.tenant_id.lower(),
        given.app_id,
        "resellers",
        "1234567",
    )
    assert Grant.of_row(row) == given
    with pytest.raises(ValueError):
        Grant.of_row({**row, "RowKey": given.app_id})  # a row whose key is another caller's grants nothing
