"""The errors of calls to upstream services. None of them ever carries a token or a secret.

One hierarchy, so a run record keeps status, code and ids for every failure: ``ServiceError`` is any failed
call (Partner Center's API, a token endpoint), with everything an operator needs to find it in Microsoft's logs.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A call to an upstream service failed."""

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
        fields = (
            ("status", self.status),
            ("code", self.code),
            ("description", None if self.description is None else repr(self.description)),
            ("path", self.path),
            ("request_id", self.request_id),
            ("correlation_id", self.correlation_id),
        )
        return " ".join([message, *(f"{name}={value}" for name, value in fields if value not in (None, ""))])


class AuthenticationError(ServiceError):
    """The token endpoint refused to issue a token. The message names the error code, never a credential."""

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None) -> None:
        self.error = error
        super().__init__(message, status=status, code=error)


class ReconsentRequired(AuthenticationError):
    """The refresh token is dead (invalid_grant / AADSTS700082): a partner admin must sign in again."""


class RefreshTokenNotSaved(AuthenticationError):
    """A rotated refresh token could not be written to its store; the run fails loudly so an operator acts."""
