"""Subscription state rows: merged in shared transactions, sent by count, by age and at the end of a run."""

from azure.data.tables import UpdateMode

from shared.sync.state import StateWriter, load_states
from shared.tables import SYNC_STATE as STATE


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_hundred_subscriptions_share_one_transaction_and_the_rest_go_out_at_the_end(store):
    with StateWriter(store, "job", clock=Ticks()) as writer:
        for i in range(250):
            writer.save(f"sub{i:03d}", doneThrough=f"t{i}")
        assert store.stats.transactions == 2  # two full transactions, 50 still queued
    assert store.stats.transactions == 3
    states = load_states(store, "job")
    assert len(states) == 250 and states["sub249"]["doneThrough"] == "t249"


def test_a_queued_state_waits_at_most_the_flush_interval(store):
    ticks = Ticks()
    writer = StateWriter(store, "job", flush_seconds=30, clock=ticks)
    writer.save("a", doneThrough="1")
    ticks.now = 29.9
    writer.save("b", doneThrough="1")
    assert store.stats.transactions == 0 and load_states(store, "job") == {}
    ticks.now = 30.0
    writer.save("c", doneThrough="1")
    assert store.stats.transactions == 1 and set(load_states(store, "job")) == {"a", "b", "c"}


def test_states_merge_into_existing_rows_and_twice_in_one_batch_folds(store):
    store.upsert_one(STATE, {"PartitionKey": "job", "RowKey": "s1", "kept": "yes", "doneThrough": "old"})
    with StateWriter(store, "job") as writer:
        writer.save("s1", doneThrough="new")
        writer.save("s2", a="1")
        writer.save("s2", b="2")
    states = load_states(store, "job")
    assert (states["s1"]["kept"], states["s1"]["doneThrough"]) == ("yes", "new")
    assert (states["s2"]["a"], states["s2"]["b"]) == ("1", "2")


def test_a_replacing_writer_still_drops_properties_a_new_version_lacks(store):
    # The merge folding above is the MERGE mode's; REPLACE keeps whole-row semantics.
    writer = store.writer("Things", mode=UpdateMode.REPLACE)
    writer.add({"PartitionKey": "p", "RowKey": "r", "a": "1"})
    writer.add({"PartitionKey": "p", "RowKey": "r", "b": "2"})
    writer.flush()
    row = store.get("Things", "p", "r")
    assert "a" not in row and row["b"] == "2"
