"""A stand-in for the Entra ID (AAD) token endpoint and the bearer tokens it issues."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

PC_RESOURCE = "https://api.partnercenter.microsoft.com"
PC_DEFAULT_SCOPE = f"{PC_RESOURCE}/.default"
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
APP_USER = "app+user"
APP_ONLY = "app"
APP_GRAPH = "graph"  # an app-only token for Microsoft Graph: wrong audience for Partner Center, and vice versa


@dataclass(frozen=True)
class Credentials:
    """What the simulated tenant accepts."""

    tenant_id: str
    client_id: str
    client_secret: str
    initial_refresh_token: str


def aad_error(error: str, code: int, message: str) -> dict[str, Any]:
    """An AAD v2 error body."""
    now = datetime.now(timezone.utc)
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
            f"Timestamp: {now:%Y-%m-%d %H:%M:%S}Z"
        ),
        "error_codes": [code],
        "timestamp": f"{now:%Y-%m-%d %H:%M:%S}Z",
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


class TokenStore:
    """Issues opaque access and rotating refresh tokens and remembers what each one is worth."""

    def __init__(self, credentials: Credentials, lifetime_s: int) -> None:
        self.credentials = credentials
        self.lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._access: dict[str, tuple[str, float]] = {}
        self._refresh: set[str] = {credentials.initial_refresh_token}
        self.issued_refresh_tokens: list[str] = []

    # ----- bearer checks ---------------------------------------------------------------------------

    def kind_of(self, authorization: str | None) -> str | None:
        """APP_USER or APP_ONLY for a live `Bearer` token, None when missing, unknown or expired."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with self._lock:
            entry = self._access.get(token.strip())
        if entry is None or entry[1] <= time.time():
            return None
        return entry[0]

    def expire_access_tokens(self) -> None:
        """Make every issued access token expire now (clients must fetch new ones)."""
        with self._lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token, as after 90 days of inactivity: the next exchange gets invalid_grant."""
        with self._lock:
            self._refresh.clear()

    # ----- the token endpoint ----------------------------------------------------------------------

    def _issue_access(self, kind: str) -> str:
        token = secrets.token_urlsafe(48)
        now = time.time()
        with self._lock:
            if len(self._access) > 50_000:
                self._access = {k: v for k, v in self._access.items() if v[1] > now}
            self._access[token] = (kind, now + self.lifetime_s)
        return token

    def exchange(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer `POST /{tenant}/oauth2/v2.0/token`: (status, JSON body)."""
        creds = self.credentials
        if tenant.lower() != creds.tenant_id.lower():
            return 400, aad_error("invalid_request", 90002, f"Tenant '{tenant}' not found.")
        grant = form.get("grant_type", "")
        if grant not in ("refresh_token", "client_credentials", "authorization_code"):
            return 400, aad_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id", "").lower() != creds.client_id.lower():
            return 400, aad_error(
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id', '')}' was not found.",
            )
        if form.get("client_secret") != creds.client_secret:
            return 401, aad_error("invalid_client", 7000215, "Invalid client secret provided.")
        if grant == "authorization_code":  # the partner admin's consent (devhost/simulator/consent.py)
            from devhost.simulator.consent import redeem

            return redeem(self, form)
        scope = form.get("scope", "")
        if grant == "client_credentials":
            if not scope:
                return 400, aad_error(
                    "invalid_request", 900144, "The request body must contain the following parameter: 'scope'."
                )
            if scope.strip() not in (PC_DEFAULT_SCOPE, GRAPH_DEFAULT_SCOPE):
                return 400, aad_error("invalid_scope", 1002012, f"The provided value for scope {scope} is not valid.")
            body = {"token_type": "Bearer", "expires_in": self.lifetime_s, "ext_expires_in": self.lifetime_s}
            body["access_token"] = self._issue_access(APP_GRAPH if scope.strip() == GRAPH_DEFAULT_SCOPE else APP_ONLY)
            return 200, body
        if scope and PC_RESOURCE not in scope:
            return 400, aad_error("invalid_scope", 70011, f"The provided value for scope {scope} is not valid.")
        presented = form.get("refresh_token", "")
        if not presented:
            return 400, aad_error(
                "invalid_request", 900144, "The request body must contain the following parameter: 'refresh_token'."
            )
        with self._lock:
            known = presented in self._refresh
        if not known:
            return 400, {
                **aad_error(
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity. The token was issued on "
                    "2024-01-01T00:00:00Z and was inactive for 90.00:00:00.",
                ),
                "suberror": "bad_token",
            }
        new_refresh = "0.A" + secrets.token_urlsafe(60)
        with self._lock:
            # Real AAD keeps earlier refresh tokens valid until they expire; so does the simulator.
            self._refresh.add(new_refresh)
            self.issued_refresh_tokens.append(new_refresh)
        body = {
            "token_type": "Bearer",
            "scope": f"{PC_RESOURCE}/user_impersonation",
            "expires_in": self.lifetime_s,
            "ext_expires_in": self.lifetime_s,
            "access_token": self._issue_access(APP_USER),
            "refresh_token": new_refresh,
        }
        return 200, body
