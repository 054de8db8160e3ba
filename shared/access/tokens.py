"""Validating a caller's Entra ID access token in the app, on every request.

What is checked, in order: a ``Bearer`` token; its header names ``RS256`` (``none``, ``HS*`` and every other
algorithm are refused before any key is looked at) and a ``kid``; its ``tid`` is an allowed tenant; the signature
verifies with that tenant's signing key of that ``kid`` (OpenID discovery document, then its JWKS; cached, and
read again once when a token names a ``kid`` the cache does not hold, so a key rollover works without a restart);
``iss`` is that tenant's issuer (v2.0 or v1 form); ``aud`` is this API; ``exp`` and ``nbf`` hold with a small
leeway; the app role is granted. Nothing a client sends besides the token is trusted. Every refusal is one
``TokenRejected`` whose reason goes to the log only: the caller gets a 401 that says nothing of why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
import requests

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
LEEWAY_SECONDS = 60
JWKS_MAX_AGE = 24 * 3600.0  # signing keys are read again at least daily
JWKS_MIN_REFRESH = 30.0  # an unknown kid reads the keys again at most this often (a flood of forged kids is cheap)


class TokenRejected(Exception):
    """The token is not one this API accepts; the message (for the log) says why."""


@dataclass(frozen=True)
class Caller:
    """Who called: the client application (``azp``/``appid``), its service principal (``oid``), its tenant."""

    app_id: str
    object_id: str | None
    tenant_id: str


@dataclass
class _Keys:
    issuer: str
    keys: dict[str, Any]
    read_at: float


class TokenValidator:
    """Validates access tokens for one API (its audiences) from a set of tenants. Thread-safe."""

    def __init__(
        self,
        *,
        authority: str,
        tenants: Iterable[str],
        audiences: Iterable[str],
        required_role: str = "",
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        leeway: float = LEEWAY_SECONDS,
        timeout: float = 10.0,
    ) -> None:
        self._authority = authority.rstrip("/")
        self._tenants = frozenset(t.lower() for t in tenants)
        self._audiences = [a for a in audiences if a]
        if not self._tenants or not self._audiences:
            raise ValueError("token validation needs at least one allowed tenant and one audience")
        self._role = required_role
        self._session = session or requests.Session()
        self._clock = clock
        self._leeway = leeway
        self._timeout = timeout
        self._lock = threading.Lock()
        self._cache: dict[str, _Keys] = {}
        self._failed: dict[str, float] = {}  # when reading a tenant's keys last failed

    def validate(self, authorization: str | None) -> Caller:
        """The caller of a request's ``Authorization`` header; TokenRejected otherwise."""
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"not a JWT ({type(exc).__name__})") from None
        if header.get("alg") != ALGORITHM:
            raise TokenRejected(f"algorithm {str(header.get('alg'))[:20]!r} is not {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("no kid")
        tenant = str(unverified.get("tid", "")).lower()
        if tenant not in self._tenants:
            raise TokenRejected(f"tenant {tenant[:40]!r} is not allowed")
        keys = self._keys(tenant, kid)
        try:
            claims = jwt.decode(
                token,
                key=keys.keys[kid],
                algorithms=[ALGORITHM],
                audience=self._audiences,
                issuer=[keys.issuer, f"https://sts.windows.net/{tenant}/"],
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "tid"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"{type(exc).__name__}: {exc}"[:200]) from None
        roles = claims.get("roles") or []
        if self._role and (not isinstance(roles, list) or self._role not in roles):
            raise TokenRejected(f"the app role {self._role} is not granted")
        app_id = claims.get("azp") or claims.get("appid")
        if not isinstance(app_id, str) or not app_id:
            raise TokenRejected("no azp/appid")
        object_id = claims.get("oid")
        return Caller(app_id.lower(), object_id.lower() if isinstance(object_id, str) else None, tenant)

    # -- signing keys ----------------------------------------------------------------------------------------

    def _keys(self, tenant: str, kid: str) -> _Keys:
        with self._lock:
            cached = self._cache.get(tenant)
            now = self._clock()
            failed = self._failed.get(tenant)
            if failed is not None and now - failed < JWKS_MIN_REFRESH:
                raise TokenRejected(f"the signing keys of tenant {tenant} could not be read a moment ago")
            stale = cached is None or now - cached.read_at > JWKS_MAX_AGE
            unknown = cached is not None and kid not in cached.keys and now - cached.read_at > JWKS_MIN_REFRESH
            if stale or unknown:
                try:
                    cached = self._read(tenant)
                except TokenRejected:
                    self._failed[tenant] = now  # not read again for every request while the issuer is away
                    if cached is None or stale:
                        raise
                else:
                    self._failed.pop(tenant, None)
                    self._cache[tenant] = cached
        assert cached is not None
        if kid not in cached.keys:
            raise TokenRejected(f"kid {kid[:40]!r} is not among tenant {tenant}'s signing keys")
        return cached

    def _read(self, tenant: str) -> _Keys:
        """The tenant's issuer and signing keys, from its OpenID discovery document and JWKS."""
        url = f"{self._authority}/{tenant}/v2.0/.well-known/openid-configuration"
        try:
            config = self._get(url)
            issuer, jwks_uri = config["issuer"], config["jwks_uri"]
            jwks = self._get(str(jwks_uri))
            keys = {}
            for key in jwks.get("keys", []):
                if key.get("kty") == "RSA" and key.get("kid") and key.get("use", "sig") == "sig":
                    keys[str(key["kid"])] = jwt.PyJWK(key, algorithm=ALGORITHM).key
        except (requests.RequestException, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
            raise TokenRejected(
                f"the signing keys of tenant {tenant} could not be read ({type(exc).__name__})"
            ) from None
        log.info("read %d signing keys of tenant %s", len(keys), tenant)
        return _Keys(str(issuer).replace("{tenantid}", tenant), keys, self._clock())

    def _get(self, url: str) -> dict[str, Any]:
        response = self._session.get(url, timeout=self._timeout)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return body


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise TokenRejected("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 16_384:
        raise TokenRejected("not a Bearer token")
    return token.strip()
