"""The run context: one deadline from host.json's functionTimeout, the budget clipped to it, clients on demand."""

from __future__ import annotations

import json
import math

import pytest

from shared.settings import Settings, SettingsError
from shared.sync import jobs
from shared.sync.context import DEADLINE_MARGIN_SECONDS, DEFAULT_FUNCTION_TIMEOUT, FUNCTION_TIMEOUT, RunContext
from shared.sync.context import function_timeout as timeout_of
from tests.fakes import FakeClock

APP_ONLY = {"PARTNER_CENTER_TENANT_ID": "t", "PARTNER_CENTER_CLIENT_ID": "app", "PARTNER_CENTER_CLIENT_SECRET": "s"}


@pytest.mark.parametrize(
    ("host", "seconds"),
    [
        ({"functionTimeout": "00:10:00"}, 600.0),
        ({"functionTimeout": "01:30:15"}, 5415.0),
        ({"functionTimeout": "1.00:00:00"}, 86400.0),
        ({"functionTimeout": "-1"}, None),
        ({"version": "2.0"}, DEFAULT_FUNCTION_TIMEOUT),
        ({"functionTimeout": "ten minutes"}, DEFAULT_FUNCTION_TIMEOUT),
    ],
)
def test_the_function_timeout_is_read_from_host_json(tmp_path, host, seconds):
    (tmp_path / "host.json").write_text(json.dumps(host), encoding="utf-8")
    assert timeout_of(tmp_path) == seconds


def test_without_host_json_the_platform_default_is_assumed(tmp_path):
    assert timeout_of(tmp_path) == DEFAULT_FUNCTION_TIMEOUT


def test_the_app_s_own_timeout_is_the_one_in_its_host_json():
    assert FUNCTION_TIMEOUT == 600.0


def start(store, settings=None, **options):
    return RunContext.start(jobs.get("fetch_usage_records"), settings or Settings(), store, **options)


def test_the_deadline_is_the_timeout_less_the_margin_and_the_budget_never_reaches_past_it(store):
    clock = FakeClock()
    ctx = start(store, budget_seconds=3600, timeout_seconds=600, clock=clock)
    assert ctx.remaining() == 600 - DEADLINE_MARGIN_SECONDS and ctx.run.budget_seconds == 600 - DEADLINE_MARGIN_SECONDS
    assert start(store, budget_seconds=480, timeout_seconds=600, clock=clock).run.budget_seconds == 480
    clock.now += 600 - DEADLINE_MARGIN_SECONDS
    assert ctx.out_of_time() and ctx.deadline.passed()


def test_without_a_timeout_there_is_no_deadline(store):
    ctx = start(store, budget_seconds=None, timeout_seconds=None)
    assert math.isinf(ctx.remaining()) and ctx.run.budget_seconds is None and not ctx.out_of_time()


def test_clients_are_built_on_demand_each_needing_only_its_own_settings(store):
    ctx = start(store, Settings.from_env(APP_ONLY), budget_seconds=None)
    assert ctx.graph.correlation_id == ctx.run.correlation_id and ctx.graph.deadline is ctx.deadline
    assert ctx.graph is ctx.graph  # built once
    with pytest.raises(SettingsError, match="PARTNER_CENTER_REFRESH_TOKEN"):
        ctx.partner_center  # noqa: B018
