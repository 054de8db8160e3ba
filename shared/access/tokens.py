"""Validating a caller's Entra ID access token in the app, on every request.

What is checked, in order: a ``Bearer`` token; its header names ``RS256`` (``none``, ``HS*`` and every other
algorithm are refused before any key is looked at) and a ``kid``; its ``tid`` is an allowed tenant; the signature
verifies with that tenant's signing key of that ``kid``; ``iss`` is that tenant's issuer (v2.0 or v1 form);
``aud`` is this API; ``exp`` and ``nbf`` hold with a small leeway; it is an application's token, not a user's
(no ``scp``; ``idtyp``, when present, is ``app``); the app role is granted. Nothing a client sends besides the
token is trusted.

Signing keys, per tenant (OpenID discovery document, then its JWKS), kept the way Microsoft's own validation
libraries keep them, so an issuer outage does not become ours: the last set read successfully is used while it
is younger than JWKS_MAX_AGE; after that it is read again, and while that read fails the old set is still used
for JWKS_STALE_GRACE more (with a warning). A token naming a ``kid`` the set does not hold asks for a read (a key
rollover works without a restart), but reads are spaced: at least JWKS_MIN_REFRESH after the last one, and after
a failed read a back-off per tenant, doubling to JWKS_MAX_BACKOFF. Tokens whose ``kid`` is in the set never wait
for a read and are never refused because one failed: a flood of forged ``kid``s costs at most one read per
interval and refuses only themselves.

Every refusal is one ``TokenRejected`` carrying its ``Refusal`` class (a closed set: what the caller may be told)
and the detailed reason (for the log only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jwt
import requests

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
LEEWAY_SECONDS = 60
JWKS_MAX_AGE = 24 * 3600.0  # signing keys are read again at least daily
JWKS_STALE_GRACE = 24 * 3600.0  # ... and, while the issuer cannot be read, the last keys serve this much longer
JWKS_MIN_REFRESH = 30.0  # an unknown kid reads the keys again at most this often (a flood of forged kids is cheap)
JWKS_MAX_BACKOFF = 300.0  # failed reads of a tenant's keys back off 30 s, 60 s, ... up to this
STALE_WARNING_EVERY = 300.0  # using stale keys is logged at most this often per tenant


class Refusal(StrEnum):
    """Why a token is refused, as the caller may be told: the class of the problem, never its details."""

    MISSING = "missing"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    AUDIENCE = "audience"
    ISSUER = "issuer"
    TENANT = "tenant"
    SIGNATURE = "signature"
    ROLE = "role"
    DELEGATED = "delegated"
    KEYS_UNAVAILABLE = "keys_unavailable"

    @property
    def description(self) -> str:
        """One sentence for the caller's developer (ASCII without quotes or backslashes: RFC 6750 allows no more)."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Refusal.MISSING: "An Entra ID access token for this API is required (Authorization: Bearer).",
    Refusal.MALFORMED: "The access token is malformed or lacks a required claim.",
    Refusal.EXPIRED: "The access token has expired; get a new one.",
    Refusal.NOT_YET_VALID: "The access token is not valid yet (nbf or iat in the future); check the clock.",
    Refusal.AUDIENCE: "The access token is for another API (aud); request it with this API's scope.",
    Refusal.ISSUER: "The access token's issuer (iss) is not accepted.",
    Refusal.TENANT: "The access token's tenant (tid) is not accepted by this API.",
    Refusal.SIGNATURE: "The access token's signature is not valid.",
    Refusal.ROLE: "The calling application has not been assigned the app role this API requires.",
    Refusal.DELEGATED: "The access token is a user's (delegated); this API accepts application tokens only.",
    Refusal.KEYS_UNAVAILABLE: "The access token could not be checked now; try again shortly.",
}


