"""Builds the Partner Center client and its token provider from settings: the functions' one setup step."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from shared.counters import Counters
from shared.graph.client import GRAPH_SCOPE, GraphBillingClient
from shared.identity import azure_credential
from shared.partner_center import (
    InMemoryRefreshTokenStore,
    KeyVaultRefreshTokenStore,
    PartnerCenterClient,
    RefreshTokenStore,
    TokenProvider,
)
from shared.settings import Settings


def refresh_token_store(settings: Settings) -> RefreshTokenStore:
    """Key Vault when KEY_VAULT_URL is set (Azure), else this process's memory (with a warning on rotation)."""
    if settings.key_vault_url:
        return KeyVaultRefreshTokenStore(
            vault_url=settings.key_vault_url,
            secret_name=settings.refresh_token_secret_name,
            credential=azure_credential(settings.identity_client_id),
        )
    return InMemoryRefreshTokenStore()


def _token_provider(
    settings: Settings, authority: str, sleep: Callable[[float], None], **options: Any
) -> TokenProvider:
    """Tokens of the partner's app registration from ``authority``; ``options`` as TokenProvider takes them."""
    settings.require_partner_center()
    return TokenProvider(
        authority=authority,
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        sleep=sleep,
        **options,
    )


def graph_billing_client(settings: Settings, beside: PartnerCenterClient) -> GraphBillingClient:
    """The Graph billing client of a run: app-only Graph token from the same app registration, and the Partner
    Center client's correlation id, counters and sleep (so tests inject one sleep for both)."""
    tokens = _token_provider(settings, settings.graph_token_authority, beside.sleep, scope=GRAPH_SCOPE)
    return GraphBillingClient(
        base_url=settings.graph_base_url,
        tokens=tokens,
        correlation_id=beside.correlation_id,
        sleep=beside.sleep,
        counters=beside.counters,
    )


def partner_center_client(
    settings: Settings,
    *,
    correlation_id: str | None = None,
    counters: Counters | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PartnerCenterClient:
    """A client for one run: its own correlation id, tokens from the partner's app registration."""
    tokens = _token_provider(
        settings,
        settings.authority,
        sleep,
        refresh_token=settings.refresh_token,
        refresh_store=refresh_token_store(settings),
    )
    return PartnerCenterClient(
        base_url=settings.base_url,
        tokens=tokens,
        correlation_id=correlation_id or str(uuid.uuid4()),
        pool_size=max(4, settings.sync_concurrency * 2),
        sleep=sleep,
        counters=counters,
    )
