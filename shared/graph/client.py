"""The Microsoft Graph partner billing export: start an export, poll its operation, read its manifest.

Plain HTTP on purpose: the export answers ``202`` with no body and the operation's address in ``Location``, which
the generated Graph SDKs lose. Every call goes through the one ``RetryPolicy.run`` (429/5xx/dropped connections,
Retry-After first) and raises the one error hierarchy (``shared.errors.ServiceError``). Sleeping and the wait
bounds (the export wait and the run's deadline) are injected and counted in requested seconds, so tests never
wait and never race a clock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests

from shared import jsonutil
from shared.counters import Counters
from shared.deadline import Deadline
from shared.errors import ServiceError
from shared.partner_center.auth import TokenProvider
from shared.retry import Action, Outcome, RetryPolicy, parse_retry_after

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BILLING_PATH = "v1.0/reports/partners/billing/"
NO_DATA_CODE = "5000"  # "No data available": the period holds no usage, which is not an outage
SUCCEEDED = frozenset({"succeeded", "completed"})  # Microsoft's sample says succeeded, the docs completed
DEFAULT_POLL_SECONDS = 15.0
# Starting an export is a POST: sending it again after a dropped connection can leave an abandoned export
# behind, which costs nothing. A 4xx is never retried.
GRAPH_RETRY = RetryPolicy(not_ready_attempts=0)
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class GraphError(ServiceError):
    """A Graph billing call failed."""


class ExportExpired(GraphError):
    """``410 Gone`` (or an expired SAS): the operation, manifest or blob link is no longer valid; export again."""


class NoData(GraphError):
    """The export failed with code 5000, "No data available": the period has no usage (not an outage)."""


class StillRunning(GraphError):
    """The export had not finished within this run's wait (or before its deadline); the operation is kept for the
    next run."""


def field(obj: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A JSON member by name, in any case (sources disagree: PascalCase, camelCase)."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return default


@dataclass(frozen=True)
class Blob:
    """One file of an export."""

    name: str
    partition_value: str | None = None


@dataclass(frozen=True)
class Manifest:
    """Where an export's data is: its blobs under ``root_directory``, readable with ``sas_token``."""

    id: str
    etag: str
    created: str | None
    root_directory: str
    sas_token: str
    data_format: str | None
    blobs: tuple[Blob, ...]
    raw: Mapping[str, Any]

    @classmethod
    def parse(cls, body: Any) -> Manifest:
        """A manifest from its JSON (members in any case); GraphError for one that names no data location."""
        if not isinstance(body, Mapping):
            raise GraphError("the export manifest is not a JSON object", code="BadManifest")
        blobs_raw = field(body, "blobs") or []
        blobs = tuple(
            Blob(str(field(b, "name")), field(b, "partitionValue"))
            for b in blobs_raw
            if isinstance(b, Mapping) and field(b, "name")
        )
        count = field(body, "blobCount")
        if isinstance(count, int) and count != len(blobs):
            raise GraphError(
                f"the export manifest says blobCount {count} but lists {len(blobs)} blobs", code="BadManifest"
            )
        root = str(field(body, "rootDirectory") or "")
        if blobs and not root.startswith(("https://", "http://")):
            raise GraphError("the export manifest has no rootDirectory URL", code="BadManifest")
        return cls(
            id=str(field(body, "id") or ""),
            etag=str(field(body, "eTag") or ""),
            created=None if field(body, "createdDateTime") is None else str(field(body, "createdDateTime")),
            root_directory=root.rstrip("/"),
            sas_token=str(field(body, "sasToken") or "").lstrip("?"),
            data_format=None if field(body, "dataFormat") is None else str(field(body, "dataFormat")),
            blobs=blobs,
            raw=body,
        )


@dataclass(frozen=True)
class Poll:
    """One look at an operation: finished with a manifest, or still running (with the wait Graph asked for)."""

    status: str
    manifest: Manifest | None = None
    retry_after: float | None = None


