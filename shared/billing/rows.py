"""The billed data's tables: their names, keys and rows, defined once.

- ``Invoices``: one row per Partner Center invoice or credit note (partition ``invoice``), its fields exact as
  received (``raw`` holds the JSON), and, once its billed data is stored whole, the *pointer* to it:
  ``billedVersion`` (which version of its lines is served), when, how many lines, and its tie-out.
- ``InvoiceLines``: every line of an invoice's two billed exports as received, partition
  ``{invoice}|{version}``, RowKey ``{customer}|{r|u}|{blob}|{line}`` (``r`` reconciliation, ``u`` billed usage),
  so one customer's lines are one key range. Rows of a version are written before the pointer names it: a
  reader that follows the pointer never sees a mix. The same partition keeps the ingest's partial tallies
  (``~seg|...``), one per resumable segment.
- ``InvoiceCustomers``: per (invoice, customer) its totals by kind and its tie-out (billed usage = the usage part
  of the reconciliation).
- ``BilledSpend``: per (customer, month, currency, kind, subject, invoice) what was billed, the row the spend
  projection reads: Azure usage per Azure subscription and day (the billed usage export), and every other
  charge (licences, reservations, marketplace...) as a period total with its billing cycle.

Money is text with every digit.
"""

from __future__ import annotations

import decimal
import itertools
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from shared import jsonutil
from shared.billing.lines import AZURE_USAGE, ChargeLine
from shared.keys import make_key
from shared.pricing import amounts
from shared.pricing.amounts import EXACT, ZERO, Amounts, money_text
from shared.rated.lines import RatedLine
from shared.tables import customer_key

INVOICES = "Invoices"
INVOICE_LINES = "InvoiceLines"
INVOICE_CUSTOMERS = "InvoiceCustomers"
BILLED_SPEND = "BilledSpend"
TABLES = (INVOICES, INVOICE_LINES, INVOICE_CUSTOMERS, BILLED_SPEND)

INVOICE_PARTITION = "invoice"
UNBILLED_PARTITION = "unbilled"  # the open periods' charges, each stored like an invoice (never listed as one)
UNBILLED = "Unbilled"  # their documentType
BILLED_STATE = "billed_ingest"  # SyncState partition: one BilledProgress per invoice being ingested
RECONCILIATION, USAGE = "r", "u"  # the two exports of an invoice, in the order they are read
SEGMENT_PREFIX = "~seg"  # "~" sorts after every customer key: a partition's tallies follow its lines
PART_BYTES = 60_000  # of a compressed tally per row property (a binary property holds 64 KiB)
BILLED_USAGE_KIND = "azure_subscription"  # a billed Azure subscription's usage: the same kind as its estimate
CREDIT_NOTE = "credit note"


def invoice_key(invoice_id: str) -> str:
    """The RowKey of an invoice: its id, upper-cased."""
    return make_key(invoice_id.strip().upper())


def lines_partition(invoice_id: str, version: str) -> str:
    """The InvoiceLines partition of one version of an invoice's billed data."""
    return make_key(invoice_id.strip().upper(), version)


def line_key(customer_id: str, source: str, blob: int, number: int) -> str:
    """``{customer}|{r|u}|{blob}|{line}``: a customer's lines are one key range, in export order."""
    return make_key(customer_id.lower(), source, f"{blob:05d}", f"{number:09d}")


Position = tuple[str, int, int]  # (export: RECONCILIATION or USAGE, blob, line): where a segment starts or ends
START: Position = (RECONCILIATION, 0, 0)
DONE: Position = (USAGE, 1 << 30, 0)  # every line of both exports


def position_text(position: Position) -> str:
    source, blob, line = position
    return f"{source}.{blob:010d}.{line:09d}"


def _position(text: str) -> Position:
    source, blob, line = text.split(".")
    return source, int(blob), int(line)


