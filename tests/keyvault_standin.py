"""A local HTTPS stand-in of Key Vault's secrets REST API: the calls the app's refresh-token store makes.

Real TLS (a trustme CA and certificate for 127.0.0.1), the challenge-based bearer authentication the SDK
performs (401 with WWW-Authenticate, then the token from the credential), ``GET /secrets/{name}/`` (latest
version, or 404 SecretNotFound) and ``PUT /secrets/{name}`` (a new version), with switchable failures.
"""

from __future__ import annotations

import json
import re
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import trustme
from azure.core.credentials import AccessToken
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

_SECRET = re.compile(r"^/secrets/(?P<name>[0-9A-Za-z-]+)(?:/(?P<version>[0-9a-f]*))?/?$")
TOKEN = "kv-access-token"


class StaticCredential:
    """The identity the SDK asks for a Key Vault token; the stand-in checks the token it sends."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(datetime.now(timezone.utc).timestamp()) + 3600)


class KeyVaultStandIn:
    """Secrets by name, each a list of versions; ``fail_puts`` answers that many PUTs with ``fail_status``."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.url = server.url_for("/").rstrip("/")
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.fail_puts: int | None = 0  # None: every PUT fails
        self.fail_status = 500
        self.puts = 0
        server.expect_request(re.compile(r"^/secrets/.*")).respond_with_handler(self._handle)

    def latest(self, name: str) -> str | None:
        """The newest stored value of a secret."""
        versions = self.versions.get(name)
        return versions[-1]["value"] if versions else None

    def _bundle(self, name: str, version: dict[str, Any]) -> dict[str, Any]:
        return {
            "value": version["value"],
            "id": f"{self.url}/secrets/{name}/{version['id']}",
            "contentType": version.get("contentType"),
            "attributes": {"enabled": True, "created": 1, "updated": 1, "recoveryLevel": "Recoverable"},
        }

    def _handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            port = request.host.rsplit(":", 1)[-1]
            challenge = (
                'Bearer authorization="https://login.microsoftonline.com/kv-tenant", '
                f'resource="https://0.0.1:{port}"'  # the request's host ends in ".0.0.1:port", as x.vault.azure.net
            )
            return Response(status=401, headers={"WWW-Authenticate": challenge})
        match = _SECRET.match(request.path)
        if match is None or not request.args.get("api-version"):
            return self._error(400, "BadParameter", "unknown request")
        name = match.group("name")
        if request.method == "PUT":
            self.puts += 1
            if self.fail_puts is None or self.fail_puts > 0:
                if self.fail_puts:
                    self.fail_puts -= 1
                return self._error(self.fail_status, "Forbidden" if self.fail_status == 403 else "InternalError", "no")
            body = json.loads(request.get_data(as_text=True))
            version = {"id": uuid.uuid4().hex, "value": body["value"], "contentType": body.get("contentType")}
            self.versions.setdefault(name, []).append(version)
            return Response(json.dumps(self._bundle(name, version)), content_type="application/json")
        if request.method == "GET":
            versions = self.versions.get(name)
            if not versions:
                return self._error(
                    404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
                )
            return Response(json.dumps(self._bundle(name, versions[-1])), content_type="application/json")
        return self._error(405, "MethodNotAllowed", request.method)

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        return Response(
            json.dumps({"error": {"code": code, "message": message}}), status, content_type="application/json"
        )


@contextmanager
def running_key_vault(tmp_path: Any) -> Iterator[tuple[KeyVaultStandIn, str]]:
    """The stand-in on a free loopback port over HTTPS; yields it and the CA bundle path clients must trust."""
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "kv-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    try:
        yield KeyVaultStandIn(server), str(bundle)
    finally:
        server.clear()
        server.stop()
