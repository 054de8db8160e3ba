"""The one retry policy: every decision in numbers, and the table store retrying through it (issue 10)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from shared import table_batch
from shared.retry import Action, Outcome, RetryPolicy
from shared.table_store import WRITE_RETRY

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
    slept = []
    store._sleep = slept.append
    sender = DropsTransactions(error, drops=1)
    monkeypatch.setattr(table_batch, "submit", sender)
    rows = [{"PartitionKey": "p", "RowKey": f"r{i}", "v": str(i)} for i in range(3)]
    assert store._submit(store.table("Things"), rows) == 3
    assert sender.attempts == 2 and len(slept) == 1 and 0.1 <= slept[0] <= 0.2
    assert sorted(r["RowKey"] for r in store.partition("Things", "p")) == ["r0", "r1", "r2"]


def test_a_batch_that_keeps_dropping_fails_after_the_policy_s_attempts(store, monkeypatch):
    slept = []
    store._sleep = slept.append
    sender = DropsTransactions(ServiceResponseError("reset"), drops=10**6)
    monkeypatch.setattr(table_batch, "submit", sender)
    with pytest.raises(ServiceResponseError):
        store._submit(
            store.table("Things"), [{"PartitionKey": "p", "RowKey": "a"}, {"PartitionKey": "p", "RowKey": "b"}]
        )
    assert sender.attempts == WRITE_RETRY.max_attempts and len(slept) == WRITE_RETRY.max_attempts - 1
