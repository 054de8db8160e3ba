"""A deterministic Partner Center world: every customer, subscription and record is computed on demand.

Nothing is materialised: ids encode their own indices, and utilization record `p` of a reported day is
computed directly from (seed, subscription, usage day, index), so a page costs O(page size).

Utilization model (per legacy subscription, N = `records_per_day`, k = `split_every`):
- Usage day `u` is a UTC date; its records `j = 0..N-1` have usageStartTime = midnight UTC of `u`
  written with the Pacific offset (e.g. `2024-03-09T16:00:00-08:00`), as the real service does.
- Record `j` uses meter `j % 8` and instance `j // 8`. Records with `j % k == 1 % k` are *split*: part of
  the quantity is reported on day `u+1`, the remainder on day `u+2`. All other records are reported on `u+1`.
- Reported day `R` (UTC date) therefore holds N records of day R-1 then S = |{j < N : j % k == 1 % k}|
  remainders of day R-2 (only for usage days on or after the world's first usage day). Its M records are
  reported at `R 08:00Z + floor(p * 57600 / M)` seconds, p = 0..M-1 (spread over 08:00-24:00 UTC).
- Usage days start at `first_usage_day` = (UTC date of now at construction) - `days`; later days keep
  appearing as time advances. A record exists once its reported time is before `now - ready_lag_s`.
- Quantities follow a weekday shape (weekends lower); a zero-usage customer's subscriptions report nothing.

Money tells one story (see "the one story" below): usage records and usage summaries are exact sums of the
Azure plan rated lines (devhost.simulator.billing) and of legacy usage priced with the world's rate card.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from devhost.simulator.billing import BillingOptions

PACIFIC = ZoneInfo("America/Los_Angeles")
UTC = timezone.utc
LEGACY_OFFER_ID = "MS-AZR-0145P"
AZURE_PLAN_OFFER_ID = "DZH318Z0BPS6:0001:DZH318Z0BQPV"
KINDS = ("legacy", "azure_plan", "licence")

REPORT_START_S = 8 * 3600
REPORT_SPAN_S = 16 * 3600
SPLIT_PHASE = 1
_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_MASK64 = (1 << 64) - 1
_MASK48 = (1 << 48) - 1
_SCRAMBLE = 0x5DEECE66D  # odd: multiplying by it permutes 48-bit integers, so id tails do not look sequential
_UNSCRAMBLE = pow(_SCRAMBLE, -1, 1 << 48)
_CTX = Context(prec=40, rounding=ROUND_HALF_EVEN)
# Money of the one story (rate card x quantities, sums of lines): exact, and an error rather than a rounding.
_EXACT = Context(prec=200, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_Q22 = Decimal("1E-22")
_Q2 = Decimal("0.01")
_HOUR = timedelta(hours=1)

_COMPANIES = (
    "Contoso",
    "Fabrikam",
    "Northwind Traders",
    "Café Lumière",
    "Adventure Works",
    "Müller & Söhne",
    "Tailspin Toys",
    "Wide World Importers",
    "Fourth Coffee",
    "Woodgrove Bank",
)
# (currency code, symbol, locale, USD per unit, region display name, location)
_CURRENCIES = (
    ("GBP", "£", "en-GB", Decimal("1.2619"), "UK South", "uksouth"),
    ("SEK", "kr", "sv-SE", Decimal("0.0952"), "SE Central", "swedencentral"),
    ("EUR", "€", "fr-FR", Decimal("1.0843"), "EU West", "westeurope"),
    ("USD", "$", "en-US", Decimal("1"), "US West 2", "westus2"),
    ("DKK", "kr.", "da-DK", Decimal("0.1454"), "EU North", "northeurope"),
)
# pricing (USD) -> billing currency, as the export's PCToBCExchangeRate: 1 / (USD per unit), to 4 decimals
_PC_TO_BC = {
    code: Context(prec=28).divide(Decimal(1), usd).quantize(Decimal("0.0001"))
    for code, _symbol, _locale, usd, _region, _location in _CURRENCIES
}
_LICENCE_OFFERS = (
    ("Office 365 E3", "Licenses"),
    ("Microsoft 365 Business Premium", "Licenses"),
    ("Exchange Online (Plan 1)", "Licenses"),
)
_LICENCE_STATUSES = ("suspended", "expired", "disabled", "active")


@dataclass(frozen=True)
class _Meter:
    name: str
    category: str
    subcategory: str
    unit: str
    provider: str
    prefix: str
    divisor: int
    additional_info: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return _meter_id(self.name, self.category)


@lru_cache(maxsize=64)
def _meter_id(name: str, category: str) -> str:
    return stable_guid("meter", name, category)


_METERS = (
    _Meter(
        "D2s v3",
        "Virtual Machines",
        "DSv3 Series",
        "1 Hour",
        "Microsoft.Compute/virtualMachines",
        "vm",
        24,
        (("ServiceType", "Standard_D2s_v3"), ("ImageType", "Canonical"), ("UsageType", "ComputeHR"), ("VCPUs", "2")),
    ),
    _Meter(
        "LRS Data Stored", "Storage", "General Block Blob", "1 GB/Month", "Microsoft.Storage/storageAccounts", "st", 31
    ),
    _Meter("Data Transfer Out (GB)", "Bandwidth", "", "1 GB", "Microsoft.Network/publicIPAddresses", "pip", 7),
    _Meter("S0 DTUs", "SQL Database", "Standard", "1/Day", "Microsoft.Sql/servers/sql-main/databases", "db", 24),
    _Meter("S1 App", "Azure App Service", "Standard Plan", "1 Hour", "Microsoft.Web/serverFarms", "plan", 24),
    _Meter("Read Operations", "Storage", "Tables", "10K", "Microsoft.Storage/storageAccounts", "st", 3),
    _Meter("P10 Disks", "Storage", "Premium SSD Managed Disks", "1/Month", "Microsoft.Compute/disks", "disk", 30),
    _Meter("Data Ingestion", "Log Analytics", "", "1 GB", "Microsoft.OperationalInsights/workspaces", "law", 12),
)
METER_COUNT = len(_METERS)

# Usage by UTC weekday, Monday first: weekends are quiet (legacy utilization and Azure plan lines alike).
_WEEKDAY_SHAPE = tuple(Decimal(x) for x in ("1.00", "1.04", "1.06", "1.03", "0.94", "0.46", "0.40"))

# ----- the Azure rate card (GET /v1/ratecards/azure) and the true prices of legacy usage -----------------
# List prices in USD (the card in a currency is these x PCToBC rate x the price factor in force), each with
# digits far below a cent from the seed. Roles of the meters on the card:
EXCLUDED_METER = 0  # D2s v3: in the offer term's excludedMeterIds (no discount)
TIERED_METER = 1  # LRS Data Stored: rates from 0, 100 and 500 (cumulative quantity of the calendar month)
INCLUDED_METER = 2  # Data Transfer Out: the first 100 of a calendar month are free (includedQuantity)
UNPRICED_METER = 3  # S0 DTUs: not on the card; the world charges it at its hidden price (no tiers, no discount)
OFFER_DISCOUNT = Decimal("0.05")
OFFER_TERM_NAME = "Azure in CSP"
RATE_CARD_SINCE = date(2024, 5, 1)  # effectiveDate of the offer term and of unchanged prices
_LIST_USD = tuple(Decimal(x) for x in ("0.096", "0.0208", "0.087", "0.4839", "0.1", "0.00036", "0.0528", "0.23"))
_TIERS: dict[int, tuple[tuple[Decimal, Decimal], ...]] = {  # meter -> (threshold, multiplier of its price)
    TIERED_METER: ((Decimal(0), Decimal(1)), (Decimal(100), Decimal("0.96")), (Decimal(500), Decimal("0.92"))),
}
_INCLUDED = {INCLUDED_METER: Decimal(100)}


def _trim(amount: Decimal) -> Decimal:
    """The same value without trailing zeros after the point (12.50 -> 12.5, 100 stays 100)."""
    if amount.is_zero() or amount == amount.to_integral_value():
        return amount.quantize(Decimal(1), context=_EXACT)
    return amount.normalize(_EXACT)


def weekday_shape(day: date) -> Decimal:
    """The factor usage of a UTC day is scaled by (weekends lower)."""
    return _WEEKDAY_SHAPE[day.weekday()]


def pc_to_bc(currency: str) -> Decimal:
    """PCToBCExchangeRate of a billing currency: USD (pricing) -> currency, e.g. 10.5042 for SEK."""
    return _PC_TO_BC[currency]


def _tiered_cost(
    start: Decimal, end: Decimal, included: Decimal, tiers: tuple[tuple[Decimal, Decimal], ...]
) -> Decimal:
    """Cost of the quantity from cumulative `start` to `end`: free below `included`, then each tier's rate from
    its threshold on (thresholds count the cumulative quantity, included part too). Exact."""
    cost = Decimal(0)
    for i, (threshold, rate) in enumerate(tiers):
        lo = max(threshold, included, start)
        hi = min(tiers[i + 1][0], end) if i + 1 < len(tiers) else end
        if hi > lo:
            cost = _EXACT.add(cost, _EXACT.multiply(_EXACT.subtract(hi, lo), rate))
    return cost


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Shape of a simulated Partner Center world; equal configs give identical worlds."""

    customers: int = 3
    legacy_per_customer: int = 1
    plan_per_customer: int = 1
    licence_per_customer: int = 1
    forbidden_customers: int = 1
    days: int = 35
    records_per_day: int = 4
    usage_record_page_size: int = 0
    customers_page_size: int = 100
    seed: int = 1
    now: datetime | None = None
    token_lifetime_s: int = 3599
    wrap_summary: bool = False
    repeat_first_page_bug: bool = False
    ready_lag_s: int = 7200
    not_ready_204: bool = True
    split_every: int = 10
    invoices_page_size: int = 2  # GET /v1/invoices without ?size= (small: paging is exercised by default)
    invoice_months: int = 3  # closed calendar months with an invoice (devhost.simulator.invoices)
    invoice_day: int = 8  # a month's invoices are dated this day of the following month, 06:00Z

    def __post_init__(self) -> None:
        counts = ("customers", "legacy_per_customer", "plan_per_customer", "licence_per_customer")
        for name in (*counts, "forbidden_customers", "days", "records_per_day", "usage_record_page_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.forbidden_customers > self.customers:
            raise ValueError("forbidden_customers must be <= customers")
        if self.customers_page_size < 1 or self.token_lifetime_s < 1 or self.split_every < 0:
            raise ValueError("customers_page_size and token_lifetime_s must be >= 1, split_every >= 0")
        if self.invoices_page_size < 1 or self.invoice_months < 0 or not 1 <= self.invoice_day <= 28:
            raise ValueError("invoices_page_size must be >= 1, invoice_months >= 0, invoice_day 1..28")
        if self.customers >= 1 << 28 or self.subscriptions_per_customer >= 1 << 20:
            raise ValueError("world too large")
        if self.now is not None:
            if self.now.tzinfo is None:
                raise ValueError("now must be timezone-aware")
            object.__setattr__(self, "now", self.now.astimezone(UTC))

    @property
    def subscriptions_per_customer(self) -> int:
        """Subscriptions of every customer (legacy, then Azure plan, then licence)."""
        return self.legacy_per_customer + self.plan_per_customer + self.licence_per_customer


@dataclass(frozen=True)
class Customer:
    """One simulated customer."""

    index: int
    id: str
    name: str
    domain: str
    forbidden: bool
    currency: str
    currency_symbol: str
    locale: str
    usd_rate: Decimal
    region: str
    location: str
    zero_usage: bool
    world: World = field(repr=False, compare=False)
    pc_to_bc: Decimal  # PCToBCExchangeRate: USD (pricing) -> this customer's currency

    @property
    def raw(self) -> dict[str, Any]:
        """The customer as `GET /v1/customers` lists it."""
        return self.world.customer_json(self)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]


