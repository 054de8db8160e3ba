"""Legacy usage tallies: a day is the sum of the windows that reported it, whatever its number of meters."""

from __future__ import annotations

from decimal import Decimal

from shared.spend.rows import UtilizationDay
from shared.spend.usage import Tally, summed
from shared.table_store import prepare_entity


def _record(meter: int, name: str = "Compute Hours") -> dict[str, object]:
    return {"resource": {"id": f"METER-{meter:04d}", "name": name}, "unit": "1 Hour"}


def test_a_day_reported_in_two_windows_is_their_exact_sum():
    first, second = Tally("c", "s", "20261201T0000Z"), Tally("c", "s", "20261202T0000Z")
    first.add("2026-12-01", _record(1), "0.10000000000000000001")
    second.add("2026-12-01", _record(1), Decimal("0.2"))
    second.add("2026-12-02", _record(2), "3")
    rows = [UtilizationDay.of_row(day.row()) for tally in (first, second) for day in tally.days()]
    assert [r.row()["RowKey"] for r in rows] == [
        "2026-12-01|20261201T0000Z",
        "2026-12-01|20261202T0000Z",
        "2026-12-02|20261202T0000Z",
    ]
    days = summed(rows)
    assert [(d.day, d.records) for d in days] == [("2026-12-01", 2), ("2026-12-02", 1)]
    assert days[0].meters == {"meter-0001": ("0.30000000000000000001", "Compute Hours", "1 Hour")}
    assert days[0].window is None


def test_a_day_with_more_meters_than_one_property_holds_is_stored_in_parts_that_sum_back():
    tally = Tally("c", "s", "20261201T0000Z")
    for meter in range(900):
        tally.add("2026-12-01", _record(meter, "Ünïcode meter name " * 4), f"{meter}.5")
    parts = tally.days()
    assert len(parts) > 1
    assert [p.window for p in parts][:2] == ["20261201T0000Z", "20261201T0000Z#1"]
    for part in parts:
        prepare_entity("UtilizationDays", part.row())  # raises if the service would refuse it
    (day,) = summed(UtilizationDay.of_row(part.row()) for part in parts)
    assert day.records == 900 and len(day.meters) == 900
    assert day.meters["meter-0899"][0] == "899.5"
