"""Tokens: refresh-token grant, client credentials, caching, rotation, re-consent (API.md: Authentication)."""

import logging
from urllib.parse import parse_qs

import pytest
from werkzeug import Response

from shared.partner_center import InMemoryRefreshTokenStore, ReconsentRequired, TokenProvider
from shared.partner_center.auth import PARTNER_CENTER_SCOPE
from shared.partner_center.errors import AuthenticationError, RefreshTokenNotSaved
from shared.retry import RetryPolicy
from tests.fakes import FakeClock, pc_json

TOKEN_PATH = "/tenant-1/oauth2/v2.0/token"


def token_body(access="at-1", refresh="rt-2", expires_in=3600):
    return Response(
        pc_json(
            f'{{"token_type":"Bearer","expires_in":{expires_in},"access_token":"{access}","refresh_token":"{refresh}"}}'
        ),
        content_type="application/json",
    )


def provider(httpserver, store=None, clock=None, refresh_token="rt-1"):
    clock = clock or FakeClock()
    return TokenProvider(
        authority=httpserver.url_for("/").rstrip("/"),
        tenant_id="tenant-1",
        client_id="app-1",
        client_secret="s3cr3t",
        refresh_token=refresh_token,
        refresh_store=store,
        clock=clock,
        sleep=clock.sleep,
        retry=RetryPolicy(not_ready_attempts=0, refresh_token_on_401=False, random=lambda: 0.0),
    )


def form(request):
    return {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}


def test_refresh_grant_posts_to_the_tenant_token_endpoint_with_the_partner_center_scope(httpserver):
    httpserver.expect_request(TOKEN_PATH, method="POST").respond_with_response(token_body())
    assert provider(httpserver).token() == "at-1"
    sent = form(httpserver.log[0][0])
    assert sent == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-1",
        "client_id": "app-1",
        "client_secret": "s3cr3t",
        "scope": PARTNER_CENTER_SCOPE,
    }


def test_app_only_tokens_use_client_credentials(httpserver):
    httpserver.expect_request(TOKEN_PATH, method="POST").respond_with_response(token_body("app-at"))
    assert provider(httpserver).token(app_only=True) == "app-at"
    sent = form(httpserver.log[0][0])
    assert sent["grant_type"] == "client_credentials" and "refresh_token" not in sent


def test_tokens_are_cached_until_shortly_before_expiry(httpserver):
    clock = FakeClock()
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(token_body("at-1", "rt-2"))
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(token_body("at-2", "rt-3"))
    tokens = provider(httpserver, clock=clock)
    assert tokens.token() == "at-1"
    clock.now += 3000  # 600 s before expiry: still good (margin is 300 s)
    assert tokens.token() == "at-1"
    clock.now += 400  # inside the margin: refreshed
    assert tokens.token() == "at-2"
    assert len(httpserver.log) == 2


def test_every_rotated_refresh_token_is_handed_to_the_store_and_used_next(httpserver):
    store = InMemoryRefreshTokenStore()
    clock = FakeClock()
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(token_body("at-1", "rt-2", 10))
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(token_body("at-2", "rt-3", 10))
    tokens = provider(httpserver, store=store, clock=clock)
    tokens.token()
    assert store.load() == "rt-2"
    tokens.token()  # expired (10 s lifetime is inside the margin): refreshed with the rotated token
    assert form(httpserver.log[1][0])["refresh_token"] == "rt-2"
    assert store.load() == "rt-3"


def test_the_in_memory_store_warns_once_that_a_restart_loses_the_token(caplog, monkeypatch):
    monkeypatch.setattr(InMemoryRefreshTokenStore, "_warned", False)
    store = InMemoryRefreshTokenStore()
    with caplog.at_level(logging.WARNING):
        store.save("rt-new")
        store.save("rt-newer")
        InMemoryRefreshTokenStore().save("rt-newest")
    assert len(caplog.records) == 1 and "KEY_VAULT_URL" in caplog.text and "rt-new" not in caplog.text


def test_invalid_grant_says_plainly_that_an_admin_must_reconsent_and_hides_the_token(httpserver):
    httpserver.expect_request(TOKEN_PATH).respond_with_response(
        Response(
            pc_json(
                '{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due '
                'to inactivity.","error_codes":[700082]}'
            ),
            status=400,
            content_type="application/json",
        )
    )
    with pytest.raises(ReconsentRequired) as caught:
        provider(httpserver, refresh_token="rt-very-secret").token()
    message = str(caught.value)
    assert "AADSTS700082" in message and "re-consent" in message
    assert "rt-very-secret" not in message and "s3cr3t" not in message


