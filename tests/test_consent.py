"""The consent command end to end: MSAL against the simulator's sign-in, the secrets into a stand-in Key Vault.

The simulator speaks HTTP and MSAL accepts only https authorities, so the simulator sits behind an HTTPS
front (devhost.simulator.consent.HttpsFront) with a trustme certificate; the Key Vault stand-in has its own
CA, and both CAs are in the bundle requests trusts. A thread plays the admin's browser: it opens the
sign-in address, follows the redirect back to the tool's loopback listener, and the tool does the rest.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import trustme

from devhost.simulator import Simulator
from devhost.simulator.consent import HttpsFront, state_of
from shared.partner_center.auth import TokenProvider
from tests.keyvault_standin import KeyVaultStandIn, StaticCredential, running_key_vault
from tools.consent import CLIENT_SECRET_NAME, REFRESH_TOKEN_SECRET_NAME, ConsentError, ConsentOptions, run_consent
from tools.consent import main as consent_main


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Setup:
    sim: Simulator
    vault: KeyVaultStandIn
    front: HttpsFront
    home: Path
    work: Path

    def options(self, **overrides: object) -> ConsentOptions:
        values: dict[str, object] = {
            "vault_url": self.vault.url,
            "tenant_id": self.sim.tenant_id,
            "client_id": self.sim.client_id,
            "authority": self.front.url,
            "port": free_port(),
            "timeout_s": 30.0,
        }
        values.update(overrides)
        return ConsentOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    certs, home, work = tmp_path / "certs", tmp_path / "home", tmp_path / "work"
    for folder in (certs, home, work):
        folder.mkdir()
    # A temporary HOME and working directory, empty: the tool must leave them so.
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with Simulator() as sim, running_key_vault(certs) as (vault, vault_bundle):
        bundle = certs / "bundle.pem"
        bundle.write_bytes(Path(vault_bundle).read_bytes() + ca.cert_pem.bytes())
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))  # MSAL's and Key Vault's requests trust both CAs
        with HttpsFront(sim.base_url, context) as front:
            yield Setup(sim, vault, front, home, work)


def browser(seen: list[str]) -> Callable[[str], None]:
    """The admin's browser: open the sign-in page, follow the redirect to the loopback listener."""

    def open_url(url: str) -> None:
        def visit() -> None:
            page = requests.get(url, allow_redirects=True, timeout=30)
            form = re.search(r'<form method="POST" action="([^"]+)">', page.text)
            if form is None:  # an error page of the sign-in itself
                seen.append(page.url)
                return
            fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
            action = html.unescape(form.group(1))
            requests.post(action, data={k: html.unescape(v) for k, v in fields.items()}, timeout=30)
            seen.append(action)

        threading.Thread(target=visit, daemon=True).start()

    return open_url


def no_prompt(prompt: str) -> str:
    raise AssertionError("the client secret should have been read from the vault")


