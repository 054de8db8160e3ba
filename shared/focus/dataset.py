"""A billing period's stored cost as FOCUS rows: one per customer, subscription, usage day and meter category (the
grain the spend read model keeps), with the day's cost and list amounts; a usage summary (a period total without
days) is one row over the whole month.

Rows are built from the spend read model (``SpendDays``) as the spend routes answer from it, so the dataset and
the API agree: the sum of a customer's rows of a day and currency is the API's figure of that day.
"""

from __future__ import annotations

import decimal
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import islice
from typing import Any

from shared.focus.columns import COLUMNS, MONEY_PRECISION, MONEY_SCALE, QUANTUM, service_category
from shared.spend.project import subject_amounts
from shared.spend.rows import SPEND_DAYS, Source, SpendSubject, is_month_row, next_month, spend_days_range
from shared.table_store import TableStore

_ROUND = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_EVEN)
SUBACCOUNT_TYPES = {"azure_subscription": "Azure Subscription", "azure_plan": "Azure Plan", "legacy": "Subscription"}


@dataclass
class PeriodData:
    """What the spend read model holds of one billing period: every subject, and each customer's name."""

    period: str
    subjects: list[SpendSubject] = field(default_factory=list)
    customers: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def read(cls, store: TableStore, period: str) -> PeriodData:
        """One query over every customer's rows of the month."""
        low, high = spend_days_range(period, period)
        found = cls(period)
        for row in store.query(SPEND_DAYS, "RowKey ge @lo and RowKey lt @hi", {"lo": low, "hi": high}):
            if is_month_row(row):
                found.customers[str(row["customerId"])] = row.get("customerName") or None
            else:
                found.subjects.append(SpendSubject.of_row(row))
        return found

    def currencies(self) -> list[str]:
        """The billing currencies of the period."""
        return sorted({s.currency for s in self.subjects})


@dataclass
class Built:
    """One currency's dataset: its Parquet bytes and what the manifest says of it."""

    currency: str
    data: bytes
    rows: int
    billed_cost: Decimal
    rounded: int  # amounts with more than MONEY_SCALE decimals, rounded half-even to fit the column
    sha256: str
    unpriced: int = 0  # a grant's amounts without a price under its rule (no list price known): left out


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _money(value: Decimal, counts: Counts) -> Decimal:
    fitted = value.quantize(QUANTUM, context=_ROUND)
    if fitted != value:
        counts.rounded += 1
    return fitted


@dataclass(frozen=True)
class View:
    """Whose dataset: the partner's (every subject, at cost), or a grant's (``keep`` its subjects, ``price`` each
    amount under its price rule: (subject, day, category, cost, list) -> price, None when it has none)."""

    keep: Callable[[SpendSubject], bool] | None = None
    price: Callable[[SpendSubject, str, str, Decimal, Decimal | None], Decimal | None] | None = None


PARTNER_VIEW = View()


@dataclass
class Counts:
    """What building a file met: amounts rounded to fit the money columns, amounts without a price (left out)."""

    rounded: int = 0
    unpriced: int = 0


