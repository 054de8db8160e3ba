"""Partner Center REST client: tokens, paging, retries and errors."""

from shared.partner_center.auth import (
    InMemoryRefreshTokenStore,
    KeyVaultRefreshTokenStore,
    RefreshTokenStore,
    TokenProvider,
)
from shared.partner_center.client import NextLink, Page, PartnerCenterClient
from shared.partner_center.errors import (
    AuthenticationError,
    DataNotReady,
    PartnerCenterError,
    ReconsentRequired,
)
from shared.partner_center.retry import RetryPolicy, parse_retry_after

__all__ = [
    "AuthenticationError",
    "DataNotReady",
    "InMemoryRefreshTokenStore",
    "KeyVaultRefreshTokenStore",
    "NextLink",
    "Page",
    "PartnerCenterClient",
    "PartnerCenterError",
    "ReconsentRequired",
    "RefreshTokenStore",
    "RetryPolicy",
    "TokenProvider",
    "parse_retry_after",
]
