"""The errors the Partner Center client raises, in the one ``ServiceError`` hierarchy of ``shared.errors``."""

from __future__ import annotations

from shared.errors import AuthenticationError, ReconsentRequired, RefreshTokenNotSaved, ServiceError

NO_RELATIONSHIP_CODE = "20002"

__all__ = ["AuthenticationError", "DataNotReady", "PartnerCenterError", "ReconsentRequired", "RefreshTokenNotSaved"]


class PartnerCenterError(ServiceError):
    """A Partner Center API call failed."""

    @property
    def is_no_relationship(self) -> bool:
        """403 with code 20002: the partner has no relationship with this customer; skip it."""
        return self.status == 403 and self.code == NO_RELATIONSHIP_CODE


class DataNotReady(PartnerCenterError):
    """204 No Content: the billing data is not ready yet. Not an empty result; try again later."""

    def __init__(self, *, path: str, retry_after: float | None, request_id: str, correlation_id: str | None) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"data not ready yet (204) retry_after={retry_after}",
            status=204,
            path=path,
            request_id=request_id,
            correlation_id=correlation_id,
        )
