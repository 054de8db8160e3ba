"""The billed ingest's tallies (no storage): each reconciliation line counted once however runs overlapped or
were cut, line parsing and charge kinds, and the tie-out's rounding."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared.billing import tieout
from shared.billing.lines import LICENCE, MARKETPLACE, RESERVATION, SAVINGS_PLAN, parse_charge
from shared.billing.rows import DONE, START, IncompleteTallies, Invoice, Tally, tally_of_segments
from shared.records import BadRecord

PARTITION = "G1|v"


def charge(n: int, **more: object) -> str:
    line = {
        "CustomerId": f"00000000-0000-4000-8000-{n % 3:012d}",
        "Currency": "EUR",
        "ProductName": "Microsoft 365 E3",
        "ProductCategory": "License",
        "ChargeType": "cycleCharge",
        "SubscriptionId": f"10000000-0000-4000-8000-{n % 3:012d}",
        "UnitPrice": "10.123456789012345678",
        "Quantity": n + 1,
        "Subtotal": f"{n}.00000000000000000001",
        "TaxTotal": "0",
        "Total": f"{n}.00000000000000000001",
        "ChargeStartDate": "2026-10-01T00:00:00Z",
        "ChargeEndDate": "2026-10-31T00:00:00Z",
        "BillingFrequency": "Monthly",
    }
    return json.dumps({**line, **more})


def tally(lines: range) -> Tally:
    found = Tally()
    for n in lines:
        found.add_charge(parse_charge(charge(n)), "2026-10")
    return found


def rows(start: tuple[str, int, int], end: tuple[str, int, int], lines: range) -> list[dict[str, object]]:
    return tally(lines).segment_rows(PARTITION, start, end)


def test_overlapping_runs_that_checkpointed_at_different_lines_count_each_line_once():
    a, b = ("r", 0, 40), ("r", 0, 70)
    stored = [
        *rows(START, a, range(40)),  # run 1: to line 40, then on to the end
        *rows(a, DONE, range(40, 100)),
        *rows(START, b, range(70)),  # run 2, overlapping: to line 70 ...
        *rows(b, ("r", 0, 90), range(70, 90)),  # ... and cut at 90 (its cursor; no segment onwards)
    ]
    merged = tally_of_segments(sorted(stored, key=lambda r: str(r["RowKey"])))
    whole = tally(range(100))
    assert merged.lines == 100 and merged.total == whole.total
    assert {k: v.total for k, v in merged.subjects.items()} == {k: v.total for k, v in whole.subjects.items()}


def test_a_gap_in_the_segments_is_refused_not_summed():
    stored = [*rows(START, ("r", 0, 40), range(40)), *rows(("r", 0, 50), DONE, range(50, 100))]
    with pytest.raises(IncompleteTallies):
        tally_of_segments(stored)


def test_a_segment_with_a_part_missing_is_not_used():
    big = Tally()
    for n in range(3000):  # enough subjects for a tally of several parts
        big.add_charge(parse_charge(charge(n, SubscriptionId=f"20000000-0000-4000-8000-{n:012d}")), "2026-10")
    parts = big.segment_rows(PARTITION, START, DONE)
    assert len(parts) > 1
    with pytest.raises(IncompleteTallies):
        tally_of_segments(parts[:-1])
    assert tally_of_segments(parts).lines == 3000


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"ReservationOrderId": "abc"}, RESERVATION),
        ({"ProductName": "Azure savings plan for compute"}, SAVINGS_PLAN),
        ({"PublisherName": "Contoso SaaS Ltd", "ProductCategory": "SaaS"}, MARKETPLACE),
        ({"ProductCategory": "Something new"}, "other"),
        ({}, LICENCE),
        ({"ChargeType": "Usage", "ProductCategory": "Azure"}, "azureUsage"),
    ],
)
def test_charge_kinds_come_from_microsofts_fields_and_unknown_values_are_not_refused(fields, kind):
    assert parse_charge(charge(1, **fields)).kind == kind


def test_keys_in_any_case_and_every_digit():
    line = parse_charge(json.dumps({k.lower(): v for k, v in json.loads(charge(7)).items()}))
    assert line.subtotal == Decimal("7.00000000000000000001") and line.list_total == Decimal("80.987654312098765424")


@pytest.mark.parametrize(
    "text", ["not json", "[1, 2]", json.dumps({"CustomerId": "c"}), charge(1, Subtotal="NaN", Total=None)]
)
def test_a_line_that_cannot_be_placed_says_why(text):
    with pytest.raises(BadRecord):
        parse_charge(text)


def test_the_tie_out_rounds_half_away_from_zero_to_the_minor_unit_and_honours_the_tolerance():
    invoice = Invoice.parse({"id": "G1", "currencyCode": "JPY", "totalCharges": 101, "documentType": "Invoice"})
    found = Tally(total=Decimal("100.5"))
    assert tieout.check(invoice, found, Decimal(0)).passed  # 100.5 JPY is shown as 101
    euro = Invoice.parse({"id": "G2", "currencyCode": "EUR", "totalCharges": "10.01"})
    assert not tieout.check(euro, Tally(total=Decimal("10.004999")), Decimal(0)).passed
    assert tieout.check(euro, Tally(total=Decimal("10.004999")), Decimal("0.01")).passed
    assert tieout.check(euro, Tally(total=Decimal("10.005")), Decimal(0)).passed
