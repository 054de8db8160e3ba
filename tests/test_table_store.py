from decimal import Decimal

import pytest

from shared.keys import encode_part, make_key
from shared.table_store import MAX_PROPERTY_BYTES, EntityTooLarge, entity_size, sized_entity


def test_upsert_groups_rows_by_partition_into_transactions_of_at_most_100(store):
    rows = [{"PartitionKey": f"p{i % 2}", "RowKey": f"{i:05d}", "n": i} for i in range(250)]
    written = store.upsert("Things", rows)
    assert written == 250
    # 125 rows per partition -> 100 + 25 in each of the two partitions.
    assert store.stats.transactions == 4
    assert len(list(store.partition("Things", "p0"))) == 125
    assert len(list(store.partition("Things", "p1"))) == 125


def test_upsert_twice_leaves_the_same_rows(store):
    rows = [{"PartitionKey": "p", "RowKey": str(i), "v": "x"} for i in range(5)]
    store.upsert("Things", rows)
    store.upsert("Things", rows)
    assert [e["RowKey"] for e in store.partition("Things", "p")] == ["0", "1", "2", "3", "4"]


def test_upsert_replaces_properties_a_new_version_drops(store):
    store.upsert_one("Things", {"PartitionKey": "p", "RowKey": "r", "a": "1", "b": "2"})
    store.upsert_one("Things", {"PartitionKey": "p", "RowKey": "r", "a": "3"})
    entity = store.get("Things", "p", "r")
    assert entity["a"] == "3" and "b" not in entity


def test_a_row_repeated_in_one_batch_keeps_the_last_version(store):
    rows = [{"PartitionKey": "p", "RowKey": "r", "v": "first"}, {"PartitionKey": "p", "RowKey": "r", "v": "last"}]
    assert store.upsert("Things", rows) == 1
    assert store.get("Things", "p", "r")["v"] == "last"


def test_decimal_money_survives_a_round_trip_digit_for_digit(store):
    money = Decimal("120.5682999999995904716")
    store.upsert_one("Things", {"PartitionKey": "p", "RowKey": "r", "totalCost": money})
    stored = store.get("Things", "p", "r")["totalCost"]
    assert stored == "120.5682999999995904716"
    assert Decimal(stored) == money


def test_tables_are_created_on_first_use(store):
    assert store.get("Fresh", "p", "r") is None
    store.upsert_one("Fresh", {"PartitionKey": "p", "RowKey": "r"})
    assert store.get("Fresh", "p", "r") is not None


def test_query_values_are_parameters_not_spliced_text(store):
    store.upsert_one("Things", {"PartitionKey": "p", "RowKey": "a'b", "v": "1"})
    store.upsert_one("Things", {"PartitionKey": "p", "RowKey": "c", "v": "2"})
    hostile = "a'b' or RowKey ne '"
    assert list(store.query("Things", "PartitionKey eq @pk and RowKey eq @rk", {"pk": "p", "rk": hostile})) == []
    found = list(store.query("Things", "PartitionKey eq @pk and RowKey eq @rk", {"pk": "p", "rk": "a'b"}))
    assert [e["v"] for e in found] == ["1"]


def test_query_pages_are_the_service_pages_and_say_when_more_follow(store):
    store.upsert("Things", ({"PartitionKey": "p", "RowKey": f"r{i}"} for i in range(5)))
    store.stats.queries = 0
    pages = list(store.query_pages("Things", "PartitionKey eq @pk", {"pk": "p"}, select=["RowKey"], page_size=2))
    assert [[e["RowKey"] for e in page.entities] for page in pages] == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert [page.more for page in pages] == [True, True, False]
    assert store.stats.queries == 3
    assert [e["RowKey"] for e in store.query("Things", "PartitionKey eq @pk", {"pk": "p"}, page_size=2, limit=3)] == [
        "r0",
        "r1",
        "r2",
    ]
    assert store.stats.queries == 5  # the limit stops before a third page is asked for


def test_oversized_property_is_refused_with_a_clear_error_before_sending(store):
    big = "x" * (MAX_PROPERTY_BYTES // 2 + 1)  # UTF-16: two bytes a character
    with pytest.raises(EntityTooLarge, match=r"property 'raw'.*Table Storage allows 65536"):
        store.upsert_one("Things", {"PartitionKey": "p", "RowKey": "r", "raw": big})
    assert store.stats.transactions == 0


def test_oversized_entity_is_refused(store):
    chunk = "y" * 30_000
    entity = {"PartitionKey": "p", "RowKey": "r", **{f"c{i}": chunk for i in range(20)}}
    with pytest.raises(EntityTooLarge, match="allows 1048576"):
        store.upsert_one("Things", entity)


@pytest.mark.parametrize("raw", ["a/b", "a\\b", "a#b", "a?b", "tab\there", "nul\x00", "del\x7f", "50%|x"])
def test_keys_never_hold_characters_table_storage_refuses(raw):
    key = encode_part(raw)
    assert not any(c in key for c in "/\\#?|") and all(ord(c) >= 0x20 and c != "\x7f" for c in key)


def test_encoded_keys_are_accepted_by_table_storage_and_distinct(store):
    raws = ["a/b", "a\\b", "a#b", "a?b", "a%2Fb", "ctl\x01"]
    store.upsert("Things", [{"PartitionKey": make_key("p", r), "RowKey": make_key(r), "raw": r} for r in raws])
    stored = {e["raw"] for e in store.query("Things", "RowKey ne @x", {"x": ""})}
    assert stored == set(raws)


def test_over_long_keys_are_shortened_with_a_hash_and_stay_distinct():
    a, b = make_key("x" * 2000 + "a"), make_key("x" * 2000 + "b")
    assert len(a) <= 512 and len(b) <= 512 and a != b


def test_a_writer_fed_a_few_rows_at_a_time_still_sends_full_transactions(store):
    writer = store.writer("Things")
    for i in range(250):  # think: 25 small windows of 10 rows each, one partition
        writer.add({"PartitionKey": "sub", "RowKey": f"{i:04d}"})
    assert store.stats.transactions == 2  # two full batches went as soon as they filled
    assert writer.flush() == 250
    assert store.stats.transactions == 3
    assert len(list(store.partition("Things", "sub"))) == 250


@pytest.mark.parametrize(
    "entity",
    [
        {"PartitionKey": "p", "RowKey": "r"},
        {"PartitionKey": "pé|x", "RowKey": "r😀", "raw": "{}", "flag": True, "count": 7, "big": 2**40},
        {"PartitionKey": "p", "RowKey": "r", "money": Decimal("120.5682999999995904716"), "gone": None, "b": b"\x00"},
    ],
)
def test_the_size_summed_while_preparing_is_the_published_formula(entity):
    prepared, size = sized_entity("t", entity)
    assert size == entity_size(prepared)
