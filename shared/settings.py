"""App settings (environment variables), declared once in ``SETTINGS`` and read into a typed, immutable object.

``SETTINGS`` is the one list of every setting the app, the Functions host and the devhost read: its name,
default, bounds and meaning. ``Settings.from_env`` reads and validates the app's from it; README.md,
docs/architecture.md and local.settings.example.json list exactly these names, and infra/main.bicep's
``@minValue``/``@maxValue``/``@allowed`` and README's stated ranges are those of ``Bounds`` and ``Choice`` here
(tests check both).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from shared.sync.jobs import JOBS

DEFAULT_BASE_URL = "https://api.partnercenter.microsoft.com"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com"
MAX_BACKFILL_DAYS = 90

Granularity = Literal["daily", "hourly"]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the setting, never its value if secret."""


class ReadBy(StrEnum):
    """Who reads a setting."""

    APP = "app"  # Settings.from_env, below
    HOST = "host"  # the Functions host: %NAME% in a function.json
    DEVHOST = "devhost"  # the development host only
    PLATFORM = "platform"  # the Functions platform itself (local.settings.json for Core Tools)


Parser = Callable[[str, str], Any]  # (setting name, raw text) -> value, or SettingsError; "" only for empty defaults


def _text(name: str, raw: str) -> str:
    return raw


def _url(name: str, raw: str) -> str:
    return raw.rstrip("/")


