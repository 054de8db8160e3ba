"""Projecting a customer's month into the spend read model, from what the timers stored (never at read time).

For one (customer, month): read its inventory, its Azure plan pointers (rated usage per Azure subscription and day),
its legacy subscriptions' usage per day (UtilizationDays, tallied per reported window as the utilization sync stores
its rows), the rate cards in force, its usage summaries and its usage record; compute each subject's days and total
and the customer's totals, coverage and budget (``compute``, pure); then write the SpendDays rows, remove those of
subjects gone, and write the SpendMonths row (``project``). A projection is idempotent: the same sources give the
same rows.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.billing.lines import AZURE_USAGE
from shared.billing.rows import BILLED_SPEND, BILLED_USAGE_KIND, CREDIT_NOTE, INVOICE_PARTITION, INVOICES, BilledSubject
from shared.keys import make_key, under
from shared.pricing import amounts
from shared.pricing.amounts import EXACT, Amounts, money_text
from shared.spend import usage
from shared.spend.ratecard import RateCard, price_month
from shared.spend.rows import (
    BILLED,
    ESTIMATED,
    PARTLY_BILLED,
    SPEND_DAYS,
    SPEND_MONTHS,
    UTILIZATION_DAYS,
    CurrencyTotals,
    Excluded,
    Reason,
    Source,
    SpendMonth,
    SpendSubject,
    UtilizationDay,
    month_of,
    next_month,
    spend_days_range,
)
from shared.table_store import TableStore
from shared.tables import (
    CUSTOMER_PARTITION,
    CUSTOMERS,
    LATEST,
    RATED_SLICES,
    RATED_USAGE_STATE,
    SUBSCRIPTIONS,
    SYNC_STATE,
    USAGE_RECORDS,
    USAGE_SUMMARIES,
    UTILIZATION_STATE,
    ExportStream,
    RatedPointer,
    Relationship,
    SubscriptionKind,
    customer_key,
    subscription_key,
)
from shared.timeutil import utc_text

CardOf = Callable[[str, str], RateCard | None]  # (currency, day) -> the card in force that day


def _sum(values: Iterable[Decimal | str]) -> Decimal:
    with decimal.localcontext(EXACT):
        return sum((Decimal(v) for v in values), Decimal(0))


# -- the sources of one customer --------------------------------------------------------------------------------


@dataclass
class Sources:
    """What the timers stored for one customer that its month's spend is made of."""

    customer_id: str
    customer: Mapping[str, Any] | None
    subscriptions: Sequence[Mapping[str, Any]]
    pointers: list[RatedPointer]
    summaries: Mapping[str, Mapping[str, Any]]  # subscription id -> latest usage summary row
    usage_record: Mapping[str, Any] | None
    legacy_days: dict[str, list[UtilizationDay]]  # legacy subscription id -> its usage days of the month
    fetched_through: dict[str, str]  # legacy subscription id -> utilization stored through (doneThrough)
    exported: frozenset[tuple[str, str]]  # (currency, period) covered by a stored export snapshot
    currency: str | None  # the customer's billing currency, when a source says it
    billed: Sequence[BilledSubject] = ()  # what its invoices billed that month (BilledSpend)
    closed: frozenset[tuple[str, str]] = frozenset()  # (currency, period) of every invoice stored billed


def closed_periods(store: TableStore) -> frozenset[tuple[str, str]]:
    """(currency, month) of every invoice (not a credit note) whose billed data is stored: its month is closed."""
    found = set()
    for row in store.partition(
        INVOICES, INVOICE_PARTITION, select=["currencyCode", "period", "documentType", "billedVersion"]
    ):
        if row.get("billedVersion") and row.get("period") and str(row.get("documentType") or "").lower() != CREDIT_NOTE:
            found.add((str(row["currencyCode"]).upper(), str(row["period"])))
    return frozenset(found)


def exported_periods(store: TableStore) -> frozenset[tuple[str, str]]:
    """(currency, month) of every stored export snapshot: read once per projection pass."""
    return frozenset(
        (stream.currency, covered)
        for stream in (ExportStream.of_row(row) for row in store.partition(SYNC_STATE, RATED_USAGE_STATE))
        if stream.snapshot_etag
        for covered in stream.periods
    )


