"""The API tests' rows are the rows the timer functions write (so API tests read what production reads)."""

from __future__ import annotations

from datetime import timedelta

from shared.sync.inventory import Subscription
from shared.sync.usage_records import usage_record_properties
from shared.sync.usage_summary import summary_properties
from shared.sync.utilization import utilization_row as sync_utilization_row
from shared.timeutil import floor_to
from tests import api_data
from tests.api_data import CUSTOMER, DAY, SUBSCRIPTION, usage_record, usage_summary, utilization_record

SUB = Subscription(
    customer_id=CUSTOMER.lower(), subscription_id=SUBSCRIPTION, kind="legacy", offer_id="MS-AZR-0145P", status="active"
)


def _written(store, table):
    return {(r["PartitionKey"], r["RowKey"]): r for r in store.query(table, "PartitionKey ne @x", {"x": ""})}


def test_utilization_rows_match_the_timer_functions(store):
    record = utilization_record(DAY)
    window = floor_to(DAY, 24) + timedelta(days=1)
    ours = api_data.write_utilization(store, CUSTOMER, SUBSCRIPTION, [record])[0]
    theirs = sync_utilization_row(SUB, record, window, window + timedelta(days=1))
    assert ours == {k: v for k, v in theirs.items() if v is not None}


def test_usage_record_rows_match_the_timer_functions(store):
    record = usage_record(CUSTOMER)
    api_data.write_usage_records(store, [record], month="2024-05")
    theirs = {k: v for k, v in usage_record_properties(record, "2024-05").items() if v is not None}
    for row in _written(store, "UsageRecords").values():
        assert {k: row[k] for k in theirs} == theirs
        assert set(row) - {"PartitionKey", "RowKey"} == set(theirs)


def test_usage_summary_rows_match_the_timer_functions(store):
    record = usage_summary()
    api_data.write_usage_summary(store, CUSTOMER, SUBSCRIPTION, record)
    theirs = {k: v for k, v in summary_properties(SUB, record).items() if v is not None}
    rows = _written(store, "UsageSummaries")
    assert {rk for _, rk in rows} == {"latest", "period-2019-08-28"}
    for row in rows.values():
        assert {k: row[k] for k in set(row) - {"PartitionKey", "RowKey"}} == theirs
