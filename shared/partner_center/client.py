"""The one Partner Center client every function uses: paging, retries, 204, errors, request ids."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter

from shared import jsonutil
from shared.counters import Counters
from shared.deadline import Deadline
from shared.partner_center.auth import TokenProvider
from shared.partner_center.errors import DataNotReady, PartnerCenterError
from shared.retry import Action, Outcome, RetryPolicy, ThrottleGate

_TRANSIENT_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class _Next:
    """Where the next page is: an absolute URL and the headers to send verbatim."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Page:
    """One page of a Partner Center collection: its items as received, and its place in the collection."""

    items: list[Any]
    number: int


class PartnerCenterClient:
    """GETs Partner Center resources, yielding pages so callers never hold a whole result.

    What it did (calls, pages, retries, throttled, not_ready) it reports into ``counters``, which a run can own.
    Every wait (Retry-After, 204, the 429 gate) ends before ``deadline`` or raises DeadlineReached.
    """

    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenProvider,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        correlation_id: str | None = None,
        timeout: tuple[float, float] = (10.0, 120.0),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_pages: int = 100_000,
        pool_size: int = 16,
        counters: Counters | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_root = self.base_url + "/v1/"
        self._tokens = tokens
        self._session = session or _new_session(pool_size)
        self.retry = retry or RetryPolicy()
        self.correlation_id = correlation_id or str(uuid.uuid4())
        self._timeout = timeout
        self._sleep = sleep
        self.gate = ThrottleGate(clock=clock, sleep=sleep)
        self._max_pages = max_pages
        self.counters = counters if counters is not None else Counters()
        self.deadline = deadline

    # -- the endpoints --------------------------------------------------------------------------------------

    def usage_records(self) -> Iterator[Page]:
        """Pages of CustomerMonthlyUsageRecord for every customer, current billing period (App+User)."""
        return self.pages("customers/usagerecords")

    def usage_summary(self, customer_id: str, subscription_id: str) -> Any:
        """One subscription's SubscriptionUsageSummary (App+User): bare, or unwrapped from a one-item collection.

        Any other shape is returned as received, for the caller to quarantine with its reason.
        """
        body, _ = self.get_json(f"customers/{customer_id}/subscriptions/{subscription_id}/usagesummary")
        if isinstance(body, dict) and "billingStartDate" not in body:
            items = body.get("items")
            if isinstance(items, list) and len(items) == 1:
                return items[0]
        return body

    def utilization(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        start: datetime,
        end: datetime,
        granularity: str = "daily",
        show_details: bool = True,
        size: int = 1000,
    ) -> Iterator[Page]:
        """Pages of AzureUtilizationRecord reported in [start, end). Raises DataNotReady on 204 (app-only)."""
        params = {
            "start_time": _utc_param(start),
            "end_time": _utc_param(end),
            "granularity": granularity,
            "show_details": "true" if show_details else "false",
            "size": str(size),
        }
        return self.pages(
            f"customers/{customer_id}/subscriptions/{subscription_id}/utilizations/azure", params, app_only=True
        )

    def customers(self, *, size: int = 500) -> Iterator[Page]:
        """Pages of the partner's customers (app-only)."""
        return self.pages("customers", {"size": str(size)}, app_only=True)

    def rate_card(self, *, currency: str, region: str) -> Any:
        """The Azure rate card (app-only): meters with tiered rates, included quantities, offer-term discounts.

        Returned as received (one object, not a collection); the caller checks its shape."""
        body, _ = self.get_json("ratecards/azure", {"currency": currency, "region": region}, app_only=True)
        return body

    def invoices(self, *, size: int = 200) -> Iterator[Page]:
        """Pages of the partner's invoices and credit notes (app-only), newest first as Partner Center lists them."""
        return self.pages("invoices", {"size": str(size)}, app_only=True)

    def subscriptions(self, customer_id: str) -> Iterator[Page]:
        """Pages of one customer's subscriptions (app-only)."""
        return self.pages(f"customers/{customer_id}/subscriptions", app_only=True)

    # -- paging ---------------------------------------------------------------------------------------------

    def pages(self, path: str, params: Mapping[str, str] | None = None, *, app_only: bool = False) -> Iterator[Page]:
        """Follow ``links.next`` (or a bare ``continuationToken``) until the last page, one page at a time."""
        first_url = self._url(path)
        url, query = first_url, params
        headers: dict[str, str] = {}
        seen: set[_Next] = set()
        number = 0
        while True:
            body, request_id = self.get_json(url, query, headers=headers, app_only=app_only)
            number += 1
            self.counters.add(pages=1)
            items = body.get("items") if isinstance(body, dict) else None
            nxt = self._next_link(body, first_url)
            yield Page(items=items or [], number=number)
            if nxt is None:
                return
            if nxt in seen:
                raise PartnerCenterError(
                    "Partner Center handed back a continuation it already gave; stopping instead of looping",
                    code="RepeatedContinuation",
                    path=path,
                    request_id=request_id,
                    correlation_id=self.correlation_id,
                )
            if number >= self._max_pages:
                raise PartnerCenterError(f"more than {self._max_pages} pages; stopping", path=path)
            seen.add(nxt)
            url, headers = nxt.url, dict(nxt.headers)
            # A links.next uri carries its own query; a bare continuation token repeats the first query.
            query = params if nxt.url == first_url else None

    def _next_link(self, body: Any, first_url: str) -> _Next | None:
        if not isinstance(body, dict):
            return None
        links = body.get("links")
        nxt = links.get("next") if isinstance(links, dict) else None
        if isinstance(nxt, dict) and nxt.get("uri"):
            pairs = tuple(
                (str(h["key"]), str(h["value"]))
                for h in nxt.get("headers") or []
                if isinstance(h, dict) and "key" in h and "value" in h
            )
            return _Next(url=self._url(str(nxt["uri"])), headers=pairs)
        token = body.get("continuationToken")
        if token:
            return _Next(url=first_url, headers=(("MS-ContinuationToken", str(token)),))
        return None

    def _url(self, path: str) -> str:
        # Partner Center's links are relative to {base}/v1/ with no leading slash; tolerate one anyway.
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self._api_root, path.lstrip("/").removeprefix("v1/"))

    # -- one call -------------------------------------------------------------------------------------------

    def get_json(
        self,
        path_or_url: str,
        params: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        app_only: bool = False,
    ) -> tuple[Any, str]:
        """GET and parse one resource; the retry policy decides what is tried again. Returns (body, MS-RequestId)."""
        url = self._url(path_or_url)
        request_id = str(uuid.uuid4())
        path = url.removeprefix(self.base_url)
        final = self.retry.run(
            lambda: self._send(url, params, headers, app_only, request_id),
            sleep=self._sleep,
            deadline=self.deadline,
            gate=self.gate,
            counters=self.counters,
            on_refresh=lambda: self._tokens.invalidate(app_only=app_only),
            describe=lambda: (
                f"Partner Center GET {path} (request_id={request_id}, correlation_id={self.correlation_id})"
            ),
        )
        response, outcome = final.result, final.outcome
        if final.decision.action is Action.ACCEPT and response is not None:
            return self._parse(response, path, request_id), request_id
        if final.decision.action is Action.NOT_READY:
            raise DataNotReady(
                path=path, retry_after=outcome.retry_after, request_id=request_id, correlation_id=self.correlation_id
            )
        if response is None:
            raise self._error(f"GET failed after {final.decision.attempt} attempts: {outcome.error}", path, request_id)
        raise self._from_response(response, path, request_id)

    def _send(
        self,
        url: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        app_only: bool,
        request_id: str,
    ) -> tuple[requests.Response | None, Outcome]:
        send_headers = {
            "Accept": "application/json",
            "MS-RequestId": request_id,
            "MS-CorrelationId": self.correlation_id,
            "X-Locale": "en-US",
            **(headers or {}),
            "Authorization": "Bearer " + self._tokens.token(app_only=app_only),
        }
        try:
            response = self._session.get(url, params=params, headers=send_headers, timeout=self._timeout)
        except _TRANSIENT_EXCEPTIONS as exc:
            return None, Outcome.of_error(exc)
        if response.status_code == 204:
            self.counters.add(not_ready=1)
        return response, Outcome.of_response(response.status_code, response.headers)

    def _parse(self, response: requests.Response, path: str, request_id: str) -> Any:
        try:
            return jsonutil.loads(response.content)
        except ValueError as exc:
            raise self._error(
                f"response is not JSON ({exc.__class__.__name__})", path, request_id, response.status_code
            ) from None

    def _error(self, message: str, path: str, request_id: str, status: int | None = None) -> PartnerCenterError:
        return PartnerCenterError(
            message, status=status, path=path, request_id=request_id, correlation_id=self.correlation_id
        )

    def _from_response(self, response: requests.Response, path: str, request_id: str) -> PartnerCenterError:
        code, description = _error_fields(response.content)
        return PartnerCenterError(
            "Partner Center call failed",
            status=response.status_code,
            code=code,
            description=description,
            request_id=response.headers.get("MS-RequestId") or request_id,
            correlation_id=response.headers.get("MS-CorrelationId") or self.correlation_id,
            path=path,
        )


def _error_fields(content: bytes) -> tuple[str | None, str | None]:
    """Partner Center's error shape, leniently: ``code`` number or string; the odd 429 body too."""
    try:
        body = jsonutil.loads(content) if content else None
    except ValueError:
        text = content.decode("utf-8-sig", errors="replace").strip()
        return None, text[:300] or None
    if not isinstance(body, dict):
        return None, None
    code = body.get("code", body.get("statusCode", body.get("errorCode")))
    description = body.get("description", body.get("message", body.get("errorMessage")))
    return (None if code is None else str(code)), (None if description is None else str(description)[:500])


def _utc_param(moment: datetime) -> str:
    """ISO 8601 in UTC with ``Z``: Partner Center mangles a raw ``+`` in query strings."""
    if moment.tzinfo is None:
        raise ValueError("times sent to Partner Center must be timezone-aware")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_session(pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