@dataclass
class Stored:
    """The rows of a set of customers that their month's spend is made of, read table by table (``many``) or
    customer by customer (``one``): the same sources either way."""

    customers: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    pointers: dict[str, list[RatedPointer]] = field(default_factory=dict)
    summaries: dict[str, dict[str, Mapping[str, Any]]] = field(default_factory=dict)
    records: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # the month's usage record
    latest_records: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    legacy_days: dict[tuple[str, str], list[UtilizationDay]] = field(default_factory=dict)
    fetched: dict[str, str] = field(default_factory=dict)  # subscription key -> doneThrough
    spend_keys: dict[str, set[str]] = field(default_factory=dict)  # customer key -> its SpendDays RowKeys
    billed: dict[str, list[BilledSubject]] = field(default_factory=dict)  # customer -> its month's BilledSpend

    @classmethod
    def many(cls, store: TableStore, period: str) -> Stored:
        """Every customer's rows of the month: one query per table, for a projection of many customers."""
        found = cls()
        for row in store.partition(CUSTOMERS, CUSTOMER_PARTITION):
            found.customers[str(row["customerId"])] = row
        for row in store.all_rows(SUBSCRIPTIONS):
            found.subscriptions.setdefault(str(row["customerId"]), []).append(row)
        for row in store.query(RATED_SLICES, "period eq @p", {"p": period}):
            found.pointers.setdefault(str(row["customerId"]), []).append(RatedPointer.of_row(row))
        for row in store.query(USAGE_SUMMARIES, "RowKey eq @latest", {"latest": LATEST}):
            found.summaries.setdefault(str(row["customerId"]), {})[str(row["subscriptionId"])] = row
        for row in store.partition(USAGE_RECORDS, period):
            found.records[str(row["customerId"])] = row
        for row in store.partition(USAGE_RECORDS, LATEST):
            found.latest_records[str(row["customerId"])] = row
        windows: dict[tuple[str, str], list[UtilizationDay]] = {}
        days = store.query(
            UTILIZATION_DAYS, "RowKey ge @lo and RowKey lt @hi", {"lo": period, "hi": next_month(period)}
        )
        for row in days:
            day = UtilizationDay.of_row(row)
            windows.setdefault((day.customer_id, day.subscription_id), []).append(day)
        found.legacy_days = {key: usage.summed(rows) for key, rows in windows.items()}
        for row in store.partition(SYNC_STATE, UTILIZATION_STATE, select=["RowKey", "doneThrough"]):
            if row.get("doneThrough"):
                found.fetched[str(row["RowKey"])] = str(row["doneThrough"])
        low, high = spend_days_range(period, period)
        keys = store.query(
            SPEND_DAYS, "RowKey ge @lo and RowKey lt @hi", {"lo": low, "hi": high}, select=["PartitionKey", "RowKey"]
        )
        for row in keys:
            found.spend_keys.setdefault(str(row["PartitionKey"]), set()).add(str(row["RowKey"]))
        for row in store.query(BILLED_SPEND, "RowKey ge @lo and RowKey lt @hi", {"lo": low, "hi": high}):
            billed = BilledSubject.of_row(row)
            found.billed.setdefault(billed.customer_id, []).append(billed)
        return found

    @classmethod
    def one(cls, store: TableStore, customer_id: str, period: str) -> Stored:
        """One customer's rows of the month: a handful of queries, none over usage lines."""
        found = cls()
        key = customer_key(customer_id)
        if (customer := store.get(CUSTOMERS, CUSTOMER_PARTITION, key)) is not None:
            found.customers[customer_id] = customer
        subscriptions: list[Mapping[str, Any]] = list(store.partition(SUBSCRIPTIONS, key))
        found.subscriptions[customer_id] = subscriptions
        found.pointers[customer_id] = [
            RatedPointer.of_row(row) for row in store.partition(RATED_SLICES, key) if row.get("period") == period
        ]
        low, high = under(customer_id)
        found.summaries[customer_id] = {
            str(row["subscriptionId"]): row
            for row in store.query(
                USAGE_SUMMARIES,
                "PartitionKey ge @lo and PartitionKey lt @hi and RowKey eq @latest",
                {"lo": low, "hi": high, "latest": LATEST},
            )
        }
        if (record := store.get(USAGE_RECORDS, period, key)) is not None:
            found.records[customer_id] = record
        if (latest := store.get(USAGE_RECORDS, LATEST, key)) is not None:
            found.latest_records[customer_id] = latest
        for sub in subscriptions:
            if sub.get("kind") != SubscriptionKind.LEGACY:
                continue
            sid = str(sub["subscriptionId"])
            found.legacy_days[(customer_id, sid)] = usage.month_days(store, customer_id, sid, period)
            state = store.get(SYNC_STATE, UTILIZATION_STATE, subscription_key(customer_id, sid))
            if state and state.get("doneThrough"):
                found.fetched[subscription_key(customer_id, sid)] = str(state["doneThrough"])
        days_low, days_high = spend_days_range(period, period)
        found.spend_keys[key] = {
            str(row["RowKey"])
            for row in store.query(
                SPEND_DAYS,
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                {"pk": key, "lo": days_low, "hi": days_high},
                select=["RowKey"],
            )
        }
        found.billed[customer_id] = [
            BilledSubject.of_row(row)
            for row in store.query(
                BILLED_SPEND,
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                {"pk": key, "lo": days_low, "hi": days_high},
            )
        ]
        return found

    def sources(
        self,
        customer_id: str,
        exported: frozenset[tuple[str, str]],
        default_currency: str | None = None,
        closed: frozenset[tuple[str, str]] = frozenset(),
    ) -> Sources:
        """One customer's sources from these rows."""
        subscriptions = self.subscriptions.get(customer_id, [])
        pointers = self.pointers.get(customer_id, [])
        latest = self.records.get(customer_id) or self.latest_records.get(customer_id)
        currency = None
        if latest and latest.get("currencyCode"):
            currency = str(latest["currencyCode"]).upper()
        elif pointers:
            currency = pointers[0].currency
        legacy = [str(s["subscriptionId"]) for s in subscriptions if s.get("kind") == SubscriptionKind.LEGACY]
        return Sources(
            customer_id=customer_id,
            customer=self.customers.get(customer_id),
            subscriptions=subscriptions,
            pointers=pointers,
            summaries=self.summaries.get(customer_id, {}),
            usage_record=self.records.get(customer_id),
            legacy_days={
                sid: sorted(self.legacy_days.get((customer_id, sid), []), key=lambda d: d.day) for sid in legacy
            },
            fetched_through={
                sid: through
                for sid in legacy
                if (through := self.fetched.get(subscription_key(customer_id, sid))) is not None
            },
            exported=exported,
            currency=currency or default_currency,
            billed=self.billed.get(customer_id, []),
            closed=closed,
        )


