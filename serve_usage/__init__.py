"""serve_usage: the HTTP API under /api/ with the function key (Partner Center-compatible usage reads, health,
OpenAPI document); in token mode (API_ACCESS_MODE=token) only health and the document, data is under /api/scoped/."""

from __future__ import annotations

import functools
import logging
import uuid

import azure.functions as func

from shared.api.azure import from_azure_request, to_azure_response
from shared.api.errors import internal_error_response
from shared.api.scoped import handle_with_key
from shared.settings import Settings
from shared.table_store import TableStore

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _store(settings: Settings) -> TableStore:
    # One store (and its HTTP connection pool) per distinct configuration, built on first use.
    return TableStore.from_settings(settings)


def main(req: func.HttpRequest) -> func.HttpResponse:
    """Read settings, get the cached store, answer with shared.api."""
    request = from_azure_request(req)
    try:
        settings = Settings.from_env()
        store = _store(settings)
    except Exception:
        correlation_id = str(uuid.uuid4())
        log.exception("serve_usage is misconfigured; correlation id %s", correlation_id)
        return to_azure_response(internal_error_response(correlation_id))
    return to_azure_response(handle_with_key(request, store, settings))
