"""Partner Center REST client: tokens, paging, retries and errors."""

from shared.partner_center.auth import (
    InMemoryRefreshTokenStore,
    KeyVaultRefreshTokenStore,
    RefreshTokenStore,
    TokenProvider,
)
from shared.partner_center.client import Page, PartnerCenterClient
from shared.partner_center.errors import (
    AuthenticationError,
    DataNotReady,
    PartnerCenterError,
    ReconsentRequired,
)
from shared.retry import RetryPolicy

__all__ = [
    "AuthenticationError",
    "DataNotReady",
    "InMemoryRefreshTokenStore",
    "KeyVaultRefreshTokenStore",
    "Page",
    "PartnerCenterClient",
    "PartnerCenterError",
    "ReconsentRequired",
    "RefreshTokenStore",
    "RetryPolicy",
    "TokenProvider",
]
