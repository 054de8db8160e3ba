"""Slice versioning without any table: what changes, what is superseded, what expires, and the row contracts."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from shared.rated.versions import GRACE, Snapshot, plan_slice, plan_vanished
from shared.tables import CustomerDay, DayView, ExportStream, RatedCustomerPeriod, RatedPointer, Superseded
from shared.timeutil import utc_text

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)
SNAPSHOT = Snapshot("current", "EUR", "etag-2", "2026-11-20T09:00:00Z")


def pointer(versions: dict[str, str], *, superseded: tuple[Superseded, ...] = (), **names: str) -> RatedPointer:
    days = {day: DayView(version, 2, "1.10000000000000000001", {"USD": "1.2"}) for day, version in versions.items()}
    return RatedPointer(
        customer_id="c1",
        entitlement_id="e1",
        period="2026-11",
        currency="EUR",
        days=days,
        customer_name=names.get("customer_name", "Contoso"),
        superseded=superseded,
        snapshot_etag="etag-1",
        stored_at=utc_text(NOW - timedelta(days=1)),
    )


def test_an_unchanged_slice_writes_nothing():
    old = pointer({"2026-11-01": "a", "2026-11-02": "b"})
    plan = plan_slice(old, replace(old, snapshot_etag="etag-2", stored_at=utc_text(NOW)), NOW)
    assert plan.pointer is None and plan.changed_days == () and plan.expired == ()


def test_a_changed_day_gets_rows_and_its_old_version_is_superseded_for_readers_in_flight():
    old = pointer({"2026-11-01": "a", "2026-11-02": "b"})
    plan = plan_slice(old, pointer({"2026-11-01": "a", "2026-11-02": "c"}), NOW)
    assert plan.changed_days == ("2026-11-02",) and plan.expired == ()
    assert plan.pointer is not None and plan.pointer.superseded == (Superseded("2026-11-02", "b", utc_text(NOW)),)


def test_superseded_versions_expire_after_the_grace_and_a_day_gone_is_superseded_whole():
    long_ago = Superseded("2026-11-01", "z", utc_text(NOW - GRACE - timedelta(seconds=1)))
    old = pointer({"2026-11-01": "a", "2026-11-02": "b"}, superseded=(long_ago,))
    plan = plan_slice(old, pointer({"2026-11-01": "a"}), NOW)
    assert plan.expired == (long_ago,) and plan.changed_days == ()
    assert plan.pointer is not None and plan.pointer.superseded == (Superseded("2026-11-02", "b", utc_text(NOW)),)


def test_a_day_rated_back_to_a_version_it_had_serves_it_and_never_deletes_it():
    rated_back = Superseded("2026-11-01", "a", utc_text(NOW - GRACE - timedelta(hours=1)))
    old = pointer({"2026-11-01": "b"}, superseded=(rated_back,))
    plan = plan_slice(old, pointer({"2026-11-01": "a"}), NOW)
    assert plan.expired == () and plan.pointer is not None
    assert plan.pointer.superseded == (Superseded("2026-11-01", "b", utc_text(NOW)),)


def test_a_slice_gone_from_the_snapshot_names_no_day_and_goes_once_nothing_is_kept():
    old = pointer({"2026-11-01": "a"})
    emptied = plan_vanished(old, SNAPSHOT, NOW)
    assert emptied.pointer is not None and emptied.pointer.days == {} and not emptied.drop
    later = plan_vanished(emptied.pointer, SNAPSHOT, NOW + GRACE + timedelta(seconds=1))
    assert later.drop and later.pointer is None and [s.version for s in later.expired] == ["a"]


def test_the_row_contracts_read_back_what_they_write():
    stored = pointer({"2026-11-01": "a"}, superseded=(Superseded("2026-11-02", "b", utc_text(NOW)),))
    row = stored.row()
    assert RatedPointer.of_row(row) == stored
    assert row["lineCount"] == 2 and row["billingPreTaxTotal"] == "1.10000000000000000001"
    totals = RatedCustomerPeriod(
        customer_id="c1", period="2026-11", currency="EUR", days={"2026-11-01": CustomerDay(2, "2.5", 1)}
    )
    assert RatedCustomerPeriod.of_row(totals.row()) == totals
    stream = ExportStream(billing_period="last", currency="EUR", operation_url="https://x/op", periods=("2026-10",))
    assert ExportStream.of_row(stream.row()) == stream
    assert set(stream.snapshot()) == {
        "billingPeriod",
        "currencyCode",
        "snapshotETag",
        "snapshotCreatedAt",
        "ingestedAt",
        "checkedAt",
    }


def test_a_damaged_pointer_reads_as_naming_no_day():
    row = {**pointer({"2026-11-01": "a"}).row(), "days": "{not json", "superseded": "[1]"}
    damaged = RatedPointer.of_row(row)
    assert damaged.days == {} and damaged.superseded == ()
