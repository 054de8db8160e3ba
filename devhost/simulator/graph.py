"""The simulator's Microsoft Graph partner billing export: export, operation, manifest, and blobs in Azurite.

Four exports share the machinery: ``usage/unbilled`` (the rated usage of ``current`` or ``last``,
devhost.simulator.billing), ``usage/billed`` and ``reconciliation/billed`` (one invoice's, by ``invoiceId``) and
``reconciliation/unbilled`` (devhost.simulator.reconciliation). ``POST .../{kind}/export`` answers 202 with no
body and ``Location``; the operation answers running (with ``Retry-After``) for ``polls`` looks, then finished;
the data is written as gzip JSON Lines blobs to Azurite's blob service (a real part) and the manifest hands out a
read+list SAS, so the app downloads them over HTTP exactly as from Azure. Behaviour switches (admin
``POST /_sim/graph``) cover every documented variant: inline manifest or link, ``succeeded`` or ``completed``, no
data as failure 5000 or as ``blobCount`` 0, 410 on expired operations and manifests, an expired SAS, a connection
cut halfway through a blob, multi-member gzip. Progress counts polls, never wall time, so tests are deterministic.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import simplejson

from devhost.simulator import invoices
from devhost.simulator.billing import BillingOptions, lines
from devhost.simulator.reconciliation import billed_lines, billed_usage_lines, unbilled_lines
from devhost.simulator.world import World

CONTAINER = "billing"
BILLING_ROOT = "/graph/v1.0/reports/partners/billing"
# The exports (``POST {BILLING_ROOT}/{kind}/export``): an unbilled one names a currency and a period, a billed
# one an invoice.
EXPORT_KINDS = ("usage/unbilled", "usage/billed", "reconciliation/unbilled", "reconciliation/billed")


@dataclass
class Behaviour:
    """How the export behaves; every field can be set through the admin API."""

    polls: int = 1  # looks at an operation answered "running" before it finishes
    retry_after: int = 1
    manifest_inline: bool = False  # the sample's inline resourceLocation; else the docs' navigation link
    final_status: str = "succeeded"  # or "completed"
    empty_as: str = "5000"  # an export without lines: failed with code 5000, or "blobCount0"
    lines_per_blob: int = 2000
    members_per_blob: int = 1  # gzip members per blob (concatenated, as some writers do)
    expire_operations: int = 0  # the next n operation looks answer 410
    expire_manifests: int = 0  # the next n manifest reads answer 410
    expired_sas: int = 0  # the next n manifests hand out a SAS that has expired already
    cut_blobs: int = 0  # the next n blob downloads break off halfway (served through the simulator)
    bad_lines: bool = False  # every export also holds lines that cannot be placed (not JSON, NaN money, ...)

    def update(self, values: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        camel = {_camel(n): n for n in names}
        for key, value in values.items():
            name = camel.get(key, key)
            if name not in names:
                raise ValueError(f"unknown graph behaviour {key!r}")
            setattr(self, name, type(getattr(self, name))(value))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass
class Operation:
    id: str
    kind: str  # one of EXPORT_KINDS
    billing_period: str  # current / last, or "invoice:" + the invoice id
    currency: str
    invoice: dict[str, Any] | None = None  # a billed export's invoice, as listed when it was asked for
    looks: int = 0
    manifest_id: str | None = None
    failed: bool = False


@dataclass
class _Blob:
    connection_string: str
    account: str = ""
    key: str = ""
    endpoint: str = ""

    def __post_init__(self) -> None:
        parts = dict(p.split("=", 1) for p in self.connection_string.split(";") if "=" in p)
        self.account, self.key = parts["AccountName"], parts["AccountKey"]
        self.endpoint = parts["BlobEndpoint"].rstrip("/")


@dataclass
class GraphReply:
    """What the server writes back."""

    status: int
    body: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes | None = None
    cut_at: int | None = None  # write this many bytes of ``raw``, then drop the connection


class GraphExports:
    """The export service of one simulated partner tenant."""

    def __init__(
        self,
        world: World,
        base_url: Callable[[], str],
        blob_connection_string: str | None,
        invoice_state: invoices.InvoiceState | None = None,
    ) -> None:
        self.world = world
        self.base_url = base_url
        self.blob = _Blob(blob_connection_string) if blob_connection_string else None
        self.behaviour = Behaviour()
        self.options = BillingOptions()
        self.invoice_state = invoice_state or invoices.InvoiceState()  # the invoices the billed exports serve
        self.operations: dict[str, Operation] = {}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.exports_started = 0
        self._lock = threading.Lock()

    # ----- admin ------------------------------------------------------------------------------------

    def configure(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Set behaviour and data options: ``rerate`` {day: factor}, ``entitlementsPerPlan``, ``meters``..."""
        payload = dict(payload)
        rerate = payload.pop("rerate", None)
        for key in ("entitlementsPerPlan", "meters", "resources", "duplicateEvery"):
            if key in payload:
                name = {"entitlementsPerPlan": "entitlements_per_plan", "duplicateEvery": "duplicate_every"}.get(
                    key, key
                )
                setattr(self.options, name, int(payload.pop(key)))
        if isinstance(rerate, dict):
            self.options.rerated = {str(day): Decimal(str(f)) for day, f in rerate.items()}
        with self._lock:
            self.behaviour.update(payload)
        return self.state()

    def state(self) -> dict[str, Any]:
        """Behaviour, options and counts as JSON."""
        options = asdict(self.options)
        options["rerated"] = {k: str(v) for k, v in self.options.rerated.items()}
        return {"behaviour": asdict(self.behaviour), "options": options, "exportsStarted": self.exports_started}

    # ----- the API ------------------------------------------------------------------------------------

    def start(self, kind: str, body: str) -> GraphReply:
        """``POST {kind}/export``, kind one of EXPORT_KINDS; an unknown invoice is 400 ``InvalidInvoiceId``."""
        if kind not in EXPORT_KINDS:
            raise ValueError(f"unknown export {kind!r}")
        if self.blob is None:
            message = "This simulator was started without a blob service (blob_connection_string): no exports."
            return error_reply(501, "NotImplemented", message)
        try:
            request = json.loads(body or "{}")
        except ValueError:
            return error_reply(400, "BadRequest", "The request body is not JSON.")
        if not isinstance(request, dict):
            return error_reply(400, "BadRequest", "The request body is not a JSON object.")
        invoice = None
        if kind.endswith("/unbilled"):
            period = str(request.get("billingPeriod", ""))
            currency = str(request.get("currencyCode", "")).upper()
            if period not in ("current", "last") or len(currency) != 3:
                return error_reply(
                    400, "BadRequest", "billingPeriod must be current or last; currencyCode is required."
                )
        else:
            if not request.get("invoiceId"):
                return error_reply(400, "BadRequest", "invoiceId is required.")
            invoice = invoices.find(self.world, str(request["invoiceId"]), self.invoice_state, self.options)
            if invoice is None:
                return error_reply(400, "InvalidInvoiceId", f"The invoice {request['invoiceId']} is not valid.")
            period, currency = "invoice:" + invoice["id"], invoice["currencyCode"]
        operation = Operation(str(uuid.uuid4()), kind, period, currency, invoice)
        with self._lock:
            self.operations[operation.id] = operation
            self.exports_started += 1
        location = f"{self.base_url()}{BILLING_ROOT}/operations/{operation.id}"
        return GraphReply(202, headers=[("Location", location), ("Retry-After", str(self.behaviour.retry_after))])

    def operation(self, operation_id: str) -> GraphReply:
        """``GET operations/{id}``."""
        with self._lock:
            operation = self.operations.get(operation_id)
            if operation is not None and self.behaviour.expire_operations > 0:
                self.behaviour.expire_operations -= 1
                del self.operations[operation_id]
                return error_reply(410, "Gone", "The operation has expired.")
        if operation is None:
            return error_reply(404, "NotFound", "No such operation.")
        operation.looks += 1
        stamp = self.world.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        common: dict[str, Any] = {"id": operation.id, "createdDateTime": stamp, "lastActionDateTime": stamp}
        if operation.looks <= self.behaviour.polls:
            status = "notStarted" if operation.looks == 1 else "running"
            body = {"@odata.type": "#microsoft.graph.partners.billing.runningOperation", **common, "status": status}
            return GraphReply(200, body, [("Retry-After", str(self.behaviour.retry_after))])
        if operation.manifest_id is None and not operation.failed:
            self._complete(operation)
        if operation.failed:
            body = {
                "@odata.type": "#microsoft.graph.partners.billing.failedOperation",
                **common,
                "status": "failed",
                "error": {"code": "5000", "message": "No data available"},
            }
            return GraphReply(200, body)
        assert operation.manifest_id is not None
        body = {
            "@odata.type": "#microsoft.graph.partners.billing.exportSuccessOperation",
            **common,
            "status": self.behaviour.final_status,
        }
        if self.behaviour.manifest_inline:
            body["resourceLocation"] = self.manifests[operation.manifest_id]
        else:
            link = f"{self.base_url()}{BILLING_ROOT}/manifests/{operation.manifest_id}"
            body["resourceLocation@odata.navigationLink"] = link
        return GraphReply(200, body)

    def manifest(self, manifest_id: str) -> GraphReply:
        """``GET manifests/{id}``."""
        with self._lock:
            if self.behaviour.expire_manifests > 0:
                self.behaviour.expire_manifests -= 1
                return error_reply(410, "Gone", "The manifest has expired.")
            found = self.manifests.get(manifest_id)
        if found is None:
            return error_reply(404, "NotFound", "No such manifest.")
        return GraphReply(200, found)

    def blob_through(self, path_and_query: str, headers: dict[str, str]) -> GraphReply:
        """A blob read through the simulator (only handed out when a cut is armed): Azurite's answer, cut."""
        import requests

        if self.blob is None:
            return error_reply(503, "ServiceUnavailable", "No blob service configured.")
        upstream = self.blob.endpoint + path_and_query.removeprefix("/blobs")
        forwarded = {k: v for k, v in headers.items() if k.lower() in ("range", "if-match", "x-ms-version")}
        answer = requests.get(upstream, headers=forwarded, timeout=30)
        reply_headers = [(k, v) for k, v in answer.headers.items() if k.lower() in ("etag", "content-range")]
        reply = GraphReply(answer.status_code, headers=reply_headers, raw=answer.content)
        with self._lock:
            if self.behaviour.cut_blobs > 0 and answer.status_code in (200, 206) and len(answer.content) > 1:
                self.behaviour.cut_blobs -= 1
                reply.cut_at = len(answer.content) // 2
        return reply

    # ----- producing an export -------------------------------------------------------------------------

    def _lines(self, operation: Operation) -> Iterable[dict[str, Any]]:
        """The lines of an export, computed when it finishes (from the world as it is then)."""
        world, options, rerate = self.world, self.options, self.invoice_state.billed_rerate
        if operation.kind == "usage/unbilled":
            return lines(world, operation.billing_period, operation.currency, options)
        if operation.kind == "reconciliation/unbilled":
            return unbilled_lines(world, operation.currency, operation.billing_period, options)
        if operation.invoice is None:
            raise ValueError(f"a {operation.kind} export names an invoice")
        if operation.kind == "usage/billed":
            return billed_usage_lines(world, operation.invoice, options, rerate)
        return billed_lines(world, operation.invoice, options, rerate)

    def _complete(self, operation: Operation) -> None:
        if self.blob is None:
            raise RuntimeError("the simulator has no blob service: start it with blob_connection_string")
        from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

        service = BlobServiceClient.from_connection_string(self.blob.connection_string)
        container = service.get_container_client(CONTAINER)
        if not container.exists():
            container.create_container()
        directory = f"{self.world.tenant_id}/{operation.id}"
        etag = hashlib.sha256()
        names: list[str] = []
        behaviour = self.behaviour
        batch: list[bytes] = []

        def upload() -> None:
            name = f"part-{len(names):05d}-{uuid.uuid4()}.c000.json.gz"
            container.upload_blob(f"{directory}/{name}", _gzip(batch, behaviour.members_per_blob), overwrite=True)
            names.append(name)
            batch.clear()

        for line in self._lines(operation):
            encoded = _dumps(line)
            etag.update(encoded)
            batch.append(encoded)
            if len(batch) >= behaviour.lines_per_blob:
                upload()
        if behaviour.bad_lines:
            for bad in BAD_LINES:
                etag.update(bad)
                batch.append(bad)
        if batch:
            upload()
        if not names and behaviour.empty_as == "5000":
            operation.failed = True
            return
        now = datetime.now(timezone.utc)
        with self._lock:
            expired = behaviour.expired_sas > 0
            behaviour.expired_sas -= 1 if expired else 0
            cut = behaviour.cut_blobs > 0
        sas = generate_container_sas(
            self.blob.account,
            CONTAINER,
            account_key=self.blob.key,
            permission=ContainerSasPermissions(read=True, list=True),
            start=now - timedelta(hours=2),
            expiry=now - timedelta(minutes=5) if expired else now + timedelta(hours=1),
        )
        root = f"{self.base_url()}/blobs/{CONTAINER}" if cut else f"{self.blob.endpoint}/{CONTAINER}"
        manifest_id = str(uuid.uuid4())
        self.manifests[manifest_id] = {
            "id": manifest_id,
            "schemaVersion": "1",
            "dataFormat": "compressedJSON",
            "createdDateTime": self.world.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eTag": etag.hexdigest()[:32],
            "partnerTenantId": self.world.tenant_id,
            "rootDirectory": f"{root}/{directory}",
            "sasToken": sas,
            "partitionType": "default",
            "blobCount": len(names),
            "blobs": [{"name": name, "partitionValue": "default"} for name in names],
        }
        operation.manifest_id = manifest_id


