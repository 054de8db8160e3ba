"""The job registry is the one list of timer functions: folders, schedules, health and run records agree."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from devhost.funcapp import discover
from shared.settings import BY_NAME
from shared.sync import jobs
from shared.sync.context import RunContext
from shared.sync.runs import SyncRun
from shared.tables import RUNS
from tests.api_data import get, settings_for

REPO = Path(__file__).resolve().parent.parent


def test_every_timer_folder_is_a_registered_job_and_every_job_has_its_folder():
    timers = {spec.name for spec in discover(REPO) if spec.trigger_type == "timerTrigger"}
    assert timers == set(jobs.JOB_NAMES)
    for job in jobs.JOBS:
        config = json.loads((REPO / job.name / "function.json").read_text(encoding="utf-8"))
        assert config["bindings"][0]["schedule"] == f"%{job.schedule_setting}%"


def test_each_timer_main_runs_the_job_of_its_own_name_and_nothing_else():
    for job in jobs.JOBS:
        tree = ast.parse((REPO / job.name / "__init__.py").read_text(encoding="utf-8"))
        (main,) = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        calls = [node for node in ast.walk(main) if isinstance(node, ast.Call)]
        assert len(calls) == 1 and ast.unparse(calls[0].func) == "run_timer"
        assert ast.literal_eval(calls[0].args[0]) == job.name


def test_an_unknown_job_names_the_known_ones():
    with pytest.raises(KeyError) as caught:
        jobs.get("fetch_everything")
    assert all(name in str(caught.value) for name in jobs.JOB_NAMES)


def test_health_reports_every_registered_job(store):
    body = get(store, "/api/health", settings=settings_for(store)).json()
    assert set(body["functions"]) == set(jobs.JOB_NAMES)


def test_a_run_record_names_the_unit_its_done_and_pending_count(store):
    with SyncRun(store, "fetch_usage_records", unit="customers") as run:
        run.add(done=3, pending=1)
    (row,) = store.partition(RUNS, "fetch_usage_records")
    assert row["unit"] == "customers" and row["done"] == 3 and row["pending"] == 1
    assert {job.unit for job in jobs.JOBS} == {"customers", "subscriptions", "exports", "invoices", "currencies"}


def test_the_http_function_loads_the_registry_without_the_partner_center_client():
    code = "import serve_usage, sys; print(sorted(m for m in sys.modules if m.startswith('shared.')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = done.stdout
    assert "shared.sync.jobs" in loaded
    assert "shared.partner_center" not in loaded and "shared.sync.utilization" not in loaded


def test_every_sync_callable_takes_the_run_context_alone():
    for job in jobs.JOBS:
        (parameter,) = inspect.signature(job.sync).parameters.values()
        assert parameter.annotation in ("RunContext", RunContext), job.name


def test_each_job_declares_its_schedule_setting_with_its_default():
    for job in jobs.JOBS:
        assert BY_NAME[job.schedule_setting].default == job.schedule and BY_NAME[job.schedule_setting].read_by == "host"
