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
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from shared.access.grants import GrantBook
from shared.api.errors import ApiError, error_response
from shared.api.messages import Request, Response
from shared.api.router import handle, resolve
from shared.api.scope import Scope
from shared.settings import Settings
from shared.table_store import TableStore

if TYPE_CHECKING:
    from shared.access.tokens import TokenValidator

log = logging.getLogger(__name__)

CODE_UNAUTHENTICATED = 900401
CODE_NOT_GRANTED = 900403
KEY_ROUTES = ("health", "openapi")
CORS_HEADERS = "Authorization, Accept, If-None-Match, If-Modified-Since, MS-ContinuationToken"
EXPOSED_HEADERS = "ETag, Last-Modified, MS-ContinuationToken"


def handle_with_key(request: Request, store: TableStore, settings: Settings, now: datetime | None = None) -> Response:
    """``serve_usage``: everything in key mode; in token mode only health and the OpenAPI document."""
    if settings.api_access_mode == "token":
        try:
            route, _ = resolve(request.path)
        except ApiError as error:
            return error_response(error)
        if route.name not in KEY_ROUTES:
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
    """Validates the caller's token and finds its grant; built once per process (its caches live on)."""

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

    def scope(self, request: Request, store: TableStore) -> Scope:
        """The caller's scope; ApiError 401 (no valid token) or 403 (no grant)."""
        from shared.access.tokens import TokenRejected

        try:
            caller = self.validator.validate(request.header("authorization"))
        except TokenRejected as exc:
            log.warning("api token refused: %s", exc)
            raise ApiError(
                401,
                CODE_UNAUTHENTICATED,
                "A valid Entra ID access token for this API is required (Authorization: Bearer).",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        grant = self.grants.grant(caller.app_id)
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
        log.info("api caller app %s (object %s) with a %s grant", caller.app_id, caller.object_id, grant.kind)
        return Scope(grant, store)


def handle_with_token(
    request: Request, store: TableStore, settings: Settings, gate: TokenGate | None, now: datetime | None = None
) -> Response:
    """``serve_scoped``: a token's caller reads within its grant; CORS for the configured origins."""
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
        scope = gate.scope(request, store)
    except ApiError as error:
        response = error_response(error)
    else:
        response = handle(request, store, settings, now, scope)
    return Response(status=response.status, headers={**response.headers, **cors}, body=response.body)


def _cors(request: Request, settings: Settings) -> Mapping[str, str]:
    origin = request.header("origin")
    if not origin or origin not in settings.api_cors_origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS, "Vary": "Origin"}
