"""GET /api/health: 200 only when every timer function's last finished run succeeded recently enough."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared import tables
from shared.sync.jobs import JOB_NAMES
from shared.tables import RUNS, run_key
from tests.api_data import get, settings_for, write_run

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def _all_succeeded(store, hours_ago: float = 1) -> None:
    for name in JOB_NAMES:
        write_run(store, name, started=NOW - timedelta(hours=hours_ago, minutes=2))


def _health(store, **settings):
    response = get(store, "/api/health", now=NOW, settings=settings_for(store, **settings))
    return response, response.json()


def test_healthy_when_every_function_succeeded_recently(store):
    _all_succeeded(store)
    response, body = _health(store)
    assert response.status == 200 and body["status"] == "healthy"
    run = body["functions"]["fetch_utilization"]["lastRun"]
    assert run["status"] == "succeeded" and run["rows"] == 10
    assert run["ageSeconds"] == 3600.0
    assert run["finishedAt"] == "2024-06-01T11:00:00Z"
    assert response.headers["ETag"] and response.headers["Cache-Control"] == "no-store"


def test_never_run_is_503_naming_the_function(store):
    write_run(store, "fetch_usage_records", started=NOW - timedelta(hours=1))
    response, body = _health(store)
    assert response.status == 503 and body["status"] == "unhealthy"
    assert body["functions"]["fetch_usage_records"]["healthy"] is True
    assert body["functions"]["fetch_utilization"]["reasons"] == ["never run"]
    assert body["functions"]["fetch_utilization"]["lastRun"] is None


def test_a_failed_last_run_is_503_with_its_last_error(store):
    _all_succeeded(store, hours_ago=3)
    errors = [
        {"subject": "customer a", "message": "first", "status": 500, "code": "800003", "requestId": "r-1"},
        {"subject": "customer b", "message": "second", "status": 403, "code": "20002", "requestId": "r-2"},
    ]
    write_run(store, "fetch_usage_summary", started=NOW - timedelta(hours=1), status="failed", errors=errors)
    response, body = _health(store)
    assert response.status == 503
    summary = body["functions"]["fetch_usage_summary"]
    assert summary["reasons"] == ["last finished run failed"]
    assert summary["lastRun"]["lastError"]["code"] == "20002"
    assert summary["lastRun"]["lastError"]["requestId"] == "r-2"
    assert summary["lastRun"]["errorCount"] == 2


def test_a_stale_success_is_503(store):
    _all_succeeded(store, hours_ago=1)
    response, body = _health(store, health_max_age_hours=0.5)
    assert response.status == 503
    for name in JOB_NAMES:
        assert body["functions"][name]["reasons"] == ["stale: last success 1.0 hours ago (limit 0.5 hours)"]


def test_a_running_newest_run_is_reported_and_the_last_finished_one_judged(store):
    _all_succeeded(store, hours_ago=2)
    write_run(store, "fetch_utilization", started=NOW - timedelta(minutes=5), status="running")
    response, body = _health(store)
    assert response.status == 200
    utilization = body["functions"]["fetch_utilization"]
    assert utilization["running"]["status"] == "running" and utilization["running"]["finishedAt"] is None
    assert utilization["lastRun"]["status"] == "succeeded"


def test_a_first_run_still_running_is_503(store):
    _all_succeeded(store)
    write_run(store, "fetch_utilization", started=NOW - timedelta(hours=5), status="running")
    store.delete(RUNS, "fetch_utilization", run_key(NOW - timedelta(hours=1, minutes=2)))
    response, body = _health(store)
    assert response.status == 503
    assert "no run has finished" in body["functions"]["fetch_utilization"]["reasons"][0]


@pytest.mark.parametrize("stale_hours", [27, 100])
def test_default_limit_is_the_health_max_age_setting(store, stale_hours):
    for name in JOB_NAMES:
        write_run(store, name, started=NOW - timedelta(hours=stale_hours))
    response, body = _health(store)
    assert response.status == 503 and body["maxAgeHours"] == 26


def test_health_says_how_far_each_subscription_s_data_reaches(store):
    _all_succeeded(store)
    marks = {"a": "2024-05-31T00:00:00Z", "b": "2024-05-29T00:00:00Z", "c": "2024-05-30T12:00:00Z"}
    store.upsert(
        tables.SYNC_STATE,
        [tables.state_row(tables.UTILIZATION_STATE, key, doneThrough=mark) for key, mark in marks.items()],
    )
    _, body = _health(store)
    # At NOW (06-01 12:00) with a 6 h lag the newest possible mark is 06-01 00:00: b is 3 days behind, c 1.5.
    assert body["functions"]["fetch_utilization"]["progress"] == {
        "field": "doneThrough",
        "subscriptions": 3,
        "oldest": "2024-05-29T00:00:00Z",
        "newest": "2024-05-31T00:00:00Z",
        "laggingMoreThanADay": 2,
    }
    assert body["functions"]["fetch_usage_summary"]["progress"]["subscriptions"] == 0
    assert body["functions"]["fetch_usage_records"]["progress"] is None