def segment_key(start: Position, end: Position, part: int) -> str:
    """The RowKey of one part of the tally of the lines from ``start`` to ``end``: two runs that wrote the same
    range wrote the same tally, and ranges that differ never share a key."""
    return make_key(SEGMENT_PREFIX, position_text(start), position_text(end), f"{part:03d}")


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _date_text(value: Any) -> str | None:
    """``YYYY-MM-DD`` of a Partner Center date-time (the date as written: invoice dates are UTC)."""
    text = _text(value)
    return text[:10] if text and len(text) >= 10 else None


# -- Invoices ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Invoice:
    """A Partner Center invoice (or credit note) as listed by ``GET /v1/invoices``."""

    id: str
    invoice_date: str | None  # YYYY-MM-DD
    period_start: str | None  # YYYY-MM-DD
    period_end: str | None
    currency: str
    total_charges: str  # exact text
    paid_amount: str | None
    document_type: str  # "Invoice", "Credit Note" (as sent)
    invoice_type: str | None  # "Recurring", "OneTime" (as sent)
    amends_of: str | None
    amendments: tuple[str, ...]  # ids of the documents that amend it
    raw: str  # the JSON as received

    @property
    def period(self) -> str | None:
        """The billing month (``YYYY-MM``) it closes: its billing period's start."""
        return self.period_start[:7] if self.period_start else None

    @property
    def is_credit_note(self) -> bool:
        return self.document_type.strip().lower() == CREDIT_NOTE

    @property
    def is_unbilled(self) -> bool:
        """The open period's charges of one currency (``unbilled`` reconciliation export), not an invoice."""
        return self.document_type == UNBILLED

    @property
    def partition(self) -> str:
        """Its Invoices partition."""
        return UNBILLED_PARTITION if self.is_unbilled else INVOICE_PARTITION

    @property
    def keys(self) -> dict[str, str]:
        """PartitionKey and RowKey of its Invoices row."""
        return {"PartitionKey": self.partition, "RowKey": invoice_key(self.id)}

    @classmethod
    def unbilled(cls, currency: str, period: str, billing_period: str, day: str) -> Invoice:
        """The open period ``period`` (``current`` or ``last``: ``billing_period``) of one currency, exported
        again once a day (``day``, as its one "amendment")."""
        return cls(
            id=f"UNBILLED-{currency.upper()}-{period.replace('-', '')}",
            invoice_date=None,
            period_start=period + "-01",
            period_end=None,
            currency=currency.upper(),
            total_charges="0",
            paid_amount=None,
            document_type=UNBILLED,
            invoice_type=billing_period,
            amends_of=None,
            amendments=(day,),
            raw="{}",
        )

    @property
    def amendments_digest(self) -> str:
        return ",".join(sorted(self.amendments))

    @classmethod
    def parse(cls, item: Any) -> Invoice:
        """An invoice from its JSON; ValueError names what is missing."""
        if not isinstance(item, Mapping):
            raise ValueError("an invoice is not a JSON object")
        invoice_id = _text(item.get("id"))
        if not invoice_id or len(invoice_id) > 100 or not invoice_id.isprintable():
            raise ValueError("an invoice has no id")
        currency = _text(item.get("currencyCode"))
        if not currency or len(currency.strip()) != 3 or not currency.strip().isalpha():
            raise ValueError(f"invoice {invoice_id} has no currencyCode")
        total = item.get("totalCharges")
        if isinstance(total, bool) or not isinstance(total, int | str | Decimal):
            raise ValueError(f"invoice {invoice_id} has no totalCharges number")
        try:
            total_value = Decimal(str(total))
        except decimal.InvalidOperation:
            raise ValueError(f"invoice {invoice_id}: totalCharges is not a number") from None
        if not total_value.is_finite():
            raise ValueError(f"invoice {invoice_id}: totalCharges is not finite")
        paid = item.get("paidAmount")
        amendments = item.get("amendments") if isinstance(item.get("amendments"), list) else []
        return cls(
            id=invoice_id.strip().upper(),
            invoice_date=_date_text(item.get("invoiceDate")),
            period_start=_date_text(item.get("billingPeriodStartDate")),
            period_end=_date_text(item.get("billingPeriodEndDate")),
            currency=currency.strip().upper(),
            total_charges=money_text(total_value),
            paid_amount=None if paid is None or isinstance(paid, bool) else str(paid),
            document_type=_text(item.get("documentType")) or "Invoice",
            invoice_type=_text(item.get("invoiceType")),
            amends_of=(_text(item.get("amendsOf")) or "").strip().upper() or None,
            amendments=tuple(
                sorted(
                    str(a["id"]).strip().upper()
                    for a in amendments or []
                    if isinstance(a, Mapping) and _text(a.get("id"))
                )
            ),
            raw=jsonutil.dumps(item),
        )

    def row(self) -> dict[str, Any]:
        """Its Invoices row: the listed fields only (merged: the billed pointer written by the ingest stays)."""
        return {
            **self.keys,
            "invoiceId": self.id,
            "invoiceDate": self.invoice_date,
            "periodStart": self.period_start,
            "periodEnd": self.period_end,
            "period": self.period,
            "currencyCode": self.currency,
            "totalCharges": self.total_charges,
            "paidAmount": self.paid_amount,
            "documentType": self.document_type,
            "invoiceType": self.invoice_type,
            "amendsOf": self.amends_of,
            "amendments": jsonutil.dumps(list(self.amendments)),
            "raw": self.raw,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Invoice:
        """The invoice of an Invoices row."""
        listed = jsonutil.loads(str(row.get("amendments") or "[]"))
        return cls(
            id=str(row["invoiceId"]),
            invoice_date=_text(row.get("invoiceDate")),
            period_start=_text(row.get("periodStart")),
            period_end=_text(row.get("periodEnd")),
            currency=str(row["currencyCode"]),
            total_charges=str(row["totalCharges"]),
            paid_amount=_text(row.get("paidAmount")),
            document_type=str(row.get("documentType") or "Invoice"),
            invoice_type=_text(row.get("invoiceType")),
            amends_of=_text(row.get("amendsOf")),
            amendments=tuple(str(a) for a in listed) if isinstance(listed, list) else (),
            raw=str(row.get("raw") or "{}"),
        )


@dataclass(frozen=True, kw_only=True)
class Billed:
    """The billed pointer of an invoice: which version of its lines is served, and what they add up to."""

    version: str
    billed_at: str
    reconciliation_etag: str
    usage_etag: str
    amendments: str  # the amendments digest the data was exported for
    lines: int
    usage_lines: int
    quarantined: int
    tie_out: Mapping[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.tie_out.get("passed"))

    def row(self, invoice: Invoice) -> dict[str, Any]:
        """The properties merged into the invoice's row."""
        return {
            **invoice.keys,
            "billedVersion": self.version,
            "billedAt": self.billed_at,
            "reconciliationETag": self.reconciliation_etag,
            "usageETag": self.usage_etag,
            "amendmentsExported": self.amendments,
            "reconciliationLines": self.lines,
            "usageLines": self.usage_lines,
            "quarantinedLines": self.quarantined,
            "tieOut": jsonutil.dumps(self.tie_out),
            "tieOutPassed": self.passed,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Billed | None:
        """The pointer in an Invoices row, or None before its billed data is stored."""
        if not row.get("billedVersion"):
            return None
        tie_out = jsonutil.loads(str(row.get("tieOut") or "{}"))
        return cls(
            version=str(row["billedVersion"]),
            billed_at=str(row.get("billedAt") or ""),
            reconciliation_etag=str(row.get("reconciliationETag") or ""),
            usage_etag=str(row.get("usageETag") or ""),
            amendments=str(row.get("amendmentsExported") or ""),
            lines=int(row.get("reconciliationLines") or 0),
            usage_lines=int(row.get("usageLines") or 0),
            quarantined=int(row.get("quarantinedLines") or 0),
            tie_out=tie_out if isinstance(tie_out, Mapping) else {},
        )


# -- the ingest's progress ------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExportLeg:
    """One of an invoice's two exports: the operation in flight, or the manifest it finished with."""

    operation_url: str | None = None
    started_at: str | None = None
    manifest: Mapping[str, Any] | None = None  # as received (its SAS is a credential: never logged nor served)
    no_data: bool = False  # the export failed with code 5000: the invoice has none of this data

    def as_json(self) -> dict[str, Any]:
        return {
            "operationUrl": self.operation_url,
            "startedAt": self.started_at,
            "manifest": self.manifest,
            "noData": self.no_data,
        }

    @classmethod
    def of_json(cls, value: Any) -> ExportLeg:
        if not isinstance(value, Mapping):
            return cls()
        manifest = value.get("manifest")
        return cls(
            operation_url=_text(value.get("operationUrl")),
            started_at=_text(value.get("startedAt")),
            manifest=manifest if isinstance(manifest, Mapping) else None,
            no_data=bool(value.get("noData")),
        )


@dataclass(frozen=True, kw_only=True)
class BilledProgress:
    """How far the ingest of one invoice's billed data got: the version being written, the exports, and the
    cursor (export, blob, line) up to which lines and tallies are stored."""

    invoice_id: str
    version: str | None = None
    legs: Mapping[str, ExportLeg] = field(default_factory=dict)  # RECONCILIATION / USAGE -> its export
    source: str = RECONCILIATION  # the export the cursor is in
    blob: int = 0  # blobs of it done before this one
    line: int = 0  # lines of the current blob done
    segments: int = 0  # tallies stored
    runs: int = 0

    def leg(self, source: str) -> ExportLeg:
        return self.legs.get(source) or ExportLeg()

    def with_leg(self, source: str, leg: ExportLeg) -> BilledProgress:
        return replace(self, legs={**self.legs, source: leg})

    def row(self) -> dict[str, Any]:
        """Its SyncState row."""
        return {
            "PartitionKey": BILLED_STATE,
            "RowKey": invoice_key(self.invoice_id),
            "invoiceId": self.invoice_id,
            "version": self.version,
            "legs": jsonutil.dumps({k: v.as_json() for k, v in sorted(self.legs.items())}),
            "source": self.source,
            "blob": self.blob,
            "line": self.line,
            "segments": self.segments,
            "runs": self.runs,
        }

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> BilledProgress:
        legs = jsonutil.loads(str(row.get("legs") or "{}"))
        return cls(
            invoice_id=str(row["invoiceId"]),
            version=_text(row.get("version")),
            legs={str(k): ExportLeg.of_json(v) for k, v in legs.items()} if isinstance(legs, Mapping) else {},
            source=str(row.get("source") or RECONCILIATION),
            blob=int(row.get("blob") or 0),
            line=int(row.get("line") or 0),
            segments=int(row.get("segments") or 0),
            runs=int(row.get("runs") or 0),
        )


# -- the tally: what an invoice's lines add up to ------------------------------------------------------------------


SubjectKey = tuple[str, str, str, str, str]  # customer, period, currency, kind, subject


def _add(a: Decimal, b: Decimal) -> Decimal:
    with decimal.localcontext(EXACT):
        return a + b


@dataclass
class SubjectTally:
    """One billed subject's sums: per day (usage) or for its period (charges), with its cost and list amounts."""

    customer_id: str
    period: str
    currency: str
    kind: str
    subject_id: str
    subscription_id: str | None = None
    name: str | None = None
    reseller: str | None = None
    total: Decimal = ZERO
    days: dict[str, Decimal] = field(default_factory=dict)
    amounts: dict[str, Amounts] = field(default_factory=dict)  # day (charges: the month's first) -> amounts
    lines: int = 0
    billing_cycle: str | None = None
    term: str | None = None
    charge_types: set[str] = field(default_factory=set)
    charge_start: str | None = None
    charge_end: str | None = None
    prorated: bool = False

    @property
    def key(self) -> SubjectKey:
        return (self.customer_id, self.period, self.currency, self.kind, self.subject_id)

    def merge(self, other: SubjectTally) -> None:
        self.total = _add(self.total, other.total)
        for day, value in other.days.items():
            self.days[day] = _add(self.days.get(day, ZERO), value)
        for day, found in other.amounts.items():
            amounts.merge(self.amounts.setdefault(day, {}), found)
        self.lines += other.lines
        self.subscription_id = self.subscription_id or other.subscription_id
        self.name = self.name or other.name
        self.reseller = self.reseller or other.reseller
        self.billing_cycle = self.billing_cycle or other.billing_cycle
        self.term = self.term or other.term
        self.charge_types |= other.charge_types
        starts = [d for d in (self.charge_start, other.charge_start) if d]
        ends = [d for d in (self.charge_end, other.charge_end) if d]
        self.charge_start = min(starts) if starts else None
        self.charge_end = max(ends) if ends else None
        self.prorated = self.prorated or other.prorated

    def as_json(self) -> dict[str, Any]:
        return {
            "c": self.customer_id,
            "p": self.period,
            "cur": self.currency,
            "k": self.kind,
            "s": self.subject_id,
            "sub": self.subscription_id,
            "n": self.name,
            "r": self.reseller,
            "t": money_text(self.total),
            "d": {day: money_text(v) for day, v in self.days.items()},
            "a": {day: amounts.as_json(found) for day, found in self.amounts.items()},
            "l": self.lines,
            "bc": self.billing_cycle,
            "term": self.term,
            "ct": sorted(self.charge_types),
            "cs": self.charge_start,
            "ce": self.charge_end,
            "pr": self.prorated,
        }

    @classmethod
    def of_json(cls, v: Mapping[str, Any]) -> SubjectTally:
        return cls(
            customer_id=str(v["c"]),
            period=str(v["p"]),
            currency=str(v["cur"]),
            kind=str(v["k"]),
            subject_id=str(v["s"]),
            subscription_id=_text(v.get("sub")),
            name=_text(v.get("n")),
            reseller=_text(v.get("r")),
            total=Decimal(str(v["t"])),
            days={str(d): Decimal(str(x)) for d, x in (v.get("d") or {}).items()},
            amounts={str(d): amounts.of_json(x) for d, x in (v.get("a") or {}).items()},
            lines=int(v.get("l") or 0),
            billing_cycle=_text(v.get("bc")),
            term=_text(v.get("term")),
            charge_types={str(x) for x in v.get("ct") or []},
            charge_start=_text(v.get("cs")),
            charge_end=_text(v.get("ce")),
            prorated=bool(v.get("pr")),
        )


@dataclass
class CustomerTally:
    """One customer's part of an invoice."""

    customer_id: str
    name: str | None = None
    resellers: set[str] = field(default_factory=set)
    total: Decimal = ZERO  # reconciliation Total (with tax)
    subtotal: Decimal = ZERO
    by_kind: dict[str, Decimal] = field(default_factory=dict)  # reconciliation Subtotal per kind
    usage_billed: Decimal = ZERO  # the billed usage export's BillingPreTaxTotal
    lines: int = 0
    usage_lines: int = 0

    def merge(self, other: CustomerTally) -> None:
        self.name = self.name or other.name
        self.resellers |= other.resellers
        self.total = _add(self.total, other.total)
        self.subtotal = _add(self.subtotal, other.subtotal)
        for kind, value in other.by_kind.items():
            self.by_kind[kind] = _add(self.by_kind.get(kind, ZERO), value)
        self.usage_billed = _add(self.usage_billed, other.usage_billed)
        self.lines += other.lines
        self.usage_lines += other.usage_lines

    @property
    def usage_reconciled(self) -> Decimal:
        return self.by_kind.get(AZURE_USAGE, ZERO)

    def as_json(self) -> dict[str, Any]:
        return {
            "c": self.customer_id,
            "n": self.name,
            "r": sorted(self.resellers),
            "t": money_text(self.total),
            "st": money_text(self.subtotal),
            "k": {kind: money_text(v) for kind, v in sorted(self.by_kind.items())},
            "u": money_text(self.usage_billed),
            "l": self.lines,
            "ul": self.usage_lines,
        }

    @classmethod
    def of_json(cls, v: Mapping[str, Any]) -> CustomerTally:
        return cls(
            customer_id=str(v["c"]),
            name=_text(v.get("n")),
            resellers={str(x) for x in v.get("r") or []},
            total=Decimal(str(v["t"])),
            subtotal=Decimal(str(v["st"])),
            by_kind={str(k): Decimal(str(x)) for k, x in (v.get("k") or {}).items()},
            usage_billed=Decimal(str(v["u"])),
            lines=int(v.get("l") or 0),
            usage_lines=int(v.get("ul") or 0),
        )


@dataclass
class Tally:
    """What a run of lines adds up to: per subject, per customer, and for the invoice. Its size grows with the
    subjects and customers of the invoice, never with its lines."""

    subjects: dict[SubjectKey, SubjectTally] = field(default_factory=dict)
    customers: dict[str, CustomerTally] = field(default_factory=dict)
    total: Decimal = ZERO  # the reconciliation lines' Total
    lines: int = 0
    usage_lines: int = 0
    quarantined: int = 0

    def _subject(self, key: SubjectKey) -> SubjectTally:
        found = self.subjects.get(key)
        if found is None:
            found = self.subjects[key] = SubjectTally(*key)
        return found

    def _customer(self, customer_id: str) -> CustomerTally:
        found = self.customers.get(customer_id)
        if found is None:
            found = self.customers[customer_id] = CustomerTally(customer_id)
        return found

    def add_charge(self, line: ChargeLine, fallback_period: str) -> None:
        """One reconciliation line."""
        self.lines += 1
        customer = self._customer(line.customer_id)
        customer.name = customer.name or line.customer_name
        if line.reseller:
            customer.resellers.add(line.reseller)
        customer.lines += 1
        with decimal.localcontext(EXACT):  # one context for the line's sums: every digit kept, or a trap
            self.total += line.total
            customer.total += line.total
            customer.subtotal += line.subtotal
            customer.by_kind[line.kind] = customer.by_kind.get(line.kind, ZERO) + line.subtotal
            if line.kind == AZURE_USAGE:
                return  # Azure usage is in spend by day, from the billed usage export
            period = line.period(fallback_period)
            subject = self._subject((line.customer_id, period, line.currency, line.kind, line.subject_id))
            subject.total += line.subtotal
        amounts.add_to(subject.amounts.setdefault(period + "-01", {}), line.category, line.subtotal, line.list_total)
        subject.lines += 1
        subject.subscription_id = subject.subscription_id or line.subscription_id
        subject.name = subject.name or line.name
        subject.reseller = subject.reseller or line.reseller
        subject.billing_cycle = subject.billing_cycle or line.billing_cycle
        subject.term = subject.term or line.term
        if line.charge_type:
            subject.charge_types.add(line.charge_type)
        if line.charge_start and (subject.charge_start is None or line.charge_start < subject.charge_start):
            subject.charge_start = line.charge_start
        if line.charge_end and (subject.charge_end is None or line.charge_end > subject.charge_end):
            subject.charge_end = line.charge_end
        subject.prorated = subject.prorated or line.prorated

    def add_usage(self, line: RatedLine) -> None:
        """One billed usage line (final daily rated usage)."""
        self.usage_lines += 1
        customer = self._customer(line.customer_id)
        customer.name = customer.name or line.names[0]
        customer.usage_lines += 1
        key = (line.customer_id, line.period, line.currency, BILLED_USAGE_KIND, line.entitlement_id)
        subject = self._subject(key)
        with decimal.localcontext(EXACT):  # one context for the line's sums, as add_charge
            customer.usage_billed += line.billing_total
            subject.total += line.billing_total
            subject.days[line.day] = subject.days.get(line.day, ZERO) + line.billing_total
        amounts.add_to(subject.amounts.setdefault(line.day, {}), line.category, line.billing_total, line.list_total)
        subject.lines += 1
        subject.name = subject.name or line.names[1]
        subject.subscription_id = subject.subscription_id or (line.names[2] or "").lower() or None
        reseller = (line.names[3] or "").strip().lower()
        subject.reseller = subject.reseller or reseller or None

    def merge(self, other: Tally) -> None:
        for key, subject in other.subjects.items():
            self._subject(key).merge(subject)
        for customer_id, customer in other.customers.items():
            self._customer(customer_id).merge(customer)
        self.total = _add(self.total, other.total)
        self.lines += other.lines
        self.usage_lines += other.usage_lines
        self.quarantined += other.quarantined

    @property
    def empty(self) -> bool:
        return not (self.lines or self.usage_lines or self.quarantined)

    def packed(self) -> bytes:
        body = {
            "s": [s.as_json() for s in self.subjects.values()],
            "c": [c.as_json() for c in self.customers.values()],
            "t": money_text(self.total),
            "l": self.lines,
            "ul": self.usage_lines,
            "q": self.quarantined,
        }
        return zlib.compress(jsonutil.dumps(body).encode("utf-8"), 6)

    @classmethod
    def unpacked(cls, data: bytes) -> Tally:
        body = jsonutil.loads(zlib.decompress(data))
        tally = cls(total=Decimal(str(body["t"])), lines=int(body["l"]), usage_lines=int(body["ul"]))
        tally.quarantined = int(body.get("q") or 0)
        for value in body["s"]:
            subject = SubjectTally.of_json(value)
            tally.subjects[subject.key] = subject
        for value in body["c"]:
            customer = CustomerTally.of_json(value)
            tally.customers[customer.customer_id] = customer
        return tally

    def segment_rows(self, partition: str, start: Position, end: Position) -> list[dict[str, Any]]:
        """The tally of the lines from ``start`` to ``end`` as rows (parts of at most PART_BYTES)."""
        data = self.packed()
        parts = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
        return [
            {
                "PartitionKey": partition,
                "RowKey": segment_key(start, end, n),
                "start": position_text(start),
                "end": position_text(end),
                "data": part,
                "parts": len(parts),
            }
            for n, part in enumerate(parts)
        ]


class IncompleteTallies(Exception):
    """The stored segments do not cover the export from its first line to its last."""


def tally_of_segments(rows: Iterable[Mapping[str, Any]]) -> Tally:
    """The tally of every line: a chain of stored segments from START to DONE, merged. Each segment is the exact
    tally of its range, so runs that overlapped (and checkpointed at different lines) still add up to each line
    once: the chain uses one segment per range, and there is always one (a cursor is stored only after the
    segment ending there)."""
    pieces: dict[tuple[str, str], dict[int, bytes]] = {}
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (str(row["start"]), str(row["end"]))
        pieces.setdefault(key, {})[int(str(row["RowKey"]).rsplit("|", 1)[-1])] = bytes(row["data"])
        counts[key] = int(row.get("parts") or 1)
    edges: dict[str, list[str]] = {}
    for (start, end), found in pieces.items():
        if len(found) == counts[(start, end)]:  # a segment whose parts are all stored
            edges.setdefault(start, []).append(end)
    path = _chain(edges, position_text(START), position_text(DONE))
    whole = Tally()
    for start, end in itertools.pairwise(path):
        found = pieces[(start, end)]
        whole.merge(Tally.unpacked(b"".join(found[n] for n in sorted(found))))
    return whole


def _chain(edges: Mapping[str, list[str]], first: str, last: str) -> list[str]:
    """Positions from ``first`` to ``last`` along stored segments (the longest steps tried first)."""
    stack, seen = [[first]], {first}
    while stack:
        path = stack.pop()
        if path[-1] == last:
            return path
        for end in sorted(edges.get(path[-1], ()), key=_position):  # pushed in order: the farthest is tried first
            if end not in seen:
                seen.add(end)
                stack.append([*path, end])
    raise IncompleteTallies(f"no stored segments lead from {first} to {last}")


# -- BilledSpend ------------------------------------------------------------------------------------------------


def billed_spend_key(subject: SubjectTally, invoice_id: str) -> str:
    """``{YYYY-MM}|{currency}|{kind}|{subject}|{invoice}``: a customer's month is a key range."""
    return make_key(
        subject.period, subject.currency.upper(), subject.kind, subject.subject_id.lower(), invoice_id.upper()
    )


def billed_spend_row(subject: SubjectTally, invoice: Invoice, version: str) -> dict[str, Any]:
    """The BilledSpend row of one subject of one invoice."""
    return {
        "PartitionKey": customer_key(subject.customer_id),
        "RowKey": billed_spend_key(subject, invoice.id),
        "customerId": subject.customer_id,
        "period": subject.period,
        "currencyCode": subject.currency,
        "kind": subject.kind,
        "subjectId": subject.subject_id,
        "subscriptionId": subject.subscription_id,
        "name": subject.name,
        "reseller": subject.reseller,
        "invoiceId": invoice.id,
        "documentType": invoice.document_type,
        "version": version,
        "total": money_text(subject.total),
        "days": jsonutil.dumps({d: money_text(v) for d, v in sorted(subject.days.items())}),
        "amounts": zlib.compress(
            jsonutil.dumps({d: amounts.as_json(found) for d, found in sorted(subject.amounts.items())}).encode(), 6
        ),
        "lines": subject.lines,
        "billingCycle": subject.billing_cycle,
        "term": subject.term,
        "chargeTypes": jsonutil.dumps(sorted(subject.charge_types)),
        "chargeStart": subject.charge_start,
        "chargeEnd": subject.charge_end,
        "prorated": subject.prorated,
    }


@dataclass(frozen=True, kw_only=True)
class BilledSubject:
    """A BilledSpend row as the spend projection reads it."""

    customer_id: str
    period: str
    currency: str
    kind: str
    subject_id: str
    subscription_id: str | None
    name: str | None
    reseller: str | None
    invoice_id: str
    total: Decimal
    days: Mapping[str, Decimal]
    amounts: Mapping[str, Amounts]
    billing: Mapping[str, Any]  # billingCycle, term, chargeTypes, chargeStart, chargeEnd, prorated
    unbilled: bool = False  # from the open period's unbilled reconciliation: an estimate until invoiced

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> BilledSubject:
        days = jsonutil.loads(str(row.get("days") or "{}"))
        packed = row.get("amounts")
        found = jsonutil.loads(zlib.decompress(bytes(packed))) if packed else {}
        types = jsonutil.loads(str(row.get("chargeTypes") or "[]"))
        return cls(
            customer_id=str(row["customerId"]),
            period=str(row["period"]),
            currency=str(row["currencyCode"]),
            kind=str(row["kind"]),
            subject_id=str(row["subjectId"]),
            subscription_id=_text(row.get("subscriptionId")),
            name=_text(row.get("name")),
            reseller=_text(row.get("reseller")),
            invoice_id=str(row["invoiceId"]),
            unbilled=row.get("documentType") == UNBILLED,
            total=Decimal(str(row.get("total") or "0")),
            days={str(d): Decimal(str(v)) for d, v in days.items()},
            amounts={str(d): amounts.of_json(v) for d, v in found.items()},
            billing={
                "billingCycle": _text(row.get("billingCycle")),
                "term": _text(row.get("term")),
                "chargeTypes": [str(t) for t in types] if isinstance(types, list) else [],
                "chargeStart": _text(row.get("chargeStart")),
                "chargeEnd": _text(row.get("chargeEnd")),
                "prorated": bool(row.get("prorated")),
            },
        )
