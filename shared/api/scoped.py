"""The two ways in: the function key (``serve_usage``) and Entra ID tokens (``serve_scoped``, under /api/scoped/).

``API_ACCESS_MODE=key`` (the default): the function key reads every customer, as one partner portal needs;
/api/scoped/ answers 404. ``token``: customer data is read only under /api/scoped/ with an access token of a
client application that has a grant, each caller within its grant; the function key keeps /api/health and
/api/openapi.json (the operator's) and nothing else. ``both``: the two at once, the step between (portals move to
tokens one by one, then the mode becomes ``token``). CORS is answered only under /api/scoped/, for the origins
in API_CORS_ORIGINS (browsers call with tokens, never with the function key).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from shared.access.grants import GrantBook, GrantKind
from shared.api.errors import ApiError, error_response, no_such_route
from shared.api.messages import Request, Response
from shared.api.router import handle, resolve, vary
from shared.api.scope import Access, Scope
from shared.pricing.rules import RuleBook, Whom
from shared.pricing.view import PARTNER, Viewer
from shared.settings import Settings
from shared.table_store import TableStore

if TYPE_CHECKING:
    from shared.access.tokens import TokenRejected, TokenValidator

log = logging.getLogger(__name__)

CODE_UNAUTHENTICATED = 900401
CODE_NOT_GRANTED = 900403
CODE_KEYS_UNAVAILABLE = 900503  # the issuer's signing keys cannot be read now: the token could not be checked
KEY_ACCESS = (Access.PARTNER, Access.PUBLIC)  # what the function key still reads in token mode
CORS_HEADERS = "Authorization, Accept, If-None-Match, If-Modified-Since, MS-ContinuationToken"
EXPOSED_HEADERS = "ETag, Last-Modified, MS-ContinuationToken, MS-CorrelationId, WWW-Authenticate, Retry-After"


def handle_with_key(request: Request, store: TableStore, settings: Settings, now: datetime | None = None) -> Response:
    """``serve_usage``: everything in key mode; in token mode only health and the OpenAPI document."""
    if settings.api_access_mode == "token":
        try:
            route, _ = resolve(request.path)
        except ApiError as error:
            return error_response(error)
        if route.access not in KEY_ACCESS:
            return error_response(
                ApiError(
                    403,
                    CODE_NOT_GRANTED,
                    "This deployment serves customer data to Entra ID access tokens only (API_ACCESS_MODE=token): "
                    "call /api/scoped/v1/... with a token of an application that has a grant. The function key "
                    "reads /api/health and /api/openapi.json.",
                )
            )
    return handle(request, store, settings, now)


class TokenGate:
    """Validates the caller's token and finds its grant; built once per process (its caches live on).

    A refused token answers as RFC 6750 says: 401 with ``WWW-Authenticate: Bearer error="invalid_token",
    error_description="..."`` naming the class of the problem only (expired, wrong audience, ...), never a kid,
    key, issuer URL, tenant list or grant; the log has the detail under the answer's correlation id. A request
    without a token gets a plain ``Bearer`` challenge (no error code, as RFC 6750 3.1 asks).
    """

    def __init__(self, settings: Settings, store: TableStore, validator: TokenValidator | None = None) -> None:
        # Imported here: serve_usage (the function key's) never loads PyJWT or requests.
        from shared.access.tokens import TokenValidator

        self.settings = settings
        self.validator = validator or TokenValidator(
            authority=settings.api_token_authority or settings.authority,
            tenants=settings.api_allowed_tenants,
            audiences=settings.api_audiences,
            required_role=settings.api_required_role,
        )
        self.grants = GrantBook(store, ttl=settings.api_grants_cache_seconds)
        self.prices = RuleBook(store, ttl=settings.api_grants_cache_seconds)

    def scope(self, request: Request, store: TableStore) -> Scope:
        """The caller's scope; ApiError 401 (no valid token), 503 (it cannot be checked now) or 403 (no grant)."""
        from shared.access.tokens import TokenRejected

        try:
            caller = self.validator.validate(request.header("authorization"))
        except TokenRejected as exc:
            raise self._refused(exc) from None
        grant = self.grants.grant(caller.tenant_id, caller.app_id)
        if grant is None:
            log.warning(
                "api caller app %s (object %s, tenant %s) has no grant",
                caller.app_id,
                caller.object_id,
                caller.tenant_id,
            )
            raise ApiError(
                403, CODE_NOT_GRANTED, "This application has no grant to read usage data; ask the partner for one."
            )
        log.info(
            "api caller app %s (object %s, tenant %s) with a %s grant",
            caller.app_id,
            caller.object_id,
            caller.tenant_id,
            grant.kind,
        )
        if grant.kind is GrantKind.ALL and grant.show_cost:
            return Scope(grant, store, PARTNER)  # the partner's own portal: everything, as the function key
        whom = {GrantKind.RESELLERS: Whom.RESELLER, GrantKind.CUSTOMERS: Whom.CUSTOMER}.get(grant.kind)
        viewer = Viewer(rules=self.prices.rules(), whom=whom, shows_cost=grant.show_cost)
        return Scope(grant, store, viewer)

    def _refused(self, rejected: TokenRejected) -> ApiError:
        """The answer to a refused token: its class for the caller, the detail in the log under a correlation id."""
        from shared.access.tokens import Refusal

        correlation_id = str(uuid.uuid4())
        log.warning("api token refused (%s; correlation id %s): %s", rejected.refusal, correlation_id, rejected.reason)
        text = rejected.refusal.description
        description = f"{text} Correlation id {correlation_id}."
        headers: dict[str, str] = {}
        if rejected.refusal == Refusal.KEYS_UNAVAILABLE:
            # 503, not 401: the token may well be valid, the issuer's signing keys are what cannot be read now.
            # A 401 would tell the client to drop a good token and fetch another, which fails the same way;
            # Retry-After says when this instance reads the keys again.
            headers["Retry-After"] = str(math.ceil(rejected.retry_after or 1))
            return ApiError(503, CODE_KEYS_UNAVAILABLE, description, headers=headers, correlation_id=correlation_id)
        if rejected.refusal == Refusal.MISSING:
            challenge = "Bearer"  # RFC 6750 3.1: a request without a token gets no error code
        else:
            challenge = f'Bearer error="invalid_token", error_description="{text}"'
        headers["WWW-Authenticate"] = challenge
        return ApiError(401, CODE_UNAUTHENTICATED, description, headers=headers, correlation_id=correlation_id)


