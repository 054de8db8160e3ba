"""``python -m devhost serve``: every HTTP-triggered function of the app on loopback, as the Functions host does.

Routes come from each folder's function.json (``route`` template, ``methods``, ``authLevel``) under the
``routePrefix`` of host.json (``api`` by default). Function-level auth as in Azure: the key (app setting
``LOCAL_FUNCTION_KEY``) in the ``x-functions-key`` header or the ``code`` query parameter, else 401.
The folder's ``main`` is imported as Azure imports it and called with a real ``azure.functions.HttpRequest``.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from devhost.funcapp import REPO_ROOT, FunctionSpec, discover, load_main

log = logging.getLogger("devhost.serve")

MAX_BODY_BYTES = 10 * 1024 * 1024
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
}
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)[^}]*)?(\??)\}")


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP function's route: a compiled template, its methods and auth level."""

    spec: FunctionSpec
    template: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]  # route parameter names, in group order
    methods: frozenset[str] | None  # None: every method
    auth_level: str
    literals: int  # literal segments, for ordering (more specific first)
    catch_all: bool

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Route parameters when method and path fit."""
        if self.methods is not None and method not in self.methods:
            return None
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: found.group(f"p{i}") or "" for i, name in enumerate(self.names)}


def compile_route(spec: FunctionSpec) -> HttpRoute:
    """``v1/items/{id:int}/{*rest}`` -> a regex over the path after the route prefix."""
    template = str(spec.trigger.get("route") or spec.name).strip("/")
    pieces: list[str] = []
    names: list[str] = []
    literals = 0
    catch_all = False
    segments = template.split("/") if template else []
    for index, segment in enumerate(segments):
        slash = "/" if index else ""
        whole = _PARAM.fullmatch(segment)
        if whole is None:
            if "{" in segment:
                raise ValueError(f"{spec.name}: unsupported route segment {segment!r}")
            pieces.append(re.escape(slash + segment))
            literals += 1
            continue
        star, name, constraint, optional = whole.groups()
        group = f"p{len(names)}"
        names.append(name)
        if star:
            if index != len(segments) - 1:
                raise ValueError(f"{spec.name}: a catch-all parameter must be the last segment")
            catch_all = True
            pieces.append(f"(?:{re.escape(slash)}(?P<{group}>.*))?" if slash else f"(?P<{group}>.*)")
        else:
            value = _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
            piece = f"{re.escape(slash)}(?P<{group}>{value})"
            pieces.append(f"(?:{piece})?" if optional else piece)
    methods = spec.trigger.get("methods")
    return HttpRoute(
        spec=spec,
        template=template,
        pattern=re.compile("".join(pieces), re.IGNORECASE | re.DOTALL),
        names=tuple(names),
        methods=frozenset(m.upper() for m in methods) if methods else None,
        auth_level=str(spec.trigger.get("authLevel", "function")).lower(),
        literals=literals,
        catch_all=catch_all,
    )


def route_prefix(root: Path) -> str:
    """``extensions.http.routePrefix`` of host.json, ``api`` when absent."""
    try:
        host = json.loads((root / "host.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "api"
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


class FunctionHost:
    """The HTTP functions of one app root, their entry points and the local function key."""

    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        self.prefix = route_prefix(root)
        self.key = env.get("LOCAL_FUNCTION_KEY", "")
        specs = [s for s in discover(root) if s.trigger_type == "httpTrigger" and not s.disabled]
        routes = [compile_route(s) for s in specs]
        # Literal routes before parameterised ones, catch-alls last: the most specific template wins.
        self.routes = sorted(routes, key=lambda r: (r.catch_all, -r.literals, r.template))
        self._mains: dict[str, Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def entry(self, spec: FunctionSpec) -> Callable[..., Any]:
        """The folder's ``main``, imported once."""
        with self._lock:
            if spec.name not in self._mains:
                self._mains[spec.name] = load_main(spec)
            return self._mains[spec.name]

    def find(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The route for a decoded request path (with the prefix), or None."""
        path = path.lstrip("/")
        if self.prefix:
            head, _, rest = path.partition("/")
            if head.lower() != self.prefix.lower():
                return None
            path = rest
        for route in self.routes:
            found = route.match(method, path.rstrip("/") if route.template else path)
            if found is not None:
                return route, found
        return None

    def authorised(self, route: HttpRoute, headers: Mapping[str, str], query: list[tuple[str, str]]) -> bool:
        """Anonymous, or the local function key in ``x-functions-key`` or ``code``."""
        if route.auth_level == "anonymous":
            return True
        if not self.key:
            return False
        given = headers.get("x-functions-key") or next((v for k, v in query if k == "code"), "")
        return hmac.compare_digest(given.encode("utf-8"), self.key.encode("utf-8"))


def _respond_from(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    if isinstance(result, func.HttpResponse):
        headers = list(result.headers.items())
        if not any(k.lower() == "content-type" for k, _ in headers):
            charset = f"; charset={result.charset}" if result.mimetype.startswith("text/") else ""
            headers.append(("Content-Type", result.mimetype + charset))
        return result.status_code, headers, result.get_body()
    if result is None:
        return 204, [], b""
    body = result.encode("utf-8") if isinstance(result, str) else bytes(result)
    return 200, [("Content-Type", "text/plain; charset=utf-8")], body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "devhost"
    timeout = 60
    host: FunctionHost  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _dispatch(self) -> None:
        started = time.perf_counter()
        target = urlsplit(self.path)
        query = parse_qsl(target.query, keep_blank_values=True)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._send(411, [], b"")
            return
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send(413 if length > 0 else 400, [], b"")
            return
        body = self.rfile.read(length) if length else b""
        found = self.host.find(self.command, unquote(target.path))
        if found is None:
            self._send(404, [], b"")
            return
        route, route_params = found
        if not self.host.authorised(route, headers, query):
            self._send(401, [], b"")
            log.info("%s %s -> 401 (function key missing or wrong)", self.command, target.path)
            return
        bound = cast(tuple[str, int], self.server.server_address)
        address = headers.get("host") or f"{bound[0]}:{bound[1]}"
        request = func.HttpRequest(
            method=self.command,
            url=f"http://{address}{self.path}",
            headers=headers,
            params=dict(reversed(query)),  # one value per name, the first given, as the platform passes it
            route_params=route_params,
            body=body,
        )
        try:
            result = self.host.entry(route.spec)(**{str(route.spec.trigger["name"]): request})
            status, response_headers, response_body = _respond_from(result)
        except Exception:
            log.exception("%s failed", route.spec.name)
            status, response_headers, response_body = 500, [], b""
        self._send(status, response_headers, response_body)
        log.info(
            "%s %s -> %d (%s, %.0f ms)",
            self.command,
            target.path,
            status,
            route.spec.name,
            (time.perf_counter() - started) * 1000,
        )

    def __getattr__(self, name: str) -> Any:
        # Every method reaches the functions, as in Azure (http.server would answer 501 for unknown ones).
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)


class DevServer:
    """A running local host: ``port``, ``url`` (with the route prefix), ``shutdown()``."""

    def __init__(self, httpd: ThreadingHTTPServer, host: FunctionHost) -> None:
        self._httpd = httpd
        self.host = host
        address, self.port = cast(tuple[str, int], httpd.server_address)[:2]
        self.url = f"http://{address}:{self.port}/{host.prefix}".rstrip("/")
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name=f"devhost-{self.port}", daemon=True
        )
        self._thread.start()

    def wait(self, stop: threading.Event | None = None) -> None:
        """Block until ``stop`` is set (or forever), waking often enough for Ctrl-C."""
        while self._thread.is_alive() and not (stop and stop.is_set()):
            self._thread.join(timeout=0.5)

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def make_server(
    host: str = "127.0.0.1", port: int = 0, env: Mapping[str, str] | None = None, *, root: Path = REPO_ROOT
) -> DevServer:
    """Bind (port 0: a free port), start serving on a background thread, return the running server.

    ``env`` holds the app settings. Function code reads settings from the environment, as it does in Azure,
    so settings given in a mapping other than ``os.environ`` are copied into it first.
    """
    env = os.environ if env is None else env
    if env is not os.environ:
        os.environ.update({k: v for k, v in env.items() if isinstance(v, str)})
    function_host = FunctionHost(root, env)
    if not function_host.key and any(r.auth_level != "anonymous" for r in function_host.routes):
        log.warning("LOCAL_FUNCTION_KEY is not set: every function-level route answers 401")
    handler = type("Handler", (_Handler,), {"host": function_host})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    return DevServer(httpd, function_host)


def serve(
    host: str = "127.0.0.1",
    port: int = 7071,
    env: Mapping[str, str] = os.environ,
    ready: threading.Event | None = None,
    *,
    stop: threading.Event | None = None,
) -> None:
    """Serve until Ctrl-C (or ``stop``); sets ``ready`` once the port accepts connections."""
    server = make_server(host, port, env)
    for route in server.host.routes:
        methods = ",".join(sorted(route.methods)) if route.methods else "any method"
        log.info("%s: %s/%s (%s, auth %s)", route.spec.name, server.url, route.template, methods, route.auth_level)
    if ready is not None:
        ready.set()
    try:
        server.wait(stop)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
