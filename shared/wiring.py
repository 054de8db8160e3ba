"""Builds the Partner Center client and its token provider from settings: the functions' one setup step."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from shared.counters import Counters
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


def partner_center_client(
    settings: Settings,
    *,
    correlation_id: str | None = None,
    counters: Counters | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PartnerCenterClient:
    """A client for one run: its own correlation id, tokens from the partner's app registration."""
    settings.require_partner_center()
    tokens = TokenProvider(
        authority=settings.authority,
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        refresh_token=settings.refresh_token,
        refresh_store=refresh_token_store(settings),
        sleep=sleep,
    )
    return PartnerCenterClient(
        base_url=settings.base_url,
        tokens=tokens,
        correlation_id=correlation_id or str(uuid.uuid4()),
        pool_size=max(4, settings.sync_concurrency * 2),
        sleep=sleep,
        counters=counters,
    )