def handle_with_token(
    request: Request, store: TableStore, settings: Settings, gate: TokenGate | None, now: datetime | None = None
) -> Response:
    """``serve_scoped``: a token's caller reads within its grant; CORS for the configured origins.

    Every answer varies with ``Origin`` (the CORS headers) and ``Authorization`` (the caller's grant), besides what
    the route itself varies with, so no cache serves one caller's or one origin's answer to another.
    """
    if settings.api_access_mode == "key" or gate is None:
        return error_response(
            ApiError(404, 900404, "Token access is off in this deployment (API_ACCESS_MODE=key); use the function key.")
        )
    cors = _cors(request, settings)
    if request.method == "OPTIONS":
        headers = {**cors, "Access-Control-Allow-Methods": "GET, OPTIONS", "Access-Control-Allow-Headers": CORS_HEADERS}
        if cors:
            headers["Access-Control-Max-Age"] = "600"
        return Response(status=204, headers={**headers, "Vary": "Origin"})
    try:
        route, _ = resolve(request.path)
        if route.access is Access.PARTNER:
            raise no_such_route()  # the partner's own routes: refused to every token before any grant is looked at
        scope = gate.scope(request, store)
    except ApiError as error:
        response = error_response(error)
    else:
        response = handle(request, store, settings, now, scope)
    varies = vary([response.headers.get("Vary", "")], ["Origin", "Authorization"])
    return Response(status=response.status, headers={**response.headers, **cors, "Vary": varies}, body=response.body)


def _cors(request: Request, settings: Settings) -> Mapping[str, str]:
    origin = request.header("origin")
    if not origin or origin not in settings.api_cors_origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS}
