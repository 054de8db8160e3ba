"""The framework-neutral request and response the API is written against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

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

    def header(self, name: str) -> str | None:
        """A header's value, or None."""
        return self.headers.get(name.lower())


@dataclass(frozen=True, kw_only=True)
class Response:
    """One HTTP response; ``headers`` hold Content-Type too."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON body written with every Decimal digit kept."""
    return Response(
        status=status, headers={"Content-Type": JSON_TYPE, **(headers or {})}, body=jsonutil.dumps(payload).encode()
    )
