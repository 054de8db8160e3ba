"""Part 'spend': the partner-wide spend answer, and what keeping the spend read model costs at ingest.

A partner of N customers x 3 Azure subscriptions x 31 days of rated usage: the pointers (what the rated ingest
stores) and the inventory are written to Azurite, every customer is marked, and the projection runs (the cost at
ingest: app CPU per source day and per read-model row written). Then the portal's overview is read the way a
portal reads it, every page of ``GET /api/v1/spend`` at the default size, counting requests (goal: one per 1,000
customers), with the server's CPU per answer against reading the very same rows raw (one service page each).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from azure.data.tables import TableServiceClient

from bench.common import new_prefix
from shared.api import Request, Response, handle
from shared.api.scope import Scope
from shared.deadline import NO_DEADLINE
from shared.focus.dataset import PeriodData, build
from shared.pricing.amounts import Amounts
from shared.pricing.rules import Adjustment, Basis, PriceRule, Rules, Whom
from shared.pricing.view import Viewer
from shared.settings import Settings
from shared.spend import rows as spend_rows
from shared.spend.refresh import mark, project_marked
from shared.table_store import TableStore
from shared.tables import (
    CUSTOMERS,
    RATED_SLICES,
    SUBSCRIPTIONS,
    SYNC_STATE,
    DayView,
    ExportStream,
    Grant,
    GrantKind,
    RatedPointer,
    customer_row,
    subscription_row,
)
from tests.stores import drop_tables

NOW = datetime(2026, 12, 31, 12, tzinfo=timezone.utc)
PERIOD = "2026-12"
PLAN_OFFER = "DZH318Z0BPS6:0001:DZH318Z0BQPV"
Progress = Callable[[str], None]


def _guid(kind: int, n: int, k: int = 0) -> str:
    return f"{kind:08x}-0000-4000-8000-{n * 16 + k:012x}"


LINES_PER_DAY = 80  # rated-usage lines behind each seeded subscription day (DayView.lines)
CATEGORIES = ("Virtual Machines", "Storage", "Bandwidth", "SQL Database")


def _day(d: int, total: str) -> DayView:
    """A stored day of an Azure subscription: its total, and its cost and list amounts over four categories (the
    list 1.25 x the cost, as with partner earned credit)."""
    cost = Decimal(total)
    shares = [cost / 2, cost / 4, cost / 8]
    by_category: Amounts = {c: [v, v * Decimal("1.25")] for c, v in zip(CATEGORIES, shares, strict=False)}
    last = cost - sum(shares, Decimal(0))
    by_category[CATEGORIES[-1]] = [last, last * Decimal("1.25")]
    return DayView(f"{d:016x}", LINES_PER_DAY, total, {"USD": total}, by_category)


def _seed(store: TableStore, customers: int, subscriptions: int, days: int) -> int:
    """The inventory and the rated usage pointers of the partner; returns the source day slices."""
    customer_rows, subscription_rows, pointers = [], [], []
    for n in range(customers):
        cid = _guid(1, n)
        customer_rows.append(customer_row(cid, {"id": cid, "companyProfile": {"companyName": f"Customer {n}"}}))
        for k in range(subscriptions):
            sid = _guid(2, n, k)
            record = {"id": sid, "offerId": PLAN_OFFER, "friendlyName": f"Plan {k}", "status": "active"}
            subscription_rows.append(subscription_row(cid, record))
            total = f"{n % 97}.{k}{n:019d}"
            pointers.append(
                RatedPointer(
                    customer_id=cid,
                    entitlement_id=_guid(3, n, k),
                    period=PERIOD,
                    currency="EUR",
                    days={f"{PERIOD}-{d:02d}": _day(d, total) for d in range(1, days + 1)},
                    subscription_id=sid,
                    customer_name=f"Customer {n}",
                    snapshot_etag="0x1",
                    stored_at="2026-12-31T00:00:00Z",
                ).row()
            )
    store.upsert(CUSTOMERS, customer_rows)
    store.upsert(SUBSCRIPTIONS, subscription_rows)
    store.upsert(RATED_SLICES, pointers)
    stream = ExportStream(billing_period="current", currency="EUR", snapshot_etag="0x1", periods=(PERIOD,))
    store.upsert_one(SYNC_STATE, stream.row())
    return customers * subscriptions * days


def _rules(effective_from: str) -> Rules:
    return Rules.of(
        [PriceRule(whom=Whom.DEFAULT, who=None, basis=Basis.LIST, effective_from=effective_from,
                   adjustments=(Adjustment(Decimal(10)),))]
    )  # fmt: skip


def _viewer_scope(store: TableStore, rules: Rules) -> Scope:
    grant = Grant("bench-tenant", "bench-app", GrantKind.ALL)
    return Scope(grant, store, Viewer(rules=rules, whom=None, shows_cost=False))


def _overview(store: TableStore, settings: Settings, scope: Scope | None = None) -> tuple[float, int]:
    """Every page of the month's overview: (app CPU seconds, requests)."""
    cpu, requests, query = 0.0, 0, {"period": PERIOD}
    headers: dict[str, str] = {}
    while True:
        request = Request.build("GET", "v1/spend", query=query, headers=headers)
        started = time.thread_time()
        response = handle(request, store, settings, NOW, scope)
        cpu += time.thread_time() - started
        requests += 1
        if response.status != 200:
            raise RuntimeError(f"spend answered {response.status}: {response.body[:300]!r}")
        token = response.headers.get("MS-ContinuationToken")
        if not token:
            return cpu, requests
        query, headers = {"seek_operation": "Next"}, {"MS-ContinuationToken": token}