class TokenRejected(Exception):
    """The token is not one this API accepts: ``refusal`` is what the caller is told, the message (for the log)
    says exactly why; ``retry_after`` (seconds) is set when the token could not be checked now."""

    def __init__(self, refusal: Refusal, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.refusal = refusal
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Caller:
    """Who called: the client application (``azp``/``appid``), its service principal (``oid``), its tenant."""

    app_id: str
    object_id: str | None
    tenant_id: str


class _Unreadable(Exception):
    """A tenant's discovery document or JWKS could not be read."""


@dataclass
class _TenantKeys:
    """One tenant's signing keys: the last set read successfully, and when reads may be tried again."""

    issuer: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    read_at: float | None = None  # of the last successful read; None: never read
    next_read: float = float("-inf")  # no read before this (JWKS_MIN_REFRESH after a read, back-off after a failure)
    failures: int = 0  # failed reads in a row
    warned_at: float = float("-inf")  # when using stale keys was last logged
    reading: threading.Lock = field(default_factory=threading.Lock)  # one read of a tenant's keys at a time

    def age(self, now: float) -> float:
        return float("inf") if self.read_at is None else now - self.read_at


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
        self._lock = threading.Lock()  # guards every _TenantKeys' fields but ``reading``
        self._state = {tenant: _TenantKeys() for tenant in self._tenants}

    def validate(self, authorization: str | None) -> Caller:
        """The caller of a request's ``Authorization`` header; TokenRejected otherwise."""
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenRejected(Refusal.MALFORMED, f"not a JWT ({type(exc).__name__})") from None
        if header.get("alg") != ALGORITHM:
            raise TokenRejected(Refusal.SIGNATURE, f"algorithm {str(header.get('alg'))[:20]!r} is not {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected(Refusal.MALFORMED, "no kid")
        tenant = str(unverified.get("tid", "")).lower()
        if tenant not in self._tenants:
            raise TokenRejected(Refusal.TENANT, f"tenant {tenant[:40]!r} is not allowed")
        issuer, key = self._signing_key(tenant, kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                audience=self._audiences,
                issuer=[issuer, f"https://sts.windows.net/{tenant}/"],
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "tid"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(_refusal_of(exc), f"{type(exc).__name__}: {exc}"[:200]) from None
        if "scp" in claims:
            raise TokenRejected(Refusal.DELEGATED, "a delegated token (scp)")
        if "idtyp" in claims and claims["idtyp"] != "app":
            raise TokenRejected(Refusal.DELEGATED, f"idtyp {str(claims['idtyp'])[:20]!r} is not 'app'")
        roles = claims.get("roles") or []
        if self._role and (not isinstance(roles, list) or self._role not in roles):
            raise TokenRejected(Refusal.ROLE, f"the app role {self._role} is not granted")
        app_id = claims.get("azp") or claims.get("appid")
        if not isinstance(app_id, str) or not app_id:
            raise TokenRejected(Refusal.MALFORMED, "no azp/appid")
        object_id = claims.get("oid")
        return Caller(app_id.lower(), object_id.lower() if isinstance(object_id, str) else None, tenant)

    # -- signing keys ----------------------------------------------------------------------------------------

    def _signing_key(self, tenant: str, kid: str) -> tuple[str, Any]:
        """The tenant's issuer and its key ``kid``, reading the keys only when they must be."""
        state = self._state[tenant]
        with self._lock:
            now = self._clock()
            if kid in state.keys and state.age(now) <= JWKS_MAX_AGE:
                return state.issuer, state.keys[kid]  # the common case: no read, no wait
            stale_usable = kid in state.keys and state.age(now) <= JWKS_MAX_AGE + JWKS_STALE_GRACE
        # A token whose kid the stale set holds does not wait for another request's read: it uses the set.
        if not state.reading.acquire(blocking=not stale_usable):
            return self._use(state, tenant, kid)
        try:
            with self._lock:
                now = self._clock()
                fresh = kid in state.keys and state.age(now) <= JWKS_MAX_AGE  # read meanwhile by another request
                due = not fresh and now >= state.next_read
            if due:
                self._refresh(state, tenant, now)
        finally:
            state.reading.release()
        return self._use(state, tenant, kid)

    def _refresh(self, state: _TenantKeys, tenant: str, now: float) -> None:
        """Read the tenant's keys; on failure keep the old set and back off (called holding ``state.reading``)."""
        try:
            issuer, keys = self._read(tenant)
        except _Unreadable as exc:
            with self._lock:
                state.failures += 1
                wait = min(JWKS_MAX_BACKOFF, JWKS_MIN_REFRESH * 2 ** min(state.failures - 1, 16))
                state.next_read = now + wait
            log.warning("%s; read again in %.0f s at the earliest", exc, wait)
            return
        log.info("read %d signing keys of tenant %s", len(keys), tenant)
        with self._lock:
            state.issuer, state.keys, state.read_at = issuer, keys, now
            state.failures = 0
            state.next_read = now + JWKS_MIN_REFRESH

    def _use(self, state: _TenantKeys, tenant: str, kid: str) -> tuple[str, Any]:
        """The key ``kid`` of the tenant's current set, stale within the grace; TokenRejected otherwise."""
        with self._lock:
            now = self._clock()
            age = state.age(now)
            retry_after = max(1.0, state.next_read - now)
            if kid in state.keys and age <= JWKS_MAX_AGE + JWKS_STALE_GRACE:
                if age > JWKS_MAX_AGE and now - state.warned_at >= STALE_WARNING_EVERY:
                    state.warned_at = now
                    log.warning(
                        "the signing keys of tenant %s could not be read again; using the ones read %.1f h ago "
                        "(accepted up to %.0f h)",
                        tenant,
                        age / 3600,
                        (JWKS_MAX_AGE + JWKS_STALE_GRACE) / 3600,
                    )
                return state.issuer, state.keys[kid]
            if state.read_at is not None and state.failures == 0:
                raise TokenRejected(Refusal.SIGNATURE, f"kid {kid[:40]!r} is not among tenant {tenant}'s signing keys")
            if kid in state.keys:
                why = f"the signing keys of tenant {tenant} are {age / 3600:.1f} h old and cannot be read again"
            else:
                why = f"kid {kid[:40]!r} needs the signing keys of tenant {tenant}, which cannot be read now"
            raise TokenRejected(Refusal.KEYS_UNAVAILABLE, why, retry_after=retry_after)

    def _read(self, tenant: str) -> tuple[str, dict[str, Any]]:
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
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError, jwt.PyJWTError) as exc:
            raise _Unreadable(f"the signing keys of tenant {tenant} could not be read ({type(exc).__name__})") from None
        return str(issuer).replace("{tenantid}", tenant), keys

    def _get(self, url: str) -> dict[str, Any]:
        response = self._session.get(url, timeout=self._timeout)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return body


def _refusal_of(error: jwt.PyJWTError) -> Refusal:
    """The class of a PyJWT failure (the signature is checked before any claim)."""
    if isinstance(error, jwt.InvalidSignatureError):
        return Refusal.SIGNATURE
    if isinstance(error, jwt.ExpiredSignatureError):
        return Refusal.EXPIRED
    if isinstance(error, jwt.ImmatureSignatureError):
        return Refusal.NOT_YET_VALID
    if isinstance(error, jwt.InvalidAudienceError):
        return Refusal.AUDIENCE
    if isinstance(error, jwt.InvalidIssuerError):
        return Refusal.ISSUER
    return Refusal.MALFORMED


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise TokenRejected(Refusal.MISSING, "no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenRejected(Refusal.MISSING, f"scheme {scheme[:20]!r} is not Bearer")
    if not token.strip() or len(token) > 16_384:
        raise TokenRejected(Refusal.MALFORMED, "an empty or oversized Bearer token")
    return token.strip()