@dataclass(frozen=True)
class Subscription:
    """One simulated subscription; `kind` is "legacy", "azure_plan" or "licence"."""

    customer: Customer
    index: int
    id: str
    kind: str
    seed64: int

    @property
    def customer_id(self) -> str:
        return self.customer.id

    @property
    def raw(self) -> dict[str, Any]:
        """The subscription as `GET /v1/customers/{id}/subscriptions` lists it."""
        return self.customer.world.subscription_json(self)

    @property
    def offer_id(self) -> str:
        return str(self.raw["offerId"])

    @property
    def status(self) -> str:
        return str(self.raw["status"])

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]


def _h64(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _mix(x: int) -> int:
    """splitmix64 finaliser: a fast, well-mixed 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def stable_guid(*parts: object, tail: int | None = None) -> str:
    """A GUID derived from `parts`; `tail` (48 bits) sets its last group."""
    h = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    last = h[20:32] if tail is None else f"{tail:012x}"
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{last}"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def epoch_us(value: datetime) -> int:
    """Microseconds since the Unix epoch (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _blur(amount: Decimal, r: int) -> Decimal:
    """Add float-like noise far below a cent: 120.5683 becomes 120.5682999999995904716."""
    noise = Decimal(1 + (r >> 24) % 9_999_999).scaleb(-19)
    return _CTX.subtract(amount, noise) if (r >> 60) & 1 else _CTX.add(amount, noise)


def _add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _pacific_midnight(d: date) -> str:
    return datetime.combine(d, time(), PACIFIC).isoformat()


def _timestamp(moment: datetime, frac: int, digits: int) -> str:
    """UTC timestamp with `digits` fractional digits, as Partner Center writes them."""
    text = f"{moment:%Y-%m-%dT%H:%M:%S}"
    if digits:
        text += "." + f"{frac:07d}"[:digits]
    return text + "+00:00"


@lru_cache(maxsize=65536)
def _usage_times(day_ord: int, hour: int) -> tuple[str, str]:
    """usageStartTime/usageEndTime of a UTC usage day (hour < 0) or of one hour of it, in Pacific time."""
    start = datetime.fromordinal(day_ord).replace(tzinfo=UTC)
    if hour < 0:
        end = start + timedelta(days=1)
    else:
        start += timedelta(hours=hour)
        end = start + _HOUR
    return start.astimezone(PACIFIC).isoformat(), end.astimezone(PACIFIC).isoformat()


@dataclass(frozen=True)
class _UsageContext:
    """Per-subscription constants shared by every utilization record of the subscription."""

    seed64: int
    subscription_id: str
    location: str
    order_number: str
    resources: tuple[dict[str, str], ...]
    info_fields: tuple[dict[str, str], ...]
    part_numbers: tuple[str, ...]


@dataclass(frozen=True)
class UtilizationQuery:
    """A normalised utilization query: a reported-time window plus shaping options."""

    customer_id: str
    subscription_id: str
    start_us: int
    end_us: int
    granularity: str = "daily"
    show_details: bool = True


class World:
    """Computes the simulated Partner Center data for a WorldConfig."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        c = self.config
        self._now: datetime | None = c.now
        self._customer_mask = _h64(c.seed, "customer-mask") & _MASK48
        self._subscription_mask = _h64(c.seed, "subscription-mask") & _MASK48
        self.tenant_id = stable_guid(c.seed, "partner-tenant")
        self.first_usage_day: date = self.now().date() - timedelta(days=c.days)
        self._first_ord = self.first_usage_day.toordinal()
        self._n = c.records_per_day
        k = c.split_every
        self._split_phase = SPLIT_PHASE % k if k else 0
        self._n_split = (self._n - self._split_phase + k - 1) // k if k and self._n > self._split_phase else 0
        self._customer_cache = lru_cache(maxsize=8192)(self._make_customer)
        self._usage_cache = lru_cache(maxsize=4096)(self._make_usage_context)
        self._legacy_month_cache = lru_cache(maxsize=4096)(self._legacy_month)
        self._plan_cache = lru_cache(maxsize=4096)(self._plan_day_costs)
        self._budget_cache = lru_cache(maxsize=4096)(self._budget)
        self._prices = lru_cache(maxsize=256)(self._make_prices)
        # (effective UTC date, factor) of every rate card price change, oldest first (admin: POST /_sim/ratecard)
        self._price_changes: tuple[tuple[date, Decimal], ...] = ()
        # The rated-usage options the Graph export uses (the simulator shares its own; None: the defaults).
        self.billing_options: BillingOptions | None = None

    # ----- time -----------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The instant the world treats as now (fixed when configured or set, else the real clock)."""
        return self._now or datetime.now(UTC)

    def set_now(self, now: datetime | None) -> None:
        """Move the world's clock (None: follow the real clock)."""
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self._now = None if now is None else now.astimezone(UTC)

    # ----- customers and subscriptions ------------------------------------------------------------

    @staticmethod
    def _pack(value: int, mask: int) -> int:
        return ((value * _SCRAMBLE) & _MASK48) ^ mask

    @staticmethod
    def _unpack(guid: str, mask: int) -> int:
        """The value packed into a GUID's last group, or -1."""
        try:
            return ((int(guid[-12:], 16) ^ mask) * _UNSCRAMBLE) & _MASK48
        except ValueError:
            return -1

    def _make_customer(self, index: int) -> Customer:
        c = self.config
        base = _COMPANIES[index % len(_COMPANIES)]
        code, symbol, locale, rate, region, location = _CURRENCIES[index % len(_CURRENCIES)]
        slug = "".join(ch for ch in base.lower() if ch.isascii() and ch.isalnum())
        return Customer(
            index=index,
            id=stable_guid(c.seed, "customer", index, tail=self._pack(index, self._customer_mask)),
            name=f"{base} {index + 1:03d}",
            domain=f"{slug}{index + 1:03d}.onmicrosoft.com",
            forbidden=index >= c.customers - c.forbidden_customers,
            currency=code,
            currency_symbol=symbol,
            locale=locale,
            usd_rate=rate,
            region=region,
            location=location,
            zero_usage=index % 5 == 3,
            world=self,
            pc_to_bc=_PC_TO_BC[code],
        )

    def customer(self, index: int) -> Customer:
        """The customer at a 0-based index."""
        if not 0 <= index < self.config.customers:
            raise IndexError(index)
        return self._customer_cache(index)

    def find_customer(self, customer_id: str) -> Customer | None:
        """The customer with this id (any case), or None."""
        cid = customer_id.strip().lower()
        index = self._unpack(cid, self._customer_mask)
        if not 0 <= index < self.config.customers:
            return None
        customer = self._customer_cache(index)
        return customer if customer.id == cid else None

    def _kind(self, index: int) -> str:
        c = self.config
        if index < c.legacy_per_customer:
            return "legacy"
        if index < c.legacy_per_customer + c.plan_per_customer:
            return "azure_plan"
        return "licence"

    def _subscription(self, customer: Customer, index: int) -> Subscription:
        tail = self._pack((customer.index << 20) | index, self._subscription_mask)
        sid = stable_guid(self.config.seed, "subscription", customer.index, index, tail=tail)
        return Subscription(customer, index, sid, self._kind(index), _h64(self.config.seed, sid))

    def find_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        """The subscription of this customer with this id (any case), or None."""
        customer = self.find_customer(customer_id)
        if customer is None:
            return None
        sid = subscription_id.strip().lower()
        packed = self._unpack(sid, self._subscription_mask)
        cindex, index = packed >> 20, packed & 0xFFFFF
        if cindex != customer.index or index >= self.config.subscriptions_per_customer:
            return None
        sub = self._subscription(customer, index)
        return sub if sub.id == sid else None

    def customer_ids(self, *, include_forbidden: bool = True) -> list[str]:
        """Every customer id in listing order."""
        return [
            c.id
            for c in (self.customer(i) for i in range(self.config.customers))
            if include_forbidden or not c.forbidden
        ]

    def is_forbidden(self, customer_id: str) -> bool:
        """True when the partner has no relationship with this customer (403/20002)."""
        customer = self.find_customer(customer_id)
        return bool(customer and customer.forbidden)

    def subscription_ids(self, customer_id: str, kind: str | None = None) -> list[str]:
        """Subscription ids of a customer in listing order, optionally of one kind."""
        customer = self.find_customer(customer_id)
        if customer is None:
            raise KeyError(customer_id)
        subs = (self._subscription(customer, i) for i in range(self.config.subscriptions_per_customer))
        return [s.id for s in subs if kind is None or s.kind == kind]

    def legacy_subscriptions(self, *, include_forbidden: bool = False) -> list[tuple[str, str]]:
        """(customer id, subscription id) of every legacy subscription, in listing order."""
        return [
            (cid, sid)
            for cid in self.customer_ids(include_forbidden=include_forbidden)
            for sid in self.subscription_ids(cid, "legacy")
        ]

    def subscription_kind(self, customer_id: str, subscription_id: str) -> str | None:
        """ "legacy", "azure_plan", "licence", or None when unknown."""
        sub = self.find_subscription(customer_id, subscription_id)
        return None if sub is None else sub.kind

    def customer_json(self, customer: Customer) -> dict[str, Any]:
        """A customer as `GET /v1/customers` lists it."""
        return {
            "id": customer.id,
            "commerceId": stable_guid(self.config.seed, "commerce", customer.id),
            "companyProfile": {
                "tenantId": customer.id,
                "domain": customer.domain,
                "companyName": customer.name,
                "attributes": {"objectType": "CustomerCompanyProfile"},
            },
            "relationshipToPartner": "reseller",
            "allowDelegatedAccess": not customer.forbidden,
            "links": {"self": {"uri": f"/customers/{customer.id}", "method": "GET", "headers": []}},
            "attributes": {"objectType": "Customer"},
        }

    def customers(self) -> list[Customer]:
        """Every customer in listing order, forbidden ones included (`.raw` is the listed JSON)."""
        return [self.customer(i) for i in range(self.config.customers)]

    def subscription_json(self, sub: Subscription) -> dict[str, Any]:
        """A subscription as `GET /v1/customers/{id}/subscriptions` lists it."""
        r = _mix(sub.seed64)
        created = date(2018, 1, 1) + timedelta(days=r % 1500)
        stamp = f"{created.isoformat()}T00:00:00Z"
        item: dict[str, Any] = {"id": sub.id, "entitlementId": stable_guid(self.config.seed, "entitlement", sub.id)}
        if sub.kind == "legacy":
            offer = {"offerId": LEGACY_OFFER_ID, "offerName": "Microsoft Azure", "quantity": 1}
            offer |= {"unitType": "Usage-based", "billingType": "usage", "billingCycle": "monthly"}
            offer |= {"status": "active", "commitmentEndDate": "9999-12-31T00:00:00Z"}
            name = "Microsoft Azure"
        elif sub.kind == "azure_plan":
            offer = {"offerId": AZURE_PLAN_OFFER_ID, "offerName": "Azure plan", "quantity": 1}
            offer |= {"unitType": "Usage-based", "billingType": "usage", "billingCycle": "none"}
            offer |= {"status": "active", "commitmentEndDate": "9999-12-31T00:00:00Z"}
            name = "Azure plan"
        else:
            lic = sub.index - self.config.legacy_per_customer - self.config.plan_per_customer
            name, unit = _LICENCE_OFFERS[(sub.customer.index + lic) % len(_LICENCE_OFFERS)]
            offer = {"offerId": stable_guid("licence-offer", name).upper(), "offerName": name, "quantity": 1 + r % 40}
            offer |= {"unitType": unit, "billingType": "license", "billingCycle": "annual"}
            status = _LICENCE_STATUSES[(sub.customer.index + lic) % len(_LICENCE_STATUSES)]
            offer |= {"status": status, "commitmentEndDate": f"{_add_months(created, 12).isoformat()}T00:00:00Z"}
        item |= offer
        from devhost.simulator.billing import reseller_of  # the rated usage's Tier2MpnId is the same reseller

        reseller = reseller_of(self, sub.customer)
        if reseller and not (sub.kind == "licence" and sub.customer.index % 6 == 1):
            item["partnerId"] = reseller  # every sixth customer bought its licences direct: partly the reseller's
        item |= {
            "friendlyName": f"{name} ({sub.customer.name})",
            "creationDate": stamp,
            "effectiveStartDate": stamp,
            "autoRenewEnabled": sub.kind == "licence",
            "isTrial": False,
            "hasPurchasableAddons": False,
            "contractType": "subscription",
            "orderId": stable_guid(self.config.seed, "order", sub.id),
            "links": {
                "self": {
                    "uri": f"/customers/{sub.customer.id}/subscriptions/{sub.id}",
                    "method": "GET",
                    "headers": [],
                }
            },
            "attributes": {"etag": f"{r >> 40:x}", "objectType": "Subscription"},
        }
        return item

    def subscriptions(self, customer_id: str) -> list[Subscription]:
        """A customer's subscriptions in listing order (also for forbidden customers; `.raw` is the JSON)."""
        customer = self.find_customer(customer_id)
        if customer is None:
            raise KeyError(customer_id)
        return [self._subscription(customer, i) for i in range(self.config.subscriptions_per_customer)]

    # ----- monthly usage records and usage summaries ----------------------------------------------

    def usage_record_customers(self) -> list[str]:
        """Ids of the customers `GET /v1/customers/usagerecords` lists: all (forbidden too) when they have Azure."""
        if self.config.legacy_per_customer + self.config.plan_per_customer == 0:
            return []
        return self.customer_ids()

    def usage_record(self, customer_id: str) -> dict[str, Any]:
        """The customer's CustomerMonthlyUsageRecord for the UTC calendar month of now."""
        customer = self.find_customer(customer_id)
        if customer is None:
            raise KeyError(customer_id)
        now = self.now()
        r = _mix(_h64(self.config.seed, customer.id, "usage-record", now.year, now.month))
        upgraded = self.config.plan_per_customer > 0
        if customer.zero_usage:
            total = usd = Decimal(0)
        else:
            total = self.month_to_date_cost(customer.id)
            usd = _blur(_CTX.multiply(total, customer.usd_rate).quantize(_Q2, context=_CTX), _mix(r))
        budget: dict[str, Any] = {"attributes": {"objectType": "SpendingBudget"}}
        percent = Decimal(0)
        if customer.index % 3 == 1:
            amount = self._budget_cache(customer.index, now.year, now.month, self._price_changes, (r >> 8) % 4)
            budget = {"amount": amount, **budget}
            percent = _CTX.multiply(_CTX.divide(total, amount), Decimal(100)).quantize(_Q2, context=_CTX)
        month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
        modified = max(month_start, now.replace(minute=0, second=0, microsecond=0) - timedelta(minutes=(r >> 16) % 50))
        record: dict[str, Any] = {"budget": budget}
        if customer.index % 2 == 0:
            record["customerSpendingBudget"] = {"attributes": {"objectType": "SpendingBudget"}}
        record |= {
            "percentUsed": percent,
            "isUpgraded": upgraded,
            "resourceId": customer.id,
            "id": customer.id,
            "resourceName": customer.name,
            "name": customer.name,
            "totalCost": total,
        }
        if upgraded:
            record |= {"currencyCode": customer.currency, "currencySymbol": customer.currency_symbol}
        else:
            record["currencyLocale"] = customer.locale
        record |= {
            "usdTotalCost": usd,
            "lastModifiedDate": _timestamp(modified, (r >> 20) % 10**7, 7 if upgraded else 2),
            "attributes": {"objectType": "CustomerMonthlyUsageRecord"},
        }
        return record

    def usage_records(self) -> list[dict[str, Any]]:
        """Every CustomerMonthlyUsageRecord, in listing order."""
        return [self.usage_record(cid) for cid in self.usage_record_customers()]

    def billing_period(self, customer_id: str, subscription_id: str) -> tuple[date, date]:
        """(first day, last day) of the subscription's current billing period, Pacific dates.

        Azure plan: the calendar month. Legacy: an anniversary period starting on the creation day (<= 28).
        """
        sub = self.find_subscription(customer_id, subscription_id)
        if sub is None:
            raise KeyError(subscription_id)
        today = self.now().astimezone(PACIFIC).date()
        if sub.kind == "legacy":
            anniversary = min(28, (date(2018, 1, 1) + timedelta(days=_mix(sub.seed64) % 1500)).day)
            start = today.replace(day=anniversary)
            if today.day < anniversary:
                start = _add_months(start, -1)
        else:
            start = today.replace(day=1)
        return start, _add_months(start, 1) - timedelta(days=1)

    def usage_summary(self, customer_id: str, subscription_id: str) -> dict[str, Any]:
        """The bare SubscriptionUsageSummary of a legacy or Azure plan subscription."""
        sub = self.find_subscription(customer_id, subscription_id)
        if sub is None or sub.kind == "licence":
            raise KeyError(subscription_id)
        start, end = self.billing_period(customer_id, subscription_id)
        r = _mix(_h64(self.config.seed, sub.id, "summary", start.isoformat()))
        name = "Microsoft Azure" if sub.kind == "legacy" else "Azure plan"
        summary: dict[str, Any] = {
            "id": sub.id,
            "resourceId": sub.id,
            "name": name,
            "resourceName": name,
            "billingStartDate": _pacific_midnight(start),
            "billingEndDate": _pacific_midnight(end),
        }
        if sub.customer.zero_usage:
            summary["totalCost"] = Decimal(0)
        elif sub.kind == "legacy":
            summary["totalCost"] = self.legacy_period_cost(customer_id, subscription_id)
        else:
            summary["totalCost"] = self.plan_cost(customer_id, subscription_id)
        if sub.kind == "legacy":
            summary["currencyLocale"] = sub.customer.locale
        else:
            usd = _CTX.multiply(summary["totalCost"], sub.customer.usd_rate).quantize(_Q2, context=_CTX)
            summary["currencyCode"] = sub.customer.currency
            summary["usdTotalCost"] = usd if sub.customer.zero_usage else _blur(usd, _mix(r))
        now = self.now()
        modified = max(
            datetime.combine(start, time(), PACIFIC).astimezone(UTC),
            now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1 + (r >> 12) % 5),
        )
        summary |= {
            "lastModifiedDate": _timestamp(modified, (r >> 30) % 10**7, 3),
            "links": {
                "self": {
                    "uri": f"/customers/{sub.customer.id}/subscriptions/{sub.id}/usagesummary",
                    "method": "GET",
                    "headers": [],
                }
            },
            "attributes": {"etag": f"{r >> 44:x}", "objectType": "SubscriptionUsageSummary"},
        }
        return summary

    # ----- the one story: rate card, legacy cost, Azure plan cost ----------------------------------
    #
    # Every money figure agrees: a usage record's totalCost = its Azure plan subscriptions' rated lines
    # (BillingPreTaxTotal, calendar month through yesterday, UTC) + its legacy subscriptions' day costs over the
    # same days; a usage summary's totalCost = its lines (Azure plan) or its billing period's day costs through
    # yesterday (legacy); a legacy day cost = that day's utilization priced with the rate card in force that day.

    def rate_card_factor(self, day: date) -> Decimal:
        """The price factor of the rate card in force on a UTC day (1 until a price change)."""
        factor = Decimal(1)
        for effective, value in self._price_changes:
            if effective <= day:
                factor = value
        return factor

    def _card_since(self, day: date) -> date | None:
        """The effective date of the last price change in force on a day, or None."""
        found = None
        for effective, _ in self._price_changes:
            if effective <= day:
                found = effective
        return found

    def set_rate_card_factor(self, factor: Decimal, effective: date | None = None) -> None:
        """Change every price of the card (and the hidden one) to `factor` x list from a UTC day (default today)."""
        factor = Decimal(factor)
        if not factor.is_finite() or factor <= 0:
            raise ValueError("the price factor must be a positive number")
        day = effective or self.now().date()
        changes = {d: f for d, f in self._price_changes if d != day} | {day: factor}
        self._price_changes = tuple(sorted(changes.items()))

    def reset_rate_card(self) -> None:
        """Forget every price change: the list prices again, on every day."""
        self._price_changes = ()

    def rate_card_changes(self) -> list[tuple[date, Decimal]]:
        """Every price change, oldest first."""
        return list(self._price_changes)

    def meter_price(self, currency: str, meter_index: int, day: date) -> Decimal:
        """The base unit price (first tier) of a meter in a currency on a UTC day; for the unpriced meter its
        hidden price. List USD price (with seed digits) x PCToBC rate x the factor in force, exact."""
        return self._prices(currency, self.rate_card_factor(day))[meter_index][1][0][1]

    def _make_prices(
        self, currency: str, factor: Decimal
    ) -> tuple[tuple[Decimal, tuple[tuple[Decimal, Decimal], ...]], ...]:
        """Per meter: (includedQuantity, ((threshold, rate), ...)) of the card in a currency at a price factor."""
        found = []
        for m, meter in enumerate(_METERS):
            noise = Decimal(_h64(self.config.seed, "ratecard", meter.id) % 10**9).scaleb(-18)
            usd = _EXACT.add(_LIST_USD[m], noise)
            price = _EXACT.multiply(_EXACT.multiply(usd, _PC_TO_BC[currency]), factor)
            tiers = _TIERS.get(m, ((Decimal(0), Decimal(1)),))
            found.append((_INCLUDED.get(m, Decimal(0)), tuple((t, _EXACT.multiply(price, k)) for t, k in tiers)))
        return tuple(found)

    def _meter_terms(self, currency: str, m: int, day: date) -> tuple[Decimal, tuple[tuple[Decimal, Decimal], ...]]:
        """(includedQuantity, ((threshold, rate), ...)) of meter m on the card of a day."""
        return self._prices(currency, self.rate_card_factor(day))[m]

    def rate_card(self, currency: str, region: str | None = None) -> dict[str, Any]:
        """`GET /v1/ratecards/azure?currency=&region=`: the card in force today (UTC). Every meter of the world
        but the unpriced one; `region` (a market) changes nothing. KeyError for a currency the world has not."""
        code = currency.strip().upper()
        if code not in _PC_TO_BC:
            raise KeyError(currency)
        _, _, locale, _, region_name, _ = next(c for c in _CURRENCIES if c[0] == code)
        today = self.now().date()
        changed = self._card_since(today)
        meters = []
        for m, meter in enumerate(_METERS):
            if m == UNPRICED_METER:
                continue
            included, tiers = self._meter_terms(code, m, today)
            since = changed or RATE_CARD_SINCE + timedelta(days=31 * (_h64(self.config.seed, "since", m) % 12))
            meters.append(
                {
                    "id": meter.id,
                    "name": meter.name,
                    "rates": {f"{t:f}": rate for t, rate in tiers},
                    "tags": [],
                    "category": meter.category,
                    "subcategory": meter.subcategory,
                    "region": region_name,
                    "unit": meter.unit,
                    "includedQuantity": included,
                    "effectiveDate": f"{since.isoformat()}T00:00:00Z",
                }
            )
        terms = {"name": OFFER_TERM_NAME, "discount": OFFER_DISCOUNT, "excludedMeterIds": [_METERS[EXCLUDED_METER].id]}
        terms["effectiveDate"] = f"{RATE_CARD_SINCE.isoformat()}T00:00:00Z"
        return {"offerTerms": [terms], "meters": meters, "currency": code, "isTaxIncluded": False, "locale": locale}

    def _legacy_month(
        self, customer_index: int, index: int, year: int, month: int, changes: tuple[tuple[date, Decimal], ...]
    ) -> tuple[tuple[dict[str, Decimal], Decimal], ...]:
        """(quantities by meter id, cost) of every UTC day of a calendar month of one legacy subscription.

        `changes` is only part of the cache key (the card's prices). Tiers and included quantity count the
        cumulative quantity of each meter since the 1st; split records count fully on their usage day.
        """
        del changes
        customer = self.customer(customer_index)
        ctx = self._usage_cache(customer_index, index)
        first = date(year, month, 1)
        cumulative = [Decimal(0)] * METER_COUNT
        days: list[tuple[dict[str, Decimal], Decimal]] = []
        for offset in range(calendar.monthrange(year, month)[1]):
            day = first + timedelta(days=offset)
            if customer.zero_usage or day < self.first_usage_day:
                days.append(({}, Decimal(0)))
                continue
            quantities: dict[int, Decimal] = {}
            for j in range(self._n):
                m = j % METER_COUNT
                quantities[m] = _EXACT.add(quantities.get(m, Decimal(0)), self._quantity(ctx, day.toordinal(), j)[0])
            cost = Decimal(0)
            for m, quantity in sorted(quantities.items()):
                start, end = cumulative[m], _EXACT.add(cumulative[m], quantity)
                cumulative[m] = end
                if m == UNPRICED_METER:
                    meter_cost = _EXACT.multiply(quantity, self.meter_price(customer.currency, m, day))
                else:
                    included, tiers = self._meter_terms(customer.currency, m, day)
                    meter_cost = _tiered_cost(start, end, included, tiers)
                    if m != EXCLUDED_METER:
                        meter_cost = _EXACT.multiply(meter_cost, _EXACT.subtract(Decimal(1), OFFER_DISCOUNT))
                cost = _EXACT.add(cost, meter_cost)
            days.append(({_METERS[m].id: q for m, q in sorted(quantities.items())}, cost))
        return tuple(days)

    def _legacy_day(self, customer_id: str, subscription_id: str, day: date) -> tuple[dict[str, Decimal], Decimal]:
        sub = self._legacy(customer_id, subscription_id)
        month = self._legacy_month_cache(sub.customer.index, sub.index, day.year, day.month, self._price_changes)
        return month[day.day - 1]

    def legacy_day_quantities(self, customer_id: str, subscription_id: str, day: date) -> dict[str, Decimal]:
        """Meter id -> full quantity of a UTC usage day of a legacy subscription (its utilization records of
        that day, split records whole); empty before the first usage day and for a zero-usage customer."""
        return dict(self._legacy_day(customer_id, subscription_id, day)[0])

    def legacy_day_cost(self, customer_id: str, subscription_id: str, day: date) -> Decimal:
        """The true cost of a UTC usage day of a legacy subscription in the customer's currency, exact: per meter
        the day's quantity priced with the card in force that day, tiers and included quantity over the meter's
        cumulative quantity since the 1st of the month, x (1 - discount) unless excluded; the unpriced meter at
        its hidden price (no tiers, no discount)."""
        return _trim(self._legacy_day(customer_id, subscription_id, day)[1])

    def _yesterday(self) -> date:
        return self.now().date() - timedelta(days=1)

    def legacy_period_cost(self, customer_id: str, subscription_id: str) -> Decimal:
        """A legacy subscription's usage summary totalCost: its day costs over its billing period through
        yesterday (UTC)."""
        start, end = self.billing_period(customer_id, subscription_id)
        total = Decimal(0)
        day, last = start, min(end, self._yesterday())
        while day <= last:
            total = _EXACT.add(total, self.legacy_day_cost(customer_id, subscription_id, day))
            day += timedelta(days=1)
        return _trim(total)

    def _options(self) -> BillingOptions:
        from devhost.simulator.billing import BillingOptions

        if self.billing_options is None:
            self.billing_options = BillingOptions()
        return self.billing_options

    def _plan_day_costs(
        self, customer_index: int, index: int, today: date, options_key: str
    ) -> tuple[tuple[date, Decimal], ...]:
        """(day, sum of BillingPreTaxTotal) of one Azure plan subscription's ``current`` lines (cache: the key
        names today and the options)."""
        from devhost.simulator.billing import subscription_day_totals

        del options_key
        customer = self.customer(customer_index)
        sub = self._subscription(customer, index)
        days: dict[date, Decimal] = {}
        for day, total in subscription_day_totals(self, customer, sub.id, "current", self._options(), today=today):
            days[day] = _EXACT.add(days.get(day, Decimal(0)), total)
        return tuple(sorted(days.items()))

    def plan_day_costs(self, customer_id: str, subscription_id: str) -> dict[date, Decimal]:
        """UTC day -> the Azure plan subscription's rated lines of the day (BillingPreTaxTotal, all its Azure
        subscriptions), calendar month through yesterday: what the export of ``current`` holds."""
        sub = self.find_subscription(customer_id, subscription_id)
        if sub is None or sub.kind != "azure_plan":
            raise KeyError(subscription_id)
        key = repr(self._options())
        return dict(self._plan_cache(sub.customer.index, sub.index, self.now().date(), key))

    def plan_cost(self, customer_id: str, subscription_id: str) -> Decimal:
        """An Azure plan subscription's usage summary totalCost: the sum of its rated lines of the month so far."""
        total = Decimal(0)
        for cost in self.plan_day_costs(customer_id, subscription_id).values():
            total = _EXACT.add(total, cost)
        return _trim(total)

    def month_to_date_cost(self, customer_id: str) -> Decimal:
        """A usage record's totalCost: every Azure plan subscription's plan_cost + every legacy subscription's
        day costs from the 1st of the UTC month through yesterday."""
        customer = self.find_customer(customer_id)
        if customer is None:
            raise KeyError(customer_id)
        yesterday = self._yesterday()
        total = Decimal(0)
        for sub in self.subscriptions(customer.id):
            if sub.kind == "azure_plan":
                total = _EXACT.add(total, self.plan_cost(customer.id, sub.id))
            elif sub.kind == "legacy":
                day = self.now().date().replace(day=1)
                while day <= yesterday:
                    total = _EXACT.add(total, self.legacy_day_cost(customer.id, sub.id, day))
                    day += timedelta(days=1)
        return _trim(total)

    def _budget(
        self, customer_index: int, year: int, month: int, changes: tuple[tuple[date, Decimal], ...], choice: int
    ) -> Decimal:
        """A spending budget the partner might set: 90/110/125/150 % of the customer's whole calendar month
        (Azure plan lines with the default options), rounded up to hundreds, at least 100."""
        from devhost.simulator.billing import BillingOptions, subscription_day_totals

        customer = self.customer(customer_index)
        following = _add_months(date(year, month, 1), 1)
        cost = Decimal(0)
        for sub in self.subscriptions(customer.id):
            if sub.kind == "legacy":
                for _, day_cost in self._legacy_month_cache(customer_index, sub.index, year, month, changes):
                    cost = _EXACT.add(cost, day_cost)
            elif sub.kind == "azure_plan":
                for _, total in subscription_day_totals(
                    self, customer, sub.id, "last", BillingOptions(), today=following
                ):
                    cost = _EXACT.add(cost, total)
        share = (Decimal("0.9"), Decimal("1.1"), Decimal("1.25"), Decimal("1.5"))[choice]
        hundreds = -_EXACT.divide_int(_EXACT.minus(_EXACT.multiply(cost, share)), Decimal(100))
        return Decimal(max(1, int(hundreds)) * 100)

    # ----- utilization ----------------------------------------------------------------------------

    def _make_usage_context(self, customer_index: int, index: int) -> _UsageContext:
        customer = self.customer(customer_index)
        sub = self._subscription(customer, index)
        resources = tuple(
            {
                "id": m.id,
                "name": m.name,
                "category": m.category,
                "subcategory": m.subcategory,
                "region": customer.region,
            }
            for m in _METERS
        )
        info = tuple(
            {
                "MeteredRegion": customer.region,
                "MeteredService": m.category,
                "MeteredServiceType": m.subcategory,
                "Project": f"{customer.name} {m.prefix}",
            }
            for m in _METERS
        )
        parts = tuple(f"{(_h64('part', m.name) % 900) + 100:03d}-{_h64('part#', m.name) % 90000:05d}" for m in _METERS)
        return _UsageContext(
            sub.seed64, sub.id, customer.location, stable_guid("order", sub.id), resources, info, parts
        )

    def _legacy(self, customer_id: str, subscription_id: str) -> Subscription:
        sub = self.find_subscription(customer_id, subscription_id)
        if sub is None or sub.kind != "legacy":
            raise KeyError(subscription_id)
        return sub

    def _quantity(self, ctx: _UsageContext, day_ord: int, j: int) -> tuple[Decimal, int]:
        r = _mix(ctx.seed64 ^ ((day_ord << 32) | j))
        shaped = _CTX.multiply(Decimal(1 + r % 2399), _WEEKDAY_SHAPE[(day_ord - 1) % 7])  # ordinal 1 is a Monday
        total = _CTX.divide(shaped, Decimal(_METERS[j % METER_COUNT].divisor))
        return total.quantize(_Q22, context=_CTX), r

    def is_split(self, index: int) -> bool:
        """True when record `index` of a usage day is reported in two parts on two days."""
        k = self.config.split_every
        return bool(k) and index % k == self._split_phase

    def usage_total(self, customer_id: str, subscription_id: str, usage_day: date, index: int) -> Decimal:
        """The full quantity of record `index` of a usage day (both parts of a split record together)."""
        sub = self._legacy(customer_id, subscription_id)
        return self._quantity(self._usage_cache(sub.customer.index, sub.index), usage_day.toordinal(), index)[0]

    def _day_layout(self, report_ord: int) -> tuple[int, int]:
        """(records of day R-1, split remainders of day R-2) reported on UTC day R."""
        first = self._n if report_ord - 1 >= self._first_ord else 0
        rest = self._n_split if report_ord - 2 >= self._first_ord else 0
        return first, rest

    def _day_range(self, report_ord: int, start_us: int, end_us: int) -> tuple[int, int, int]:
        """(lo, hi, n_first): positions p in [lo, hi) of day R are reported within [start, end)."""
        n1, n2 = self._day_layout(report_ord)
        m = n1 + n2
        if m == 0:
            return 0, 0, n1
        base = (report_ord - _EPOCH_ORD) * _DAY_US + REPORT_START_S * 1_000_000
        x = _ceil_div(start_us - base, 1_000_000)
        y = _ceil_div(end_us - base, 1_000_000)
        lo = 0 if x <= 0 else min(m, _ceil_div(x * m, REPORT_SPAN_S))
        hi = 0 if y <= 0 else min(m, _ceil_div(y * m, REPORT_SPAN_S))
        return lo, max(lo, hi), n1

    def reported_at(self, report_day: date, position: int) -> datetime:
        """When record `position` of a reported day was reported to billing."""
        n1, n2 = self._day_layout(report_day.toordinal())
        if not 0 <= position < n1 + n2:
            raise IndexError(position)
        base = datetime.combine(report_day, time(), UTC) + timedelta(seconds=REPORT_START_S)
        return base + timedelta(seconds=position * REPORT_SPAN_S // (n1 + n2))

    def _existing_end(self, end_us: int) -> int:
        return min(end_us, epoch_us(self.now()) - self.config.ready_lag_s * 1_000_000)

    def positions(
        self, start_us: int, end_us: int, cursor: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, int, int]]:
        """(reported day ordinal, position, n_first) of every existing record reported in [start, end), in order.

        Starts directly at `cursor` (a position from an earlier page), so a page costs O(page + days).
        """
        end_us = self._existing_end(end_us)
        if end_us <= start_us:
            return
        day = max(_EPOCH_ORD + start_us // _DAY_US, self._first_ord + 1)
        last = _EPOCH_ORD + (end_us - 1) // _DAY_US
        if cursor is not None:
            day = max(day, cursor[0])
        for d in range(day, last + 1):
            lo, hi, n1 = self._day_range(d, start_us, end_us)
            if cursor is not None and d == cursor[0]:
                lo = max(lo, cursor[1])
            for p in range(lo, hi):
                yield d, p, n1

    def _records(
        self, query: UtilizationQuery, cursor: tuple[int, int] | None = None
    ) -> Iterator[tuple[tuple[int, int], dict[str, Any]]]:
        """(position, record) of every existing record of the query, starting at `cursor`."""
        sub = self._legacy(query.customer_id, query.subscription_id)
        if sub.customer.zero_usage:  # no usage, no records: its usage record and summaries are 0
            return
        ctx = self._usage_cache(sub.customer.index, sub.index)
        hourly, details, every = query.granularity == "hourly", query.show_details, self.config.split_every
        for d, p, n1 in self.positions(query.start_us, query.end_us, cursor):
            if p < n1:
                record = self._record(ctx, d - 1, p, 1 if self.is_split(p) else 0, hourly, details)
            else:
                record = self._record(ctx, d - 2, self._split_phase + (p - n1) * every, 2, hourly, details)
            yield (d, p), record

    def utilization_page(
        self, query: UtilizationQuery, cursor: tuple[int, int] | None, size: int
    ) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
        """Up to `size` records from `cursor`, and the cursor of the next page (None when none is left)."""
        items: list[dict[str, Any]] = []
        for position, record in self._records(query, cursor):
            if len(items) == size:
                return items, position
            items.append(record)
        return items, None

    def _record(
        self, ctx: _UsageContext, day_ord: int, j: int, part: int, hourly: bool, details: bool
    ) -> dict[str, Any]:
        quantity, r = self._quantity(ctx, day_ord, j)
        if part:
            first = _CTX.multiply(quantity, Decimal(20 + (r >> 32) % 61)).scaleb(-2).quantize(_Q22, context=_CTX)
            quantity = first if part == 1 else _CTX.subtract(quantity, first)
        m = j % METER_COUNT
        meter = _METERS[m]
        instance = j // METER_COUNT
        start, end = _usage_times(day_ord, j % 24 if hourly else -1)
        record: dict[str, Any] = {
            "usageStartTime": start,
            "usageEndTime": end,
            "resource": dict(ctx.resources[m]),
            "quantity": quantity,
            "unit": meter.unit,
            "infoFields": {} if j % 3 == 0 else dict(ctx.info_fields[m]),
        }
        if details:
            shape = j % 20
            if shape == 13:
                record["instanceData"] = None
            elif shape != 19:
                tags = (
                    {}
                    if instance % 4 == 0
                    else {"env": ("prod", "dev", "test")[instance % 3], "costCenter": f"cc-{instance % 10:03d}"}
                )
                record["instanceData"] = {
                    "resourceUri": (
                        f"/subscriptions/{ctx.subscription_id}/resourceGroups/rg-{instance % 5}"
                        f"/providers/{meter.provider}/{meter.prefix}-{instance}"
                    ),
                    "location": ctx.location,
                    "partNumber": ctx.part_numbers[m],
                    "orderNumber": ctx.order_number,
                    "tags": tags,
                    "additionalInfo": dict(meter.additional_info),
                }
        record["attributes"] = {"objectType": "AzureUtilizationRecord"}
        return record

    def utilization(
        self,
        customer_id: str,
        subscription_id: str,
        start: datetime,
        end: datetime,
        *,
        granularity: str = "daily",
        show_details: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Records reported in [start, end) that exist by now, in the order the API serves them."""
        query = UtilizationQuery(
            customer_id, subscription_id, epoch_us(start), epoch_us(end), granularity, show_details
        )
        for _, record in self._records(query):
            yield record

    def utilization_count(self, customer_id: str, subscription_id: str, start: datetime, end: datetime) -> int:
        """How many records `utilization` yields for a window, in O(days)."""
        sub = self._legacy(customer_id, subscription_id)
        start_us, end_us = epoch_us(start), self._existing_end(epoch_us(end))
        if end_us <= start_us or sub.customer.zero_usage:
            return 0
        first = max(_EPOCH_ORD + start_us // _DAY_US, self._first_ord + 1)
        last = _EPOCH_ORD + (end_us - 1) // _DAY_US
        total = 0
        for d in range(first, last + 1):
            lo, hi, _ = self._day_range(d, start_us, end_us)
            total += hi - lo
        return total

    def reported_day_size(self, report_day: date) -> int:
        """How many records one legacy subscription reports on a full UTC day: N + S, N (first day) or 0."""
        return sum(self._day_layout(report_day.toordinal()))
