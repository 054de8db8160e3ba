"""The sign-in half of Entra ID that the consent command (``tools/consent.py``) drives through MSAL.

A partner admin's one-time App+User consent is an OAuth 2.0 authorization-code flow with PKCE:

* ``GET /{tenant}/v2.0/.well-known/openid-configuration``: the OpenID discovery document MSAL reads first;
* ``GET /{tenant}/oauth2/v2.0/authorize``: where the browser goes; here the admin signs in and consents at
  once, and the browser is sent back to the loopback ``redirect_uri`` with a single-use code (in a page that
  posts it, with ``response_mode=form_post``), or, when
  ``ConsentState.decline`` is set, with ``error=access_denied`` as after a refused consent);
* the ``authorization_code`` grant of the token endpoint (``redeem``, hooked into ``TokenStore.exchange``):
  the code, its redirect URI and the PKCE verifier are checked, and the answer carries an App+User access
  token and a refresh token the simulator's refresh-token grant accepts from then on.

MSAL accepts only ``https`` authorities, and the simulator speaks plain HTTP: ``HttpsFront`` is a small TLS
front (the caller brings the certificate) that forwards every request to the simulator, marked with
``X-Forwarded-Proto: https`` so the discovery document names the front's URLs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.client
import secrets
import ssl
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

from devhost.simulator import wire
from devhost.simulator.auth import APP_USER, PC_RESOURCE, TokenStore, aad_error

ROUTES = ("oidc_config", "authorize")
USER_IMPERSONATION = f"{PC_RESOURCE}/user_impersonation"
CODE_LIFETIME_S = 600  # Entra ID's codes live about 10 minutes
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Reply:
    """What the simulator sends back: status, headers and body bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True)
class _Grant:
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str
    expires_at: float