# -- the computation ----------------------------------------------------------------------------------------------


@dataclass
class Projection:
    """A customer's month as the read model stores it."""

    subjects: list[SpendSubject]
    month: SpendMonth | None  # None: nothing is known of the customer that month


@dataclass
class _Totals:
    total: Decimal = Decimal(0)
    days: dict[str, Decimal] = field(default_factory=dict)
    by_source: dict[str, Decimal] = field(default_factory=dict)
    by_reseller: dict[str, Decimal] = field(default_factory=dict)
    by_kind: dict[str, Decimal] = field(default_factory=dict)
    statuses: set[str] = field(default_factory=set)
    invoice_ids: set[str] = field(default_factory=set)
    estimate: Decimal | None = None  # of the billed subjects that had one
    estimated_part: Decimal = Decimal(0)  # the billed figures of those subjects

    def add(self, subject: SpendSubject) -> None:
        with decimal.localcontext(EXACT):
            amount = Decimal(subject.total)
            self.total += amount
            for day, value in subject.days.items():
                self.days[day] = self.days.get(day, Decimal(0)) + Decimal(value)
            source = str(subject.source)
            self.by_source[source] = self.by_source.get(source, Decimal(0)) + amount
            reseller = subject.reseller or ""
            self.by_reseller[reseller] = self.by_reseller.get(reseller, Decimal(0)) + amount
            kind = spend_kind(subject)
            self.by_kind[kind] = self.by_kind.get(kind, Decimal(0)) + amount
            self.statuses.add(subject.status)
            self.invoice_ids.update(subject.invoice_ids)
            if subject.status == BILLED and subject.estimate is not None:
                self.estimate = (self.estimate or Decimal(0)) + Decimal(subject.estimate)
                self.estimated_part += amount

    def frozen(self) -> CurrencyTotals:
        delta = None
        if self.estimate is not None:
            with decimal.localcontext(EXACT):
                delta = money_text(self.estimated_part - self.estimate)
        return CurrencyTotals(
            money_text(self.total),
            {d: money_text(v) for d, v in self.days.items()},
            {s: money_text(v) for s, v in self.by_source.items()},
            {r: money_text(v) for r, v in self.by_reseller.items()},
            status=combined_status(self.statuses),
            by_kind={k: money_text(v) for k, v in self.by_kind.items()},
            invoice_ids=tuple(sorted(self.invoice_ids)),
            estimate=None if self.estimate is None else money_text(self.estimate),
            estimate_delta=delta,
        )


