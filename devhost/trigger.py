"""``python -m devhost trigger NAME``: run one timer function once, in-process, as Azure would call it."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime

import azure.functions.timer

from devhost.funcapp import REPO_ROOT, discover, load_main, resolve_setting_refs
from shared.settings import Settings
from shared.sync import jobs
from shared.table_store import TableStore
from shared.tables import RUNS


class TriggerError(Exception):
    """The function could not be found or is not a timer function."""


def trigger(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Call the function's ``main`` with a TimerRequest bound by its function.json; True when it succeeded."""
    env = os.environ if env is None else env
    specs = {spec.name: spec for spec in discover(REPO_ROOT)}
    spec = specs.get(name)
    if spec is None:
        raise TriggerError(f"no function named {name!r}; there are: {', '.join(sorted(specs))}")
    binding = spec.trigger
    if binding.get("type") != "timerTrigger" or name not in jobs.JOB_NAMES:
        raise TriggerError(f"{name} is not a timer function (its trigger is {binding.get('type')})")
    # Resolving the schedule fails loudly when its app setting is missing, as the Functions host does.
    schedule = resolve_setting_refs(str(binding.get("schedule", "")), env)
    logging.getLogger("devhost").info("%s: schedule %s", name, schedule)
    main = load_main(spec)
    try:
        main(**{binding["name"]: azure.functions.timer.TimerRequest(past_due=False)})
    except Exception as exc:
        logging.getLogger("devhost").error("%s failed: %s", name, exc)
        return False
    return True


def last_run_line(name: str, env: Mapping[str, str] | None = None) -> str:
    """The newest run record of a function, as one line (what the function itself wrote)."""
    settings = Settings.from_env(env)
    store = TableStore.from_settings(settings)
    row = next(store.partition(RUNS, name, limit=1), None)
    if row is None:
        return f"{name}: no run recorded"
    seconds = ""
    if row.get("finishedAt"):
        elapsed = datetime.fromisoformat(row["finishedAt"]) - datetime.fromisoformat(row["startedAt"])
        seconds = f" in {elapsed.total_seconds():.1f}s"
    unit = row.get("unit") or jobs.get(name).unit
    progress = f"{row.get('done', 0)} {unit} done, {row.get('pending', 0)} pending"
    return (
        f"{name} {row['status']}{seconds}: {progress}, pages={row.get('pages', 0)} rows={row.get('rows', 0)} "
        f"calls={row.get('calls', 0)} retries={row.get('retries', 0)} skipped={row.get('skippedCount', 0)} "
        f"quarantined={row.get('quarantined', 0)} errors={row.get('errorCount', 0)}"
    )
