"""Access tokens for Partner Center: App+User (refresh-token grant) and app-only (client credentials).

Every refresh-token exchange returns a new refresh token. It is handed to a ``RefreshTokenStore`` so it
survives restarts; a service that drops it stops working after 90 days of the old one's inactivity.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from shared import jsonutil
from shared.deadline import Deadline
from shared.partner_center.errors import AuthenticationError, ReconsentRequired, RefreshTokenNotSaved
from shared.retry import DONE, Outcome, RetryPolicy

log = logging.getLogger(__name__)

PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/.default"
# AADSTS codes that mean the refresh token can never work again: expired by inactivity, revoked, or
# consent withdrawn. Only a new interactive sign-in of a partner admin fixes these.
_RECONSENT_CODES = frozenset({700082, 700084, 70008, 50173, 65001, 50076, 50079})
# Token requests are retried like GETs (a refresh token stays valid after use, so a grant is safe to repeat):
# 429, 5xx and dropped connections, Retry-After first. A 4xx (invalid_grant, invalid_client) fails at once.
TOKEN_RETRY = RetryPolicy(not_ready_attempts=0, refresh_token_on_401=False)


class RefreshTokenStore(Protocol):
    """Where the current refresh token lives between runs."""

    def load(self) -> str | None:
        """The stored refresh token, or None when nothing was stored yet."""

    def save(self, token: str) -> None:
        """Store a new refresh token (the previous one stays usable until it expires)."""


class InMemoryRefreshTokenStore:
    """Keeps the rotated refresh token for this process only; warns once because a restart loses it."""

    _warned = False  # once per process, not per run

    def __init__(self) -> None:
        self._token: str | None = None

    def load(self) -> str | None:
        """The token saved in this process, if any."""
        return self._token

    def save(self, token: str) -> None:
        """Keep the token in memory; say once that it is not persisted."""
        self._token = token
        if not InMemoryRefreshTokenStore._warned:
            InMemoryRefreshTokenStore._warned = True
            log.warning(
                "KEY_VAULT_URL is not set: the rotated Partner Center refresh token is kept in memory only "
                "and is lost on restart; set KEY_VAULT_URL in Azure so it is written back"
            )


class KeyVaultRefreshTokenStore:
    """Reads and writes the refresh token as a Key Vault secret; each rotation is a new secret version."""

    def __init__(self, *, vault_url: str, secret_name: str, credential: Any) -> None:
        from azure.keyvault.secrets import SecretClient  # imported here: only deployed runs need it

        self._client = SecretClient(vault_url=vault_url, credential=credential)
        self._name = secret_name

    def load(self) -> str | None:
        """The current version of the secret, or None when it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._client.get_secret(self._name).value
        except ResourceNotFoundError:
            return None

    def save(self, token: str) -> None:
        """Write the token as a new version of the secret."""
        self._client.set_secret(self._name, token, content_type="partner-center-refresh-token")
        log.info("stored the rotated Partner Center refresh token as a new version of secret %s", self._name)


@dataclass
class _CachedToken:
    value: str
    expires_at: float