# Lines a real export should never hold, each with a different reason to be quarantined.
BAD_LINES = (
    b'{"CustomerId": "not closed',
    b'{"CustomerId":"c1","EntitlementId":"e1","UsageDate":"2026-11-02","BillingCurrency":"ZZZ","BillingPreTaxTotal":NaN}',
    b'["a", "list"]',
    b'{"CustomerId":"c1","UsageDate":"2026-11-02","BillingCurrency":"ZZZ","BillingPreTaxTotal":1}',
)


def _dumps(line: dict[str, Any]) -> bytes:
    """One JSON line; Decimals written as numbers with every digit, as the export writes money."""
    return simplejson.dumps(line, use_decimal=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _gzip(lines_: list[bytes], members: int) -> bytes:
    """The lines as JSON Lines, in ``members`` gzip members one after another."""
    members = max(1, min(members, len(lines_)))
    size = -(-len(lines_) // members)
    out = io.BytesIO()
    for start in range(0, len(lines_), size):
        out.write(gzip.compress(b"\n".join(lines_[start : start + size]) + b"\n", compresslevel=6, mtime=0))
    return out.getvalue()


def error_reply(status: int, code: str, message: str) -> GraphReply:
    request_id = str(uuid.uuid4())
    inner = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": request_id}
    return GraphReply(status, {"error": {"code": code, "message": message, "innerError": inner}})