def test_consent_stores_a_working_refresh_token_and_the_seeded_client_secret(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    out, seen = io.StringIO(), list[str]()

    run_consent(
        setup.options(seed_client_secret=True),
        credential=StaticCredential(),
        read_secret=lambda prompt: setup.sim.client_secret + "\n",
        open_url=browser(seen),
        out=out,
    )

    stored = setup.vault.latest(REFRESH_TOKEN_SECRET_NAME)
    assert stored in setup.sim.tokens.issued_refresh_tokens  # the one the authorization-code grant issued
    assert setup.vault.latest(CLIENT_SECRET_NAME) == setup.sim.client_secret
    assert seen and urlsplit(seen[0]).hostname == "localhost"  # the browser came back to the loopback listener
    # The stored token is an App+User refresh token the app can use.
    provider = TokenProvider(
        authority=setup.sim.authority,
        tenant_id=setup.sim.tenant_id,
        client_id=setup.sim.client_id,
        client_secret=setup.sim.client_secret,
        refresh_token=stored,
    )
    assert provider.token()
    grants = [parse_qs(r.body) for r in setup.sim.requests if r.url_path.endswith("/oauth2/v2.0/token")]
    assert grants[0]["grant_type"] == ["authorization_code"] and grants[0]["code_verifier"]
    assert "stored the refresh token" in out.getvalue()


def test_consent_writes_nothing_to_disk_and_shows_no_secret(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.root, "level", logging.DEBUG)
        run_consent(
            setup.options(seed_client_secret=True),
            credential=StaticCredential(),
            read_secret=lambda prompt: setup.sim.client_secret,
            open_url=browser([]),
            out=out,
        )

    token = setup.vault.latest(REFRESH_TOKEN_SECRET_NAME)
    assert token
    assert list(setup.home.rglob("*")) == []
    assert list(setup.work.rglob("*")) == []
    printed = out.getvalue() + "".join(capsys.readouterr())
    for secret in (token, setup.sim.client_secret):
        assert secret not in printed


def test_the_client_secret_is_read_from_the_vault_when_not_seeded(setup: Setup) -> None:
    setup.vault.versions[CLIENT_SECRET_NAME] = [{"id": "1", "value": setup.sim.client_secret}]

    run_consent(
        setup.options(), credential=StaticCredential(), read_secret=no_prompt, open_url=browser([]), out=io.StringIO()
    )

    assert setup.vault.latest(REFRESH_TOKEN_SECRET_NAME) in setup.sim.tokens.issued_refresh_tokens
    assert len(setup.vault.versions[CLIENT_SECRET_NAME]) == 1  # not written again


def test_a_missing_client_secret_stops_before_any_sign_in(setup: Setup) -> None:
    with pytest.raises(ConsentError, match="run again with --seed-client-secret"):
        run_consent(
            setup.options(),
            credential=StaticCredential(),
            read_secret=no_prompt,
            open_url=browser([]),
            out=io.StringIO(),
        )

    assert state_of(setup.sim.tokens).consents == 0
    assert setup.vault.versions == {}


def test_a_declined_consent_stores_nothing(setup: Setup) -> None:
    state_of(setup.sim.tokens).decline = True

    with pytest.raises(ConsentError, match="access_denied: AADSTS65004"):
        run_consent(
            setup.options(seed_client_secret=True),
            credential=StaticCredential(),
            read_secret=lambda prompt: setup.sim.client_secret,
            open_url=browser([]),
            out=io.StringIO(),
        )

    assert setup.vault.versions == {}


def test_a_wrong_client_secret_is_not_stored(setup: Setup) -> None:
    with pytest.raises(ConsentError, match="invalid_client"):
        run_consent(
            setup.options(seed_client_secret=True),
            credential=StaticCredential(),
            read_secret=lambda prompt: "not-the-secret",
            open_url=browser([]),
            out=io.StringIO(),
        )

    assert setup.vault.versions == {}


def test_a_vault_that_refuses_the_write_is_one_line_naming_the_role(setup: Setup) -> None:
    setup.vault.fail_puts, setup.vault.fail_status = None, 403

    with pytest.raises(ConsentError, match=r"status 403 .*Key Vault Secrets Officer"):
        run_consent(
            setup.options(seed_client_secret=True),
            credential=StaticCredential(),
            read_secret=lambda prompt: setup.sim.client_secret,
            open_url=browser([]),
            out=io.StringIO(),
        )


def test_the_command_line_takes_no_secret_value() -> None:
    with pytest.raises(SystemExit) as stopped:
        consent_main(["--vault-url", "https://kv", "--tenant-id", "t", "--client-id", "c", "--client-secret", "s"])
    assert stopped.value.code == 2


def test_the_command_line_names_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("KEY_VAULT_URL", "AZURE_KEY_VAULT_URL", "PARTNER_CENTER_TENANT_ID", "PARTNER_CENTER_CLIENT_ID"):
        os.environ.pop(name, None)
    with pytest.raises(SystemExit):
        consent_main([])
    assert "missing --vault-url, --tenant-id, --client-id" in capsys.readouterr().err


# ----- the simulator's sign-in, directly ---------------------------------------------------------


VERIFIER = "v" * 50


def sign_in(sim: Simulator) -> str:
    """A code from the simulator's authorize endpoint, as a browser would bring it back."""
    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
    authorize = requests.get(
        f"{sim.authority}/{sim.tenant_id}/oauth2/v2.0/authorize",
        params={
            "client_id": sim.client_id,
            "response_type": "code",
            "redirect_uri": "http://localhost:8400",
            "scope": "https://api.partnercenter.microsoft.com/user_impersonation offline_access",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert authorize.status_code == 302
    back = parse_qs(urlsplit(authorize.headers["Location"]).query)
    assert back["state"] == ["s1"]
    return back["code"][0]


def redeem(sim: Simulator, code: str, verifier: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://localhost:8400",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "code_verifier": verifier,
    }
    return requests.post(sim.token_url, data=form, timeout=10)


def test_an_authorization_code_is_single_use() -> None:
    with Simulator() as sim:
        code = sign_in(sim)
        first, again = redeem(sim, code, VERIFIER), redeem(sim, code, VERIFIER)

    assert first.status_code == 200 and first.json()["refresh_token"]
    assert again.status_code == 400 and "70008" in again.text


def test_an_authorization_code_needs_its_pkce_verifier() -> None:
    with Simulator() as sim:
        answer = redeem(sim, sign_in(sim), "x" * 50)

    assert answer.status_code == 400 and "501481" in answer.text


def test_the_authorize_endpoint_never_redirects_off_loopback() -> None:
    with Simulator() as sim:
        answer = requests.get(
            f"{sim.authority}/{sim.tenant_id}/oauth2/v2.0/authorize",
            params={"client_id": sim.client_id, "response_type": "code", "redirect_uri": "https://evil.example/cb"},
            allow_redirects=False,
            timeout=10,
        )
    assert answer.status_code == 400
    assert "AADSTS50011" in answer.text
