"""The spend read model's rows: typed contracts with their keys, written at ingest and read by the spend routes.

- ``SpendDays`` (``SpendSubject``): one per (customer, month, currency, subject) where a subject is an Azure
  subscription under an Azure plan (rated usage), a legacy subscription (utilization priced by the rate card) or
  an Azure plan known only by its usage summary; its cost per day and its month's total, exact.
- ``SpendMonths`` (``SpendMonth``): one per (month, customer): per currency the total, the daily series, the
  total by source and by reseller of record; which subscriptions are included and which are not and why; the
  Partner Center usage record's figure and budget beside it. The month's partition is the partner's overview.
- ``SpendResellers`` (``ResellerMonth``): one per (month, reseller of record): its customers' spend through it.
- ``SpendMarks`` (``SpendMark``): what changed and must be projected again (a customer's month; a legacy
  subscription's usage day), written by the sync that stored the change, removed by the projection.
- ``UtilizationDays`` (``UtilizationDay``): a legacy subscription's quantity per meter for one usage day,
  summed from its Utilization rows.
- ``RateCards`` (``RateCardSnapshot``): dated snapshots of the rate card per (currency, region), the card's JSON
  as received, compressed, in parts.

Money is text with every digit. Every figure is an *estimate* until its invoice's billed data is stored; then it
is ``billed`` and keeps its last estimate beside it (``estimate``; ``estimateDelta`` per currency).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared import jsonutil
from shared.keys import make_key
from shared.pricing import amounts
from shared.pricing.amounts import Amounts
from shared.tables import customer_key, subscription_key

SPEND_DAYS = "SpendDays"
SPEND_MONTHS = "SpendMonths"
SPEND_RESELLERS = "SpendResellers"
SPEND_MARKS = "SpendMarks"
UTILIZATION_DAYS = "UtilizationDays"
RATE_CARDS = "RateCards"
TABLES = (SPEND_DAYS, SPEND_MONTHS, SPEND_RESELLERS, SPEND_MARKS, UTILIZATION_DAYS, RATE_CARDS)

MARKS_PARTITION = "marks"
DIRECT = "direct"  # the RowKey of what no reseller sold (SpendResellers)
ESTIMATED = "estimated"  # until the invoice's billed data is stored
BILLED = "billed"  # from an invoice's billed data (final)
PARTLY_BILLED = "partlyBilled"  # a month (or currency) whose figures are some billed, some still estimated
PART_BYTES = 60_000  # of compressed rate card per row (a binary property holds 64 KiB)


class Source(StrEnum):
    """Where a figure comes from (a closed set: this service's own vocabulary)."""

    RATED_USAGE = "ratedUsage"  # the Graph billing export's daily rated usage (Azure plan)
    UTILIZATION_RATE_CARD = "utilization×rateCard"  # noqa: RUF001 (the issue's name) legacy usage x rate card
    USAGE_SUMMARY = "usageSummary"  # Partner Center's subscription usage summary (a period total, no days)
    USAGE_RECORD = "usageRecord"  # Partner Center's customer usage record (a month total, no days)
    BILLED_USAGE = "billedUsage"  # the Graph billed usage export of an invoice (final daily rated usage)
    RECONCILIATION = "reconciliation"  # the Graph billed reconciliation export of an invoice (every charge)


class Reason(StrEnum):
    """Why a subscription is not (or not wholly) in a spend figure."""

    UNPRICED = "unpriced"  # legacy usage of meters the rate card does not price (quantities are given)
    NOT_YET_FETCHED = "notYetFetched"  # no usage of it is stored yet
    FORBIDDEN = "forbidden"  # the partner has no relationship with the customer (403/20002)
    LICENCE_NOT_COVERED = "licenceNotCovered"  # licences and other offers: their charges come with billed data
    OUTSIDE_GRANT = "outsideGrant"  # a scoped caller's: counted, never named
    # legacy commerce (MS-AZR-0145P) in a month its invoice closed: billed, but not in Microsoft's billed exports, so
    # its figure stays the estimate (in the figures: a note, not a gap)
    NOT_IN_BILLED_EXPORTS = "notInBilledExports"


def month_of(day: str) -> str:
    """``YYYY-MM`` of ``YYYY-MM-DD``."""
    return day[:7]


def next_month(period: str) -> str:
    """The month after ``YYYY-MM``."""
    year, month = int(period[:4]), int(period[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


# -- SpendDays --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SpendSubject:
    """One subject's spend in one month and currency."""

    customer_id: str
    period: str  # YYYY-MM
    currency: str
    kind: str  # azure_subscription, legacy, azure_plan (summary only)
    subject_id: str  # the Azure subscription (entitlement) id, or the Partner Center subscription id
    subscription_id: str | None  # the Partner Center subscription (an Azure subscription's plan)
    name: str | None
    reseller: str | None  # MPN id of the reseller of record; None: bought direct
    source: Source
    days: Mapping[str, str]  # YYYY-MM-DD -> amount (exact text); empty for a period total without days
    total: str
    unpriced: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # meter id -> name, unit, quantity
    as_of: str | None = None  # how fresh its source is (export created, utilization stored through, modified)
    status: str = ESTIMATED
    stored_at: str | None = None
    # day -> meter category -> [cost, list]: what each viewer's price is made of (a period total: none)
    amounts: Mapping[str, Amounts] = field(default_factory=dict)
    estimate: str | None = None  # billed: the last estimate of the same figure (None: it had none)
    invoice_ids: tuple[str, ...] = ()  # billed: the invoices (and credit notes) it comes from
    billing: Mapping[str, Any] | None = None  # a charge's billingCycle, term, chargeTypes, chargeStart/End, prorated

    @property
    def rule_kind(self) -> str:
        """The subscription kind a price rule's adjustment names: ``azure_plan`` (an Azure plan, its Azure
        subscriptions), ``legacy``, else the kind as stored."""
        return "azure_plan" if self.kind == "azure_subscription" else self.kind

    @property
    def row_key(self) -> str:
        """``{YYYY-MM}|{currency}|{kind}|{subject}``: a RowKey range is a month range."""
        return make_key(self.period, self.currency.upper(), self.kind, self.subject_id.lower())

    def row(self) -> dict[str, Any]:
        """Its SpendDays row."""
        return {
            "PartitionKey": customer_key(self.customer_id),
            "RowKey": self.row_key,
            "customerId": self.customer_id,
            "period": self.period,
            "currencyCode": self.currency,
            "kind": self.kind,
            "subjectId": self.subject_id,
            "subscriptionId": self.subscription_id,
            "name": self.name,
            "reseller": self.reseller,
            "source": str(self.source),
            "status": self.status,
            "days": jsonutil.dumps(dict(sorted(self.days.items()))),
            "total": self.total,
            "unpriced": jsonutil.dumps(self.unpriced) if self.unpriced else None,
            "asOf": self.as_of,
            "storedAt": self.stored_at,
            **packed_json(AMOUNTS, {day: amounts.as_json(found) for day, found in sorted(self.amounts.items())}),
            "estimate": self.estimate,
            "invoiceIds": jsonutil.dumps(list(self.invoice_ids)) if self.invoice_ids else None,
            "billing": jsonutil.dumps(self.billing) if self.billing else None,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> SpendSubject:
        """The subject of a SpendDays row."""
        return cls(
            customer_id=str(row["customerId"]),
            period=str(row["period"]),
            currency=str(row["currencyCode"]),
            kind=str(row["kind"]),
            subject_id=str(row["subjectId"]),
            subscription_id=_text(row.get("subscriptionId")),
            name=_text(row.get("name")),
            reseller=_text(row.get("reseller")),
            source=Source(str(row["source"])),
            days=_json_map(row.get("days")),
            total=str(row.get("total") or "0"),
            unpriced=_json_map(row.get("unpriced")),
            as_of=_text(row.get("asOf")),
            status=str(row.get("status") or ESTIMATED),
            stored_at=_text(row.get("storedAt")),
            amounts={str(day): amounts.of_json(found) for day, found in _json_map(unpacked_json(AMOUNTS, row)).items()},
            estimate=_text(row.get("estimate")),
            invoice_ids=tuple(str(i) for i in _json_of(row.get("invoiceIds"), "[]")),
            billing=_json_map(row.get("billing")) or None,
        )


MONTH_SUFFIX = "|~month"  # "~" sorts after every subject's key of the month


def month_row_key(period: str) -> str:
    """The SpendDays RowKey of a customer's month row."""
    return make_key(period) + MONTH_SUFFIX


def is_month_row(row: Mapping[str, Any]) -> bool:
    """Is this SpendDays row a customer's month (not a subject)?"""
    return str(row["RowKey"]).endswith(MONTH_SUFFIX)


def spend_days_range(first_period: str, last_period: str) -> tuple[str, str]:
    """RowKey bounds ``[low, high)`` of every SpendDays row of the months ``first``..``last`` of a customer."""
    return make_key(first_period), make_key(next_month(last_period))


# -- SpendMonths ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Excluded:
    """A subscription left out of a customer's figures (or in them only in part), and why."""

    subscription_id: str
    kind: str
    reason: Reason
    name: str | None = None
    reseller: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Its shape in the row."""
        found = {"subscriptionId": self.subscription_id, "kind": self.kind, "reason": str(self.reason)}
        return {**found, "name": self.name, "reseller": self.reseller, "detail": self.detail}

    @classmethod
    def of_json(cls, value: Mapping[str, Any]) -> Excluded:
        """One as stored."""
        return cls(
            str(value["subscriptionId"]),
            str(value["kind"]),
            Reason(str(value["reason"])),
            _text(value.get("name")),
            _text(value.get("reseller")),
            _text(value.get("detail")),
        )


@dataclass(frozen=True)
class CurrencyTotals:
    """A customer's month in one currency: total, daily series, by source, by reseller of record ("" direct)."""

    total: str
    days: Mapping[str, str]
    by_source: Mapping[str, str]
    by_reseller: Mapping[str, str]
    status: str = ESTIMATED  # estimated, billed, or partlyBilled
    by_kind: Mapping[str, str] = field(default_factory=dict)  # azure usage and each charge kind
    invoice_ids: tuple[str, ...] = ()
    estimate: str | None = None  # billed: the last estimate of what is now billed
    estimate_delta: str | None = None  # billed: billed - that estimate (of the figures that had one)

    def as_json(self) -> dict[str, Any]:
        """Its shape in the row's ``currencies`` (the days go to the row's ``days``, which an overview skips)."""
        return {
            "total": self.total,
            "bySource": dict(sorted(self.by_source.items())),
            "byReseller": dict(sorted(self.by_reseller.items())),
            "status": self.status,
            "byKind": dict(sorted(self.by_kind.items())),
            "invoiceIds": list(self.invoice_ids),
            "estimate": self.estimate,
            "estimateDelta": self.estimate_delta,
        }

    @classmethod
    def of_json(cls, value: Mapping[str, Any], days: Mapping[str, Any] | None = None) -> CurrencyTotals:
        """One as stored (``days``: its series, when the row's ``days`` were read)."""
        invoices = value.get("invoiceIds")
        return cls(
            str(value.get("total") or "0"),
            _json_map(days),
            _json_map(value.get("bySource")),
            _json_map(value.get("byReseller")),
            status=str(value.get("status") or ESTIMATED),
            by_kind=_json_map(value.get("byKind")),
            invoice_ids=tuple(str(i) for i in invoices) if isinstance(invoices, list) else (),
            estimate=_text(value.get("estimate")),
            estimate_delta=_text(value.get("estimateDelta")),
        )


@dataclass(frozen=True, kw_only=True)
class SpendMonth:
    """A customer's month: its totals per currency, its coverage, Partner Center's own figure and budget."""

    customer_id: str
    period: str
    customer_name: str | None
    relationship: str
    currencies: Mapping[str, CurrencyTotals]
    included: int  # subjects in the figures
    excluded: tuple[Excluded, ...]
    subscriptions: Mapping[str, str | None]  # every subscription known for it -> its reseller of record
    usage_record: Mapping[str, Any] | None = None  # totalCost, currencyCode, budget, percentUsed, asOf
    as_of: Mapping[str, str] = field(default_factory=dict)  # source -> the oldest freshness of its figures
    status: str = ESTIMATED
    stored_at: str | None = None
    # currency -> reseller of record ("" direct) -> rule kind -> category -> [cost, list]: the month's sums a
    # price is made of when one rule prices the whole month
    priceable: Mapping[str, Mapping[str, Mapping[str, Amounts]]] = field(default_factory=dict)
    # the same per day (currency -> reseller -> kind -> day -> category -> [cost, list]), for a month in which a
    # price rule takes effect: read only then (its own property)
    priceable_days: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Amounts]]]] = field(default_factory=dict)

    @property
    def resellers(self) -> frozenset[str | None]:
        """The resellers of record of its subscriptions (None: bought direct)."""
        return frozenset(self.subscriptions.values())

    def customer_row(self) -> dict[str, Any]:
        """The same month in the customer's own SpendDays partition (RowKey ``{YYYY-MM}|~month``, after its
        subjects), so a customer's months and subjects are one range query."""
        return {**self.row(), "PartitionKey": customer_key(self.customer_id), "RowKey": month_row_key(self.period)}

    def row(self) -> dict[str, Any]:
        """Its SpendMonths row."""
        return {
            "PartitionKey": self.period,
            "RowKey": customer_key(self.customer_id),
            "customerId": self.customer_id,
            "period": self.period,
            "customerName": self.customer_name,
            "relationship": self.relationship,
            "currencies": jsonutil.dumps({c: t.as_json() for c, t in sorted(self.currencies.items())}),
            "days": jsonutil.dumps({c: dict(sorted(t.days.items())) for c, t in sorted(self.currencies.items())}),
            "included": self.included,
            "excluded": jsonutil.dumps([e.as_json() for e in self.excluded]),
            "subscriptions": jsonutil.dumps(dict(sorted(self.subscriptions.items()))),
            "usageRecord": jsonutil.dumps(self.usage_record) if self.usage_record is not None else None,
            "asOf": jsonutil.dumps(dict(sorted(self.as_of.items()))),
            "status": self.status,
            "storedAt": self.stored_at,
            **packed_json(PRICEABLE, _nested(self.priceable, 3, amounts.as_json)),
            **packed_json(PRICEABLE_DAYS, _nested(self.priceable_days, 4, amounts.as_json)),
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> SpendMonth:
        """The month of a SpendMonths row."""
        record = _json_of(row.get("usageRecord"), "null")
        days = _json_map(row.get("days"))
        return cls(
            customer_id=str(row["customerId"]),
            period=str(row["period"]),
            customer_name=_text(row.get("customerName")),
            relationship=str(row.get("relationship") or "ok"),
            currencies={c: CurrencyTotals.of_json(v, days.get(c)) for c, v in _json_map(row.get("currencies")).items()},
            included=int(row.get("included") or 0),
            excluded=tuple(Excluded.of_json(e) for e in _json_of(row.get("excluded"), "[]")),
            subscriptions={str(k): _text(v) for k, v in _json_map(row.get("subscriptions")).items()},
            usage_record=record if isinstance(record, Mapping) else None,
            as_of={str(k): str(v) for k, v in _json_map(row.get("asOf")).items()},
            status=str(row.get("status") or ESTIMATED),
            stored_at=_text(row.get("storedAt")),
            priceable=_nested(_json_map(unpacked_json(PRICEABLE, row)), 3, amounts.of_json),
            priceable_days=priceable_days_of(row),
        )


def priceable_days_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A SpendMonths row's day sums (``priceableDays``), when it was read with them."""
    found = _nested(_json_map(unpacked_json(PRICEABLE_DAYS, row)), 4, amounts.of_json)
    return found if isinstance(found, dict) else {}


# -- SpendResellers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ResellerMonth:
    """What one reseller of record (None: direct) sold that was spent in a month, over its customers."""

    period: str
    reseller: str | None
    customers: int
    totals: Mapping[str, str]  # currency -> total
    stored_at: str | None = None

    def row(self) -> dict[str, Any]:
        """Its SpendResellers row."""
        return {
            "PartitionKey": self.period,
            "RowKey": make_key(self.reseller or DIRECT),
            "period": self.period,
            "reseller": self.reseller,
            "customers": self.customers,
            "totals": jsonutil.dumps(dict(sorted(self.totals.items()))),
            "storedAt": self.stored_at,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> ResellerMonth:
        """The month of a SpendResellers row."""
        return cls(
            period=str(row["period"]),
            reseller=_text(row.get("reseller")),
            customers=int(row.get("customers") or 0),
            totals=_json_map(row.get("totals")),
            stored_at=_text(row.get("storedAt")),
        )


# -- SpendMarks -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendMark:
    """A customer's month to project again."""

    customer_id: str
    period: str

    @property
    def row_key(self) -> str:
        """``{customer}|{YYYY-MM}``."""
        return make_key(self.customer_id.lower(), self.period)

    def row(self) -> dict[str, Any]:
        """Its SpendMarks row."""
        return {
            "PartitionKey": MARKS_PARTITION,
            "RowKey": self.row_key,
            "customerId": self.customer_id.lower(),
            "period": self.period,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> SpendMark:
        """The mark of a SpendMarks row."""
        return cls(str(row["customerId"]), str(row["period"]))


# -- UtilizationDays --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UtilizationDay:
    """A legacy subscription's usage of one UTC day reported in one window (``window``: its start key), or, with
    ``window`` None, summed over every window that reported part of the day: quantity per meter, exact."""

    customer_id: str
    subscription_id: str
    day: str
    meters: Mapping[str, tuple[str, str, str]]  # meter id -> (quantity, name, unit)
    records: int
    window: str | None = None

    def row(self) -> dict[str, Any]:
        """Its UtilizationDays row (RowKey ``{day}|{window}``: a day is a key range over its windows)."""
        return {
            "PartitionKey": subscription_key(self.customer_id, self.subscription_id),
            "RowKey": f"{self.day}|{self.window or '-'}",
            "customerId": self.customer_id,
            "subscriptionId": self.subscription_id,
            "day": self.day,
            "meters": jsonutil.dumps({k: list(v) for k, v in sorted(self.meters.items())}),
            "records": self.records,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> UtilizationDay:
        """The window's day of a UtilizationDays row."""
        meters = {
            str(k): (str(v[0]), str(v[1]), str(v[2]))
            for k, v in _json_map(row.get("meters")).items()
            if isinstance(v, list) and len(v) == 3
        }
        day, _, window = str(row["RowKey"]).partition("|")  # window: its start key (and ``#n`` for a part)
        return cls(str(row["customerId"]), str(row["subscriptionId"]), day, meters, int(row["records"]), window or None)


# -- RateCards --------------------------------------------------------------------------------------------------


def rate_card_partition(currency: str, region: str) -> str:
    """RateCards PartitionKey: ``{currency}|{region}``."""
    return make_key(currency.upper(), region.upper())


@dataclass(frozen=True, kw_only=True)
class RateCardSnapshot:
    """A card as fetched on ``day`` (in force from that day until the next snapshot): its head row and parts."""

    currency: str
    region: str
    day: str  # YYYY-MM-DD
    digest: str  # SHA-256 of the card's JSON as received: an equal digest is an unchanged card
    meters: int
    parts: int
    fetched_at: str
    checked_at: str | None = None

    def head(self) -> dict[str, Any]:
        """Its head row (RowKey: the day)."""
        return {
            "PartitionKey": rate_card_partition(self.currency, self.region),
            "RowKey": self.day,
            "currencyCode": self.currency,
            "region": self.region,
            "digest": self.digest,
            "meters": self.meters,
            "parts": self.parts,
            "fetchedAt": self.fetched_at,
            "checkedAt": self.checked_at,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RateCardSnapshot:
        """The snapshot of a head row."""
        return cls(
            currency=str(row["currencyCode"]),
            region=str(row["region"]),
            day=str(row["RowKey"]),
            digest=str(row["digest"]),
            meters=int(row.get("meters") or 0),
            parts=int(row["parts"]),
            fetched_at=str(row["fetchedAt"]),
            checked_at=_text(row.get("checkedAt")),
        )

    def part_rows(self, text: str) -> list[dict[str, Any]]:
        """The card's JSON text, compressed, in parts of at most PART_BYTES (RowKey ``{day}|{n:03d}``)."""
        data = zlib.compress(text.encode("utf-8"), 9)
        chunks = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
        pk = rate_card_partition(self.currency, self.region)
        return [{"PartitionKey": pk, "RowKey": f"{self.day}|{n:03d}", "data": c} for n, c in enumerate(chunks)]


def card_text(parts: Iterable[Mapping[str, Any]]) -> str:
    """The card's JSON text again, from its part rows in RowKey order."""
    return zlib.decompress(b"".join(bytes(row["data"]) for row in parts)).decode("utf-8")


# -- helpers ----------------------------------------------------------------------------------------------------

AMOUNTS = "amounts"
PRICEABLE = "priceable"
PRICEABLE_DAYS = "priceableDays"
MAX_PARTS = 16  # properties of PART_BYTES each: ~1 MB of compressed JSON, far above a month of any subscription


def packed_json(name: str, value: Any) -> dict[str, bytes]:
    """A JSON value as compressed binary properties ``name``, ``name1``, ... of at most PART_BYTES each (a binary
    property holds 64 KiB); {} for an empty value."""
    if not value:
        return {}
    data = zlib.compress(jsonutil.dumps(value).encode("utf-8"), 6)
    chunks = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    if len(chunks) > MAX_PARTS:
        raise ValueError(f"{name} is {len(data)} bytes compressed; a row holds at most {MAX_PARTS * PART_BYTES}")
    return {f"{name}{n or ''}": chunk for n, chunk in enumerate(chunks)}


def unpacked_json(name: str, row: Mapping[str, Any]) -> Any:
    """The value ``packed_json`` stored (None when the row has none, or it is damaged)."""
    parts = []
    for n in range(MAX_PARTS):
        part = row.get(f"{name}{n or ''}")
        if part is None:
            break
        parts.append(bytes(part))
    if not parts:
        return None
    try:
        return jsonutil.loads(zlib.decompress(b"".join(parts)).decode("utf-8"))
    except (zlib.error, ValueError):
        return None


def _nested(value: Any, depth: int, leaf: Any) -> Any:
    """``leaf`` applied ``depth`` mappings down."""
    if depth == 0:
        return leaf(value)
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _nested(v, depth - 1, leaf) for k, v in sorted(value.items())}


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _json_of(text: Any, empty: str) -> Any:
    if isinstance(text, Mapping | list):  # a member of a JSON document already read
        return text
    try:
        return jsonutil.loads(text or empty)
    except ValueError:
        return jsonutil.loads(empty)


def _json_map(text: Any) -> dict[str, Any]:
    found = _json_of(text, "{}")
    return found if isinstance(found, dict) else {}