def _ids(name: str, raw: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def _container(name: str, raw: str) -> str:
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", raw):
        raise SettingsError(f"setting {name} must be a blob container name (3-63 lowercase letters, digits, hyphens)")
    return raw


def _flag(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes"}:
        return True
    if lowered in {"0", "false", "no"}:
        return False
    raise SettingsError(f"setting {name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Bounds:
    """A number setting's range, as data (the Bicep parameter and the docs state the same); also its parser.

    ``divides``: the value must divide it (window widths that align to days); then the allowed values are a list.
    """

    low: float
    high: float
    integer: bool = False
    divides: int | None = None

    def __call__(self, name: str, raw: str) -> float | int:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"setting {name} must be a number, got {raw!r}") from None
        if not self.low <= value <= self.high:
            raise SettingsError(f"setting {name} must be between {self.low:g} and {self.high:g}, got {raw}")
        if self.integer and value != int(value):
            raise SettingsError(f"setting {name} must be a whole number, got {raw}")
        if self.divides and self.divides % int(value):
            raise SettingsError(f"setting {name} must divide {self.divides} so windows align to days")
        return int(value) if self.integer else value

    @property
    def allowed(self) -> tuple[int, ...] | None:
        """The values allowed, when they are a list rather than a range."""
        if not self.divides:
            return None
        return tuple(n for n in range(int(self.low), int(self.high) + 1) if self.divides % n == 0)

    @property
    def text(self) -> str:
        """How the docs state it: ``10 to 3600``."""
        return f"{self.low:g} to {self.high:g}"


@dataclass(frozen=True)
class Choice:
    """A setting that is one of a few words (any case), as data; also its parser."""

    values: tuple[str, ...]

    def __call__(self, name: str, raw: str) -> str:
        lowered = raw.lower()
        if lowered not in self.values:
            raise SettingsError(f"setting {name} must be {' or '.join(self.values)}, got {lowered!r}")
        return lowered


def _currencies(name: str, raw: str) -> tuple[str, ...]:
    codes = tuple(dict.fromkeys(part.strip().upper() for part in raw.split(",") if part.strip()))
    for code in codes:
        if not (len(code) == 3 and code.isascii() and code.isalpha()):
            raise SettingsError(f"setting {name} must be ISO 4217 codes separated by commas, got {code!r}")
    return codes


def _tolerance(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except ArithmeticError:
        raise SettingsError(f"{name} must be an amount such as 0 or 0.05, not {raw!r}") from None
    if not value.is_finite() or value < 0 or value > 1000:
        raise SettingsError(f"{name} must be an amount from 0 to 1000, not {raw!r}")
    return value


def _region(name: str, raw: str) -> str:
    code = raw.strip().upper()
    if not (len(code) == 2 and code.isascii() and code.isalpha()):
        raise SettingsError(f"setting {name} must be an ISO 3166 two-letter country code, got {raw!r}")
    return code


def _words(name: str, raw: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))


def _table_prefix(name: str, raw: str) -> str:
    if not (raw.isascii() and raw.isalnum() and raw[0].isalpha() and len(raw) <= 40):
        raise SettingsError(f"setting {name} must be letters and digits, starting with a letter")
    return raw


PARTNER_CENTER = "Partner Center"  # the clients a setting can be required by
GRAPH = "Microsoft Graph"


@dataclass(frozen=True)
class Setting:
    """One app setting: its name, the default as text (empty: none), what it means, and how it is read."""

    name: str
    default: str
    meaning: str
    attribute: str | None = None  # the Settings field it fills (read by the app)
    parse: Parser = _text  # a Bounds or a Choice for numbers and words: their limits are data
    read_by: ReadBy = ReadBy.APP
    required_by: frozenset[str] = frozenset()  # the clients (PARTNER_CENTER, GRAPH) that cannot work without it
    fallback: str | None = None  # another setting whose value is used when this one is empty

    @property
    def bounds(self) -> Bounds | None:
        """A number setting's range."""
        return self.parse if isinstance(self.parse, Bounds) else None

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The words a word setting allows."""
        return self.parse.values if isinstance(self.parse, Choice) else None

    def read(self, env: Mapping[str, str]) -> Any:
        """The typed value from ``env``: the raw text if given, else the fallback's, else the default."""
        raw = env.get(self.name, "").strip()
        if not raw and self.fallback:
            raw = env.get(self.fallback, "").strip()
        if not raw:
            raw = self.default
        return self.parse(self.name, raw)


_BOTH = frozenset({PARTNER_CENTER, GRAPH})
_GRANULARITY = Choice(("daily", "hourly"))
SETTINGS: tuple[Setting, ...] = (
    Setting("PARTNER_CENTER_BASE_URL", DEFAULT_BASE_URL, "API base; requests go to `{base}/v1/...`", "base_url", _url),
    Setting(
        "PARTNER_CENTER_AUTHORITY",
        DEFAULT_AUTHORITY,
        "token authority (`https://login.microsoftonline.us` for US Government)",
        "authority",
        _url,
    ),
    Setting("PARTNER_CENTER_TENANT_ID", "", "the partner's tenant id", "tenant_id", required_by=_BOTH),
    Setting(
        "PARTNER_CENTER_CLIENT_ID",
        "",
        "the app registration used with Partner Center (and Microsoft Graph)",
        "client_id",
        required_by=_BOTH,
    ),
    Setting(
        "PARTNER_CENTER_CLIENT_SECRET",
        "",
        "its secret (a Key Vault reference in Azure)",
        "client_secret",
        required_by=_BOTH,
    ),
    Setting(
        "PARTNER_CENTER_REFRESH_TOKEN",
        "",
        "the refresh token from the one-time partner admin consent (Key Vault reference); not needed by "
        "`fetch_rated_usage`",
        "refresh_token",
        required_by=frozenset({PARTNER_CENTER}),
    ),
    Setting(
        "KEY_VAULT_URL",
        "",
        "when set, every rotated refresh token is written back as a new secret version (and read from there first)",
        "key_vault_url",
    ),
    Setting(
        "PARTNER_CENTER_REFRESH_TOKEN_SECRET_NAME",
        "partner-center-refresh-token",
        "that secret's name",
        "refresh_token_secret_name",
    ),
    Setting(
        "AZURE_CLIENT_ID",
        "",
        "client id of the user-assigned identity used for Key Vault (default: `USAGE_STORAGE__clientId`)",
        "identity_client_id",
        fallback="USAGE_STORAGE__clientId",
    ),
    Setting(
        "USAGE_STORAGE__tableServiceUri",
        "",
        "Table endpoint, used with a managed identity (Azure)",
        "table_service_uri",
    ),
    Setting(
        "USAGE_STORAGE__clientId",
        "",
        "client id of the user-assigned identity for the tables",
        "storage_client_id",
    ),
    Setting("USAGE_STORAGE", "", "a connection string instead (Azurite only)", "storage_connection_string"),
    Setting("TABLE_PREFIX", "pc", "prefix of every table name", "table_prefix", _table_prefix),
    # Each timer's schedule, declared with its job (shared/sync/jobs.py): read by the host from its function.json.
    *(Setting(job.schedule_setting, job.schedule, f"NCRONTAB of `{job.name}`", read_by=ReadBy.HOST) for job in JOBS),
    Setting(
        "GRAPH_BASE_URL",
        DEFAULT_GRAPH_BASE_URL,
        "Microsoft Graph base; the billing export is `{base}/v1.0/reports/partners/billing/...`",
        "graph_base_url",
        _url,
    ),
    Setting(
        "GRAPH_AUTHORITY",
        "",
        "token authority for Graph's app-only token (default: `PARTNER_CENTER_AUTHORITY`)",
        "graph_authority",
        _url,
        fallback="PARTNER_CENTER_AUTHORITY",
    ),
    Setting(
        "RATED_USAGE_CURRENCIES",
        "",
        "billing currencies to export, e.g. `USD,EUR` (empty: those the stored usage records show)",
        "rated_usage_currencies",
        _currencies,
    ),
    Setting(
        "RATED_USAGE_ATTRIBUTE_SET",
        "full",
        "`full` or `basic`: the line attributes the export holds",
        "rated_usage_attribute_set",
        Choice(("full", "basic")),
    ),
    Setting(
        "RATED_USAGE_EXPORT_WAIT_SECONDS",
        "240",
        "how long one run polls an export before leaving it to the next run (10 to 3600; never past the "
        "run's deadline)",
        "rated_usage_export_wait_seconds",
        Bounds(10, 3600),
    ),
    Setting(
        "RATED_USAGE_SETTLE_DAYS",
        "7",
        "the last period is exported until a snapshot taken this many days after it ended is stored (1 to 40)",
        "rated_usage_settle_days",
        Bounds(1, 40, integer=True),
    ),
    Setting(
        "RATED_USAGE_FANOUT_BLOBS",
        "4",
        "an export of at least this many blobs is staged by `stage_rated_blob`, one queue message per blob, when "
        "`USAGE_QUEUE` is set; a smaller one by the timer itself (1 to 100000)",
        "rated_usage_fanout_blobs",
        Bounds(1, 100_000, integer=True),
    ),
    Setting(
        "RATED_USAGE_QUARANTINE_SHARE",
        "0.01",
        "a stored export that quarantined more than this share of its lines makes `/api/health` answer 503 (0 to 1)",
        "rated_usage_quarantine_share",
        Bounds(0, 1),
    ),
    Setting(
        "RATED_USAGE_STALLED_RUNS",
        "3",
        "an export that made no progress over this many runs of `fetch_rated_usage` makes `/api/health` answer 503 "
        "(1 to 100)",
        "rated_usage_stalled_runs",
        Bounds(1, 100, integer=True),
    ),
    Setting(
        "BILLING_TIEOUT_TOLERANCE",
        "0",
        "how far an invoice's lines, rounded to the currency's minor unit, may be from its total (and a customer's "
        "billed usage from its usage charges) before the tie-out fails (an amount, 0 to 1000)",
        "billing_tieout_tolerance",
        _tolerance,
    ),
    Setting(
        "USAGE_QUEUE",
        "",
        "queue connection string (Azurite / local only) of the `rated-ingest` queue; empty with no "
        "`USAGE_QUEUE__queueServiceUri` either: every export is staged by the timer",
        "queue_connection_string",
    ),
    Setting(
        "USAGE_QUEUE__queueServiceUri",
        "",
        "Queue endpoint, used with a managed identity (Azure); the queue trigger reads it too",
        "queue_service_uri",
    ),
    Setting(
        "USAGE_QUEUE__clientId",
        "",
        "client id of the user-assigned identity for the queue (default: `USAGE_STORAGE__clientId`)",
        "queue_client_id",
        fallback="USAGE_STORAGE__clientId",
    ),
    Setting(
        "USAGE_QUEUE__credential",
        "managedidentity",
        "Azure only: how the queue trigger authenticates (with `USAGE_QUEUE__queueServiceUri` and `__clientId`)",
        read_by=ReadBy.HOST,
    ),
    Setting(
        "FOCUS_DATASET",
        "true",
        "write the stored cost as a FOCUS 1.2 dataset (Parquet) to the `focus` container of the app's storage "
        "account after each period's spend changes (with `USAGE_BLOB` or `USAGE_BLOB__blobServiceUri`)",
        "focus_dataset",
        _flag,
    ),
    Setting(
        "FOCUS_GRANT_DATASETS",
        "false",
        "also write each grant's own FOCUS dataset (its rows, at its price under its price rule) into a container of "
        "its own, `{FOCUS_CONTAINER}-{20 hex}`",
        "focus_grant_datasets",
        _flag,
    ),
    Setting(
        "FOCUS_CONTAINER",
        "focus",
        "the blob container of the FOCUS dataset (the templates create `focus`)",
        "focus_container",
        _container,
    ),
    Setting(
        "USAGE_BLOB",
        "",
        "blob connection string (Azurite / local only) for the FOCUS dataset",
        "blob_connection_string",
    ),
    Setting(
        "USAGE_BLOB__blobServiceUri",
        "",
        "Blob endpoint of the app's storage account, used with a managed identity (Azure): the FOCUS dataset",
        "blob_service_uri",
    ),
    Setting(
        "USAGE_BLOB__clientId",
        "",
        "client id of the user-assigned identity for the FOCUS dataset's blobs (default: `USAGE_STORAGE__clientId`)",
        "blob_client_id",
        fallback="USAGE_STORAGE__clientId",
    ),
    Setting(
        "RATE_CARD_CURRENCIES",
        "",
        "currencies of the Azure rate card that prices legacy MS-AZR-0145P usage, e.g. `USD` (empty: those the "
        "stored usage records show)",
        "rate_card_currencies",
        _currencies,
    ),
    Setting(
        "RATE_CARD_REGION",
        "US",
        "the partner's market (ISO 3166 two-letter code) the rate card is asked for",
        "rate_card_region",
        _region,
    ),
    Setting("UTILIZATION_GRANULARITY", "daily", "`daily` or `hourly`", "utilization_granularity", _GRANULARITY),
    Setting(
        "UTILIZATION_SHOW_DETAILS",
        "true",
        "ask for `instanceData` (resource URI, tags)",
        "utilization_show_details",
        _flag,
    ),
    Setting(
        "UTILIZATION_BACKFILL_DAYS",
        "30",
        f"how far back the first run reaches (1 to {MAX_BACKFILL_DAYS}; upstream keeps about 90)",
        "utilization_backfill_days",
        Bounds(1, MAX_BACKFILL_DAYS, integer=True),
    ),
    Setting(
        "UTILIZATION_WINDOW_HOURS",
        "24",
        "width of one reported-time window (1 to 24, dividing 24)",
        "utilization_window_hours",
        Bounds(1, 24, integer=True, divides=24),
    ),
    Setting(
        "UTILIZATION_LAG_HOURS",
        "6",
        "a window is fetched once it ended this long ago (2 to 72; upstream answers 204 near now)",
        "utilization_lag_hours",
        Bounds(2, 72, integer=True),
    ),
    Setting(
        "SYNC_CONCURRENCY",
        "4",
        "subscriptions synced at once (1 to 32; one 429 holds back all of them)",
        "sync_concurrency",
        Bounds(1, 32, integer=True),
    ),
    Setting(
        "SYNC_TIME_BUDGET_SECONDS",
        "480",
        "after this a run starts no new window (30 to 3600; never later than host.json's `functionTimeout`, 10 "
        "minutes, less 30 s for the run's last writes)",
        "sync_time_budget_seconds",
        Bounds(30, 3600),
    ),
    Setting(
        "INVENTORY_REFRESH_HOURS",
        "6",
        "how long the customers listing is reused (0 to 168)",
        "inventory_refresh_hours",
        Bounds(0, 168),
    ),
    Setting(
        "INVENTORY_SUBSCRIPTIONS_HOURS",
        "24",
        "a known customer's subscriptions are listed again once this old (0 to 720; new customers at once)",
        "inventory_subscriptions_hours",
        Bounds(0, 720),
    ),
    Setting(
        "CUSTOMER_ALLOW_LIST",
        "",
        "comma-separated customer ids to include only (empty: all)",
        "customer_allow_list",
        _ids,
    ),
    Setting("CUSTOMER_DENY_LIST", "", "comma-separated customer ids to leave out", "customer_deny_list", _ids),
    Setting(
        "HEALTH_MAX_AGE_HOURS",
        "26",
        "a function whose last success is older makes `/api/health` answer 503 (0.1 to 744)",
        "health_max_age_hours",
        Bounds(0.1, 24 * 31),
    ),
    Setting(
        "API_ACCESS_MODE",
        "key",
        "`key`: the function key reads every customer; `token`: customer data only with Entra ID tokens under "
        "/api/scoped/, each caller within its grant (the key keeps /api/health and /api/openapi.json); `both`: "
        "the two at once, while portals move to tokens",
        "api_access_mode",
        Choice(("key", "both", "token")),
    ),
    Setting(
        "API_AUDIENCE",
        "",
        "token mode: accepted `aud` values, comma-separated (this API's application ID URI and/or client id)",
        "api_audiences",
        _words,
    ),
    Setting(
        "API_ALLOWED_TENANTS",
        "",
        "token mode: tenant ids whose tokens are accepted, comma-separated (default: `PARTNER_CENTER_TENANT_ID`)",
        "api_allowed_tenants",
        _ids,
        fallback="PARTNER_CENTER_TENANT_ID",
    ),
    Setting(
        "API_TOKEN_AUTHORITY",
        "",
        "token mode: the issuer's authority (default: `PARTNER_CENTER_AUTHORITY`)",
        "api_token_authority",
        _url,
        fallback="PARTNER_CENTER_AUTHORITY",
    ),
    Setting(
        "API_REQUIRED_ROLE",
        "Usage.Read",
        "token mode: the app role a caller's token must carry (empty: none required)",
        "api_required_role",
    ),
    Setting(
        "API_CORS_ORIGINS",
        "",
        "token mode: browser origins allowed to call /api/scoped/, comma-separated (empty: no CORS)",
        "api_cors_origins",
        _words,
    ),
    Setting(
        "API_GRANTS_CACHE_SECONDS",
        "60",
        "token mode: how long a caller's grant is reused before it is read again (0 to 600)",
        "api_grants_cache_seconds",
        Bounds(0, 600),
    ),
    Setting(
        "LOCAL_FUNCTION_KEY",
        "local-dev-key",
        "the function key `devhost serve` accepts (never used in Azure)",
        read_by=ReadBy.DEVHOST,
    ),
    Setting(
        "FUNCTIONS_WORKER_RUNTIME",
        "python",
        "local only (Core Tools); on Flex Consumption the runtime is `functionAppConfig.runtime`",
        read_by=ReadBy.PLATFORM,
    ),
    Setting(
        "AzureWebJobsStorage",
        "UseDevelopmentStorage=true",
        "local only (Azurite): the host's storage; in Azure the identity-based `AzureWebJobsStorage__*` settings",
        read_by=ReadBy.PLATFORM,
    ),
)
BY_NAME: Mapping[str, Setting] = {setting.name: setting for setting in SETTINGS}


def _default(attribute: str) -> Any:
    """The typed default of the Settings field ``attribute``, from its declaration."""
    (setting,) = (s for s in SETTINGS if s.attribute == attribute)
    return setting.read({})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting the functions read; the defaults are the declared ones (``SETTINGS``)."""

    base_url: str = _default("base_url")
    authority: str = _default("authority")
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    key_vault_url: str = ""
    refresh_token_secret_name: str = _default("refresh_token_secret_name")
    storage_connection_string: str = field(default="", repr=False)
    table_service_uri: str = ""
    storage_client_id: str = ""
    identity_client_id: str = ""
    table_prefix: str = _default("table_prefix")
    rate_card_currencies: tuple[str, ...] = ()
    rate_card_region: str = _default("rate_card_region")
    utilization_granularity: Granularity = _default("utilization_granularity")
    utilization_show_details: bool = _default("utilization_show_details")
    utilization_backfill_days: int = _default("utilization_backfill_days")
    utilization_window_hours: int = _default("utilization_window_hours")
    utilization_lag_hours: int = _default("utilization_lag_hours")
    sync_concurrency: int = _default("sync_concurrency")
    sync_time_budget_seconds: float = _default("sync_time_budget_seconds")
    inventory_refresh_hours: float = _default("inventory_refresh_hours")
    inventory_subscriptions_hours: float = _default("inventory_subscriptions_hours")
    customer_allow_list: frozenset[str] = frozenset()
    customer_deny_list: frozenset[str] = frozenset()
    health_max_age_hours: float = _default("health_max_age_hours")
    graph_base_url: str = _default("graph_base_url")
    graph_authority: str = ""
    rated_usage_currencies: tuple[str, ...] = ()
    rated_usage_attribute_set: str = _default("rated_usage_attribute_set")
    rated_usage_export_wait_seconds: float = _default("rated_usage_export_wait_seconds")
    rated_usage_settle_days: int = _default("rated_usage_settle_days")
    rated_usage_fanout_blobs: int = _default("rated_usage_fanout_blobs")
    rated_usage_quarantine_share: float = _default("rated_usage_quarantine_share")
    rated_usage_stalled_runs: int = _default("rated_usage_stalled_runs")
    billing_tieout_tolerance: Decimal = _default("billing_tieout_tolerance")
    queue_connection_string: str = field(default="", repr=False)
    queue_service_uri: str = ""
    queue_client_id: str = ""
    focus_dataset: bool = _default("focus_dataset")
    focus_container: str = _default("focus_container")
    focus_grant_datasets: bool = _default("focus_grant_datasets")
    blob_connection_string: str = field(default="", repr=False)
    blob_service_uri: str = ""
    blob_client_id: str = ""
    api_access_mode: str = _default("api_access_mode")
    api_audiences: tuple[str, ...] = ()
    api_allowed_tenants: frozenset[str] = frozenset()
    api_token_authority: str = ""
    api_required_role: str = _default("api_required_role")
    api_cors_origins: tuple[str, ...] = ()
    api_grants_cache_seconds: float = _default("api_grants_cache_seconds")

    @property
    def graph_token_authority(self) -> str:
        """The authority of Graph's app-only token: GRAPH_AUTHORITY, else the Partner Center one."""
        return self.graph_authority or self.authority

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every app setting from the environment (or any mapping), validating as it goes."""
        env = os.environ if env is None else env
        return cls(**{s.attribute: s.read(env) for s in SETTINGS if s.attribute is not None})

    def require(self, client: str) -> None:
        """Fail with every setting ``client`` (PARTNER_CENTER, GRAPH) needs and lacks, named at once."""
        missing = [
            s.name for s in SETTINGS if client in s.required_by and s.attribute and not getattr(self, s.attribute)
        ]
        if missing:
            raise SettingsError(f"missing settings for {client}: " + ", ".join(missing))

    def require_partner_center(self) -> None:
        """What the Partner Center client needs: tenant, app registration, secret and refresh token."""
        self.require(PARTNER_CENTER)

    def require_graph(self) -> None:
        """What the Graph billing client needs (app-only): tenant, app registration and secret."""
        self.require(GRAPH)
