"""The one retry policy and its one loop: every decision in numbers, ``run`` with its gate, counters and deadline,
and the table store retrying through it (issue 10)."""

from __future__ import annotations

import logging

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from shared import table_batch
from shared.counters import Counters
from shared.deadline import Deadline, DeadlineReached
from shared.retry import DONE, Action, Outcome, RetryPolicy, ThrottleGate
from shared.table_store import WRITE_RETRY
from tests.fakes import FakeClock

POLICY = RetryPolicy(random=lambda: 0.0)  # jitter factor 0.5: the backoff is half its ceiling


def decisions(policy, *outcomes):
    state = policy.start()
    return [policy.decide(state, outcome) for outcome in outcomes]


def test_a_good_answer_is_accepted_and_a_client_error_fails_at_once():
    (ok,) = decisions(POLICY, Outcome(status=200))
    (bad,) = decisions(POLICY, Outcome(status=400))
    assert ok.action is Action.ACCEPT and bad.action is Action.FAIL and bad.attempt == 1


def test_retryable_answers_back_off_exponentially_to_the_cap_then_stop():
    policy = RetryPolicy(max_attempts=7, backoff_base=1, backoff_max=8, random=lambda: 0.0)
    steps = decisions(policy, *[Outcome(status=503)] * 7)
    assert [s.action for s in steps] == [Action.RETRY] * 6 + [Action.FAIL]
    assert [s.wait for s in steps[:6]] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_retry_after_wins_and_a_429_is_marked_throttled():
    (step,) = decisions(POLICY, Outcome(status=429, retry_after=7.0))
    assert step.action is Action.RETRY and step.wait == 7.0 and step.throttled


def test_a_retry_after_beyond_the_limit_fails_instead_of_sleeping():
    (step,) = decisions(RetryPolicy(retry_after_max=60), Outcome(status=503, retry_after=61.0))
    assert step.action is Action.FAIL


def test_transport_errors_are_retried_like_503s():
    steps = decisions(POLICY, *[Outcome.of_error(ConnectionResetError())] * 6)
    assert [s.action for s in steps] == [Action.RETRY] * 5 + [Action.FAIL]
    assert Outcome.of_error(ConnectionResetError()).reason == "ConnectionResetError"


def test_204_waits_without_counting_a_try_then_is_not_ready():
    steps = decisions(POLICY, Outcome(status=204, retry_after=5.0), Outcome(status=204), Outcome(status=204))
    assert [s.action for s in steps] == [Action.RETRY, Action.RETRY, Action.NOT_READY]
    assert [s.wait for s in steps[:2]] == [5.0, POLICY.not_ready_default_wait]
    assert all(s.attempt == 0 for s in steps)


def test_204_is_an_ordinary_answer_where_not_ready_is_switched_off():
    (step,) = decisions(RetryPolicy(not_ready_attempts=0), Outcome(status=204))
    assert step.action is Action.ACCEPT


def test_a_401_refreshes_the_token_once_then_fails():
    steps = decisions(POLICY, Outcome(status=401), Outcome(status=401))
    assert [s.action for s in steps] == [Action.REFRESH_TOKEN, Action.FAIL]


def test_table_writes_retry_only_dropped_connections():
    steps = decisions(WRITE_RETRY, Outcome(status=503), Outcome(error="ServiceResponseError"))
    assert steps[0].action is Action.FAIL  # statuses are the SDK pipeline's business
    assert steps[1].action is Action.RETRY


