"""The FOCUS 1.2 columns of the dataset: every column the specification defines for a cost and usage dataset (the
mandatory ones and the conditional ones, null where this service has no value), then Microsoft's CSP columns and
this service's own ``x_`` columns.

Types as FOCUS specifies them: money and quantities Decimal (``decimal128(38, 24)``, the widest decimal Parquet
engines read exactly: 14 integer digits and 24 decimals, so every digit of Partner Center's ~20-significant-digit
amounts; an amount with more decimals, a product this service computed such as a tiered rate card price, is
rounded half to even to 24, and the manifest counts them), date-times as UTC timestamps, the rest strings, ``Tags``
and ``SkuPriceDetails`` as JSON text (FOCUS' key-value format).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

FOCUS_VERSION = "1.2"
MONEY_PRECISION, MONEY_SCALE = 38, 24
QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


@dataclass(frozen=True)
class Column:
    """One column: its name, FOCUS type (``Decimal``, ``DateTime``, ``String``, ``JSON``), whether FOCUS makes it
    mandatory, whether it may be null, and, for a null one, why this dataset has no value."""

    name: str
    kind: str
    mandatory: bool
    nullable: bool
    why_null: str | None = None
    allowed: tuple[str, ...] | None = None


def _m(name: str, kind: str = "String", nullable: bool = False, **more: Any) -> Column:
    return Column(name, kind, True, nullable, **more)


def _c(name: str, kind: str = "String", why_null: str | None = None, **more: Any) -> Column:
    return Column(name, kind, False, True, why_null, **more)


_NO_COMMITMENT = "no commitment discount (reservation, savings plan) is known for usage until billed data brings them"
_PER_CATEGORY = "a row sums the meters of one category and day, whose units differ; line items hold each meter's"
_PER_LINE = "partner earned credit is on each line, not summed per day: line items hold it"

SERVICE_CATEGORIES = (
    "AI and Machine Learning",
    "Analytics",
    "Business Applications",
    "Compute",
    "Databases",
    "Developer Tools",
    "Multicloud",
    "Identity",
    "Integration",
    "Internet of Things",
    "Management and Governance",
    "Media",
    "Migration",
    "Mobile",
    "Networking",
    "Security",
    "Storage",
    "Web",
    "Other",
)

COLUMNS: tuple[Column, ...] = (
    _c("AvailabilityZone", why_null="not in Partner Center's data"),
    _m("BilledCost", "Decimal"),
    _m("BillingAccountId"),
    _m("BillingAccountName", nullable=True),
    _m("BillingAccountType"),
    _m("BillingCurrency"),
    _m("BillingPeriodEnd", "DateTime"),
    _m("BillingPeriodStart", "DateTime"),
    _c("CapacityReservationId", why_null="not in Partner Center's data"),
    _c("CapacityReservationStatus", why_null="not in Partner Center's data"),
    _m("ChargeCategory", allowed=("Usage", "Purchase", "Tax", "Credit", "Adjustment")),
    _m("ChargeClass", nullable=True, allowed=("Correction",)),
    _m("ChargeDescription", nullable=True),
    _m("ChargeFrequency", allowed=("One-Time", "Recurring", "Usage-Based")),
    _m("ChargePeriodEnd", "DateTime"),
    _m("ChargePeriodStart", "DateTime"),
    _c("CommitmentDiscountCategory", why_null=_NO_COMMITMENT, allowed=("Spend", "Usage")),
    _c("CommitmentDiscountId", why_null=_NO_COMMITMENT),
    _c("CommitmentDiscountName", why_null=_NO_COMMITMENT),
    _c("CommitmentDiscountQuantity", "Decimal", why_null=_NO_COMMITMENT),
    _c("CommitmentDiscountStatus", why_null=_NO_COMMITMENT, allowed=("Used", "Unused")),
    _c("CommitmentDiscountType", why_null=_NO_COMMITMENT),
    _c("CommitmentDiscountUnit", why_null=_NO_COMMITMENT),
    _c("ConsumedQuantity", "Decimal", why_null=_PER_CATEGORY),
    _c("ConsumedUnit", why_null=_PER_CATEGORY),
    _m("ContractedCost", "Decimal"),
    _c("ContractedUnitPrice", "Decimal", why_null=_PER_CATEGORY),
    _m("EffectiveCost", "Decimal"),
    # a billed figure from one invoice carries its id; null for estimates (no invoice yet), a figure made of an
    # invoice and its credit notes, and in a grant's dataset (the partner's invoices are not a buyer's)
    _c("InvoiceId"),
    _m("InvoiceIssuerName"),
    _m("ListCost", "Decimal"),
    _c("ListUnitPrice", "Decimal", why_null=_PER_CATEGORY),
    _c("PricingCategory", why_null=_PER_CATEGORY, allowed=("Standard", "Dynamic", "Committed", "Other")),
    _c("PricingCurrency", why_null="rows are in the billing currency; line items hold the pricing currency"),
    _c("PricingCurrencyContractedUnitPrice", "Decimal", why_null=_PER_CATEGORY),
    _c("PricingCurrencyEffectiveCost", "Decimal", why_null="rows are in the billing currency"),
    _c("PricingCurrencyListUnitPrice", "Decimal", why_null=_PER_CATEGORY),
    _m("PricingQuantity", "Decimal", nullable=True),
    _m("PricingUnit", nullable=True),
    _m("ProviderName"),
    _m("PublisherName"),
    _c("RegionId", why_null=_PER_CATEGORY),
    _c("RegionName", why_null=_PER_CATEGORY),
    _c("ResourceId", why_null=_PER_CATEGORY),
    _c("ResourceName", why_null=_PER_CATEGORY),
    _c("ResourceType", why_null=_PER_CATEGORY),
    _m("ServiceCategory", allowed=SERVICE_CATEGORIES),
    _m("ServiceName"),
    _c("ServiceSubcategory", why_null="Microsoft's mapping of meters to subcategories is not in Partner Center's data"),
    _c("SkuId", why_null=_PER_CATEGORY),
    _c("SkuMeter", why_null=_PER_CATEGORY),
    _c("SkuPriceDetails", "JSON", why_null=_PER_CATEGORY),
    _c("SkuPriceId", why_null=_PER_CATEGORY),
    _m("SubAccountId", nullable=True),
    _m("SubAccountName", nullable=True),
    _m("SubAccountType", nullable=True),
    _c("Tags", "JSON", why_null=_PER_CATEGORY),
    # Microsoft's CSP columns (its FOCUS cost export)
    _c("x_CustomerId"),
    _c("x_CustomerName"),
    _c("x_ResellerId"),  # the reseller of record's MPN id; null when the partner sold the subscription direct
    _c("x_ResellerName", why_null="Partner Center gives the reseller's MPN id, not its name"),
    _c("x_PartnerCreditApplied", "Boolean", why_null=_PER_LINE),
    _c("x_PartnerCreditRate", "Decimal", why_null=_PER_LINE),
    _c("x_InvoiceIssuerId", why_null="Microsoft issues the partner's invoice; no id of it is in Partner Center's data"),
    # this service's
    _c("x_SubscriptionId"),
    _c("x_SubscriptionKind"),
    _c("x_Source"),
    _c("x_Status"),
    _c("x_ListCostSource"),
    _c("x_Figures"),
)
NAMES = tuple(column.name for column in COLUMNS)
MANDATORY = tuple(column.name for column in COLUMNS if column.mandatory)

# Azure's meter categories to FOCUS service categories; one not named here is "Other".
_SERVICE_CATEGORY = {
    "Compute": (
        "Virtual Machines",
        "Virtual Machines Licenses",
        "Container Instances",
        "Azure Kubernetes Service",
        "Functions",
        "Batch",
        "Cloud Services",
        "Azure Container Apps",
        "Azure VMware Solution",
    ),
    "Storage": ("Storage", "Backup", "Azure NetApp Files", "Azure Data Lake Storage", "Site Recovery"),
    "Networking": (
        "Bandwidth",
        "Virtual Network",
        "Load Balancer",
        "VPN Gateway",
        "Application Gateway",
        "Azure DNS",
        "Content Delivery Network",
        "Azure Front Door Service",
        "ExpressRoute",
        "Networking",
        "Azure Firewall",
        "Network Watcher",
        "Azure Bastion",
    ),
    "Databases": (
        "SQL Database",
        "SQL Managed Instance",
        "Azure Database for MySQL",
        "Azure Database for PostgreSQL",
        "Azure Cosmos DB",
        "Redis Cache",
        "Azure Cache for Redis",
    ),
    "Web": ("Azure App Service", "Static Web Apps", "SignalR"),
    "Management and Governance": ("Log Analytics", "Azure Monitor", "Insight and Analytics", "Automation"),
    "Security": ("Key Vault", "Microsoft Defender for Cloud", "Security Center", "Sentinel", "Azure DDOS Protection"),
    "AI and Machine Learning": ("Cognitive Services", "Azure OpenAI", "Machine Learning", "Azure Machine Learning"),
    "Integration": ("Event Hubs", "Service Bus", "Logic Apps", "API Management", "Event Grid"),
    "Internet of Things": ("IoT Hub", "IoT Central", "Azure Digital Twins"),
    "Analytics": ("Data Factory", "Azure Synapse Analytics", "HDInsight", "Azure Databricks", "Stream Analytics"),
    "Media": ("Media Services",),
    "Identity": ("Azure Active Directory", "Microsoft Entra ID", "Azure Active Directory B2C"),
}
_CATEGORY_OF = {meter.lower(): focus for focus, meters in _SERVICE_CATEGORY.items() for meter in meters}


def service_category(meter_category: str) -> str:
    """The FOCUS service category of an Azure meter category ("Other" for one not known)."""
    return _CATEGORY_OF.get(meter_category.strip().lower(), "Other")
