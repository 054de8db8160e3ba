"""``handle``: find the declared route, check and parse its parameters, guard the caller's access, negotiate JSON
or CSV, add validators and ``Vary``, and turn every failure into Partner Center's error shape."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from werkzeug.http import http_date

from shared.api import csv_format, etag, params, rendering
from shared.api.context import Content, Context
from shared.api.errors import (
    CODE_METHOD_NOT_ALLOWED,
    ApiError,
    bad_request,
    error_response,
    internal_error_response,
    no_such_route,
    not_found,
)
from shared.api.messages import CSV_TYPE, JSON_TYPE, Request, Response
from shared.api.routes import ROUTES, Route
from shared.api.scope import Scope
from shared.settings import Settings
from shared.table_store import TableStore

log = logging.getLogger(__name__)

ALLOWED_METHODS = "GET"


def resolve(path: str) -> tuple[Route, dict[str, str]]:
    """The route of a path (relative to the API root), with its path parameters as written; 404 when none fits."""
    segments = path.strip("/").split("/")
    for route in ROUTES:
        found = route.match(segments)
        if found is not None:
            return route, found
    raise no_such_route()


def vary(*groups: Iterable[str]) -> str:
    """One ``Vary`` value naming each header once, in the order first given."""
    names: dict[str, str] = {}
    for group in groups:
        for name in group:
            for part in name.split(","):
                part = part.strip()
                if part:
                    names.setdefault(part.lower(), part)
    return ", ".join(names.values())


def _check_query(request: Request, route: Route) -> dict[str, Any]:
    """Every declared query parameter parsed (its default when absent); 400 naming any it does not declare."""
    undeclared = sorted(name for name in request.query if name not in route.accepted)
    if undeclared:
        shown = ", ".join(repr(name[:40]) for name in undeclared[:5])
        accepted = ", ".join(sorted(route.accepted - {params.FUNCTION_KEY})) or "none"
        raise bad_request(f"Unknown query parameter {shown} for this route; it accepts: {accepted}.")
    parsed = {}
    for parameter in route.query:
        value = params.single(request, parameter.name)
        parsed[parameter.name] = parameter.default if value is None else parameter.parse(value)
    return parsed


def _path_ids(route: Route, found: Mapping[str, str]) -> dict[str, str]:
    """The path ids, checked (400 for a malformed one) and lower-cased."""
    return {p.name: p.parse(found[p.name]) for p in route.path_params}


def _continuation(request: Request, route: Route) -> str | None:
    """The token of a next-page call: ``seek_operation=Next`` with the header, or the query parameter (which wins).

    A next-page call without a token names no page: 404, like a token that is not one of this resource's.
    """
    if not route.paged:
        return None
    seek = params.SEEK_OPERATION.parse(value) if (value := params.single(request, "seek_operation")) else None
    in_query = params.single(request, params.CONTINUATION_TOKEN.name)
    in_header = (request.header(rendering.CONTINUATION_HEADER) or "").strip() or None
    token = in_query or (in_header if seek else None)
    if seek and token is None:
        raise not_found(
            "seek_operation=Next continues from the MS-ContinuationToken header of the previous page; without it "
            "there is no page to serve. Start again from page 1."
        )
    return token


def wants_csv(request: Request, route: Route) -> bool:
    """``?format=csv|json`` wins; otherwise the Accept header decides."""
    value = params.single(request, params.FORMAT.name)
    fmt = None if value is None else params.FORMAT.parse(value)
    if fmt == "csv" and route.csv_columns is None:
        raise bad_request("format=csv is not offered on this route; see /api/openapi.json for the routes that do.")
    if fmt is not None:
        return bool(fmt == "csv")
    return route.csv_columns is not None and params.accepts_csv(request.header("accept"))


def _render(request: Request, route: Route, content: Content, csv: bool) -> Response:
    columns = content.csv_columns or route.csv_columns
    if csv and content.csv_raws is not None and columns is not None:
        body, media = csv_format.to_csv(content.csv_raws, columns), CSV_TYPE
    else:
        body, media = content.json_body, JSON_TYPE
    headers = {"Cache-Control": "private, no-cache", **content.headers}
    if route.csv_columns is not None:
        headers["Vary"] = "Accept"
    if content.status != 200:
        return Response(status=content.status, headers={"Content-Type": media, **headers}, body=body)
    tag = etag.etag_of(body)
    headers["ETag"] = tag
    if content.last_modified is not None:
        headers["Last-Modified"] = http_date(content.last_modified)
    if_none_match = request.header("if-none-match")
    if etag.matches(if_none_match, tag) or (
        if_none_match is None and etag.not_modified_since(request.header("if-modified-since"), content.last_modified)
    ):
        return Response(status=304, headers=headers)
    return Response(status=200, headers={"Content-Type": media, **headers}, body=body)


def handle(
    request: Request,
    store: TableStore,
    settings: Settings,
    now: datetime | None = None,
    scope: Scope | None = None,
) -> Response:
    """Answer one request within ``scope`` (default: the function key's). Bad input is a 4xx; an unexpected
    failure is a 500 with only a correlation id."""
    started = time.perf_counter()
    route_name = "-"
    try:
        route, found = resolve(request.path)
        route_name = route.name
        if request.method != "GET":
            raise ApiError(
                405,
                CODE_METHOD_NOT_ALLOWED,
                f"Method {request.method[:20]} is not allowed here; use GET.",
                headers={"Allow": ALLOWED_METHODS},
            )
        scope = scope or Scope.everything()
        path = _path_ids(route, found)
        query = _check_query(request, route)
        csv = wants_csv(request, route)
        continuation = _continuation(request, route)
        scope.guard(route, path)
        moment = now or datetime.now(timezone.utc)
        context = Context(request, path, store, settings, moment, scope, query, continuation)
        response = _render(request, route, route.handler(context), csv)
    except ApiError as error:
        response = error_response(error)
    except Exception:
        correlation_id = str(uuid.uuid4())
        log.exception("api %s failed; correlation id %s", route_name, correlation_id)
        response = internal_error_response(correlation_id)
    log.info(
        "api %s %s -> %d in %.1f ms",
        request.method[:20],
        route_name,
        response.status,
        (time.perf_counter() - started) * 1000,
    )
    return response
