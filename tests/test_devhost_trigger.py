"""`python -m devhost trigger`: a timer function run once through its function.json (issue 3)."""

from __future__ import annotations

import pytest

from devhost.funcapp import FunctionAppError
from devhost.simulator import Simulator, WorldConfig
from devhost.trigger import TriggerError, last_run_line, trigger
from tests.sync_support import sim_env


@pytest.fixture
def env(azurite, store, monkeypatch):
    with Simulator(world=WorldConfig(customers=2, days=3, records_per_day=2)) as sim:
        values = sim_env(sim, azurite, store.prefix, USAGE_RECORDS_SCHEDULE="0 15 * * * *")
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        yield values


def test_trigger_runs_main_with_a_timer_request_and_reports_the_run(env):
    assert trigger("fetch_usage_records") is True
    line = last_run_line("fetch_usage_records")
    assert line.startswith("fetch_usage_records succeeded in ") and ": 2 customers" in line and "rows=4" in line


def test_a_failed_run_is_reported_as_failure(env, monkeypatch):
    monkeypatch.setenv("PARTNER_CENTER_REFRESH_TOKEN", "not-a-token-the-simulator-issued")
    assert trigger("fetch_usage_records") is False
    assert last_run_line("fetch_usage_records").startswith("fetch_usage_records failed")


def test_a_missing_schedule_setting_is_named_like_the_functions_host_does(env, monkeypatch):
    monkeypatch.delenv("USAGE_RECORDS_SCHEDULE")
    with pytest.raises(FunctionAppError, match="USAGE_RECORDS_SCHEDULE"):
        trigger("fetch_usage_records")


def test_only_timer_functions_can_be_triggered(env):
    with pytest.raises(TriggerError, match="not a timer function"):
        trigger("serve_usage")
    with pytest.raises(TriggerError, match="no function named"):
        trigger("fetch_nothing")
