"""Every table read of the API. Request values reach Table Storage only as ``@parameters``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.api.continuation import UtilizationQuery
from shared.keys import make_key, under
from shared.spend.rows import (
    MAX_PARTS,
    PRICEABLE,
    PRICEABLE_DAYS,
    SPEND_DAYS,
    SPEND_MONTHS,
    SPEND_RESELLERS,
    SpendMonth,
    SpendSubject,
    is_month_row,
    spend_days_range,
)
from shared.table_store import TableStore, written_at
from shared.tables import (
    CUSTOMER_PARTITION,
    CUSTOMERS,
    LATEST,
    RATED_CUSTOMER_DAYS,
    RATED_LINES,
    RATED_SLICES,
    RATED_USAGE_STATE,
    RUNS,
    SUBSCRIPTIONS,
    SYNC_STATE,
    USAGE_RECORDS,
    USAGE_SUMMARIES,
    UTILIZATION,
    UTILIZATION_STATE,
    ExportStream,
    RatedCustomerPeriod,
    RatedPointer,
    RunStatus,
    customer_key,
    period_start,
    rated_lines_partition,
    subscription_key,
)

_RAW = ["RowKey", "raw", "Timestamp"]
_SERVICE_PAGE = 1000  # the most Table Storage returns in one response


def usage_records(store: TableStore, partition: str) -> Iterator[tuple[str, str, datetime | None]]:
    """(customer id, raw JSON text, when written) of every usage record in a partition (``latest`` or a month)."""
    select = ["customerId", "raw", "Timestamp"]
    for row in store.partition(USAGE_RECORDS, partition, select=select, page_size=_SERVICE_PAGE):
        yield row["customerId"], row["raw"], written_at(row)


def usage_summary(
    store: TableStore, customer_id: str, subscription_id: str, row_key: str
) -> tuple[str, datetime | None] | None:
    """(raw JSON text, when written) of one stored usage summary (``latest`` or ``period-YYYY-MM-DD``)."""
    row = store.get(USAGE_SUMMARIES, subscription_key(customer_id, subscription_id), row_key)
    return None if row is None else (row["raw"], written_at(row))


@dataclass(frozen=True)
class UtilizationPage:
    """Rows of one page and whether the range holds more after the last of them."""

    rows: list[tuple[str, str]]  # (RowKey, raw)
    more: bool
    written: datetime | None = None  # when the newest of them was written


def utilization_page(store: TableStore, query: UtilizationQuery) -> UtilizationPage:
    """Up to ``query.size`` rows in usage-time order (``bounded_page``)."""
    partition = subscription_key(query.customer_id, query.subscription_id)
    entities, more = key_range_page(
        store, UTILIZATION, partition, query.start_key, query.end_key, after=query.after, size=query.size, select=_RAW
    )
    rows = [(entity["RowKey"], entity["raw"]) for entity in entities]
    return UtilizationPage(rows, more, newest(written_at(entity) for entity in entities))


def key_range_page(
    store: TableStore,
    table: str,
    partition: str,
    low: str,
    high: str,
    *,
    after: str | None,
    size: int,
    select: list[str] | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of one partition's RowKeys in ``[low, high)``, after ``after`` when continuing (``bounded_page``)."""
    parameters = {"pk": partition, "hi": high}
    if after is None:
        query_filter = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        parameters["lo"] = low
    else:
        query_filter = "PartitionKey eq @pk and RowKey gt @after and RowKey lt @hi"
        parameters["after"] = after
    return bounded_page(store, table, query_filter, parameters, size=size, select=select, keep=keep)