def test_a_wrong_client_secret_is_an_authentication_error_not_a_reconsent(httpserver):
    httpserver.expect_request(TOKEN_PATH).respond_with_response(
        Response(
            pc_json('{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret."}'),
            status=401,
            content_type="application/json",
        )
    )
    with pytest.raises(AuthenticationError) as caught:
        provider(httpserver).token()
    assert not isinstance(caught.value, ReconsentRequired)
    assert "invalid_client" in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_no_refresh_token_at_all_asks_for_the_one_time_consent(httpserver):
    with pytest.raises(ReconsentRequired, match="PARTNER_CENTER_REFRESH_TOKEN"):
        provider(httpserver, refresh_token="").token()
    assert len(httpserver.log) == 0


def test_network_failures_are_retried_then_name_no_credential(httpserver):
    clock = FakeClock()
    tokens = TokenProvider(
        authority="http://127.0.0.1:9",
        tenant_id="t",
        client_id="c",
        client_secret="s3cr3t",
        refresh_token="rt-x",
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(AuthenticationError) as caught:
        tokens.token()
    assert "s3cr3t" not in str(caught.value) and "rt-x" not in str(caught.value)
    assert "after 6 attempts" in str(caught.value) and len(clock.sleeps) == 5


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_token_answers_are_retried_with_retry_after_first(httpserver, status):
    clock = FakeClock()
    busy = Response(pc_json('{"error":"temporarily_unavailable"}'), status=status, headers={"Retry-After": "3"})
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(busy)
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(Response(b"", status=status))
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(token_body("at-ok"))
    assert provider(httpserver, clock=clock).token() == "at-ok"
    assert clock.sleeps == [3.0, 1.0]  # Retry-After, then the backoff of the second failed try (2 s x 0.5)


def test_invalid_grant_is_never_retried(httpserver):
    clock = FakeClock()
    httpserver.expect_request(TOKEN_PATH).respond_with_response(
        Response(pc_json('{"error":"invalid_grant","error_codes":[700082]}'), status=400)
    )
    with pytest.raises(ReconsentRequired):
        provider(httpserver, clock=clock).token()
    assert len(httpserver.log) == 1 and clock.sleeps == []


def test_token_retries_stop_at_the_policy_s_limit(httpserver):
    clock = FakeClock()
    httpserver.expect_request(TOKEN_PATH).respond_with_response(Response(b"", status=503))
    with pytest.raises(AuthenticationError) as caught:
        provider(httpserver, clock=clock).token()
    assert len(httpserver.log) == 6 and caught.value.status == 503


class StoreUnavailable(RuntimeError):
    """A store's HTTP error, as Key Vault's carry it: a ``status_code``."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class FailingStore(InMemoryRefreshTokenStore):
    """A refresh-token store whose writes fail ``failures`` times (None: always) with an HTTP status."""

    def __init__(self, failures, status):
        super().__init__()
        self.failures = failures
        self.status = status
        self.attempts = 0

    def save(self, token):
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise StoreUnavailable("store unavailable", self.status)
        super().save(token)


def test_a_rotated_token_whose_save_fails_once_is_saved_on_the_retry(httpserver):
    store = FailingStore(failures=1, status=503)
    httpserver.expect_request(TOKEN_PATH).respond_with_response(token_body("at-1", "rt-2"))
    assert provider(httpserver, store=store).token() == "at-1"
    assert store.attempts == 2 and store.load() == "rt-2"


def test_a_rotated_token_that_cannot_be_saved_fails_loudly_and_is_kept_for_the_next_grant(httpserver):
    store = FailingStore(failures=None, status=403)
    clock = FakeClock()
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(token_body("at-1", "rt-2", 3600))
    httpserver.expect_ordered_request(TOKEN_PATH).respond_with_response(token_body("at-2", "rt-3", 3600))
    tokens = provider(httpserver, store=store, clock=clock)
    with pytest.raises(RefreshTokenNotSaved) as caught:
        tokens.token()
    assert "rt-2" not in str(caught.value) and "kept in memory" in str(caught.value) and store.attempts == 1
    assert tokens.token() == "at-1"  # the access token was cached: the other callers carry on
    clock.now += 3500
    with pytest.raises(RefreshTokenNotSaved):
        tokens.token()  # the next grant used the unsaved token, and saving failed again
    assert form(httpserver.log[1][0])["refresh_token"] == "rt-2"
