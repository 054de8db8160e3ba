"""serve_scoped: the HTTP API under /api/scoped/ for Entra ID access tokens, each caller within its grant.

Anonymous at the platform (a token is not a function key): the app validates every token itself
(shared.access.tokens) and answers 404 when API_ACCESS_MODE is ``key``.
"""

from __future__ import annotations

import functools
import logging
import uuid

import azure.functions as func

from shared.api.azure import from_azure_request, to_azure_response
from shared.api.errors import internal_error_response
from shared.api.scoped import TokenGate, handle_with_token
from shared.settings import Settings
from shared.table_store import TableStore

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _parts(settings: Settings) -> tuple[TableStore, TokenGate | None]:
    # One store, one key cache and one grant cache per configuration, kept for the life of the worker.
    store = TableStore.from_settings(settings)
    return store, TokenGate(settings, store) if settings.api_access_mode != "key" else None


def main(req: func.HttpRequest) -> func.HttpResponse:
    """Read settings, get the cached store and token gate, answer with shared.api."""
    request = from_azure_request(req, route_prefix="api/scoped")
    try:
        settings = Settings.from_env()
        store, gate = _parts(settings)
    except Exception:
        correlation_id = str(uuid.uuid4())
        log.exception("serve_scoped is misconfigured; correlation id %s", correlation_id)
        return to_azure_response(internal_error_response(correlation_id))
    return to_azure_response(handle_with_token(request, store, settings, gate))