def bounded_page(
    store: TableStore,
    table: str,
    query_filter: str,
    parameters: Mapping[str, Any],
    *,
    size: int,
    select: list[str] | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``size`` entities (those ``keep`` accepts, when given), read as one service page whenever the service
    allows, and whether more follow.

    The service page size is the API page size, so a full page costs one request; the service's own
    continuation tells whether more rows follow, so no extra row is read to find out. A short service page
    (the service may stop early, or ``keep`` set rows aside) is topped up from the next one.
    """
    entities: list[dict[str, Any]] = []
    full = False
    for page in store.query_pages(table, query_filter, parameters, select=select, page_size=size):
        for taken, entity in enumerate(page.entities, start=1):
            if keep is not None and not keep(entity):
                continue
            if full:
                return entities, True  # a kept row follows the full page
            entities.append(entity)
            if len(entities) == size:
                if keep is None:
                    return entities, taken < len(page.entities) or page.more
                full = True  # filtered: look on for a row this caller may see, so no next link leads nowhere
    return entities, False


def newest(stamps: Iterable[datetime | None]) -> datetime | None:
    """The latest of some write times, or None when none is known."""
    known = [stamp for stamp in stamps if stamp is not None]
    return max(known) if known else None


def has_rows(store: TableStore, table: str, partition: str) -> bool:
    """True when a partition holds at least one row (reads one key)."""
    return next(store.partition(table, partition, select=["RowKey"], page_size=1, limit=1), None) is not None


def subscription_known(store: TableStore, customer_id: str, subscription_id: str, data_table: str) -> bool:
    """Known to the inventory, or holding data rows (the inventory may be refreshed after the data)."""
    if store.get(SUBSCRIPTIONS, customer_key(customer_id), make_key(subscription_id)) is not None:
        return True
    return has_rows(store, data_table, subscription_key(customer_id, subscription_id))


def customer_row(store: TableStore, customer_id: str) -> dict[str, Any] | None:
    """The inventory row of a customer, or None."""
    return store.get(CUSTOMERS, CUSTOMER_PARTITION, customer_key(customer_id))


def customer_known(store: TableStore, customer_id: str) -> bool:
    """In the customer inventory, or owning a subscription in it."""
    return customer_row(store, customer_id) is not None or has_rows(store, SUBSCRIPTIONS, customer_key(customer_id))


def newest_run(store: TableStore, function: str, *, finished: bool = False) -> dict[str, Any] | None:
    """The newest run record of a timer function (RowKeys sort newest first), optionally the newest finished."""
    if finished:
        rows = store.query(
            RUNS,
            "PartitionKey eq @pk and status ne @running",
            {"pk": function, "running": str(RunStatus.RUNNING)},
            page_size=1,
            limit=1,
        )
    else:
        rows = store.partition(RUNS, function, page_size=1, limit=1)
    return next(rows, None)


def customers_page(
    store: TableStore, *, after: str | None, size: int, keep: Callable[[Mapping[str, Any]], bool] | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``size`` customers (those ``keep`` accepts) after the RowKey ``after``, in key order, and whether more
    follow."""
    query_filter = "PartitionKey eq @pk" + ("" if after is None else " and RowKey gt @after")
    parameters = {"pk": CUSTOMER_PARTITION, **({} if after is None else {"after": after})}
    return bounded_page(store, CUSTOMERS, query_filter, parameters, size=size, keep=keep)


def customer_relationships(store: TableStore) -> dict[str, str]:
    """Every known customer's relationship (``ok`` or ``forbidden``), by customer id."""
    return {
        row["customerId"]: row.get("relationship", "ok")
        for row in store.partition(CUSTOMERS, CUSTOMER_PARTITION, select=["customerId", "relationship"])
    }


def subscriptions_of(store: TableStore, customer_id: str) -> list[dict[str, Any]]:
    """The inventory rows of a customer's subscriptions."""
    return list(store.partition(SUBSCRIPTIONS, customer_key(customer_id)))


def subscription_row(store: TableStore, customer_id: str, subscription_id: str) -> dict[str, Any] | None:
    """The inventory row of one subscription, or None."""
    return store.get(SUBSCRIPTIONS, customer_key(customer_id), make_key(subscription_id))


def billing_months(store: TableStore, customer_id: str) -> list[str]:
    """The billing months (``YYYY-MM``) for which a usage record of the customer is stored."""
    rows = store.query(
        USAGE_RECORDS, "RowKey eq @k and PartitionKey ne @latest", {"k": customer_key(customer_id), "latest": LATEST}
    )
    return sorted({row["PartitionKey"] for row in rows})


def _of_customer(customer_id: str) -> dict[str, str]:
    """Key bounds of every subscription key of a customer (``{customer}|...``)."""
    low, high = under(customer_id.lower())
    return {"low": low, "high": high}


def billing_periods(store: TableStore, customer_id: str) -> dict[str, list[str]]:
    """By subscription key, the start dates (``YYYY-MM-DD``) of the billing periods whose summary is stored."""
    rows = store.query(
        USAGE_SUMMARIES,
        "PartitionKey ge @low and PartitionKey lt @high",
        _of_customer(customer_id),
        select=["PartitionKey", "RowKey"],
    )
    periods: dict[str, list[str]] = {}
    for row in rows:
        period = period_start(row["RowKey"])
        if period is not None:
            periods.setdefault(row["PartitionKey"], []).append(period)
    return {key: sorted(found) for key, found in periods.items()}


def utilization_through(store: TableStore, customer_id: str) -> dict[str, str]:
    """By subscription key, how far the stored utilization reaches (the end of the last window fully stored)."""
    rows = store.query(
        SYNC_STATE,
        "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
        {"pk": UTILIZATION_STATE, **_of_customer(customer_id)},
        select=["RowKey", "doneThrough"],
    )
    return {row["RowKey"]: row["doneThrough"] for row in rows if row.get("doneThrough")}


# -- Azure plan rated usage --------------------------------------------------------------------------------------


def rated_pointers(store: TableStore, customer_id: str, entitlement_id: str | None = None) -> list[RatedPointer]:
    """The pointers (RatedSlices) of a customer, or of one of its Azure subscriptions: one query, whatever the range
    of days asked for."""
    pointers = [RatedPointer.of_row(row) for row in store.partition(RATED_SLICES, customer_key(customer_id))]
    return [p for p in pointers if entitlement_id is None or p.entitlement_id == entitlement_id]


def rated_customer_periods(store: TableStore, customer_id: str) -> list[RatedCustomerPeriod]:
    """A customer's totals per period and currency (RatedCustomerDays), every period."""
    return [RatedCustomerPeriod.of_row(row) for row in store.partition(RATED_CUSTOMER_DAYS, customer_key(customer_id))]


def export_streams(store: TableStore, partition: str = RATED_USAGE_STATE) -> list[ExportStream]:
    """Every export stream of a SyncState partition (the rated usage's by default): the snapshot stored, the export
    in flight."""
    return [ExportStream.of_row(row) for row in store.partition(SYNC_STATE, partition)]


LINE_CHUNKS_PER_READ = 20  # chunk rows per service page: a page of 1000 lines reads a few


def rated_line_chunks(
    store: TableStore,
    customer_id: str,
    entitlement_id: str,
    first_day: str,
    end_day: str,
    *,
    after: str | None,
) -> Iterator[tuple[dict[str, Any], int]]:
    """An Azure subscription's line rows (chunks of a day slice's lines) with usage days in ``[first_day, end_day)``
    in key order, read lazily a service page at a time, each with the lines of it already served: from the start of
    the range, or from a continuation's position (``RowKey`` of a chunk served whole, or ``RowKey#lines`` inside
    one)."""
    partition = rated_lines_partition(customer_id, entitlement_id)
    parameters = {"pk": partition, "hi": end_day}
    skip_key, skip = None, 0
    if after is None:
        query_filter = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        parameters["lo"] = first_day
    elif "#" in after:  # a RowKey never holds '#': the position inside a chunk
        skip_key, _, count = after.partition("#")
        skip = int(count) if count.isdigit() else 0
        query_filter = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        parameters["lo"] = skip_key
    else:
        query_filter = "PartitionKey eq @pk and RowKey gt @after and RowKey lt @hi"
        parameters["after"] = after
    for entity in store.query(RATED_LINES, query_filter, parameters, page_size=LINE_CHUNKS_PER_READ):
        yield entity, (skip if entity["RowKey"] == skip_key else 0)


# -- spend ------------------------------------------------------------------------------------------------------


def spend_months_page(
    store: TableStore,
    period: str,
    *,
    after: str | None,
    size: int,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``size`` customers' months of a period (those ``keep`` accepts) after the RowKey ``after``."""
    query_filter = "PartitionKey eq @pk" + ("" if after is None else " and RowKey gt @after")
    parameters = {"pk": period, **({} if after is None else {"after": after})}
    return bounded_page(store, SPEND_MONTHS, query_filter, parameters, size=size, select=_MONTH_TOTALS, keep=keep)


def spend_months(store: TableStore, period: str, *, by_day: bool = False) -> Iterable[dict[str, Any]]:
    """Every customer's month of a period (without its daily series; ``by_day``: with its day sums to price)."""
    return store.partition(SPEND_MONTHS, period, select=_MONTH_TOTALS + (_MONTH_DAY_SUMS if by_day else []))


def spend_month_day_sums(store: TableStore, period: str, first: str, last: str) -> dict[str, dict[str, Any]]:
    """The day sums to price (``priceableDays``) of the customers' months from RowKey ``first`` to ``last``: one
    query for a page of the overview."""
    rows = store.query(
        SPEND_MONTHS,
        "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
        {"pk": period, "lo": first, "hi": last},
        select=["RowKey", *_MONTH_DAY_SUMS],
    )
    return {str(row["RowKey"]): row for row in rows}


# What an overview reads of a customer's month: everything but its daily series.
_MONTH_TOTALS = [
    "RowKey",
    "customerId",
    "period",
    "customerName",
    "relationship",
    "currencies",
    "included",
    "excluded",
    "subscriptions",
    "usageRecord",
    "asOf",
    "status",
    "storedAt",
    *(f"{PRICEABLE}{n or ''}" for n in range(MAX_PARTS)),
]
_MONTH_DAY_SUMS = [f"{PRICEABLE_DAYS}{n or ''}" for n in range(MAX_PARTS)]


def customer_spend(
    store: TableStore, customer_id: str, first_period: str, last_period: str
) -> tuple[list[SpendMonth], list[SpendSubject]]:
    """A customer's months and subjects (SpendDays) of the months ``first``..``last``: one range query, whatever
    the range (only stored months come back)."""
    low, high = spend_days_range(first_period, last_period)
    rows = store.query(
        SPEND_DAYS,
        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
        {"pk": customer_key(customer_id), "lo": low, "hi": high},
    )
    months, subjects = [], []
    for row in rows:
        if is_month_row(row):
            months.append(SpendMonth.of_row(row))
        else:
            subjects.append(SpendSubject.of_row(row))
    return months, subjects


def reseller_months(store: TableStore, period: str) -> list[dict[str, Any]]:
    """Every reseller of record's month (SpendResellers) of a period."""
    return list(store.partition(SPEND_RESELLERS, period))