def combined_status(statuses: Iterable[str]) -> str:
    """``billed`` when every figure is, ``estimated`` when none is, else ``partlyBilled``."""
    found = set(statuses)
    if found == {BILLED}:
        return BILLED
    return PARTLY_BILLED if BILLED in found else ESTIMATED


def spend_kind(subject: SpendSubject) -> str:
    """What a subject's figure is, as spend answers list it: ``azureUsage`` (Azure plan and legacy consumption)
    or the charge kind of a reconciliation line (``licence``, ``reservation``, ``marketplace``...)."""
    return subject.kind if subject.source == Source.RECONCILIATION else AZURE_USAGE


def _mpn(value: Any) -> str | None:
    return str(value).strip().lower() if value not in (None, "") else None


def compute(sources: Sources, period: str, card_of: CardOf, now: datetime) -> Projection:
    """The customer's subjects and month from its sources (no I/O)."""
    stamp = utc_text(now)
    customer_id = sources.customer_id
    relationship = str((sources.customer or {}).get("relationship") or Relationship.OK)
    forbidden = relationship == Relationship.FORBIDDEN
    by_id = {str(s["subscriptionId"]): s for s in sources.subscriptions}
    subjects: list[SpendSubject] = []
    excluded: list[Excluded] = []
    sellers: dict[str, str | None] = {}

    # Azure plan: each Azure subscription's rated usage (billing data: served for a forbidden customer too).
    planned: set[str] = set()
    for pointer in sources.pointers:
        plan = by_id.get(pointer.subscription_id or "")
        reseller = _mpn(pointer.tier2_mpn_id) or _mpn((plan or {}).get("partnerId"))
        sellers[pointer.entitlement_id] = reseller
        planned.add(pointer.subscription_id or "")
        if not pointer.days:
            continue
        subjects.append(
            SpendSubject(
                customer_id=customer_id,
                period=period,
                currency=pointer.currency,
                kind="azure_subscription",
                subject_id=pointer.entitlement_id,
                subscription_id=pointer.subscription_id,
                name=pointer.entitlement_description,
                reseller=reseller,
                source=Source.RATED_USAGE,
                days={day: view.billing_pre_tax_total for day, view in pointer.days.items()},
                total=pointer.billing_pre_tax_total,
                as_of=pointer.snapshot_created_at,
                stored_at=stamp,
                amounts={day: view.amounts() for day, view in pointer.days.items()},
            )
        )
    for sid, sub in sorted(by_id.items()):
        kind, reseller, name = sub.get("kind"), _mpn(sub.get("partnerId")), sub.get("friendlyName")
        sellers.setdefault(sid, reseller)
        if kind == SubscriptionKind.AZURE_PLAN:
            if sid in planned:
                continue
            summary = sources.summaries.get(sid)
            in_period = summary is not None and str(summary.get("billingStartDate", ""))[:7] == period
            if summary is not None and in_period and summary.get("totalCost") is not None:
                subjects.append(_summary_subject(sources, period, sid, name, reseller, summary, stamp))
            elif sources.currency and (sources.currency, period) in sources.exported:
                continue  # the export of its currency and month is stored and holds no usage of it: it spent 0
            else:
                reason = Reason.FORBIDDEN if forbidden else Reason.NOT_YET_FETCHED
                excluded.append(Excluded(sid, kind, reason, name, reseller, "no rated usage or summary stored"))
        elif kind == SubscriptionKind.LEGACY:
            if forbidden:
                excluded.append(Excluded(sid, kind, Reason.FORBIDDEN, name, reseller))
                continue
            subject, gap = _legacy_subject(sources, period, sid, name, reseller, card_of, stamp)
            if subject is not None:
                subjects.append(subject)
            if gap is not None:
                excluded.append(gap)
        else:
            detail = "licence and other charges arrive with billed (reconciliation) data"
            excluded.append(Excluded(sid, str(kind or "other"), Reason.LICENCE_NOT_COVERED, name, reseller, detail))

    subjects, excluded = _with_billed(sources, period, subjects, excluded, sellers, stamp)
    record = _usage_record(sources.usage_record)
    if not subjects and not excluded and record is None and sources.customer is None:
        return Projection([], None)
    totals: dict[str, _Totals] = {}
    as_of: dict[str, str] = {}
    priceable: dict[str, dict[str, dict[str, Amounts]]] = {}
    priceable_days: dict[str, dict[str, dict[str, dict[str, Amounts]]]] = {}
    for subject in subjects:
        totals.setdefault(subject.currency, _Totals()).add(subject)
        seller = subject.reseller or ""
        month_amounts = (
            priceable.setdefault(subject.currency, {}).setdefault(seller, {}).setdefault(subject.rule_kind, {})
        )
        by_day = (
            priceable_days.setdefault(subject.currency, {}).setdefault(seller, {}).setdefault(subject.rule_kind, {})
        )
        for day, found in subject_amounts(subject).items():
            amounts.merge(month_amounts, found)
            amounts.merge(by_day.setdefault(day, {}), found)
        source = str(subject.source)
        if subject.as_of and (source not in as_of or subject.as_of < as_of[source]):
            as_of[source] = subject.as_of
    month = SpendMonth(
        customer_id=customer_id,
        period=period,
        customer_name=_name_of(sources),
        relationship=relationship,
        currencies={currency: t.frozen() for currency, t in totals.items()},
        included=len(subjects),
        excluded=tuple(excluded),
        subscriptions=sellers,
        usage_record=record,
        as_of=as_of,
        stored_at=stamp,
        priceable=priceable,
        priceable_days=priceable_days,
        status=combined_status(s.status for s in subjects) if subjects else ESTIMATED,
    )
    return Projection(subjects, month)


