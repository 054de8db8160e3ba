"""Timer: every customer's monthly usage record (GET /v1/customers/usagerecords) into UsageRecords."""

import azure.functions as func

from shared.sync.runner import run_timer


def main(timer: func.TimerRequest) -> None:
    """Run the job of the same name (shared.sync.jobs); its run record and log line say how it went."""
    run_timer("fetch_usage_records", past_due=timer.past_due)
