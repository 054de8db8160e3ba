"""The errors the Partner Center client raises. None of them ever carries a token or secret."""

from __future__ import annotations

NO_RELATIONSHIP_CODE = "20002"


class PartnerCenterError(Exception):
    """A Partner Center call failed: everything an operator needs to find it in Microsoft's logs."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        description: str | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.description = description
        self.request_id = request_id
        self.correlation_id = correlation_id
        self.path = path
        super().__init__(self._render(message))

    def _render(self, message: str) -> str:
        parts = [message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.description:
            parts.append(f"description={self.description!r}")
        if self.path:
            parts.append(f"path={self.path}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        if self.correlation_id:
            parts.append(f"correlation_id={self.correlation_id}")
        return " ".join(parts)

    @property
    def is_no_relationship(self) -> bool:
        """403 with code 20002: the partner has no relationship with this customer; skip it."""
        return self.status == 403 and self.code == NO_RELATIONSHIP_CODE

    @property
    def is_not_found(self) -> bool:
        """404: the customer or subscription is unknown (or the endpoint does not cover it)."""
        return self.status == 404


class DataNotReady(Exception):
    """204 No Content: the billing data is not ready yet. Not an empty result; try again later."""

    def __init__(self, *, path: str, retry_after: float | None, request_id: str) -> None:
        self.path = path
        self.retry_after = retry_after
        self.request_id = request_id
        super().__init__(f"data not ready yet (204) path={path} retry_after={retry_after} request_id={request_id}")


class AuthenticationError(Exception):
    """The token endpoint refused to issue a token. The message names the error code, never a credential."""

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None) -> None:
        self.error = error
        self.status = status
        super().__init__(message)


class ReconsentRequired(AuthenticationError):
    """The refresh token is dead (invalid_grant / AADSTS700082): a partner admin must sign in again."""
