"""Reading an export's blobs: plain HTTPS GET with the manifest's SAS, gzip decompressed here, one line at a time.

The HTTP layer is told not to decode (``decode_content=False``): the bytes are gzip members (several, possibly,
one after another), checked by their magic number and inflated by ``zlib`` as they arrive. Each line is handed to
the caller's sink as soon as it is whole. One try of ``RetryPolicy.run`` reads a blob from where the last try
broke off to its end: a dropped connection resumes from that byte (``Range`` with ``If-Match`` on the blob's
ETag), so a reset costs the rest of the blob, not the whole blob, and a read stops at the run's deadline. Memory
holds one chunk and one line, however large the export. The SAS token is a credential: it is never logged, and
errors name the blob only.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from shared.graph.client import ExportExpired, GraphBillingClient, GraphError, Manifest
from shared.retry import DONE, Final, Outcome, RetryPolicy

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 256 * 1024
MAX_LINE_BYTES = 8 * 1024 * 1024  # a line longer than this is not a line item: the blob is not JSON Lines
# A blob is read with the manifest's SAS, not a token: a 401 or 403 is never retried. Each drop counts a try, so a
# blob resumes at most five times.
BLOB_RETRY = RetryPolicy(not_ready_attempts=0, refresh_token_on_401=False)
_DROPPED = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    Urllib3Error,
)


@dataclass(frozen=True)
class BlobLine:
    """One line of a blob: its text as received (UTF-8, BOM and line end removed), and where it was."""

    text: str
    blob: str
    number: int  # 1-based within its blob


class _Inflater:
    """gzip members one after another, inflated incrementally."""

    def __init__(self, blob: str) -> None:
        self._blob = blob
        self._member: Any = None  # the decompressor of the member being read, None between members
        self._head = b""
        self._checked = False

    def feed(self, data: bytes) -> bytes:
        if not self._checked:
            self._head += data
            if len(self._head) < 2:
                return b""
            if self._head[:2] != GZIP_MAGIC:
                raise GraphError(
                    f"blob {self._blob} is not gzip-compressed (it starts with {self._head[:2].hex()}, not 1f8b)",
                    code="NotGzip",
                )
            self._checked, data, self._head = True, self._head, b""
        out = []
        try:
            while data:
                if self._member is None:
                    self._member = zlib.decompressobj(wbits=31)
                out.append(self._member.decompress(data))
                if not self._member.eof:
                    break
                data, self._member = self._member.unused_data, None  # the next member starts here, if any
        except zlib.error as exc:
            raise GraphError(f"blob {self._blob} is not valid gzip ({exc})", code="BadGzip") from None
        return b"".join(out)

    def finish(self) -> None:
        if self._head:
            raise GraphError(f"blob {self._blob} is too short to be gzip", code="NotGzip")
        if self._member is not None:
            raise GraphError(f"blob {self._blob} ends inside a gzip member", code="TruncatedGzip")


def blob_url(manifest: Manifest, blob_name: str) -> str:
    """``{rootDirectory}/{name}?{sasToken}``."""
    return f"{manifest.root_directory}/{quote(blob_name, safe='/')}?{manifest.sas_token}"


LineSink = Callable[[BlobLine], None]


def read_lines(client: GraphBillingClient, manifest: Manifest, into: LineSink) -> None:
    """Hand every non-empty line of every blob of the export to ``into``, in order, streamed."""
    for blob in manifest.blobs:
        _BlobReader(client, manifest, blob.name, into).read()


def read_blob(client: GraphBillingClient, manifest: Manifest, name: str, into: LineSink) -> None:
    """Hand every non-empty line of one blob of the export to ``into``, in order, streamed (the client lends its
    session, timeout, sleep, counters and deadline; no Graph call is made)."""
    _BlobReader(client, manifest, name, into).read()


class _BlobReader:
    """One blob: each try reads from the byte the last one reached to the end, its lines handed on as they come."""

    def __init__(self, client: GraphBillingClient, manifest: Manifest, blob: str, into: LineSink) -> None:
        self._client, self._blob, self._into = client, blob, into
        self._url = blob_url(manifest, blob)
        self._inflater = _Inflater(blob)
        self._received = 0
        self._etag: str | None = None
        self._pending = b""
        self._number = 0
        self._refused: str | None = None  # the x-ms-error-code of the last refused try

    def read(self) -> None:
        """The whole blob, resumed after drops as the policy allows; GraphError (or ExportExpired) when it cannot."""
        client = self._client
        final = BLOB_RETRY.run(
            self._try,
            sleep=client.sleep,
            deadline=client.deadline,
            counters=client.counters,
            describe=lambda: f"blob {self._blob} (at byte {self._received})",
        )
        if final.result is None:
            raise self._failure(final)
        self._inflater.finish()
        if self._pending:
            self._line(self._pending)

    def _try(self) -> tuple[bool | None, Outcome]:
        headers = {"Accept-Encoding": "identity", "x-ms-version": "2021-08-06"}
        if self._received:
            headers["Range"] = f"bytes={self._received}-"
            if self._etag:
                headers["If-Match"] = self._etag
        client = self._client
        try:
            response = client.session.get(self._url, headers=headers, stream=True, timeout=client.timeout)
        except _DROPPED as exc:
            return None, Outcome.of_error(exc)
        except requests.RequestException as exc:  # its text holds the URL, and so the SAS: only its type is kept
            raise GraphError(
                f"blob {self._blob} could not be requested ({type(exc).__name__})", code="BlobRequestFailed"
            ) from None
        if response.status_code != (206 if self._received else 200):
            self._refused = response.headers.get("x-ms-error-code")
            response.close()
            return None, Outcome.of_response(response.status_code, response.headers)
        self._etag = response.headers.get("ETag") or self._etag
        deadline = client.deadline
        try:
            with response:
                for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                    if deadline is not None:
                        deadline.check(f"blob {self._blob}")
                    self._received += len(chunk)
                    self._feed(chunk)
        except _DROPPED as exc:
            return None, Outcome.of_error(exc)
        return True, DONE

    def _feed(self, chunk: bytes) -> None:
        *lines, self._pending = (self._pending + self._inflater.feed(chunk)).split(b"\n")
        if len(self._pending) > MAX_LINE_BYTES:
            raise GraphError(f"blob {self._blob} holds a line over {MAX_LINE_BYTES} bytes", code="NotJsonLines")
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        self._number += 1
        text = _text(line, self._blob, self._number)
        if text:
            self._into(BlobLine(text, self._blob, self._number))

    def _failure(self, final: Final[bool]) -> GraphError:
        status, blob, code = final.outcome.status, self._blob, self._refused
        if final.outcome.error is not None or status in BLOB_RETRY.retry_statuses:
            return GraphError(
                f"blob {blob} broke off {final.decision.attempt} times (last: {final.outcome.reason}); giving up "
                "for this run",
                code="BlobDownloadFailed",
            )
        if status in (403, 410):
            return ExportExpired(
                f"blob {blob} can no longer be read ({status} {code or ''}); the SAS has probably expired: export "
                "again",
                status=status,
                code=code,
            )
        if status == 412:
            return GraphError(f"blob {blob} changed while it was read; export again", status=status, code=code)
        return GraphError(f"blob {blob} could not be read", status=status, code=code)


def _text(line: bytes, blob: str, number: int) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = line.decode("utf-8", errors="replace")
        log.warning("blob %s line %d is not UTF-8 at byte %d; kept with replacement", blob, number, exc.start)
    return text.removeprefix("\ufeff").rstrip("\r").strip()
