"""The simulator's loopback HTTP server: Partner Center, the token endpoint and a small admin API."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from devhost.simulator import consent, invoices, wire
from devhost.simulator.auth import APP_GRAPH, APP_USER, Credentials, TokenStore
from devhost.simulator.faults import Fault, FaultSet
from devhost.simulator.graph import EXPORT_KINDS, GraphExports
from devhost.simulator.graph import error_reply as graph_error
from devhost.simulator.portal import PortalIssuer
from devhost.simulator.world import UtilizationQuery, World, WorldConfig, epoch_us, stable_guid

log = logging.getLogger("devhost.simulator")

MAX_PAGE_SIZE = 1000
NOT_READY_RETRY_AFTER = "1"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookups (keys are stored lower-case)."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        for key, value in dict(items).items() if isinstance(items, dict) else items:
            super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """A request the simulator answered (admin requests are not recorded).

    `path` is the request target as sent, query string included (like `BaseHTTPRequestHandler.path`);
    `url_path` is the path alone and `query` the parsed query string. `status` is 0 for a dropped connection.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: str
    status: int = 0
    time: float = 0.0
    url_path: str = ""


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    pc: bool = True  # echo MS-RequestId/MS-CorrelationId/MS-CV
    cut_at: int | None = None  # send this many bytes of the body (with the full Content-Length), then drop


def _json(status: int, obj: Any, *, bom: bool = True, headers: list[tuple[str, str]] | None = None) -> _Response:
    hdrs = [("Content-Type", wire.JSON_CONTENT_TYPE), *(headers or [])]
    return _Response(status, wire.json_body(obj, bom=bom), hdrs)