class GraphBillingClient:
    """Starts and follows partner billing exports; blobs are read by ``shared.graph.blobs``."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenProvider,
        session: requests.Session | None = None,
        retry: RetryPolicy = GRAPH_RETRY,
        correlation_id: str | None = None,
        timeout: tuple[float, float] = (10.0, 120.0),
        sleep: Callable[[float], None] = time.sleep,
        counters: Counters | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._root = self.base_url + "/" + BILLING_PATH
        self._tokens = tokens
        self.session = session or requests.Session()
        self.retry = retry
        self.correlation_id = correlation_id or str(uuid.uuid4())
        self.timeout = timeout
        self.sleep = sleep
        self.counters = counters if counters is not None else Counters()
        self.deadline = deadline

    # -- the flow -------------------------------------------------------------------------------------------

    def start_unbilled(self, *, currency: str, billing_period: str, attribute_set: str = "full") -> str:
        """Start an unbilled export of ``current`` or ``last``; returns the operation URL (from ``Location``)."""
        body = {"currencyCode": currency, "billingPeriod": billing_period, "attributeSet": attribute_set}
        return self._start("usage/unbilled/export", body)

    def start_billed(self, *, invoice_id: str, attribute_set: str = "full") -> str:
        """Start a billed usage export (final daily rated usage) of one invoice; returns the operation URL."""
        return self._start("usage/billed/export", {"invoiceId": invoice_id, "attributeSet": attribute_set})

    def start_billed_reconciliation(self, *, invoice_id: str, attribute_set: str = "full") -> str:
        """Start a billed reconciliation export (every charge of one invoice); returns the operation URL."""
        body = {"invoiceId": invoice_id, "attributeSet": attribute_set}
        return self._start("reconciliation/billed/export", body)

    def start_unbilled_reconciliation(self, *, currency: str, billing_period: str, attribute_set: str = "full") -> str:
        """Start an unbilled reconciliation export (the open period's charges that are not usage)."""
        body = {"currencyCode": currency, "billingPeriod": billing_period, "attributeSet": attribute_set}
        return self._start("reconciliation/unbilled/export", body)

    def poll(self, operation_url: str) -> Poll:
        """Look at an operation once. NoData for code 5000, ExportExpired for 410, GraphError for other failures."""
        response = self._call("GET", operation_url)
        body = self._json(response, operation_url)
        if not isinstance(body, Mapping):
            raise self._error("the operation answer is not a JSON object", operation_url, response)
        status = str(field(body, "status") or "").strip()
        lowered = status.lower()
        if lowered in SUCCEEDED:
            return Poll(status, self._manifest_of(body, operation_url))
        if lowered == "failed":
            error = field(body, "error") or {}
            code = str(field(error, "code") or "") if isinstance(error, Mapping) else ""
            message = str(field(error, "message") or "") if isinstance(error, Mapping) else ""
            kind = NoData if code == NO_DATA_CODE else GraphError
            raise kind(
                "the billing export failed",
                status=response.status_code,
                code=code or None,
                description=message[:300] or None,
                path=self._path(operation_url),
                request_id=response.headers.get("request-id"),
                correlation_id=self.correlation_id,
            )
        # running, notStarted, or a status this client does not know yet: it is not finished
        return Poll(status or "unknown", retry_after=parse_retry_after(response.headers.get("Retry-After")))

    def wait(self, operation_url: str, *, max_wait: float) -> Manifest:
        """Poll until the export finishes, sleeping as Graph asks; StillRunning once ``max_wait`` s, or the
        run's deadline, would pass."""
        waited = 0.0
        while True:
            result = self.poll(operation_url)
            if result.manifest is not None:
                return result.manifest
            pause = DEFAULT_POLL_SECONDS if result.retry_after is None else max(1.0, result.retry_after)
            if waited + pause > max_wait or (self.deadline is not None and not self.deadline.allows(pause)):
                raise StillRunning(
                    f"the billing export is still {result.status} after {waited:.0f} s; the next run goes on "
                    "polling the same operation",
                    code="ExportRunning",
                    path=self._path(operation_url),
                    correlation_id=self.correlation_id,
                )
            self.counters.add(polls=1)
            self.sleep(pause)
            waited += pause

    # -- one call -------------------------------------------------------------------------------------------

    def _start(self, path: str, body: dict[str, Any]) -> str:
        url = self._root + path
        response = self._call("POST", url, body)
        location = response.headers.get("Location")
        if response.status_code != 202 or not location:
            raise self._error(
                f"the export was not accepted (expected 202 with Location, got {response.status_code})", url, response
            )
        return urljoin(url, location)

    def _manifest_of(self, body: Mapping[str, Any], operation_url: str) -> Manifest:
        inline = field(body, "resourceLocation")
        if isinstance(inline, Mapping):
            return Manifest.parse(inline)  # Microsoft's sample: the manifest inline
        link = field(body, "resourceLocation@odata.navigationLink")
        if not link and isinstance(inline, str):
            link = inline
        if not link:
            raise GraphError("the finished export names no manifest", code="BadManifest", path=operation_url)
        url = urljoin(operation_url, str(link))
        response = self._call("GET", url)
        return Manifest.parse(self._json(response, url))

    def _call(self, method: str, url: str, body: Any = None) -> requests.Response:
        path = self._path(url)
        request_ids: list[str] = []  # a new client-request-id per try: Graph logs each try as its own request

        def send() -> tuple[requests.Response | None, Outcome]:
            request_ids.append(str(uuid.uuid4()))
            headers = {
                "Accept": "application/json",
                "client-request-id": request_ids[-1],
                "return-client-request-id": "true",
                "Authorization": "Bearer " + self._tokens.token(app_only=True),
            }
            try:
                response = self.session.request(method, url, json=body, headers=headers, timeout=self.timeout)
            except _TRANSIENT as exc:
                return None, Outcome.of_error(exc)
            return response, Outcome.of_response(response.status_code, response.headers)

        final = self.retry.run(
            send,
            sleep=self.sleep,
            deadline=self.deadline,
            counters=self.counters,
            on_refresh=lambda: self._tokens.invalidate(app_only=True),
            describe=lambda: f"Graph {method} {path} (client-request-id={request_ids[-1] if request_ids else '-'})",
        )
        response = final.result
        if final.decision.action is Action.ACCEPT and response is not None:
            return response
        if response is None:
            raise GraphError(
                f"Graph {method} failed after {final.decision.attempt} attempts: {final.outcome.error}",
                path=path,
                request_id=request_ids[-1],
                correlation_id=self.correlation_id,
            )
        if response.status_code == 410:
            raise ExportExpired(
                "the export's operation or manifest has expired (410 Gone); a new export is needed",
                status=410,
                path=path,
                request_id=response.headers.get("request-id") or request_ids[-1],
                correlation_id=self.correlation_id,
            )
        raise self._error(f"Graph {method} failed", url, response)

    def _json(self, response: requests.Response, url: str) -> Any:
        try:
            return jsonutil.loads(response.content)
        except ValueError:
            raise self._error("the answer is not JSON", url, response) from None

    def _path(self, url: str) -> str:
        return url.removeprefix(self.base_url)

    def _error(self, message: str, url: str, response: requests.Response) -> GraphError:
        code = description = None
        try:
            body = jsonutil.loads(response.content) if response.content else None
        except ValueError:
            body = None
        error = field(body, "error") if isinstance(body, Mapping) else None
        if isinstance(error, Mapping):
            code = None if field(error, "code") is None else str(field(error, "code"))
            description = None if field(error, "message") is None else str(field(error, "message"))[:300]
        return GraphError(
            message,
            status=response.status_code,
            code=code,
            description=description,
            path=self._path(url),
            request_id=response.headers.get("request-id"),
            correlation_id=self.correlation_id,
        )
