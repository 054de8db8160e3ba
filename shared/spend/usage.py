"""Legacy usage per day and meter, the quantities the rate card prices: tallied from the records as the
utilization sync stores them, one UtilizationDays row per (usage day, reported window), so a day is the sum of
its windows' rows, a window fetched again replaces exactly its own rows, and nothing reads Utilization back.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from shared.pricing.amounts import EXACT, money_text
from shared.spend.rows import UTILIZATION_DAYS, UtilizationDay, next_month
from shared.table_store import TableStore
from shared.tables import subscription_key


class Tally:
    """One window's records of one legacy subscription: quantity per (UTC usage day, meter)."""

    def __init__(self, customer_id: str, subscription_id: str, window: str) -> None:
        self.customer_id, self.subscription_id, self.window = customer_id, subscription_id, window
        self._days: dict[str, dict[str, list[Any]]] = {}
        self._records: dict[str, int] = {}

    def add(self, day: str, record: Mapping[str, Any], quantity: Any) -> None:
        """Count one stored record of ``day`` (its resource names the meter)."""
        resource = record.get("resource")
        if not isinstance(resource, Mapping) or not isinstance(resource.get("id"), str):
            return
        meters = self._days.setdefault(day, {})
        meter_id = resource["id"].lower()
        entry = meters.setdefault(meter_id, [Decimal(0), str(resource.get("name") or ""), str(record.get("unit"))])
        with decimal.localcontext(EXACT):
            entry[0] += Decimal(str(quantity or "0"))
        self._records[day] = self._records.get(day, 0) + 1

    def days(self) -> list[UtilizationDay]:
        """The window's day rows: one per day, or a few when a day's meters would not fit one property."""
        found = []
        for day, meters in sorted(self._days.items()):
            parts = _parts({m: (money_text(q), name, unit) for m, (q, name, unit) in sorted(meters.items())})
            for number, part in enumerate(parts):
                window = self.window if number == 0 else f"{self.window}#{number}"
                found.append(
                    UtilizationDay(
                        self.customer_id,
                        self.subscription_id,
                        day,
                        part,
                        self._records[day] if number == 0 else 0,
                        window,
                    )
                )
        return found


PART_CHARS = 24_000  # of meters JSON per row: a string property holds 32K UTF-16 characters


def _parts(meters: dict[str, tuple[str, str, str]]) -> list[dict[str, tuple[str, str, str]]]:
    parts: list[dict[str, tuple[str, str, str]]] = [{}]
    size = 0
    for meter_id, entry in meters.items():
        length = len(meter_id) + sum(len(text) for text in entry) + 16
        if parts[-1] and size + length > PART_CHARS:
            parts.append({})
            size = 0
        parts[-1][meter_id] = entry
        size += length
    return parts


def summed(rows: Iterable[UtilizationDay]) -> list[UtilizationDay]:
    """The window rows of some days summed per day (and meter), in day order."""
    days: dict[str, dict[str, list[Any]]] = {}
    records: dict[str, int] = {}
    first: dict[str, UtilizationDay] = {}
    with decimal.localcontext(EXACT):
        for row in rows:
            first.setdefault(row.day, row)
            meters = days.setdefault(row.day, {})
            records[row.day] = records.get(row.day, 0) + row.records
            for meter_id, (quantity, name, unit) in row.meters.items():
                entry = meters.setdefault(meter_id, [Decimal(0), name, unit])
                entry[0] += Decimal(quantity)
    return [
        UtilizationDay(
            first[day].customer_id,
            first[day].subscription_id,
            day,
            {m: (money_text(q), name, unit) for m, (q, name, unit) in meters.items()},
            records[day],
        )
        for day, meters in sorted(days.items())
    ]


def month_days(store: TableStore, customer_id: str, subscription_id: str, period: str) -> list[UtilizationDay]:
    """A legacy subscription's usage days of a month, summed over their windows (one range query)."""
    rows = store.query(
        UTILIZATION_DAYS,
        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
        {"pk": subscription_key(customer_id, subscription_id), "lo": period, "hi": next_month(period)},
    )
    return summed(UtilizationDay.of_row(row) for row in rows)
