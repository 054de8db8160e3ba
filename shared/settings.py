"""App settings (environment variables), read once into a typed, immutable object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BASE_URL = "https://api.partnercenter.microsoft.com"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
MAX_BACKFILL_DAYS = 90


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the setting, never its value if secret."""


def _ids(raw: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting the functions read, with the defaults documented in README.md."""

    base_url: str = DEFAULT_BASE_URL
    authority: str = DEFAULT_AUTHORITY
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    key_vault_url: str = ""
    refresh_token_secret_name: str = "partner-center-refresh-token"  # noqa: S105 (a secret name)
    storage_connection_string: str = field(default="", repr=False)
    table_service_uri: str = ""
    storage_client_id: str = ""
    identity_client_id: str = ""
    table_prefix: str = "pc"
    utilization_granularity: str = "daily"
    utilization_show_details: bool = True
    utilization_backfill_days: int = 30
    utilization_window_hours: int = 24
    utilization_lag_hours: int = 6
    sync_concurrency: int = 4
    sync_time_budget_seconds: float = 480.0
    inventory_refresh_hours: float = 6.0
    customer_allow_list: frozenset[str] = frozenset()
    customer_deny_list: frozenset[str] = frozenset()
    health_max_age_hours: float = 26.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment (or any mapping), validating as it goes."""
        env = os.environ if env is None else env

        def text(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = text(name)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"setting {name} must be a number, got {raw!r}") from None
            if not low <= value <= high:
                raise SettingsError(f"setting {name} must be between {low:g} and {high:g}, got {raw}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = text(name).lower()
            if not raw:
                return default
            if raw in {"1", "true", "yes"}:
                return True
            if raw in {"0", "false", "no"}:
                return False
            raise SettingsError(f"setting {name} must be true or false, got {raw!r}")

        granularity = text("UTILIZATION_GRANULARITY", "daily").lower()
        if granularity not in {"daily", "hourly"}:
            raise SettingsError(f"setting UTILIZATION_GRANULARITY must be daily or hourly, got {granularity!r}")
        window_hours = int(number("UTILIZATION_WINDOW_HOURS", 24, 1, 24))
        if 24 % window_hours:
            raise SettingsError("setting UTILIZATION_WINDOW_HOURS must divide 24 so windows align to days")
        prefix = text("TABLE_PREFIX", "pc")
        if not (prefix.isascii() and prefix.isalnum() and prefix[0].isalpha() and len(prefix) <= 40):
            raise SettingsError("setting TABLE_PREFIX must be letters and digits, starting with a letter")
        return cls(
            base_url=text("PARTNER_CENTER_BASE_URL", DEFAULT_BASE_URL).rstrip("/"),
            authority=text("PARTNER_CENTER_AUTHORITY", DEFAULT_AUTHORITY).rstrip("/"),
            tenant_id=text("PARTNER_CENTER_TENANT_ID"),
            client_id=text("PARTNER_CENTER_CLIENT_ID"),
            client_secret=text("PARTNER_CENTER_CLIENT_SECRET"),
            refresh_token=text("PARTNER_CENTER_REFRESH_TOKEN"),
            key_vault_url=text("KEY_VAULT_URL"),
            refresh_token_secret_name=text("PARTNER_CENTER_REFRESH_TOKEN_SECRET_NAME", "partner-center-refresh-token"),
            storage_connection_string=text("USAGE_STORAGE"),
            table_service_uri=text("USAGE_STORAGE__tableServiceUri"),
            storage_client_id=text("USAGE_STORAGE__clientId"),
            identity_client_id=text("AZURE_CLIENT_ID", text("USAGE_STORAGE__clientId")),
            table_prefix=prefix,
            utilization_granularity=granularity,
            utilization_show_details=flag("UTILIZATION_SHOW_DETAILS", True),
            utilization_backfill_days=int(number("UTILIZATION_BACKFILL_DAYS", 30, 1, MAX_BACKFILL_DAYS)),
            utilization_window_hours=window_hours,
            utilization_lag_hours=int(number("UTILIZATION_LAG_HOURS", 6, 2, 72)),
            sync_concurrency=int(number("SYNC_CONCURRENCY", 4, 1, 32)),
            sync_time_budget_seconds=number("SYNC_TIME_BUDGET_SECONDS", 480, 1, 3600),
            inventory_refresh_hours=number("INVENTORY_REFRESH_HOURS", 6, 0, 168),
            customer_allow_list=_ids(text("CUSTOMER_ALLOW_LIST")),
            customer_deny_list=_ids(text("CUSTOMER_DENY_LIST")),
            health_max_age_hours=number("HEALTH_MAX_AGE_HOURS", 26, 0.1, 24 * 31),
        )

    def require_partner_center(self) -> None:
        """Fail with every missing Partner Center setting named at once."""
        missing = [
            name
            for name, value in (
                ("PARTNER_CENTER_TENANT_ID", self.tenant_id),
                ("PARTNER_CENTER_CLIENT_ID", self.client_id),
                ("PARTNER_CENTER_CLIENT_SECRET", self.client_secret),
                ("PARTNER_CENTER_REFRESH_TOKEN", self.refresh_token),
            )
            if not value
        ]
        if missing:
            raise SettingsError("missing settings: " + ", ".join(missing))