def _with_billed(
    sources: Sources,
    period: str,
    subjects: list[SpendSubject],
    excluded: list[Excluded],
    sellers: dict[str, str | None],
    stamp: str,
) -> tuple[list[SpendSubject], list[Excluded]]:
    """The month's figures with what its invoices billed: an Azure subscription's billed usage replaces its
    estimate (kept as ``estimate``); in a closed month (its invoice stored) an estimate nothing billed is billed 0;
    every other charge (licences, reservations, marketplace...) is its own subject, a period total."""
    rows: dict[tuple[str, str, str], list[BilledSubject]] = {}
    for billed in sources.billed:
        if billed.period == period and not (billed.unbilled and (billed.currency, period) in sources.closed):
            rows.setdefault((billed.currency, billed.kind, billed.subject_id), []).append(billed)
    for key, group in rows.items():  # an invoiced charge supersedes the open period's estimate of it
        if any(not b.unbilled for b in group):
            rows[key] = [b for b in group if not b.unbilled]
    if not rows and not any((s.currency, period) in sources.closed for s in subjects):
        return subjects, excluded
    out: list[SpendSubject] = []
    for subject in subjects:
        if subject.kind == BILLED_USAGE_KIND and subject.source == Source.RATED_USAGE:
            found = rows.pop((subject.currency, subject.kind, subject.subject_id), None)
            if found:
                out.append(_billed_subject(sources.customer_id, period, found, stamp, estimate=subject.total))
                continue
            if (subject.currency, period) in sources.closed:
                nothing: dict[str, Amounts] = {period + "-01": {"": [Decimal(0), Decimal(0)]}}  # 0 at any price
                billed_zero = replace(subject, total="0", days={}, amounts=nothing, estimate=subject.total)
                out.append(replace(billed_zero, status=BILLED, stored_at=stamp))
                continue
        if subject.kind == "legacy" and (subject.currency, period) in sources.closed:
            detail = "legacy commerce is not in Microsoft's billed exports: the estimate stays (its invoice bills it)"
            excluded.append(
                Excluded(
                    subject.subject_id, "legacy", Reason.NOT_IN_BILLED_EXPORTS, subject.name, subject.reseller, detail
                )
            )
        out.append(subject)
    for (_, kind, subject_id), found in sorted(rows.items()):
        estimate = "0" if kind == BILLED_USAGE_KIND else None  # billed usage no estimate showed: it was 0
        out.append(_billed_subject(sources.customer_id, period, found, stamp, estimate=estimate))
        if kind != BILLED_USAGE_KIND:  # the reseller of record on the charge's lines is the one whose it is
            sellers[subject_id] = found[0].reseller
        else:
            sellers.setdefault(subject_id, found[0].reseller)
    charged = {b.subscription_id for found in rows.values() for b in found if b.kind != BILLED_USAGE_KIND}
    kept = [e for e in excluded if not (e.reason == Reason.LICENCE_NOT_COVERED and e.subscription_id in charged)]
    return out, kept


