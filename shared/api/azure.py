"""Adapters between ``azure.functions`` HTTP types and the API's own request and response."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from shared.api.messages import Request, Response, strip_prefix

ROUTE_PARAM = "route"  # the catch-all route parameter of serve_usage/function.json: "{*route}"


def from_azure_request(req: func.HttpRequest, *, route_prefix: str = "api") -> Request:
    """The API request: path from the catch-all route parameter, every repeated query value kept."""
    parts = urlsplit(req.url or "")
    if ROUTE_PARAM in req.route_params:
        path = req.route_params[ROUTE_PARAM] or ""
    else:
        path = strip_prefix(unquote(parts.path), route_prefix)
    # req.params keeps one value per name; the URL keeps them all, so a repeated parameter can be refused.
    query = parse_qsl(parts.query, keep_blank_values=True) if parts.query else list(req.params.items())
    return Request.build(req.method, path, query=query, headers=dict(req.headers))


def to_azure_response(response: Response) -> func.HttpResponse:
    """The platform response; Content-Type travels in the headers."""
    content_type = response.headers.get("Content-Type", "application/octet-stream")
    return func.HttpResponse(
        body=response.body,
        status_code=response.status,
        headers=dict(response.headers),
        mimetype=content_type.split(";")[0].strip(),
        charset="utf-8",
    )
