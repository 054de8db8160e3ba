"""What a handler receives (``Context``) and returns (``Content``): the one contract between the router and the
handlers, so every route answers the same way (JSON, CSV of its declared columns, ETag, Last-Modified)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.api.messages import Request
from shared.api.scope import Scope
from shared.settings import Settings
from shared.table_store import TableStore


@dataclass(frozen=True)
class Context:
    """Everything a handler needs: the request, its parsed parameters and the app's parts.

    ``path`` holds the path ids, checked and lower-cased; ``query`` every parameter the route declares, parsed
    (its default when absent); ``continuation`` the token of a next-page call (paged routes only), else None.
    """

    request: Request
    path: Mapping[str, str]
    store: TableStore
    settings: Settings
    now: datetime
    scope: Scope = field(default_factory=Scope.everything)  # what the caller may read (the function key: all)
    query: Mapping[str, Any] = field(default_factory=dict)
    continuation: str | None = None


@dataclass
class Content:
    """A handler's answer: the JSON body, and the records again (JSON texts) for the route's CSV columns."""

    json_body: bytes
    status: int = 200
    csv_raws: list[str] | None = None
    csv_columns: tuple[str, ...] | None = None  # instead of the route's, for a view with other fields (scoped)
    headers: dict[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None  # when the data served was last written (fetched), for Last-Modified


Handler = Callable[[Context], Content]
