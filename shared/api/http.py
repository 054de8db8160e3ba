"""The framework-neutral request and response the API is written against, and its error type."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from shared import jsonutil

JSON_TYPE = "application/json; charset=utf-8"
CSV_TYPE = "text/csv; charset=utf-8; header=present"


def _freeze_query(pairs: Iterable[tuple[str, str]]) -> Mapping[str, tuple[str, ...]]:
    query: dict[str, list[str]] = {}
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return MappingProxyType({name: tuple(values) for name, values in query.items()})


def strip_prefix(path: str, prefix: str) -> str:
    """``/api/v1/x`` -> ``v1/x`` for prefix ``api`` (compared case-insensitively, as Azure routes are)."""
    path = path.strip("/")
    prefix = prefix.strip("/")
    if prefix and (path.lower() == prefix.lower() or path.lower().startswith(prefix.lower() + "/")):
        path = path[len(prefix) :]
    return path.strip("/")


@dataclass(frozen=True, kw_only=True)
class Request:
    """One HTTP request: ``path`` is relative to the API root (``v1/customers/usagerecords``)."""

    method: str
    path: str
    query: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] | Mapping[str, str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Request:
        """A request with header names lower-cased and the query as a read-only multi-dict."""
        pairs = query.items() if isinstance(query, Mapping) else query
        return cls(
            method=method.upper(),
            path=path.strip("/"),
            query=_freeze_query(pairs),
            headers=MappingProxyType({k.lower(): v for k, v in (headers or {}).items()}),
        )

    @classmethod
    def from_target(
        cls, method: str, target: str, *, headers: Mapping[str, str] | None = None, prefix: str = "api"
    ) -> Request:
        """A request for a request target such as ``/api/v1/customers/usagerecords?billing_month=2024-05``."""
        parts = urlsplit(target)
        path = strip_prefix(unquote(parts.path), prefix)
        return cls.build(method, path, query=parse_qsl(parts.query, keep_blank_values=True), headers=headers)

    def header(self, name: str) -> str | None:
        """A header's value, or None."""
        return self.headers.get(name.lower())


@dataclass(frozen=True, kw_only=True)
class Response:
    """One HTTP response; ``headers`` hold Content-Type too."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed with every digit kept (tests and tools)."""
        return jsonutil.loads(self.body)


class ApiError(Exception):
    """A request the API answers with an error body ``{code, description}`` in Partner Center's shape."""

    def __init__(self, status: int, code: int, description: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.headers = dict(headers or {})


# Error codes. Partner Center's own where the meaning is the same, so a portal written against it reacts the
# same way; the 9xxxxx codes are this API's.
CODE_SUBSCRIPTION_NOT_FOUND = 20003
CODE_NO_USAGE_DATA = 3000
CODE_BAD_REQUEST = 900400
CODE_NOT_FOUND = 900404
CODE_METHOD_NOT_ALLOWED = 900405
CODE_INTERNAL = 900500


def bad_request(description: str) -> ApiError:
    """400: a parameter is missing or malformed."""
    return ApiError(400, CODE_BAD_REQUEST, description)


def not_found(description: str, code: int = CODE_NOT_FOUND) -> ApiError:
    """404: no such route, customer, subscription or stored data."""
    return ApiError(404, code, description)


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON body written with every Decimal digit kept."""
    return Response(
        status=status, headers={"Content-Type": JSON_TYPE, **(headers or {})}, body=jsonutil.dumps(payload).encode()
    )


def error_response(error: ApiError) -> Response:
    """The error body, never cached."""
    payload = {"code": error.code, "description": error.description}
    return json_response(error.status, payload, {"Cache-Control": "no-store", **error.headers})


def internal_error_response(correlation_id: str | None = None) -> Response:
    """500 without any detail of the failure: the correlation id finds it in the logs."""
    correlation_id = correlation_id or str(uuid.uuid4())
    payload = {
        "code": CODE_INTERNAL,
        "description": f"Internal error; quote correlation id {correlation_id} to the operator.",
        "correlationId": correlation_id,
    }
    return json_response(500, payload, {"Cache-Control": "no-store", "MS-CorrelationId": correlation_id})
