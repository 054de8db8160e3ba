"""The ``rated-ingest`` queue: one message per blob to stage, and one to commit, for ``stage_rated_blob``.

Messages are small JSON (which stream, which export, which blob), base64-encoded as the Functions host's queue
trigger reads them by default; they carry no credential (the blob's SAS stays in the export's progress row). A
message that fails ``maxDequeueCount`` times (host.json) goes to ``rated-ingest-poison``, named by the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.identity import azure_credential
from shared.settings import Settings
from shared.tables import RATED_INGEST_QUEUE

STAGE, COMMIT = "stage", "commit"


@dataclass(frozen=True)
class IngestMessage:
    """Stage ``blob`` of the export ``export_id`` of a stream, or commit that export (``blob`` None)."""

    kind: str
    billing_period: str
    currency: str
    export_id: str
    blob: int | None = None

    def text(self) -> str:
        """Its JSON."""
        body: dict[str, Any] = {
            "kind": self.kind,
            "billingPeriod": self.billing_period,
            "currency": self.currency,
            "exportId": self.export_id,
        }
        if self.blob is not None:
            body["blob"] = self.blob
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> IngestMessage:
        """A message from its JSON; ValueError says what is wrong with it."""
        body = json.loads(text)
        if not isinstance(body, dict) or body.get("kind") not in (STAGE, COMMIT):
            raise ValueError("not a rated-ingest message")
        blob = body.get("blob")
        if body["kind"] == STAGE and not isinstance(blob, int):
            raise ValueError("a stage message names its blob")
        return cls(
            kind=str(body["kind"]),
            billing_period=str(body["billingPeriod"]),
            currency=str(body["currency"]).upper(),
            export_id=str(body["exportId"]),
            blob=blob if isinstance(blob, int) else None,
        )


def queue_configured(settings: Settings) -> bool:
    """True when a queue is set (USAGE_QUEUE, or its service URI in Azure)."""
    return bool(settings.queue_connection_string or settings.queue_service_uri)


def ingest_queue(settings: Settings, name: str = RATED_INGEST_QUEUE) -> QueueClient:
    """The queue client (created if missing): a connection string locally, the managed identity in Azure."""
    encode, decode = TextBase64EncodePolicy(), TextBase64DecodePolicy()
    if settings.queue_connection_string:
        client = QueueClient.from_connection_string(
            settings.queue_connection_string, name, message_encode_policy=encode, message_decode_policy=decode
        )
    else:
        client = QueueClient(
            settings.queue_service_uri,
            name,
            credential=azure_credential(settings.queue_client_id),
            message_encode_policy=encode,
            message_decode_policy=decode,
        )
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    return client


def send(client: QueueClient, message: IngestMessage) -> None:
    """Put one message on the queue."""
    client.send_message(message.text())
