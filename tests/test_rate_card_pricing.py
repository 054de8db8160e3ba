"""Legacy usage priced by the Azure rate card, by hand: tiers over the month's cumulative quantity, included
quantities, offer-term discounts and their excluded meters, unpriced meters; every digit exact."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.records import BadRecord
from shared.spend.ratecard import RateCard, price_month

CARD = {
    "offerTerms": [{"name": "Monetary Credit", "discount": Decimal("0.1"), "excludedMeterIds": ["B"]}],
    "meters": [
        {"id": "A", "name": "Tiered", "unit": "1 GB", "rates": {"0": Decimal("2"), "10": Decimal("1.5")}},
        {"id": "B", "name": "Excluded", "unit": "1 Hour", "rates": {"0": Decimal("0.123456789012345678")}},
        {
            "id": "C",
            "name": "Included",
            "unit": "10K",
            "rates": {"0": Decimal("4")},
            "includedQuantity": Decimal("5"),
        },
        {"id": "D", "name": "Broken", "rates": "nope"},
    ],
    "currency": "EUR",
    "isTaxIncluded": False,
}


def days(*entries):
    return [(day, {m: (Decimal(q), m, "unit") for m, q in meters.items()}) for day, meters in entries]


def test_a_day_is_priced_on_the_months_cumulative_quantity_across_a_tier_threshold():
    card = RateCard.parse(CARD)
    priced = price_month(days(("2026-11-01", {"A": "8"}), ("2026-11-02", {"A": "4"})), lambda day: card)
    # day 1: 8 units at 2 = 16, less 10 % = 14.4; day 2: 2 more at 2 and 2 past the threshold at 1.5 = 7, less 10 %
    assert priced.days == {"2026-11-01": Decimal("14.4"), "2026-11-02": Decimal("6.3")}


def test_an_included_quantity_is_free_first_and_an_excluded_meter_keeps_every_digit_of_its_price():
    card = RateCard.parse(CARD)
    priced = price_month(
        days(("2026-11-01", {"C": "3", "B": "3"}), ("2026-11-02", {"C": "4", "B": "1"})), lambda day: card
    )
    # C: 3 of the 5 free; then 2 free and 2 at 4 = 8, less 10 % = 7.2. B: no discount, 3 and 1 at the full price.
    assert priced.days["2026-11-01"] == Decimal("0.370370367037037034")
    assert priced.days["2026-11-02"] == Decimal("7.2") + Decimal("0.123456789012345678")


def test_a_meter_the_card_does_not_price_is_unpriced_with_its_quantity_never_zero():
    card = RateCard.parse(CARD)
    priced = price_month(days(("2026-11-01", {"X": "2.5", "A": "1"}), ("2026-11-02", {"X": "0.5"})), lambda d: card)
    assert priced.days == {"2026-11-01": Decimal("1.8")}  # day 2 had only unpriced usage: no figure, not 0
    assert priced.unpriced["X"]["quantity"] == Decimal("3.0")
    assert [reason.split(":")[0] for reason in card.skipped] == ["meter 3"]  # the broken meter is left out


def test_each_day_is_priced_with_the_card_in_force_that_day():
    old = RateCard.parse(CARD)
    new = RateCard.parse({**CARD, "meters": [{"id": "A", "rates": {"0": Decimal("3")}}], "offerTerms": []})
    priced = price_month(
        days(("2026-11-01", {"A": "1"}), ("2026-11-02", {"A": "1"})),
        lambda day: old if day < "2026-11-02" else new,
    )
    assert priced.days == {"2026-11-01": Decimal("1.8"), "2026-11-02": Decimal("3")}


def test_what_is_not_a_rate_card_is_refused_with_the_reason():
    with pytest.raises(BadRecord, match="meters"):
        RateCard.parse({"currency": "EUR"})
    with pytest.raises(BadRecord, match="currency"):
        RateCard.parse({"meters": []})
    with pytest.raises(BadRecord, match="discount"):
        RateCard.parse({**CARD, "offerTerms": [{"discount": Decimal("1.5")}]})
