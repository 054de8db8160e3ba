"""The partner admin's one-time App+User consent, by command; the refresh token goes straight to Key Vault.

    python -m tools.consent --vault-url URL --tenant-id TENANT --client-id APP_ID [--seed-client-secret]

What it does, in order:

1. Reads the app registration's client secret: from the vault (``partner-center-client-secret``), or with
   ``--seed-client-secret`` from a hidden prompt, or from standard input when that is a pipe (so
   ``az ad app credential reset ... --query password -o tsv | python -m tools.consent --seed-client-secret``
   works). Never from the command line, where the shell history and ``ps`` would keep it.
2. Runs the OAuth 2.0 authorization-code flow with PKCE through MSAL, as a confidential client, for the
   Partner Center scope ``user_impersonation``: it listens on ``http://localhost:PORT`` (the redirect URI
   registered on the app, Web platform), opens the sign-in page, and a partner admin signs in (with MFA)
   and consents.
3. Writes the refresh token as a new version of the refresh-token secret and, when seeding, the client
   secret (only now that Entra ID accepted it), both with the caller's Azure sign-in (``azd auth login``
   or ``az login``; Key Vault Secrets Officer on the vault).

Nothing is written to disk: MSAL's token cache is in memory and is dropped on exit, no value is printed or
logged, and nothing goes to an azd environment. The tool is not deployed (``.funcignore``: ``tools/``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

import msal  # type: ignore[import-untyped]  # msal ships no type information
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

from shared.partner_center.auth import KeyVaultRefreshTokenStore
from shared.settings import DEFAULT_AUTHORITY, SETTINGS

PARTNER_CENTER_USER_IMPERSONATION = "https://api.partnercenter.microsoft.com/user_impersonation"
# infra/main.bicep names both secrets; the refresh token's name is also the app setting below.
CLIENT_SECRET_NAME = "partner-center-client-secret"  # noqa: S105 (a secret's name, not its value)
REFRESH_TOKEN_SECRET_NAME = next(s.default for s in SETTINGS if s.name == "PARTNER_CENTER_REFRESH_TOKEN_SECRET_NAME")
DEFAULT_PORT = 8400
SIGN_IN_TIMEOUT_S = 600.0


class ConsentError(Exception):
    """The consent did not complete; the message says why and what to do (it never holds a secret)."""


@dataclass(frozen=True, kw_only=True)
class ConsentOptions:
    """Where to sign in and where to store what comes back."""

    vault_url: str
    tenant_id: str
    client_id: str
    authority: str = DEFAULT_AUTHORITY
    refresh_token_secret: str = REFRESH_TOKEN_SECRET_NAME
    client_secret_secret: str = CLIENT_SECRET_NAME
    seed_client_secret: bool = False
    port: int = DEFAULT_PORT
    timeout_s: float = SIGN_IN_TIMEOUT_S


def run_consent(
    options: ConsentOptions,
    *,
    credential: Any,
    read_secret: Callable[[str], str],
    open_url: Callable[[str], object],
    out: TextIO,
) -> None:
    """Obtain the refresh token by a partner admin's sign-in and store it (and a seeded client secret)."""
    vault = SecretClient(vault_url=options.vault_url, credential=credential)
    client_secret = _client_secret(vault, options, read_secret)
    app = msal.ConfidentialClientApplication(
        options.client_id,
        client_credential=client_secret,
        authority=f"{options.authority.rstrip('/')}/{options.tenant_id}",
        token_cache=msal.TokenCache(),  # in memory only: never serialized, gone when the process ends
        # The authority is the operator's setting (PARTNER_CENTER_AUTHORITY), not user input: no need to
        # ask login.microsoftonline.com whether it is a known instance before its OpenID discovery.
        instance_discovery=False,
    )
    with RedirectListener(options.port) as listener:
        flow = app.initiate_auth_code_flow(
            [PARTNER_CENTER_USER_IMPERSONATION],
            redirect_uri=listener.redirect_uri,
            prompt="select_account",
            response_mode="form_post",  # the code comes back in a POST body, never in the browser's history
        )
        print(
            "Sign in as a partner admin of the partner tenant (Admin Agent) and accept the permissions.\n"
            f"If no browser opens, open this address on this machine:\n  {flow['auth_uri']}",
            file=out,
        )
        open_url(flow["auth_uri"])
        auth_response = listener.wait(flow["state"], options.timeout_s)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    except ValueError as exc:  # a state mismatch or a malformed answer: MSAL refuses it
        raise ConsentError(f"the sign-in answer was refused ({exc})") from None
    if "error" in result:
        raise ConsentError(f"sign-in failed: {_summary(result)}")
    refresh_token = result.get("refresh_token")
    if not refresh_token:
        raise ConsentError("Entra ID returned no refresh token (offline_access was not granted)")
    if options.seed_client_secret:
        _set(vault, options.client_secret_secret, client_secret, "partner-center-client-secret")
        print(f"stored the client secret as a new version of secret {options.client_secret_secret}", file=out)
    store = KeyVaultRefreshTokenStore(
        vault_url=options.vault_url, secret_name=options.refresh_token_secret, credential=credential
    )
    try:
        store.save(str(refresh_token))
    except HttpResponseError as exc:
        raise ConsentError(_vault_problem(exc, options.refresh_token_secret)) from None
    print(
        f"stored the refresh token as a new version of secret {options.refresh_token_secret} in {options.vault_url}",
        file=out,
    )