class TokenProvider:
    """Issues cached access tokens, refreshing shortly before expiry. Thread-safe.

    ``scope`` is Partner Center's by default; the Graph billing client uses one for Graph (app-only). Token
    requests wait for retries only until ``deadline``; a rotated refresh token is saved whatever the deadline.
    """

    def __init__(
        self,
        *,
        authority: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        refresh_token: str | None = None,
        refresh_store: RefreshTokenStore | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = TOKEN_RETRY,
        expiry_margin: float = 300.0,
        timeout: float = 30.0,
        scope: str = PARTNER_CENTER_SCOPE,
        deadline: Deadline | None = None,
    ) -> None:
        self._scope = scope
        self._deadline = deadline
        self._token_url = f"{authority.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        self._client_id = client_id
        self._client_secret = client_secret
        self._initial_refresh_token = refresh_token
        self._store = refresh_store or InMemoryRefreshTokenStore()
        self._session = session or requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._retry = retry
        self._margin = expiry_margin
        self._timeout = timeout
        self._lock = threading.Lock()
        self._cache: dict[bool, _CachedToken] = {}
        self._unsaved: str | None = None  # a rotated refresh token not yet in the store; used before the store's

    def token(self, *, app_only: bool = False) -> str:
        """A valid access token: App+User by default, app-only (client credentials) on request."""
        with self._lock:
            cached = self._cache.get(app_only)
            if cached and cached.expires_at - self._margin > self._clock():
                return cached.value
            payload = self._client_credentials() if app_only else self._refresh_grant()
            value = str(payload["access_token"])
            self._cache[app_only] = _CachedToken(
                value=value, expires_at=self._clock() + float(payload.get("expires_in", 3599))
            )
            if self._unsaved is not None:
                self._save_rotated()  # raises when it cannot: the access token stays cached for the others
            return value

    def invalidate(self, *, app_only: bool = False) -> None:
        """Forget a cached token (after a 401), so the next call fetches a fresh one."""
        with self._lock:
            self._cache.pop(app_only, None)

    def _client_credentials(self) -> dict[str, Any]:
        return self._post({"grant_type": "client_credentials"})

    def _refresh_grant(self) -> dict[str, Any]:
        refresh_token = self._unsaved or self._store.load() or self._initial_refresh_token
        if not refresh_token:
            raise ReconsentRequired(
                "no Partner Center refresh token is configured: a partner admin must sign in once (Secure "
                "Application Model) and store the refresh token in PARTNER_CENTER_REFRESH_TOKEN",
                error="missing_refresh_token",
            )
        payload = self._post({"grant_type": "refresh_token", "refresh_token": refresh_token})
        rotated = payload.get("refresh_token")
        if rotated and rotated != refresh_token:
            self._unsaved = str(rotated)
        return payload

    def _save_rotated(self) -> None:
        """Write the rotated refresh token to the store, retrying; it stays in memory until written."""
        failed: list[BaseException] = []

        def save() -> tuple[bool | None, Outcome]:
            try:
                self._store.save(str(self._unsaved))
            except Exception as exc:  # the store's own errors: Key Vault's HTTP errors, a dropped connection
                failed[:] = [exc]
                status = getattr(exc, "status_code", None)
                return None, Outcome(status=status, error=None if status else type(exc).__name__)
            return True, DONE

        final = self._retry.run(save, sleep=self._sleep, describe=lambda: "saving the rotated refresh token")
        if final.result is None:
            status = final.outcome.status
            raise RefreshTokenNotSaved(
                f"the rotated Partner Center refresh token could not be stored ({type(failed[0]).__name__}, "
                f"status={status}) after {final.decision.attempt} attempts; it is kept in memory for this "
                "process and the previous token stays valid, but fix the store (Key Vault access or "
                "network) before this process ends",
                error="refresh_token_not_saved",
                status=status,
            )
        self._unsaved = None

    def _post(self, form: dict[str, str]) -> dict[str, Any]:
        data = {
            **form,
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "scope": self._scope,
        }
        grant = form["grant_type"]

        def post() -> tuple[requests.Response | None, Outcome]:
            try:
                response = self._session.post(self._token_url, data=data, timeout=self._timeout)
            except requests.RequestException as exc:  # its text can echo the request: only its type is kept
                return None, Outcome.of_error(exc)
            return response, Outcome.of_response(response.status_code, response.headers)

        final = self._retry.run(
            post, sleep=self._sleep, deadline=self._deadline, describe=lambda: f"token request ({grant})"
        )
        if final.result is None:
            raise AuthenticationError(
                f"token request ({grant}) failed after {final.decision.attempt} attempts: {final.outcome.error}",
                error="network",
            )
        return self._token_or_error(final.result, grant)

    def _token_or_error(self, response: requests.Response, grant: str) -> dict[str, Any]:
        try:
            body = jsonutil.loads(response.content) if response.content else {}
        except ValueError:
            body = {}
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        codes = body.get("error_codes", []) if isinstance(body, dict) else []
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        aadsts = description.split(":", 1)[0] if description.startswith("AADSTS") else ""
        code_numbers = {int(c) for c in codes if isinstance(c, int | str) and str(c).isdigit()}
        if aadsts[6:].isdigit():
            code_numbers.add(int(aadsts[6:]))
        summary = f"token request ({grant}) refused" + (f": {aadsts}" if aadsts else "")
        if grant == "refresh_token" and (error == "invalid_grant" or code_numbers & _RECONSENT_CODES):
            raise ReconsentRequired(
                summary + ": the Partner Center refresh token no longer works; a partner admin must sign "
                "in again (re-consent, Secure Application Model) and store the new refresh token",
                error=error or "invalid_grant",
                status=response.status_code,
            )
        raise AuthenticationError(summary, error=error or None, status=response.status_code)
