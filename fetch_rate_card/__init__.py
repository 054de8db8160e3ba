"""Timer: the Azure rate card (GET /v1/ratecards/azure) into RateCards, which prices legacy usage in the spend."""

import azure.functions as func

from shared.sync.runner import run_timer


def main(timer: func.TimerRequest) -> None:
    """Run the job of the same name (shared.sync.jobs); its run record and log line say how it went."""
    run_timer("fetch_rate_card", past_due=timer.past_due)