def _client_secret(vault: SecretClient, options: ConsentOptions, read_secret: Callable[[str], str]) -> str:
    if options.seed_client_secret:
        value = read_secret("Client secret of the app registration (not shown): ").strip()
        if not value:
            raise ConsentError("no client secret was given")
        return value
    try:
        value = vault.get_secret(options.client_secret_secret).value or ""
    except ResourceNotFoundError:
        raise ConsentError(
            f"secret {options.client_secret_secret} is not in the vault yet: run again with --seed-client-secret"
        ) from None
    except HttpResponseError as exc:
        raise ConsentError(_vault_problem(exc, options.client_secret_secret)) from None
    if not value:
        raise ConsentError(f"secret {options.client_secret_secret} is empty: run again with --seed-client-secret")
    return value


def _set(vault: SecretClient, name: str, value: str, content_type: str) -> None:
    try:
        vault.set_secret(name, value, content_type=content_type)
    except HttpResponseError as exc:
        raise ConsentError(_vault_problem(exc, name)) from None


def _vault_problem(exc: HttpResponseError, name: str) -> str:
    status = getattr(exc, "status_code", None)
    hint = " (your Azure sign-in needs Key Vault Secrets Officer on the vault)" if status == 403 else ""
    return f"Key Vault refused secret {name}: status {status}{hint}"


def _summary(result: dict[str, Any]) -> str:
    """The error and the first line of its description (the AADSTS code and message), nothing else."""
    description = str(result.get("error_description") or "").strip().splitlines()
    return f"{result.get('error')}: {description[0]}" if description else str(result.get("error"))