def _billed_subject(
    customer_id: str, period: str, found: list[BilledSubject], stamp: str, *, estimate: str | None
) -> SpendSubject:
    """One subject from its BilledSpend rows (an invoice and its credit notes), summed exactly."""
    first = found[0]
    days: dict[str, Decimal] = {}
    by_day: dict[str, Amounts] = {}
    with decimal.localcontext(EXACT):
        total = sum((b.total for b in found), Decimal(0))
        for billed in found:
            for day, value in billed.days.items():
                days[day] = days.get(day, Decimal(0)) + value
            for day, day_amounts in billed.amounts.items():
                amounts.merge(by_day.setdefault(day, {}), day_amounts)
    usage = first.kind == BILLED_USAGE_KIND
    estimated = all(b.unbilled for b in found)  # the open period's charges: an estimate until invoiced
    return SpendSubject(
        customer_id=customer_id,
        period=period,
        currency=first.currency,
        kind=first.kind,
        subject_id=first.subject_id,
        subscription_id=first.subscription_id,
        name=first.name,
        reseller=first.reseller,
        source=Source.BILLED_USAGE if usage else Source.RECONCILIATION,
        days={day: money_text(v) for day, v in sorted(days.items())},
        total=money_text(total),
        status=ESTIMATED if estimated else BILLED,
        stored_at=stamp,
        amounts=by_day,
        estimate=estimate,
        invoice_ids=tuple(sorted({b.invoice_id for b in found if not b.unbilled})),
        billing=None if usage else _billing(found),
    )


def _billing(found: list[BilledSubject]) -> dict[str, Any]:
    """A charge's billing cycle and charge period over its rows."""
    starts = [b.billing["chargeStart"] for b in found if b.billing.get("chargeStart")]
    ends = [b.billing["chargeEnd"] for b in found if b.billing.get("chargeEnd")]
    return {
        "billingCycle": next((b.billing["billingCycle"] for b in found if b.billing.get("billingCycle")), None),
        "term": next((b.billing["term"] for b in found if b.billing.get("term")), None),
        "chargeTypes": sorted({t for b in found for t in b.billing.get("chargeTypes") or []}),
        "chargeStart": min(starts) if starts else None,
        "chargeEnd": max(ends) if ends else None,
        "prorated": any(b.billing.get("prorated") for b in found),
    }


def subject_amounts(subject: SpendSubject) -> Mapping[str, Amounts]:
    """A subject's cost and list per day and category; a period total without days (a usage summary) as one
    amount of its month's first day, its list price unknown."""
    if subject.amounts:
        return subject.amounts
    if subject.days:  # stored before amounts were kept: each day's cost, list unknown
        return {day: {"": [Decimal(cost), None]} for day, cost in subject.days.items()}
    return {subject.period + "-01": {"": [Decimal(subject.total), None]}}


def _name_of(sources: Sources) -> str | None:
    if sources.customer and sources.customer.get("companyName"):
        return str(sources.customer["companyName"])
    names = sorted({p.customer_name for p in sources.pointers if p.customer_name})
    return names[0] if names else None


def _summary_subject(
    sources: Sources,
    period: str,
    sid: str,
    name: Any,
    reseller: str | None,
    summary: Mapping[str, Any],
    stamp: str,
) -> SpendSubject:
    """An Azure plan known by its usage summary only: the period's total, no days."""
    currency = str(summary.get("currencyCode") or sources.currency or "").upper()
    return SpendSubject(
        customer_id=sources.customer_id,
        period=period,
        currency=currency,
        kind="azure_plan",
        subject_id=sid,
        subscription_id=sid,
        name=str(name) if name else None,
        reseller=reseller,
        source=Source.USAGE_SUMMARY,
        days={},
        total=str(summary["totalCost"]),
        as_of=str(summary.get("lastModifiedDate") or "") or None,
        stored_at=stamp,
    )