def rows_of(
    data: PeriodData, currency: str, billing_account: str, counts: Counts | None = None, view: View = PARTNER_VIEW
) -> Iterator[dict[str, Any]]:
    """The FOCUS rows of one currency (as Python values, in a stable order), for the partner or a grant."""
    start = date.fromisoformat(data.period + "-01")
    end = date.fromisoformat(next_month(data.period) + "-01")
    counts = counts if counts is not None else Counts()
    mine = (s for s in data.subjects if s.currency == currency and (view.keep is None or view.keep(s)))
    for subject in sorted(mine, key=lambda s: (s.customer_id, s.kind, s.subject_id)):
        whole_month = not subject.days  # a period total (a usage summary, a charge): one row over the month
        charge = subject.source == Source.RECONCILIATION  # a licence, reservation, marketplace... purchase
        one_invoice = len(subject.invoice_ids) == 1 and view.price is None
        invoice = subject.invoice_ids[0] if one_invoice else None
        for day, amounts in sorted(subject_amounts(subject).items()):
            first = start if whole_month else date.fromisoformat(day)
            last = end if whole_month else first + timedelta(days=1)
            for category, (cost, listed) in sorted(amounts.items()):
                cost = cost or Decimal(0)
                if view.price is not None:
                    priced = view.price(subject, day, category, cost, listed)
                    if priced is None:
                        counts.unpriced += 1
                        continue
                    cost = priced
                billed = _money(cost, counts)
                yield (
                    {
                        "BilledCost": billed,
                        "BillingAccountId": billing_account,
                        "BillingAccountType": "CSP Partner",
                        "BillingCurrency": currency,
                        "BillingPeriodStart": _utc(start),
                        "BillingPeriodEnd": _utc(end),
                        "ChargeCategory": "Purchase" if charge else "Usage",
                        "ChargeDescription": f"{category or 'Azure usage'} ({subject.name or subject.subject_id})",
                        "ChargeFrequency": "Recurring" if charge else "Usage-Based",
                        "ChargePeriodStart": _utc(first),
                        "ChargePeriodEnd": _utc(last),
                        "ContractedCost": billed,
                        "EffectiveCost": billed,
                        "InvoiceId": invoice,
                        "InvoiceIssuerName": "Microsoft",
                        "ListCost": billed if listed is None else _money(listed, counts),
                        "ProviderName": "Microsoft",
                        "PublisherName": "Microsoft",
                        "ServiceCategory": service_category(category),
                        "ServiceName": category or ("Azure (legacy)" if subject.kind == "legacy" else "Azure plan"),
                        "SubAccountId": subject.subject_id,
                        "SubAccountName": subject.name,
                        "SubAccountType": SUBACCOUNT_TYPES.get(subject.kind, subject.kind),
                        "x_CustomerId": subject.customer_id,
                        "x_CustomerName": data.customers.get(subject.customer_id),
                        "x_ResellerId": subject.reseller,
                        "x_SubscriptionId": subject.subscription_id,
                        "x_SubscriptionKind": subject.rule_kind,
                        "x_Source": str(subject.source),
                        "x_Status": subject.status,
                        "x_ListCostSource": "cost" if listed is None else "list",
                        "x_Figures": "cost" if view.price is None else "price",
                    }
                )


def arrow_schema() -> Any:
    """The Arrow schema of the dataset (FOCUS types; every column present, in the specification's order)."""
    import pyarrow as pa

    types = {
        "Decimal": pa.decimal128(MONEY_PRECISION, MONEY_SCALE),
        "DateTime": pa.timestamp("us", tz="UTC"),
        "Boolean": pa.bool_(),
    }
    fields = [pa.field(c.name, types.get(c.kind, pa.string()), nullable=c.nullable) for c in COLUMNS]
    return pa.schema(fields, metadata={b"focus_version": b"1.2"})


ROW_GROUP = 50_000  # rows held in memory at a time: one Parquet row group


def build(data: PeriodData, currency: str, billing_account: str, view: View = PARTNER_VIEW) -> Built:
    """One currency's Parquet file (zstd), written a row group at a time: memory holds one group's rows and the
    compressed file, whatever the period's size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    sink = io.BytesIO()
    counts, count, billed = Counts(), 0, Decimal(0)
    with pq.ParquetWriter(sink, schema, compression="zstd", write_statistics=True) as parquet:
        rows = rows_of(data, currency, billing_account, counts, view)
        while batch := list(islice(rows, ROW_GROUP)):
            parquet.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
            with decimal.localcontext(_ROUND):
                billed += sum((row["BilledCost"] for row in batch), Decimal(0))
    payload = sink.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    return Built(currency, payload, count, billed, counts.rounded, digest, counts.unpriced)


def coverage(data: PeriodData) -> dict[str, Any]:
    """FOCUS 1.3-style completeness of the period: per source, the days and subscriptions it covers."""
    found: dict[str, dict[str, Any]] = {}
    for subject in data.subjects:
        entry = found.setdefault(str(subject.source), {"subscriptions": 0, "firstDay": None, "lastDay": None})
        entry["subscriptions"] += 1
        days = sorted(subject.days) or [data.period + "-01"]
        entry["firstDay"] = min(filter(None, (entry["firstDay"], days[0])))
        entry["lastDay"] = max(filter(None, (entry["lastDay"], days[-1])))
    return dict(sorted(found.items()))


def freshness(subjects: Iterable[SpendSubject]) -> Mapping[str, str]:
    """Per source, how fresh its oldest figure is (export created, utilization stored through)."""
    found: dict[str, str] = {}
    for subject in subjects:
        source = str(subject.source)
        if subject.as_of and (source not in found or subject.as_of < found[source]):
            found[source] = subject.as_of
    return dict(sorted(found.items()))
