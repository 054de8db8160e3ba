"""Queue: one rated-ingest message (stage one blob of a Graph billing export, or commit a staged export)."""

import azure.functions as func

from shared.rated.worker import run_message


def main(message: func.QueueMessage) -> None:
    """Handle the message (shared.rated.worker); a failure is raised so the host retries it, then poisons it."""
    run_message(message.get_body().decode("utf-8"), dequeue_count=message.dequeue_count or 1)
