"""Timer: Azure plan daily rated usage (Microsoft Graph partner billing export) into RatedSlices and RatedLines."""

import azure.functions as func

from shared.sync.runner import run_timer


def main(timer: func.TimerRequest) -> None:
    """Run the job of the same name (shared.sync.jobs); its run record and log line say how it went."""
    run_timer("fetch_rated_usage", past_due=timer.past_due)
