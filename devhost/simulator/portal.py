"""The simulator as Entra ID for portal applications: client-credentials access tokens for this usage API.

Like Entra: RS256 JWTs (v2.0 shape: ``aud`` the API's client id, ``iss`` ``{authority}/{tenant}/v2.0``, ``tid``,
``azp``, ``oid``, ``roles``), signing keys published as a JWKS at ``/{tenant}/discovery/v2.0/keys`` (the
``jwks_uri`` of the tenant's OpenID discovery document), and a key rollover that publishes a new key (keeping
the old one published, as Entra does, unless asked to drop it). A few portal applications are registered:
a partner-wide portal, a reseller's portal, a customer's app, one without a grant, one without the app role,
one in another tenant, and the reseller's portal again in that other tenant (a multi-tenant application: the
same client id and secret, its own service principal there), so every rule of the app's validation and grants
runs for real. ``delegated_claims`` are what a user's token for the API holds (``scp``, ``idtyp: user``), which
the API must refuse. The simulator's server answers OpenID discovery for the partner's tenant
(``devhost.simulator.consent``); ``discovery`` is the same document for any tenant.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.simulator.auth import aad_error
from devhost.simulator.world import stable_guid

ROLE = "Usage.Read"


@dataclass(frozen=True)
class PortalApp:
    """A registered client application of some tenant."""

    name: str
    client_id: str
    client_secret: str
    tenant_id: str
    object_id: str
    roles: tuple[str, ...] = (ROLE,)


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class PortalIssuer:
    """Issues portal tokens for one API; thread-safe."""

    def __init__(self, seed: int, tenant_id: str, base_url: Any, lifetime_s: int = 3599) -> None:
        self.tenant_id = tenant_id
        self._seed = seed
        self.other_tenant_id = stable_guid(seed, "other-tenant")
        self._base_url = base_url
        self.lifetime_s = lifetime_s
        self.api_client_id = stable_guid(seed, "usage-api")
        self.app_id_uri = f"api://{self.api_client_id}"
        self.scope = f"{self.app_id_uri}/.default"
        self.apps = {
            app.name: app
            for app in (
                self._app(seed, "partner-portal", tenant_id),
                self._app(seed, "reseller-portal", tenant_id),
                self._app(seed, "customer-app", tenant_id),
                self._app(seed, "no-grant-app", tenant_id),
                self._app(seed, "no-role-app", tenant_id, roles=()),
                self._app(seed, "other-tenant-app", self.other_tenant_id),
                self._app(seed, "reseller-portal", self.other_tenant_id, name="reseller-portal-other-tenant"),
            )
        }
        self._lock = threading.Lock()
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []  # made on first use: most simulators never sign

    @staticmethod
    def _app(
        seed: int, registration: str, tenant: str, roles: tuple[str, ...] = (ROLE,), *, name: str | None = None
    ) -> PortalApp:
        """An application; ``name`` differs from its ``registration`` when one multi-tenant app is in two tenants."""
        name = name or registration
        secret = "portal~" + hashlib.sha256(f"{seed}|{registration}".encode()).hexdigest()[:32]
        client_id = stable_guid(seed, "portal", registration)
        return PortalApp(name, client_id, secret, tenant, stable_guid(seed, "sp", name), roles)

    # ----- keys ---------------------------------------------------------------------------------------

    def roll(self, *, drop_old: bool = False) -> str:
        """Publish a new signing key and sign with it from now on; returns its kid."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = uuid.uuid4().hex[:16]
        with self._lock:
            self._keys = [(kid, key)] if drop_old else [*self._keys, (kid, key)]
        return kid

    def _current(self) -> tuple[str, rsa.RSAPrivateKey]:
        with self._lock:
            if self._keys:
                return self._keys[-1]
        self.roll()
        with self._lock:
            return self._keys[-1]

    @property
    def kid(self) -> str:
        """The kid tokens are signed with now."""
        return self._current()[0]

    def jwks(self) -> dict[str, Any]:
        """The published signing keys."""
        self._current()
        with self._lock:
            keys = list(self._keys)
        out = []
        for kid, key in keys:
            numbers = key.public_key().public_numbers()
            out.append({"kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": _b64(numbers.n), "e": _b64(numbers.e)})
        return {"keys": out}

    def sign(self, claims: Mapping[str, Any], *, kid: str | None = None, key: rsa.RSAPrivateKey | None = None) -> str:
        """A token with these claims signed by the current key (or ``key``, to forge one), header ``kid``."""
        current_kid, current_key = self._current()
        return jwt.encode(dict(claims), key or current_key, algorithm="RS256", headers={"kid": kid or current_kid})

    def claims(self, app: PortalApp, *, now: float | None = None, idtyp: bool = False) -> dict[str, Any]:
        """The claims Entra puts in a client-credentials token of ``app`` for this API (``idtyp``: with the
        optional claim ``idtyp: app`` the API's registration may ask for)."""
        issued = int(now if now is not None else time.time())
        claims = {
            "aud": self.api_client_id,
            "iss": f"{self._base_url()}/{app.tenant_id}/v2.0",
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.lifetime_s,
            "azp": app.client_id,
            "azpacr": "1",
            "oid": app.object_id,
            "sub": app.object_id,
            "tid": app.tenant_id,
            "roles": list(app.roles),
            "ver": "2.0",
            "uti": uuid.uuid4().hex[:22],
        }
        return {**claims, "idtyp": "app"} if idtyp else claims

    def delegated_claims(self, app: PortalApp, *, scp: bool = True, idtyp: bool = True) -> dict[str, Any]:
        """The claims of a user's token that ``app`` got for this API (authorization code): the user's ``oid``,
        ``scp`` and ``idtyp: user`` (each can be left out), and the app role when it was assigned to the user."""
        user = stable_guid(self._seed, "user", app.name)
        claims = {**self.claims(app), "oid": user, "sub": user, "name": "Simulated User", "preferred_username": "u@x"}
        if scp:
            claims["scp"] = "Usage.Read"
        if idtyp:
            claims["idtyp"] = "user"
        return claims

    def discovery(self, tenant: str) -> dict[str, Any]:
        """A tenant's OpenID discovery document, as far as token validation reads it."""
        base = self._base_url()
        return {
            "issuer": f"{base}/{tenant}/v2.0",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    # ----- the token endpoint -------------------------------------------------------------------------------

    def wants(self, form: Mapping[str, str]) -> bool:
        """True when a token request asks for this API."""
        return form.get("scope", "").strip() == self.scope

    def issue(self, tenant: str, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer a client-credentials request for this API's scope."""
        if form.get("grant_type") != "client_credentials":
            return 400, aad_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        client_id, tenant = form.get("client_id", "").lower(), tenant.lower()
        app = next((a for a in self.apps.values() if (a.client_id, a.tenant_id) == (client_id, tenant)), None)
        if app is None:
            return 400, aad_error("unauthorized_client", 700016, "Application was not found in the directory.")
        if form.get("client_secret") != app.client_secret:
            return 401, aad_error("invalid_client", 7000215, "Invalid client secret provided.")
        token = self.sign(self.claims(app))
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.lifetime_s,
            "ext_expires_in": self.lifetime_s,
            "access_token": token,
        }
