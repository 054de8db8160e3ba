"""Timer: each Azure subscription's usage summary (GET .../usagesummary) into UsageSummaries."""

import logging
from datetime import datetime, timezone

import azure.functions as func

from shared.settings import Settings
from shared.sync.runs import SyncRun
from shared.sync.usage_summary import sync_usage_summaries
from shared.table_store import TableStore
from shared.wiring import partner_center_client


def main(timer: func.TimerRequest) -> None:
    """Wire settings, client and store; sync; the run record and log line say how it went."""
    if timer.past_due:
        logging.info("fetch_usage_summary is running late (past due)")
    settings = Settings.from_env()
    store = TableStore.from_settings(settings)
    client = partner_center_client(settings)
    with SyncRun(store, "fetch_usage_summary", client=client, budget_seconds=settings.sync_time_budget_seconds) as run:
        sync_usage_summaries(client, store, settings, run, now=datetime.now(timezone.utc))