def _focus(store: TableStore, lines: int) -> dict[str, Any]:
    """The FOCUS dataset of the month: reading the spend read model (the baseline), then building the Parquet files
    (app CPU; the upload is I/O and not counted), per row written and per million source lines."""
    data, read_cpu = _cpu(lambda: PeriodData.read(store, PERIOD))
    built, build_cpu = _cpu(lambda: [build(data, c, "bench") for c in data.currencies()])
    rows = sum(b.rows for b in built)
    size = sum(len(b.data) for b in built)
    return {
        "rows": rows,
        "source_lines": lines,
        "read_cpu_us_per_row": round(read_cpu * 1e6 / rows, 1),
        "build_cpu_us_per_row": round(build_cpu * 1e6 / rows, 1),
        "build_vs_read": round(build_cpu / read_cpu, 2) if read_cpu else None,
        "rows_per_s": round(rows / build_cpu) if build_cpu else None,
        "bytes": size,
        "bytes_per_million_rows": round(size * 1e6 / rows),
        "bytes_per_million_lines": round(size * 1e6 / lines),
    }


def _cpu(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.thread_time()
    result = work()
    return result, time.thread_time() - started


def measure(connection_string: str, *, customers: int, subscriptions: int = 3, days: int = 31) -> dict[str, Any]:
    """Seed, project, read; every figure a ratio or a count, CPU from the thread's own clock."""
    store = TableStore(TableServiceClient.from_connection_string(connection_string), prefix=new_prefix())
    settings = Settings(table_prefix=store.prefix)
    try:
        source_days = _seed(store, customers, subscriptions, days)
        mark(store, [_guid(1, n) for n in range(customers)], [PERIOD])
        stats, projection_cpu = _cpu(lambda: project_marked(store, now=NOW, deadline=NO_DEADLINE, region="US"))
        pages: list[Response] = []
        answer_cpu, query = 0.0, {"period": PERIOD}
        headers: dict[str, str] = {}
        while True:
            request = Request.build("GET", "v1/spend", query=query, headers=headers)
            started = time.thread_time()
            response = handle(request, store, settings, NOW)
            cpu = time.thread_time() - started
            if response.status != 200:
                raise RuntimeError(f"spend answered {response.status}: {response.body[:300]!r}")
            answer_cpu += cpu
            pages.append(response)
            token = response.headers.get("MS-ContinuationToken")
            if not token:
                break
            query, headers = {"seek_operation": "Next"}, {"MS-ContinuationToken": token}

        def raw() -> int:
            count = 0
            for page in store.query_pages(
                spend_rows.SPEND_MONTHS, "PartitionKey eq @pk", {"pk": PERIOD}, page_size=1000
            ):
                count += len(page.entities)
            return count

        rows, raw_cpu = _cpu(raw)
        focus = _focus(store, customers * subscriptions * days * LINES_PER_DAY)
        priced = {
            name: _overview(store, settings, _viewer_scope(store, rules))
            for name, rules in (("one_rule", _rules("2026-01-01")), ("rule_mid_month", _rules(PERIOD + "-15")))
        }
        if rows != customers:
            raise RuntimeError(f"{rows} month rows for {customers} customers")
        return {
            "customers": customers,
            "subscriptions_per_customer": subscriptions,
            "days": days,
            "requests": len(pages),
            "requests_per_1000_customers": round(len(pages) * 1000 / customers, 2),
            "answer_cpu_ms": round(answer_cpu * 1000, 1),
            "raw_cpu_ms": round(raw_cpu * 1000, 1),
            "answer_vs_raw": round(answer_cpu / raw_cpu, 2) if raw_cpu else None,
            # a scoped caller's overview at its price (an `all` grant without showCost, list + 10 %): one rule over
            # the month priced from the month sums; a rule from mid-month priced day by day (a query per customer)
            "priced_answer_vs_partner_answer": {k: round(v[0] / answer_cpu, 2) for k, v in priced.items()},
            "priced_requests": {k: v[1] for k, v in priced.items()},
            "focus": focus,
            "bytes": sum(len(p.body) for p in pages),
            "projection": {
                "months": stats.months,
                "rows_written": stats.rows,
                "cpu_s": round(projection_cpu, 2),
                "cpu_us_per_source_day": round(projection_cpu * 1e6 / source_days, 1),
                "cpu_us_per_row_written": round(projection_cpu * 1e6 / max(1, stats.rows), 1),
            },
        }
    finally:
        drop_tables(store)
