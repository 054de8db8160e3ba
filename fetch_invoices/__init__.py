"""Timer: Partner Center invoices, and each invoice's billed reconciliation and billed usage exports (Graph)."""

import azure.functions as func

from shared.sync.runner import run_timer


def main(timer: func.TimerRequest) -> None:
    """Run the job of the same name (shared.sync.jobs); its run record and log line say how it went."""
    run_timer("fetch_invoices", past_due=timer.past_due)