def _legacy_subject(
    sources: Sources,
    period: str,
    sid: str,
    name: Any,
    reseller: str | None,
    card_of: CardOf,
    stamp: str,
) -> tuple[SpendSubject | None, Excluded | None]:
    """A legacy subscription's days priced by the rate card; and what of it is unpriced or not fetched."""
    days = sources.legacy_days.get(sid, [])
    through = sources.fetched_through.get(sid)
    if not days and (through is None or through[:7] < period):
        return None, Excluded(sid, "legacy", Reason.NOT_YET_FETCHED, _str(name), reseller, "no utilization stored")
    currency = sources.currency
    if currency is None:
        detail = "no currency is known for the customer (no usage record stored yet)"
        return None, Excluded(sid, "legacy", Reason.UNPRICED, _str(name), reseller, detail)
    quantities = [
        (day.day, {m: (Decimal(q), meter_name, unit) for m, (q, meter_name, unit) in day.meters.items()})
        for day in days
    ]
    priced = price_month(quantities, lambda day: card_of(currency, day))
    unpriced = {
        meter: {"name": str(gap["name"]), "unit": str(gap["unit"]), "quantity": money_text(gap["quantity"])}
        for meter, gap in priced.unpriced.items()
    }
    subject = SpendSubject(
        customer_id=sources.customer_id,
        period=period,
        currency=currency,
        kind="legacy",
        subject_id=sid,
        subscription_id=sid,
        name=_str(name),
        reseller=reseller,
        source=Source.UTILIZATION_RATE_CARD,
        days={day: money_text(cost) for day, cost in priced.days.items()},
        total=money_text(_sum(priced.days.values())),
        unpriced=unpriced,
        as_of=through,
        stored_at=stamp,
        amounts={
            day: {cat: [cost, listed] for cat, (cost, listed) in found.items()}
            for day, found in priced.categories.items()
        },
    )
    gap = None
    if unpriced:
        detail = f"{len(unpriced)} meter(s) not on the rate card; their quantities are in the subscription's unpriced"
        gap = Excluded(sid, "legacy", Reason.UNPRICED, _str(name), reseller, detail)
    return subject, gap


def _str(value: Any) -> str | None:
    return str(value) if value else None


def _usage_record(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the spend answers show of Partner Center's usage record: its total, currency, budget, freshness."""
    if row is None:
        return None
    try:
        record = json.loads(str(row.get("raw") or "{}"), parse_float=str, parse_int=str)
    except ValueError:
        record = {}
    budget = record.get("budget") if isinstance(record, dict) else None
    amount = budget.get("amount") if isinstance(budget, dict) else None
    return {
        "totalCost": row.get("totalCost"),
        "currencyCode": row.get("currencyCode"),
        "budget": None if amount is None else {"amount": str(amount), "percentUsed": record.get("percentUsed")},
        "asOf": row.get("lastModifiedDate"),
    }


# -- writing ------------------------------------------------------------------------------------------------------


def write(store: TableStore, period: str, projections: Mapping[str, Projection], stored: Stored) -> int:
    """Store customers' months: their subjects (those gone are removed) and month rows, in transactions per
    partition; returns the rows written."""
    days = store.writer(SPEND_DAYS)
    month_rows = store.writer(SPEND_MONTHS)
    gone_days: list[dict[str, str]] = []
    gone_months: list[dict[str, str]] = []
    for customer_id, projection in projections.items():
        key = customer_key(customer_id)
        rows = [subject.row() for subject in projection.subjects]
        for row in rows:
            days.add(row)
        if projection.month is not None:
            month_rows.add(projection.month.row())
            rows.append(projection.month.customer_row())  # its month beside its subjects, for one-query reads
            days.add(rows[-1])
        else:
            gone_months.append({"PartitionKey": period, "RowKey": key})
        kept = {row["RowKey"] for row in rows}
        gone_days += [{"PartitionKey": key, "RowKey": rk} for rk in sorted(stored.spend_keys.get(key, set()) - kept)]
    written = days.flush() + month_rows.flush()
    store.delete_rows(SPEND_DAYS, gone_days)
    store.delete_rows(SPEND_MONTHS, gone_months)
    return written


def months_between(first_day: str, last_day: str) -> list[str]:
    """Every ``YYYY-MM`` from the month of ``first_day`` to that of ``last_day``."""
    months, period = [], month_of(first_day)
    while period <= month_of(last_day):
        months.append(period)
        period = next_month(period)
    return months


def mark_key(customer_id: str, period: str) -> str:
    """The SpendMarks RowKey of a customer's month (also the prefix of its legacy day marks)."""
    return make_key(customer_id.lower(), period)
