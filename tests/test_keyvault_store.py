"""The refresh-token store in Key Vault, through the real azure-keyvault-secrets client over HTTPS (issue 11)."""

from __future__ import annotations

import pytest
from werkzeug import Response

from shared.partner_center import KeyVaultRefreshTokenStore, TokenProvider
from shared.partner_center.errors import RefreshTokenNotSaved
from tests.fakes import FakeClock, pc_json
from tests.keyvault_standin import StaticCredential, running_key_vault

SECRET = "partner-center-refresh-token"
TOKEN_PATH = "/tenant-1/oauth2/v2.0/token"


@pytest.fixture
def vault(tmp_path, monkeypatch):
    with running_key_vault(tmp_path) as (standin, bundle):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)  # requests, under azure-core, trusts the test CA
        yield standin


def store(vault):
    return KeyVaultRefreshTokenStore(vault_url=vault.url, secret_name=SECRET, credential=StaticCredential())


def tokens(httpserver, refresh_store, clock):
    return TokenProvider(
        authority=httpserver.url_for("/").rstrip("/"),
        tenant_id="tenant-1",
        client_id="app-1",
        client_secret="s3cr3t",
        refresh_token="rt-initial",
        refresh_store=refresh_store,
        clock=clock,
        sleep=clock.sleep,
    )


def grant(access, refresh):
    body = f'{{"token_type":"Bearer","expires_in":3600,"access_token":"{access}","refresh_token":"{refresh}"}}'
    return Response(pc_json(body), content_type="application/json")


def test_a_missing_secret_loads_as_none_and_a_saved_token_is_a_new_version(vault):
    kv = store(vault)
    assert kv.load() is None
    kv.save("rt-1")
    kv.save("rt-2")
    assert kv.load() == "rt-2" and [v["value"] for v in vault.versions[SECRET]] == ["rt-1", "rt-2"]
    assert vault.versions[SECRET][-1]["contentType"] == "partner-center-refresh-token"


def test_each_rotated_token_is_written_to_the_vault_and_the_next_process_starts_from_it(vault, httpserver, tmp_path):
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(grant("at-1", "rt-2"))
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(grant("at-2", "rt-3"))
    assert tokens(httpserver, store(vault), FakeClock()).token() == "at-1"
    assert vault.latest(SECRET) == "rt-2"
    # A new process (new provider, new client) reads the rotated token from the vault, not the initial one.
    assert tokens(httpserver, store(vault), FakeClock()).token() == "at-2"
    assert "refresh_token=rt-2" in httpserver.log[1][0].get_data(as_text=True)
    assert vault.latest(SECRET) == "rt-3"
    assert not list(tmp_path.glob("*token*"))  # nothing written to disk


def test_a_write_that_fails_once_is_retried_and_the_token_is_saved(vault, httpserver):
    vault.fail_puts, vault.fail_status = 1, 500
    httpserver.expect_request(TOKEN_PATH).respond_with_response(grant("at-1", "rt-2"))
    assert tokens(httpserver, store(vault), FakeClock()).token() == "at-1"
    assert vault.puts >= 2 and vault.latest(SECRET) == "rt-2"


def test_a_write_that_keeps_failing_fails_loudly_and_keeps_the_new_token(vault, httpserver):
    vault.fail_puts, vault.fail_status = None, 403
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(grant("at-1", "rt-2"))
    provider = tokens(httpserver, store(vault), FakeClock())
    with pytest.raises(RefreshTokenNotSaved) as caught:
        provider.token()
    assert "status=403" in str(caught.value) and "rt-2" not in str(caught.value)
    assert vault.latest(SECRET) is None
    assert provider.token() == "at-1"  # the access token was kept; the run carries on and ends failed
