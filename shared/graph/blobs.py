"""Reading an export's blobs: plain HTTPS GET with the manifest's SAS, gzip decompressed here, one line at a time.

The HTTP layer is told not to decode (``decode_content=False``): the bytes are gzip members (several, possibly,
one after another), checked by their magic number and inflated by ``zlib`` as they arrive. A dropped connection
resumes from the byte where it broke (``Range`` with ``If-Match`` on the blob's ETag), so a reset costs the rest
of the blob, not the whole blob. Memory holds one chunk and one line, however large the export. The SAS token is
a credential: it is never logged, and errors name the blob only.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from shared.graph.client import ExportExpired, GraphBillingClient, GraphError, Manifest
from shared.retry import Action, Outcome

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 256 * 1024
MAX_LINE_BYTES = 8 * 1024 * 1024  # a line longer than this is not a line item: the blob is not JSON Lines
MAX_RESUMES = 5
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


def read_lines(client: GraphBillingClient, manifest: Manifest) -> Iterator[BlobLine]:
    """Every non-empty line of every blob of the export, in order, streamed."""
    for blob in manifest.blobs:
        yield from _blob_lines(client, manifest, blob.name)


def _open(
    client: GraphBillingClient, url: str, blob: str, offset: int, etag: str | None
) -> tuple[requests.Response, str | None]:
    headers = {"Accept-Encoding": "identity", "x-ms-version": "2021-08-06"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if etag:
            headers["If-Match"] = etag
    client.counters.add(calls=1)
    try:
        response = client.session.get(url, headers=headers, stream=True, timeout=client.timeout)
    except _DROPPED as exc:
        raise _Dropped(type(exc).__name__) from None
    except requests.RequestException as exc:  # its text holds the URL, and so the SAS: only its type is kept
        raise GraphError(
            f"blob {blob} could not be requested ({type(exc).__name__})", code="BlobRequestFailed"
        ) from None
    expected = 206 if offset else 200
    if response.status_code == expected:
        return response, response.headers.get("ETag") or etag
    status = response.status_code
    code = response.headers.get("x-ms-error-code")
    response.close()
    if status == 403 or status == 410:
        raise ExportExpired(
            f"blob {blob} can no longer be read ({status} {code or ''}); the SAS has probably expired: export again",
            status=status,
            code=code,
        )
    if status == 412:
        raise GraphError(f"blob {blob} changed while it was read; export again", status=status, code=code)
    if status in (429, 500, 502, 503, 504):
        raise _Dropped(str(status))
    raise GraphError(f"blob {blob} could not be read", status=status, code=code)


class _Dropped(Exception):
    """The download broke off; resume from the last byte received."""


def _blob_lines(client: GraphBillingClient, manifest: Manifest, blob: str) -> Iterator[BlobLine]:
    url = blob_url(manifest, blob)
    inflater = _Inflater(blob)
    received = 0
    etag: str | None = None
    pending = b""
    number = 0
    resumes = 0
    state = client.retry.start()
    while True:
        try:
            response, etag = _open(client, url, blob, received, etag)
            with response:
                for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                    received += len(chunk)
                    pending += inflater.feed(chunk)
                    *lines, pending = pending.split(b"\n")
                    if len(pending) > MAX_LINE_BYTES:
                        raise GraphError(f"blob {blob} holds a line over {MAX_LINE_BYTES} bytes", code="NotJsonLines")
                    for line in lines:
                        number += 1
                        text = _text(line, blob, number)
                        if text:
                            yield BlobLine(text, blob, number)
            break
        except (*_DROPPED, _Dropped) as exc:
            resumes += 1
            decision = client.retry.decide(state, _outcome(exc))
            if resumes > MAX_RESUMES or decision.action is not Action.RETRY:
                raise GraphError(
                    f"blob {blob} broke off {resumes} times (last: {_reason(exc)}); giving up for this run",
                    code="BlobDownloadFailed",
                ) from None
            log.warning("blob %s broke off at byte %d (%s); resuming", blob, received, _reason(exc))
            client.counters.add(retries=1)
            client.sleep(decision.wait)
    inflater.finish()
    if pending:
        number += 1
        text = _text(pending, blob, number)
        if text:
            yield BlobLine(text, blob, number)


def _text(line: bytes, blob: str, number: int) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = line.decode("utf-8", errors="replace")
        log.warning("blob %s line %d is not UTF-8 at byte %d; kept with replacement", blob, number, exc.start)
    return text.removeprefix("\ufeff").rstrip("\r").strip()


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, _Dropped) else type(exc).__name__


def _outcome(exc: BaseException) -> Outcome:
    if isinstance(exc, _Dropped) and str(exc).isdigit():
        return Outcome(status=int(str(exc)))
    return Outcome(error=type(exc).__name__)