class Answers:
    """A ``send`` that answers the given outcomes in turn (the result is the try's number), counting its tries."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.tries = 0

    def __call__(self):
        self.tries += 1
        return self.tries, self.outcomes.pop(0)


def test_run_sleeps_each_wait_and_counts_tries_retries_and_throttles_once(caplog):
    clock, counters = FakeClock(), Counters()
    send = Answers(Outcome(status=503), Outcome(status=429, retry_after=7.0), DONE)
    with caplog.at_level(logging.WARNING):
        final = POLICY.run(send, sleep=clock.sleep, counters=counters, describe=lambda: "GET /x (request_id=r1)")
    assert (final.result, final.decision.action) == (3, Action.ACCEPT)
    assert clock.sleeps == [0.5, 7.0]
    assert (counters["calls"], counters["retries"], counters["throttled"]) == (3, 2, 1)
    assert caplog.text.count("GET /x (request_id=r1) answered") == 2


def test_run_hands_back_the_last_answer_when_the_policy_gives_up_or_the_data_is_not_ready():
    failed = POLICY.run(Answers(Outcome(status=400)), sleep=FakeClock().sleep)
    assert (failed.result, failed.outcome.status, failed.decision.action) == (1, 400, Action.FAIL)
    waits = [Outcome(status=204, retry_after=1.0)] * 3
    not_ready = POLICY.run(Answers(*waits), sleep=FakeClock().sleep)
    assert not_ready.decision.action is Action.NOT_READY and not_ready.result == 3


def test_a_401_refreshes_through_the_callback_and_is_sent_again_at_once():
    refreshed, clock = [], FakeClock()
    final = POLICY.run(Answers(Outcome(status=401), DONE), sleep=clock.sleep, on_refresh=lambda: refreshed.append(1))
    assert final.decision.action is Action.ACCEPT and refreshed == [1] and clock.sleeps == []


def test_a_wait_that_would_pass_the_deadline_is_not_slept():
    clock = FakeClock()
    deadline = Deadline.after(10, clock=clock)
    send = Answers(Outcome(status=503, retry_after=30.0), DONE)
    with pytest.raises(DeadlineReached, match="GET /x"):
        POLICY.run(send, sleep=clock.sleep, deadline=deadline, describe=lambda: "GET /x")
    assert clock.sleeps == [] and send.tries == 1


def test_no_try_is_sent_once_the_deadline_has_passed():
    clock = FakeClock()
    deadline = Deadline.after(5, clock=clock)
    clock.now += 5
    send = Answers(DONE)
    with pytest.raises(DeadlineReached):
        POLICY.run(send, sleep=clock.sleep, deadline=deadline)
    assert send.tries == 0


def test_a_429_holds_the_gate_for_every_caller_and_a_hold_past_the_deadline_stops_instead():
    clock = FakeClock()
    gate = ThrottleGate(clock=clock, sleep=clock.sleep)
    final = POLICY.run(Answers(Outcome(status=429, retry_after=20.0), DONE), sleep=clock.sleep, gate=gate)
    assert final.decision.action is Action.ACCEPT and clock.sleeps == [20.0]  # waited once, by the gate
    gate.hold(60)  # another thread's 429
    with pytest.raises(DeadlineReached, match="429"):
        POLICY.run(Answers(DONE), sleep=clock.sleep, gate=gate, deadline=Deadline.after(30, clock=clock))
    assert clock.sleeps == [20.0]


class DropsTransactions:
    """``table_batch.submit`` on Azurite whose first ``drops`` transactions lose their connection after sending."""

    def __init__(self, error, drops):
        self._error, self._drops = error, drops
        self._real = table_batch.submit
        self.attempts = 0

    def __call__(self, table, operations):
        self.attempts += 1
        if self.attempts <= self._drops:
            raise self._error
        return self._real(table, operations)


@pytest.mark.parametrize("error", [ServiceRequestError("reset"), ServiceResponseError("reset")])
def test_a_dropped_batch_is_sent_again_after_the_policy_s_wait_through_the_injected_sleep(store, error, monkeypatch):
    slept: list[float] = []
    store._sleep = slept.append
    sender = DropsTransactions(error, drops=1)
    monkeypatch.setattr(table_batch, "submit", sender)
    rows = [{"PartitionKey": "p", "RowKey": f"r{i}", "v": str(i)} for i in range(3)]
    assert store._submit(store.table("Things"), rows) == 3
    assert sender.attempts == 2 and len(slept) == 1 and 0.1 <= slept[0] <= 0.2
    assert sorted(r["RowKey"] for r in store.partition("Things", "p")) == ["r0", "r1", "r2"]


def test_a_batch_that_keeps_dropping_fails_after_the_policy_s_attempts(store, monkeypatch):
    slept: list[float] = []
    store._sleep = slept.append
    sender = DropsTransactions(ServiceResponseError("reset"), drops=10**6)
    monkeypatch.setattr(table_batch, "submit", sender)
    with pytest.raises(ServiceResponseError):
        store._submit(
            store.table("Things"), [{"PartitionKey": "p", "RowKey": "a"}, {"PartitionKey": "p", "RowKey": "b"}]
        )
    assert sender.attempts == WRITE_RETRY.max_attempts and len(slept) == WRITE_RETRY.max_attempts - 1