class RedirectListener:
    """The loopback redirect URI: takes the code (or an error) the browser posts back."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self._answers: list[dict[str, str]] = []
        self._arrived = threading.Condition()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the query string holds the code."""

            def do_POST(self) -> None:
                length = self.headers.get("Content-Length", "0")
                size = int(length) if length.isdigit() else 0
                self._answer(self.rfile.read(min(size, 65536)).decode("ascii", "replace"))

            def do_GET(self) -> None:
                self._answer(urlsplit(self.path).query)

            def _answer(self, encoded: str) -> None:
                query = {k: v[0] for k, v in parse_qs(encoded).items()}
                known = "code" in query or "error" in query
                text = (
                    "Sign-in complete: you can close this window and return to the terminal."
                    if known
                    else "Waiting for the sign-in to finish."
                )
                body = f"<html><body><p>{text}</p></body></html>".encode()
                self.send_response(200 if known else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if known:
                    with listener._arrived:
                        listener._answers.append(query)
                        listener._arrived.notify_all()

        self._server = HTTPServer((host, port), Handler)
        self._server.timeout = 0.2
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def redirect_uri(self) -> str:
        """The address registered on the app (Web platform): ``http://localhost:<port>``."""
        return f"http://localhost:{self._server.server_address[1]}"

    def wait(self, state: str, timeout_s: float) -> dict[str, str]:
        """The query string of the redirect that carries this flow's state."""
        with self._arrived:
            found = self._arrived.wait_for(lambda: any(a.get("state") == state for a in self._answers), timeout_s)
            if not found:
                raise ConsentError(f"no sign-in came back to {self.redirect_uri} within {timeout_s:.0f} s")
            return next(a for a in self._answers if a.get("state") == state)

    def __enter__(self) -> RedirectListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def read_secret_from_terminal_or_pipe(prompt: str) -> str:
    """A hidden prompt on a terminal; one line of standard input when it is a pipe."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline()


def _default_credential() -> Any:
    from azure.identity import AzureCliCredential, AzureDeveloperCliCredential, ChainedTokenCredential

    return ChainedTokenCredential(AzureDeveloperCliCredential(), AzureCliCredential())


def main(argv: list[str] | None = None) -> int:
    """Command line: options default to the app settings' environment variables."""
    env = os.environ
    # No abbreviations: `--client-secret VALUE` must be an error, not a prefix of --client-secret-name.
    parser = argparse.ArgumentParser(
        prog="python -m tools.consent", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--vault-url", default=env.get("KEY_VAULT_URL") or env.get("AZURE_KEY_VAULT_URL"))
    parser.add_argument("--tenant-id", default=env.get("PARTNER_CENTER_TENANT_ID"), help="the partner tenant")
    parser.add_argument("--client-id", default=env.get("PARTNER_CENTER_CLIENT_ID"), help="the app registration")
    parser.add_argument("--authority", default=env.get("PARTNER_CENTER_AUTHORITY") or DEFAULT_AUTHORITY)
    parser.add_argument(
        "--secret-name", default=env.get("PARTNER_CENTER_REFRESH_TOKEN_SECRET_NAME") or REFRESH_TOKEN_SECRET_NAME
    )
    parser.add_argument("--client-secret-name", default=CLIENT_SECRET_NAME)
    parser.add_argument(
        "--seed-client-secret",
        action="store_true",
        help="read the client secret from a hidden prompt (or a pipe) and store it too",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="of the redirect URI http://localhost:PORT")
    parser.add_argument("--no-browser", action="store_true", help="only print the sign-in address")
    args = parser.parse_args(argv)
    missing = [flag for flag in ("vault_url", "tenant_id", "client_id") if not getattr(args, flag)]
    if missing:
        parser.error("missing " + ", ".join("--" + m.replace("_", "-") for m in missing))
    options = ConsentOptions(
        vault_url=args.vault_url,
        tenant_id=args.tenant_id,
        client_id=args.client_id,
        authority=args.authority,
        refresh_token_secret=args.secret_name,
        client_secret_secret=args.client_secret_name,
        seed_client_secret=args.seed_client_secret,
        port=args.port,
    )
    try:
        run_consent(
            options,
            credential=_default_credential(),
            read_secret=read_secret_from_terminal_or_pipe,
            open_url=(lambda url: None) if args.no_browser else webbrowser.open,
            out=sys.stdout,
        )
    except (ConsentError, OSError) as exc:
        print(f"consent: {exc}", file=sys.stderr)
        return 1
    print(
        "next: azd env set PARTNER_CENTER_REFRESH_TOKEN_SEEDED true && azd provision, then restart the function "
        "app (docs/deploy.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
