"""Timer: legacy subscriptions' Azure utilization (GET .../utilizations/azure) into Utilization."""

import azure.functions as func

from shared.sync.runner import run_timer


def main(timer: func.TimerRequest) -> None:
    """Run the job of the same name (shared.sync.jobs); its run record and log line say how it went."""
    run_timer("fetch_utilization", past_due=timer.past_due)