def _pc_error(status: int, body: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> _Response:
    return _json(status, body, headers=headers)


def _bad_request(description: str) -> _Response:
    return _pc_error(400, wire.pc_error("InvalidArgument", description))


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _route(path: str) -> tuple[str, dict[str, str]]:
    """Name of the route a path addresses, and its path parameters."""
    seg = [s for s in path.split("/") if s]
    low = [s.lower() for s in seg]
    if len(seg) == 4 and low[1:] == ["oauth2", "v2.0", "token"]:
        return "token", {"tenant": seg[0]}
    if (consent_route := consent.route(seg)) is not None:  # OpenID discovery and authorize (tools/consent.py)
        return consent_route
    if len(seg) == 4 and low[1:] == ["discovery", "v2.0", "keys"]:
        return "jwks", {"tenant": seg[0]}
    if low[:1] == ["blobs"]:
        return "graph_blob", {}
    if low[:5] == ["graph", "v1.0", "reports", "partners", "billing"]:
        rest = low[5:]
        if len(rest) == 3 and rest[2] == "export" and f"{rest[0]}/{rest[1]}" in EXPORT_KINDS:
            return "graph_export", {"kind": f"{rest[0]}/{rest[1]}"}
        if len(rest) == 2 and rest[0] in ("operations", "manifests"):
            return f"graph_{rest[0][:-1]}", {"id": seg[6]}
        return "graph_unknown", {}
    if low == ["v1", "ratecards", "azure"]:
        return "ratecard", {}
    if low[:2] == ["v1", "invoices"] and len(seg) <= 3:
        return ("invoices", {}) if len(seg) == 2 else ("invoice", {"id": seg[2]})
    if not low or low[0] != "v1" or len(low) < 2 or low[1] != "customers":
        return "unknown", {}
    if len(seg) == 2:
        return "customers", {}
    if len(seg) == 3:
        return ("usagerecords", {}) if low[2] == "usagerecords" else ("customer", {"cid": seg[2]})
    if low[3] != "subscriptions":
        return "unknown", {}
    params = {"cid": seg[2]}
    if len(seg) == 4:
        return "subscriptions", params
    params["sid"] = seg[4]
    if len(seg) == 5:
        return "subscription", params
    if len(seg) == 6 and low[5] == "usagesummary":
        return "usagesummary", params
    if len(seg) == 7 and low[5:] == ["utilizations", "azure"]:
        return "utilizations", params
    return "unknown", {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open (keep-alive) connection, so a stopped simulator really is gone."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can stall for seconds on hosts without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        log.exception("simulator: unhandled error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    disable_nagle_algorithm = True
    timeout = 300
    server: _Server

    def version_string(self) -> str:
        """The Server header."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no stderr line per request."""

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_GET

    def _handle(self) -> None:
        sim = self.server.sim
        length = self.headers.get("Content-Length", "0").strip()
        raw = self.rfile.read(int(length)) if length.isdigit() and int(length) > 0 else b""
        split = urlsplit(self.path)
        headers = Headers(self.headers.items())
        if split.path == "/_sim" or split.path.startswith("/_sim/"):
            self._write(sim._admin(self.command, split.path, raw), headers)
            return
        record = RecordedRequest(
            method=self.command,
            path=self.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            body=raw.decode("utf-8", "replace"),
            time=time.time(),
            url_path=split.path,
        )
        route, response = sim._serve(record)
        record.status = 0 if response.drop else response.status
        sim._record(record, route)
        if response.drop:
            self._hang_up()
            return
        self._write(response, headers)

    def _hang_up(self) -> None:
        """Drop the connection, as a reset on the network does."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, response: _Response, request_headers: Headers) -> None:
        self.send_response(response.status)
        if response.pc:
            request_id = request_headers.get("MS-RequestId") or str(uuid.uuid4())
            correlation_id = request_headers.get("MS-CorrelationId") or str(uuid.uuid4())
            cv = request_headers.get("MS-CV")
            cv = f"{cv}.1" if cv else base64.b64encode(os.urandom(12)).decode()[:16] + ".0"
            self.send_header("MS-RequestId", request_id)
            self.send_header("MS-CorrelationId", correlation_id)
            self.send_header("MS-CV", cv)
        for key, value in response.headers:
            self.send_header(key, value)
        if response.status != 204:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.cut_at is not None:  # a connection reset mid-body, as a flaky network does
            self.wfile.write(response.body[: response.cut_at])
            self.wfile.flush()
            self._hang_up()
            return
        if response.body and response.status != 204 and self.command != "HEAD":
            self.wfile.write(response.body)


class Simulator:
    """A Partner Center simulator on a loopback port; usable as a context manager."""

    def __init__(
        self,
        world: WorldConfig | None = None,
        latency_ms: float = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_recorded: int = 100_000,
        blob_connection_string: str | None = None,
    ) -> None:
        self.config = world or WorldConfig()
        self.world = World(self.config)
        seed = self.config.seed
        digest = hashlib.sha256(f"{seed}|simulator-credentials".encode()).hexdigest()
        self.tenant_id = self.world.tenant_id
        self.client_id = stable_guid(seed, "client-app")
        self.client_secret = f"sim~{digest[:34]}"
        self.initial_refresh_token = f"0.AS{digest[34:]}"
        self.tokens = TokenStore(
            Credentials(self.tenant_id, self.client_id, self.client_secret, self.initial_refresh_token),
            self.config.token_lifetime_s,
        )
        self.faults = FaultSet()
        # What the admin API changed about the invoices (devhost.simulator.invoices): the billed exports' too.
        self.invoice_state = invoices.InvoiceState()
        # The Graph billing export; its blobs go to the Azurite blob service of ``blob_connection_string``.
        self.graph = GraphExports(self.world, lambda: self.base_url, blob_connection_string, self.invoice_state)
        self.world.billing_options = self.graph.options  # usage summaries and records add up the export's lines
        # Entra ID for the portal applications that call the usage API with tokens.
        self.portal = PortalIssuer(seed, self.tenant_id, lambda: self.base_url)
        self.requests: list[RecordedRequest] = []
        self.max_recorded = max_recorded
        self._host, self._port = host, port
        self._latency_s = max(0.0, latency_ms / 1000)
        self._codec = wire.TokenCodec(hashlib.sha256(f"{seed}|continuation".encode()).digest())
        self._lock = threading.Lock()
        self._routes: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind the port and serve on a background thread."""
        if self._server is not None:
            return self
        self._server = _Server((self._host, self._port), self)
        self._port = self._server.server_port  # a restart after stop() reuses the same port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="pc-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (known once started; kept after stop)."""
        if self._port == 0:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Partner Center base URL; the client calls f"{base_url}/v1/..."."""
        return f"http://{self._host}:{self.port}"

    @property
    def authority(self) -> str:
        """Token authority; the token URL is f"{authority}/{tenant}/oauth2/v2.0/token"."""
        return self.base_url

    @property
    def token_url(self) -> str:
        """The token endpoint of the simulated partner tenant."""
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"

    # ----- steering ---------------------------------------------------------------------------------

    def app_settings(self) -> dict[str, str]:
        """The Partner Center app settings that point the function app at this simulator."""
        return {
            "PARTNER_CENTER_BASE_URL": self.base_url,
            "PARTNER_CENTER_AUTHORITY": self.authority,
            "PARTNER_CENTER_TENANT_ID": self.tenant_id,
            "PARTNER_CENTER_CLIENT_ID": self.client_id,
            "PARTNER_CENTER_CLIENT_SECRET": self.client_secret,
            "PARTNER_CENTER_REFRESH_TOKEN": self.initial_refresh_token,
            "GRAPH_BASE_URL": self.graph_base_url,
            "GRAPH_AUTHORITY": self.authority,
        }

    @property
    def graph_base_url(self) -> str:
        """Microsoft Graph base URL; the billing export is f"{graph_base_url}/v1.0/reports/partners/billing"."""
        return f"{self.base_url}/graph"

    def set_latency(self, ms: float) -> None:
        """Delay every API response (not admin) by `ms` milliseconds from now on."""
        self._latency_s = max(0.0, ms / 1000)

    def calls(self, path_regex: str) -> int:
        """How many recorded requests have a target (path and query, as sent or percent-decoded) matching the regex."""
        pattern = re.compile(path_regex)
        return sum(1 for r in list(self.requests) if pattern.search(r.path) or pattern.search(unquote(r.path)))

    def expire_access_tokens(self) -> None:
        """Invalidate every access token issued so far."""
        self.tokens.expire_access_tokens()

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token (the 90-day inactivity expiry): the next exchange gets invalid_grant."""
        self.tokens.revoke_refresh_tokens()

    def stats(self) -> dict[str, Any]:
        """Request counts by route and by status since start (or the last reset)."""
        with self._lock:
            return {
                "total": sum(self._routes.values()),
                "routes": dict(self._routes),
                "statuses": dict(self._statuses),
            }

    def reset_stats(self) -> None:
        """Zero the counters and forget recorded requests."""
        with self._lock:
            self._routes.clear()
            self._statuses.clear()
            self.requests.clear()

    def info(self) -> dict[str, Any]:
        """Connection settings a client needs (fake simulator credentials)."""
        return {
            "base_url": self.base_url,
            "authority": self.authority,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.initial_refresh_token,
        }

    def _record(self, record: RecordedRequest, route: str) -> None:
        with self._lock:
            self._routes[route] += 1
            self._statuses[str(record.status)] += 1
            self.requests.append(record)
            if self.max_recorded and len(self.requests) > self.max_recorded:
                del self.requests[: len(self.requests) - self.max_recorded // 2]

    # ----- admin API --------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, raw: bytes) -> _Response:
        def ok(obj: Any, status: int = 200) -> _Response:
            response = _json(status, obj, bom=False)
            response.pc = False
            return response

        try:
            payload = json.loads(raw.decode("utf-8-sig")) if raw.strip() else None
        except ValueError:
            return ok({"error": "body is not JSON"}, 400)
        try:
            if path == "/_sim/faults":
                if method == "GET":
                    return ok([f.to_json() for f in self.faults.list()])
                if method == "DELETE":
                    self.faults.clear()
                    return ok({"faults": 0})
                if method == "POST":
                    items: list[Any] = payload if isinstance(payload, list) else [payload]
                    for item in [Fault.from_json(dict(i)) for i in items]:
                        self.faults.add(item)
                    return ok({"faults": len(self.faults)}, 201)
            elif path == "/_sim/stats":
                if method == "GET":
                    return ok({**self.stats(), "faults": [f.to_json() for f in self.faults.list()]})
                if method == "DELETE":
                    self.reset_stats()
                    return ok(self.stats())
            elif path == "/_sim/latency" and method == "POST":
                self.set_latency(float((payload or {}).get("ms", 0)))
                return ok({"latency_ms": self._latency_s * 1000})
            elif path == "/_sim/now" and method == "POST":
                self.world.set_now(_parse_time((payload or {}).get("now")))
                return ok({"now": self.world.now().isoformat()})
            elif path == "/_sim/tokens/expire" and method == "POST":
                self.expire_access_tokens()
                return ok({"expired": True})
            elif path == "/_sim/tokens/revoke" and method == "POST":
                self.revoke_refresh_tokens()
                return ok({"revoked": True})
            elif path == "/_sim/portal/roll" and method == "POST":
                return ok({"kid": self.portal.roll(drop_old=bool((payload or {}).get("dropOld")))})
            elif path == "/_sim/portal" and method == "GET":
                apps = {
                    name: {"client_id": a.client_id, "tenant_id": a.tenant_id} for name, a in self.portal.apps.items()
                }
                return ok({"scope": self.portal.scope, "audience": self.portal.api_client_id, "apps": apps})
            elif path == "/_sim/graph":
                if method == "POST":
                    return ok(self.graph.configure(dict(payload or {})))
                return ok(self.graph.state())
            elif path == "/_sim/ratecard":
                return ok(self._admin_rate_card(method, payload))
            elif path == "/_sim/invoices":
                if method == "POST":
                    if not isinstance(payload, dict):
                        raise ValueError('send {"mismatch"?, "amend"?, "billedRerate"?}')
                    return ok(invoices.configure(self.world, self.invoice_state, payload))
                if method == "GET":
                    return ok(invoices.describe(self.world, self.invoice_state))
            elif path == "/_sim/info" and method == "GET":
                return ok({**self.info(), "now": self.world.now().isoformat()})
        except (TypeError, ValueError, AttributeError) as exc:
            return ok({"error": str(exc)}, 400)
        return ok({"error": f"no admin route {method} {path}"}, 404)

    def _admin_rate_card(self, method: str, payload: Any) -> dict[str, Any]:
        """POST {"priceFactor": "1.1", "effectiveDate": "YYYY-MM-DD" (default today, UTC)} changes every price
        from that day on (a new dated card); DELETE restores the list prices; GET shows the changes."""
        if method == "POST":
            body = dict(payload or {})
            if set(body) - {"priceFactor", "effectiveDate"} or "priceFactor" not in body:
                raise ValueError("send {priceFactor, effectiveDate?}")
            effective = body.get("effectiveDate")
            day = date.fromisoformat(str(effective)[:10]) if effective else None
            try:
                factor = Decimal(str(body["priceFactor"]))
            except ArithmeticError:
                raise ValueError("priceFactor must be a number") from None
            self.world.set_rate_card_factor(factor, day)
        elif method == "DELETE":
            self.world.reset_rate_card()
        elif method != "GET":
            raise ValueError(f"{method} is not supported on /_sim/ratecard")
        changes = self.world.rate_card_changes()
        return {"priceChanges": [{"effectiveDate": d.isoformat(), "priceFactor": f} for d, f in changes]}

    # ----- Partner Center API ----------------------------------------------------------------------

    def _serve(self, request: RecordedRequest) -> tuple[str, _Response]:
        route, params = _route(request.url_path)
        if self._latency_s:
            time.sleep(self._latency_s)
        fault = self.faults.pick(request.method, request.path)
        if fault is not None:
            if fault.kind != "slow":
                return route, self._fault_response(fault)
            time.sleep(fault.delay_s)
        try:
            return route, self._dispatch(route, params, request)
        except Exception:  # a simulator bug must still answer like the service would
            log.exception("simulator: error answering %s %s", request.method, request.path)
            return route, _pc_error(500, wire.UNEXPECTED_ERROR)

    @staticmethod
    def _fault_response(fault: Fault) -> _Response:
        retry_after = ("Retry-After", str(fault.retry_after))
        if fault.kind == "429":
            message = f"Rate limit is exceeded. Try again in {fault.retry_after} seconds."
            return _json(429, {"statusCode": 429, "message": message}, headers=[retry_after])
        if fault.kind == "500":
            return _pc_error(500, wire.UNEXPECTED_ERROR)
        if fault.kind == "503":
            body = wire.pc_error("ServiceUnavailable", "The service is temporarily unavailable. Retry later.")
            return _pc_error(503, body, [retry_after])
        if fault.kind == "204":
            return _Response(204, headers=[retry_after])
        if fault.kind == "drop":
            return _Response(0, drop=True)
        status = fault.status or 400
        if isinstance(fault.body, str):
            kind = "text/html; charset=utf-8" if fault.body.lstrip().startswith("<") else wire.JSON_CONTENT_TYPE
            return _Response(status, fault.body.encode("utf-8"), [("Content-Type", kind)])
        defaults = {
            400: wire.NO_USAGE_DATA,
            401: wire.MISSING_TOKEN,
            403: wire.NO_RELATIONSHIP,
            404: wire.SUBSCRIPTION_NOT_FOUND,
            500: wire.UNEXPECTED_ERROR,
        }
        body = fault.body if fault.body is not None else defaults.get(status, wire.pc_error(status, "Simulated error"))
        return _pc_error(status, body)

    def _dispatch(self, route: str, params: dict[str, str], request: RecordedRequest) -> _Response:
        if route == "token":
            if request.method != "POST":
                return _json(405, {"error": "invalid_request", "error_description": "Use POST"}, bom=False)
            form = {k: v[0] for k, v in parse_qs(request.body, keep_blank_values=True).items()}
            if self.portal.wants(form):  # a portal application's token for the usage API (devhost.simulator.portal)
                status, body = self.portal.issue(params["tenant"], form)
            else:
                status, body = self.tokens.exchange(params["tenant"], form)
            return _json(status, body, bom=False, headers=[("Cache-Control", "no-store, no-cache")])
        if route == "jwks":
            response = _json(200, self.portal.jwks(), bom=False)
            response.pc = False
            return response
        if route in consent.ROUTES:
            reply = consent.answer(self.tokens, route, params, request.query, request.headers)
            return _Response(reply.status, reply.body, reply.headers, pc=False)
        if route.startswith("graph_"):
            return self._graph(route, params, request)
        if route == "unknown":
            return _pc_error(404, wire.pc_error(404, "The requested resource was not found"))
        if request.method not in ("GET", "HEAD"):
            return _pc_error(405, wire.pc_error("MethodNotAllowed", f"{request.method} is not supported here"))
        kind = self.tokens.kind_of(request.headers.get("Authorization"))
        if kind is None or kind == APP_GRAPH:  # a Graph token is the wrong audience here
            return _pc_error(401, wire.MISSING_TOKEN, [("WWW-Authenticate", "Bearer")])
        if route in ("usagerecords", "usagesummary") and kind != APP_USER:
            return _pc_error(403, wire.APP_USER_REQUIRED)
        if route == "customers":
            return self._customers(request)
        if route == "ratecard":
            return self._rate_card(request)
        if route in ("invoices", "invoice"):
            return self._invoices(request, params.get("id"))
        if route == "usagerecords":
            return self._usage_records(request)
        customer = self.world.find_customer(params["cid"])
        if customer is None:
            return _pc_error(404, wire.SUBSCRIPTION_NOT_FOUND)
        if customer.forbidden:
            return _pc_error(403, wire.NO_RELATIONSHIP)
        if route == "customer":
            return _json(200, self.world.customer_json(customer))
        if route == "subscriptions":
            items = [s.raw for s in self.world.subscriptions(customer.id)]
            return _json(200, self._collection(items, f"customers/{customer.id}/subscriptions"))
        sub = self.world.find_subscription(customer.id, params["sid"])
        if sub is None:
            return _pc_error(404, wire.SUBSCRIPTION_NOT_FOUND)
        if route == "subscription":
            return _json(200, self.world.subscription_json(sub))
        if route == "usagesummary":
            if sub.kind == "licence":
                return _pc_error(404, wire.SUBSCRIPTION_NOT_FOUND)
            summary = self.world.usage_summary(customer.id, sub.id)
            if self.config.wrap_summary:
                uri = f"customers/{customer.id}/subscriptions/{sub.id}/usagesummary"
                return _json(200, self._collection([summary], uri))
            return _json(200, summary)
        if sub.kind != "legacy":
            return _pc_error(404, wire.SUBSCRIPTION_NOT_FOUND)
        return self._utilizations(request, customer.id, sub.id)

    def _graph(self, route: str, params: dict[str, str], request: RecordedRequest) -> _Response:
        """The Graph billing export (devhost.simulator.graph); blobs read through the simulator when cut."""
        if route == "graph_blob":
            reply = self.graph.blob_through(request.path, dict(request.headers))
        elif self.tokens.kind_of(request.headers.get("Authorization")) != APP_GRAPH:
            reply = graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        elif route == "graph_export" and request.method == "POST":
            reply = self.graph.start(params["kind"], request.body)
        elif route == "graph_operation" and request.method == "GET":
            reply = self.graph.operation(params["id"])
        elif route == "graph_manifest" and request.method == "GET":
            reply = self.graph.manifest(params["id"])
        else:
            reply = graph_error(404, "UnknownError", f"No route {request.method} {request.url_path}")
        headers = [("request-id", str(uuid.uuid4())), *reply.headers]
        if reply.raw is not None:
            response = _Response(reply.status, reply.raw, [("Content-Type", "application/octet-stream"), *headers])
            response.cut_at = reply.cut_at
        elif reply.body is None:
            response = _Response(reply.status, b"", headers)
        else:
            response = _json(reply.status, reply.body, bom=False, headers=headers)
        response.pc = False
        return response

    @staticmethod
    def _collection(items: list[Any], self_uri: str) -> dict[str, Any]:
        links: dict[str, Any] = {"self": wire.link(self_uri)}
        return {"totalCount": len(items), "items": items, "links": links, "attributes": {"objectType": "Collection"}}

    def _continuation(self, request: RecordedRequest, kind: str) -> dict[str, Any] | None:
        payload = self._codec.decode(request.headers.get("MS-ContinuationToken"))
        return payload if payload is not None and payload.get("k") == kind else None

    @staticmethod
    def _is_next(request: RecordedRequest) -> bool:
        return any(v.lower() == "next" for v in request.query.get("seek_operation", []))

    def _page_of(self, request: RecordedRequest, kind: str, default_size: int) -> tuple[int, int] | _Response:
        """(offset, size) of a page of a collection: ``?size=`` (else ``default_size``) on the first page, the
        continuation token's on a ``seek_operation=Next``; a 400 for a bad size or token."""
        if self._is_next(request):
            payload = self._continuation(request, kind)
            if payload is None:
                return _bad_request("Invalid or missing MS-ContinuationToken")
            return int(payload["o"]), int(payload["z"])
        raw = request.query.get("size", [""])[0]
        if raw and (not raw.isdigit() or int(raw) < 1):
            return _bad_request("size must be a positive integer")
        return 0, int(raw) if raw else default_size

    def _page(self, items: list[Any], kind: str, size: int, end: int, total: int) -> _Response:
        """A page of a collection ``kind`` (its path) ending at ``end`` of ``total``: ``links.next`` and
        ``continuationToken`` carry the next page's offset and size."""
        body = self._collection(items, f"{kind}?size={size}")
        if end < total:
            token = self._codec.encode({"k": kind, "o": end, "z": size})
            body["links"]["next"] = wire.link(f"{kind}?size={size}&seek_operation=Next", token)
            body["continuationToken"] = token
        return _json(200, body)

    def _customers(self, request: RecordedRequest) -> _Response:
        paging = self._page_of(request, "customers", self.config.customers_page_size)
        if isinstance(paging, _Response):
            return paging
        offset, size = paging
        total = self.config.customers
        end = min(total, offset + min(size, self.config.customers_page_size))
        items = [self.world.customer_json(self.world.customer(i)) for i in range(offset, end)]
        return self._page(items, "customers", size, end, total)

    def _invoices(self, request: RecordedRequest, invoice_id: str | None) -> _Response:
        """``GET /v1/invoices`` (paged, ``invoices_page_size`` by default) and ``GET /v1/invoices/{id}``."""
        if invoice_id is not None:
            found = invoices.find(self.world, invoice_id, self.invoice_state)
            if found is None:
                return _pc_error(404, wire.pc_error(404, f"Invoice {invoice_id} was not found"))
            return _json(200, found)
        listed = invoices.invoices(self.world, self.invoice_state)
        paging = self._page_of(request, "invoices", self.config.invoices_page_size)
        if isinstance(paging, _Response):
            return paging
        offset, size = paging
        end = min(len(listed), offset + size)
        return self._page(listed[offset:end], "invoices", size, end, len(listed))

    def _rate_card(self, request: RecordedRequest) -> _Response:
        """`GET /v1/ratecards/azure?currency=&region=` (app-only or App+User): the card in force today."""
        currency = request.query.get("currency", [""])
        region = request.query.get("region", [""])
        if len(currency) != 1 or len(region) != 1 or not currency[0].strip():
            return _bad_request("currency is required (an ISO 4217 code), once; region at most once")
        try:
            return _json(200, self.world.rate_card(currency[0], region[0].strip() or None))
        except KeyError:
            return _bad_request(f"The currency {currency[0].strip()!r} is not supported for this partner")

    def _usage_records(self, request: RecordedRequest) -> _Response:
        ids = self.world.usage_record_customers()
        page = self.config.usage_record_page_size or max(1, len(ids))
        offset = 0
        if self._is_next(request) or request.headers.get("MS-ContinuationToken"):
            payload = self._continuation(request, "usagerecords")
            if payload is None:
                return _bad_request("Invalid MS-ContinuationToken")
            offset = int(payload["o"])
        end = min(len(ids), offset + page)
        body = self._collection([self.world.usage_record(cid) for cid in ids[offset:end]], "/customers/usagerecords")
        if end < len(ids):
            token = self._codec.encode({"k": "usagerecords", "o": end})
            body["links"]["next"] = wire.link("customers/usagerecords?seek_operation=Next", token)
            body["continuationToken"] = token
        return _json(200, body)

    def _utilizations(self, request: RecordedRequest, cid: str, sid: str) -> _Response:
        base_uri = f"customers/{cid}/subscriptions/{sid}/utilizations/azure"
        if self._is_next(request):
            payload = self._continuation(request, "utilization")
            if payload is None or payload.get("c") != cid or payload.get("s") != sid:
                return _bad_request("Invalid or missing MS-ContinuationToken")
            query = UtilizationQuery(cid, sid, int(payload["a"]), int(payload["b"]), payload["g"], bool(payload["d"]))
            size = int(payload["z"])
            cursor = tuple(payload["r"]) if payload.get("r") else None
        else:
            parsed = self._utilization_query(request, cid, sid)
            if isinstance(parsed, _Response):
                return parsed
            query, size = parsed
            ready_until = epoch_us(self.world.now()) - self.config.ready_lag_s * 1_000_000
            if self.config.not_ready_204 and query.end_us > ready_until:
                return _Response(204, headers=[("Retry-After", NOT_READY_RETRY_AFTER)])
            cursor = None
        items, next_cursor = self.world.utilization_page(query, cursor, size)
        start = _EPOCH + timedelta(microseconds=query.start_us)
        end = _EPOCH + timedelta(microseconds=query.end_us)
        self_uri = (
            f"{base_uri}?start_time={quote(start.strftime('%Y-%m-%dT%H:%M:%SZ'))}"
            f"&end_time={quote(end.strftime('%Y-%m-%dT%H:%M:%SZ'))}"
            f"&granularity={query.granularity.capitalize()}&show_details={query.show_details}&size={size}"
        )
        body = self._collection(items, self_uri)
        if next_cursor is not None:
            state = {"k": "utilization", "c": cid, "s": sid, "a": query.start_us, "b": query.end_us}
            state |= {"g": query.granularity, "d": query.show_details, "z": size}
            state["r"] = None if self.config.repeat_first_page_bug else list(next_cursor)
            body["links"]["next"] = wire.link(f"{base_uri}?seek_operation=Next", self._codec.encode(state))
        return _json(200, body)

    @staticmethod
    def _utilization_query(request: RecordedRequest, cid: str, sid: str) -> tuple[UtilizationQuery, int] | _Response:
        def arg(name: str, default: str = "") -> str:
            return request.query.get(name, [default])[0].strip()

        start, end = _parse_time(arg("start_time")), _parse_time(arg("end_time"))
        if start is None or end is None:
            return _bad_request("start_time and end_time are required ISO 8601 date-times")
        if start >= end:
            return _bad_request("start_time must be before end_time")
        granularity = arg("granularity", "daily").lower() or "daily"
        if granularity not in ("daily", "hourly"):
            return _bad_request("granularity must be daily or hourly")
        details = arg("show_details", "true").lower() or "true"
        if details not in ("true", "false"):
            return _bad_request("show_details must be true or false")
        raw_size = arg("size", str(MAX_PAGE_SIZE)) or str(MAX_PAGE_SIZE)
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            return _bad_request(f"size must be an integer between 1 and {MAX_PAGE_SIZE}")
        query = UtilizationQuery(cid, sid, epoch_us(start), epoch_us(end), granularity, details == "true")
        return query, int(raw_size)
