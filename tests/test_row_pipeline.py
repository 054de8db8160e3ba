"""The trimmed row pipeline: cheap time text, the one-walk finite check, what a Utilization row holds."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from shared.records import BadRecord
from shared.shapes import AZURE_UTILIZATION_RECORD, conform
from shared.tables import utilization_key, utilization_row
from shared.timeutil import UTC_KEY_FORMAT, parse_time, utc_text

WINDOW = (datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 1, 7, 0, 0, 999_999, tzinfo=timezone.utc),
        datetime(2026, 11, 1, 0, 0, tzinfo=timezone(timedelta(hours=-8))),
        datetime(2026, 3, 8, 23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
        parse_time("2026-11-19T16:00:00-08:00"),
    ],
)
def test_utc_text_is_the_key_format_of_the_utc_moment(moment):
    assert utc_text(moment) == moment.astimezone(timezone.utc).strftime(UTC_KEY_FORMAT)


def _record(**overrides):
    record = {
        "usageStartTime": "2026-10-31T17:00:00-07:00",
        "usageEndTime": "2026-11-01T16:59:59-07:00",
        "resource": {"id": "meter-1", "name": "Storage"},
        "quantity": Decimal("0.123456789012345678901"),
        "unit": "GB",
        "instanceData": {"resourceUri": "/subscriptions/x/rg/y", "tags": {"env": "prod"}},
    }
    record.update(overrides)
    return record


def test_a_utilization_row_holds_the_ids_raw_and_the_exact_quantity():
    row = utilization_row("CID", "SID", _record(), *WINDOW)
    assert set(row) == {"PartitionKey", "RowKey", "customerId", "subscriptionId", "raw", "quantity"}
    assert row["quantity"] == "0.123456789012345678901"
    assert row["RowKey"].startswith("2026-11-01T00:00:00Z|20261101T0000Z|")
    assert row["RowKey"] == utilization_key(parse_time("2026-10-31T17:00:00-07:00"), WINDOW[0], row["RowKey"][-20:])


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_record(quantity=Decimal("NaN")), "quantity is not a finite number"),
        (_record(extra={"deep": [1, {"x": Decimal("Infinity")}]}), r"extra.deep\[1\].x is not a finite number"),
        (_record(extra=[float("nan")]), r"extra\[0\] is not a finite number"),
        (_record(extra=OrderedDict(a=Decimal("-Infinity"))), "extra.a is not a finite number"),
    ],
)
def test_a_non_finite_number_anywhere_is_named_by_its_path(record, reason):
    with pytest.raises(BadRecord, match=reason):
        conform(record, AZURE_UTILIZATION_RECORD)


def test_finite_records_of_every_json_type_conform():
    conform(
        _record(extra={"a": [1, True, None, "x", Decimal("1.5"), {"b": []}]}, infoFields={}),
        AZURE_UTILIZATION_RECORD,
    )
