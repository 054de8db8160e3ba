"""Builds the run's clients from settings: the Partner Center client and the Graph billing client, each with its
token provider, asking only for the settings that client needs (``Settings.require``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from shared.counters import Counters
from shared.deadline import Deadline
from shared.graph.client import GRAPH_SCOPE, GraphBillingClient
from shared.identity import azure_credential
from shared.partner_center import (
    InMemoryRefreshTokenStore,
    KeyVaultRefreshTokenStore,
    PartnerCenterClient,
    RefreshTokenStore,
    TokenProvider,
)
from shared.settings import GRAPH, PARTNER_CENTER, Settings


def refresh_token_store(settings: Settings) -> RefreshTokenStore:
    """Key Vault when KEY_VAULT_URL is set (Azure), else this process's memory (with a warning on rotation)."""
    if settings.key_vault_url:
        return KeyVaultRefreshTokenStore(
            vault_url=settings.key_vault_url,
            secret_name=settings.refresh_token_secret_name,
            credential=azure_credential(settings.identity_client_id),
        )
    return InMemoryRefreshTokenStore()


def _tokens(settings: Settings, client: str, authority: str, **options: Any) -> TokenProvider:
    """Tokens of the partner's app registration from ``authority``, once ``client``'s settings are all there."""
    settings.require(client)
    return TokenProvider(
        authority=authority,
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        **options,
    )


def partner_center_client(
    settings: Settings,
    *,
    correlation_id: str | None = None,
    counters: Counters | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    deadline: Deadline | None = None,
) -> PartnerCenterClient:
    """A Partner Center client for one run: App+User tokens from the refresh token (rotated into its store)."""
    tokens = _tokens(
        settings,
        PARTNER_CENTER,
        settings.authority,
        refresh_token=settings.refresh_token,
        refresh_store=refresh_token_store(settings),
        sleep=sleep,
        deadline=deadline,
    )
    return PartnerCenterClient(
        base_url=settings.base_url,
        tokens=tokens,
        correlation_id=correlation_id or str(uuid.uuid4()),
        pool_size=max(4, settings.sync_concurrency * 2),
        sleep=sleep,
        clock=clock,
        counters=counters,
        deadline=deadline,
    )


def graph_billing_client(
    settings: Settings,
    *,
    correlation_id: str | None = None,
    counters: Counters | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> GraphBillingClient:
    """A Graph billing client for one run: app-only Graph tokens of the same app registration (no refresh token)."""
    tokens = _tokens(settings, GRAPH, settings.graph_token_authority, scope=GRAPH_SCOPE, sleep=sleep, deadline=deadline)
    return GraphBillingClient(
        base_url=settings.graph_base_url,
        tokens=tokens,
        correlation_id=correlation_id or str(uuid.uuid4()),
        sleep=sleep,
        counters=counters,
        deadline=deadline,
    )