@dataclass
class ConsentState:
    """One tenant's consent side: the codes not yet redeemed, and what the next sign-in does."""

    codes: dict[str, _Grant] = field(default_factory=dict)
    decline: bool = False  # the next sign-ins refuse consent (error=access_denied)
    consents: int = 0  # how many sign-ins completed with a code
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATES: weakref.WeakKeyDictionary[TokenStore, ConsentState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def state_of(store: TokenStore) -> ConsentState:
    """The consent state that belongs to one simulator's token store."""
    with _STATES_LOCK:
        return _STATES.setdefault(store, ConsentState())


def route(segments: list[str]) -> tuple[str, dict[str, str]] | None:
    """The consent route a path's segments address, or None."""
    low = [s.lower() for s in segments]
    if len(segments) == 4 and low[1:] == ["v2.0", ".well-known", "openid-configuration"]:
        return "oidc_config", {"tenant": segments[0]}
    if len(segments) == 4 and low[1:] == ["oauth2", "v2.0", "authorize"]:
        return "authorize", {"tenant": segments[0]}
    return None


def answer(
    store: TokenStore,
    route_name: str,
    params: Mapping[str, str],
    query: Mapping[str, list[str]],
    headers: Any,
) -> Reply:
    """Answer a consent route (``ROUTES``) for the tenant in ``params``."""
    tenant = params["tenant"]
    if tenant.lower() != store.credentials.tenant_id.lower():
        return _json(400, aad_error("invalid_tenant", 90002, f"Tenant '{tenant}' not found."))
    if route_name == "oidc_config":
        return _json(200, _discovery(_public_base(headers), store.credentials.tenant_id))
    return _authorize(store, {k: v[0] for k, v in query.items() if v})


def redeem(store: TokenStore, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """The ``authorization_code`` grant, once the client id and secret were checked: (status, JSON body)."""
    code = form.get("code", "")
    state = state_of(store)
    with state.lock:
        grant = state.codes.pop(code, None)  # single use, as in Entra ID
    if grant is None or grant.expires_at < time.time():
        return 400, aad_error(
            "invalid_grant", 70008, "The provided authorization code or refresh token has expired or was used."
        )
    if form.get("redirect_uri", "") != grant.redirect_uri:
        return 400, aad_error(
            "invalid_grant", 70002, "The redirect_uri does not match the one of the authorization request."
        )
    if form.get("client_id", "").lower() != grant.client_id.lower():
        return 400, aad_error("invalid_grant", 70000, "The code was issued to another client.")
    verifier = form.get("code_verifier", "")
    if not verifier or _s256(verifier) != grant.challenge:
        return 400, aad_error(
            "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the request."
        )
    refresh_token = "0.A" + secrets.token_urlsafe(60)
    with store._lock:  # the refresh-token grant accepts it from now on, like the first one
        store._refresh.add(refresh_token)
        store.issued_refresh_tokens.append(refresh_token)
    granted = " ".join(s for s in grant.scope.split() if s.startswith(PC_RESOURCE)) or USER_IMPERSONATION
    return 200, {
        "token_type": "Bearer",
        "scope": granted,
        "expires_in": store.lifetime_s,
        "ext_expires_in": store.lifetime_s,
        "access_token": store._issue_access(APP_USER),
        "refresh_token": refresh_token,
    }


def _authorize(store: TokenStore, query: Mapping[str, str]) -> Reply:
    creds = store.credentials
    client_id = query.get("client_id", "")
    if client_id.lower() != creds.client_id.lower():
        return _page(400, f"AADSTS700016: Application with identifier '{client_id}' was not found.")
    redirect_uri = query.get("redirect_uri", "")
    target = urlsplit(redirect_uri)
    if target.scheme != "http" or target.hostname not in _LOOPBACK_HOSTS:
        # Entra ID answers on its own page, never redirecting to an unregistered address.
        return _page(400, "AADSTS50011: The redirect URI specified in the request does not match the app's.")
    state = query.get("state", "")
    form_post = query.get("response_mode") == "form_post"

    def back(**values: str) -> Reply:
        answer = {**values, "state": state}
        if form_post:  # the code travels in a POST body, not in a URL a browser keeps in its history
            inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}"/>' for k, v in answer.items())
            page = (
                f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                f'action="{html.escape(redirect_uri)}">{inputs}</form></body></html>'
            )
            headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
            return Reply(200, headers, page.encode())
        location = redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(answer)
        return Reply(302, [("Location", location), ("Cache-Control", "no-store")])

    if query.get("response_type") != "code":
        return back(error="unsupported_response_type", error_description="AADSTS70005: response_type must be code")
    scope = query.get("scope", "")
    if USER_IMPERSONATION not in scope.split():
        return back(error="invalid_scope", error_description=f"AADSTS70011: scope must include {USER_IMPERSONATION}")
    challenge = query.get("code_challenge", "")
    if not challenge or query.get("code_challenge_method") != "S256":
        return back(error="invalid_request", error_description="AADSTS501491: PKCE with S256 is required")
    consent = state_of(store)
    if consent.decline:
        return back(error="access_denied", error_description="AADSTS65004: User declined to consent to access the app.")
    code = "1.A" + secrets.token_urlsafe(48)
    with consent.lock:
        consent.codes[code] = _Grant(client_id, redirect_uri, scope, challenge, time.time() + CODE_LIFETIME_S)
        consent.consents += 1
    return back(code=code, session_state=str(uuid.uuid4()))


def _discovery(base: str, tenant: str) -> dict[str, Any]:
    root = f"{base}/{tenant}"
    return {
        "issuer": f"{base}/{tenant}/v2.0",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "tenant_region_scope": "EU",
    }


def _public_base(headers: Any) -> str:
    """The URL the caller used: the front's, when an HTTPS front forwarded the request."""
    proto = headers.get("X-Forwarded-Proto") or "http"
    return f"{proto}://{headers.get('Host', '127.0.0.1')}"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _json(status: int, body: dict[str, Any]) -> Reply:
    return Reply(status, [("Content-Type", wire.JSON_CONTENT_TYPE)], wire.json_body(body, bom=False))


def _page(status: int, message: str) -> Reply:
    html = f"<html><body><h1>Sign in</h1><p>{message}</p></body></html>"
    return Reply(status, [("Content-Type", "text/html; charset=utf-8")], html.encode("utf-8"))


# ----- the HTTPS front ---------------------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade"}


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FrontServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no stderr line per request."""

    def do_GET(self) -> None:
        target = urlsplit(self.server.target)
        length = self.headers.get("Content-Length", "0").strip()
        body = self.rfile.read(int(length)) if length.isdigit() and int(length) > 0 else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["X-Forwarded-Proto"] = "https"  # Host stays the front's: the simulator names it in its URLs
        upstream = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
        finally:
            upstream.close()
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], target: str, context: ssl.SSLContext) -> None:
        super().__init__(address, _FrontHandler)
        self.target = target
        self.socket = context.wrap_socket(self.socket, server_side=True)


class HttpsFront:
    """TLS on a loopback port, forwarding every request to ``target`` (the simulator's ``base_url``)."""

    def __init__(self, target: str, context: ssl.SSLContext, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _FrontServer((host, port), target.rstrip("/"), context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="https-front", daemon=True
        )

    @property
    def url(self) -> str:
        """The front's base URL, e.g. ``https://127.0.0.1:50123``."""
        host, port = self._server.server_address[:2]
        return f"https://{host!s}:{port}"

    def __enter__(self) -> HttpsFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
