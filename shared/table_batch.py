"""Entity Group Transactions (``$batch``) written and read here, sent through the TableClient's own pipeline.

azure-data-tables builds a transaction with Python's ``email`` generator, a request object and a policy run
per entity, and parses the answer with ``email.parser``: about three quarters of the app's CPU per stored
row. This module writes the same multipart/mixed body directly (one changeset of PUT, PATCH and DELETE parts,
the headers the SDK sends) and splits the answer itself, while the request still goes through the client's
pipeline (``TableClient._client.send_request``, the generated client's documented raw-request entry point),
so authentication (shared key, SAS, Entra token), request ids, the SDK's retry policy, logging and tracing
are the SDK's own. A failed part is decoded by the SDK's own error decoder into the SDK's exception types
(``TableTransactionError`` with the part's status and the failing ``index``, ``RequestTooLargeError`` for
413), so callers handle it as they would ``TableClient.submit_transaction``'s.

Entity JSON is what ``azure.data.tables._serialize._add_entity_properties`` writes (tests compare), except
that strings carry no ``Edm.String`` annotation (the service's default type of a JSON string: the stored
entity is the same) and a ``Decimal`` is its exact text, as the app stores money.

It depends on the wire format and private helpers of azure-data-tables 12.7.0 and azure-core 1.41.0, pinned
exactly in requirements.txt; tests/test_table_batch.py compares this body with the SDK's own for a new pin.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from functools import cached_property
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.core.utils import CaseInsensitiveDict
from azure.data.tables import RequestTooLargeError, TableClient, TableTransactionError, UpdateMode
from azure.data.tables import _error as sdk_error

# The SDK's own decoding of an error answer (code, message, exception type): the errors stay the SDK's.
_decode_error: Callable[..., HttpResponseError] = sdk_error._decode_error
_validate_tablename_error: Callable[[HttpResponseError, str], None] = sdk_error._validate_tablename_error

MAX_OPERATIONS = 100
MAX_BODY_BYTES = 4 * 1024 * 1024  # the service's limit on a transaction's payload
_INT32 = 2**31
_INT64 = 2**63
# ASCII, as the SDK writes it: Azurite misreads a changeset whose parts hold raw UTF-8
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

Operation = tuple[str, Mapping[str, Any]]
"""``("upsert", entity)`` (replace), ``("merge", entity)`` (upsert merging properties) or ``("delete", keys)``."""


class TransactionTooLarge(ValueError):
    """The body would exceed the service's 4 MiB; raised before anything is sent (split the operations)."""


# -- entity JSON, as the SDK writes it ---------------------------------------------------------------------------


def _int32(name: str, value: int, out: dict[str, Any]) -> None:
    if not -_INT32 <= value < _INT32:
        # the SDK's own refusal: a Python int is Edm.Int32 unless given as (value, "Edm.Int64")
        raise TypeError(f"{value} is too large to be cast to type Edm.Int32.")
    out[name] = value


def _double(name: str, value: float, out: dict[str, Any]) -> None:
    if math.isnan(value):
        out[name] = "NaN"
    elif math.isinf(value):
        out[name] = "Infinity" if value > 0 else "-Infinity"
    else:
        out[name] = value
    out[name + "@odata.type"] = "Edm.Double"


def _datetime_text(value: datetime) -> str:
    service_value = getattr(value, "tables_service_value", None)  # a datetime read back from the service
    if service_value:
        return str(service_value)
    try:
        value = value.astimezone(timezone.utc)
    except ValueError:
        pass
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _typed(name: str, value: Any, edm: str, out: dict[str, Any]) -> None:
    out[name] = value
    out[name + "@odata.type"] = edm


def _convert(name: str, value: Any, out: dict[str, Any]) -> None:
    kind = type(value)
    if kind is str:
        out[name] = value
    elif kind is int:
        _int32(name, value, out)
    elif kind is bool:
        out[name] = value
    elif isinstance(value, Enum):
        out[name] = str(value)
    elif isinstance(value, datetime):
        _typed(name, _datetime_text(value), "Edm.DateTime", out)
    elif kind is float:
        _double(name, value, out)
    elif kind is bytes:
        _typed(name, base64.b64encode(value).decode("ascii"), "Edm.Binary", out)
    elif kind is Decimal:
        out[name] = str(value)
    elif kind is uuid.UUID:
        _typed(name, str(value), "Edm.Guid", out)
    elif isinstance(value, tuple):
        _explicit(name, value, out)
    else:
        raise TypeError(f"Type not supported when sending entity: {kind}")


def _explicit(name: str, value: tuple[Any, Any], out: dict[str, Any]) -> None:
    """``(value, EdmType)``: always annotated, as the SDK does for an explicit type."""
    raw, edm = value[0], str(getattr(value[1], "value", value[1]))
    if raw is None:
        return
    if edm == "Edm.Int64":
        if not -_INT64 <= int(raw) < _INT64:
            raise TypeError(f"{raw} is too large to be cast to type Edm.Int64.")
        _typed(name, str(raw), edm, out)
    elif edm == "Edm.Int32":
        _int32(name, int(raw), out)
        out[name + "@odata.type"] = edm
    elif edm == "Edm.Double":
        if isinstance(raw, str):
            _typed(name, raw, edm, out)
        else:
            _double(name, raw, out)
    elif edm == "Edm.DateTime":
        _typed(name, raw if isinstance(raw, str) else _datetime_text(raw), edm, out)
    elif edm == "Edm.Binary":
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        _typed(name, base64.b64encode(data).decode("ascii"), edm, out)
    elif edm == "Edm.String":
        out[name] = str(raw)
    elif edm in ("Edm.Boolean", "Edm.Guid"):
        _typed(name, raw if edm == "Edm.Boolean" else str(raw), edm, out)
    else:
        raise TypeError(f"Type not supported when sending entity: {edm}")


def entity_json(entity: Mapping[str, Any]) -> bytes:
    """The JSON body of one entity, ASCII (``\\u`` escapes) as the SDK writes it; None values are left out."""
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if value is not None:
            _convert(name, value, out)
    return _ENCODE(out).encode("ascii")


# -- the request ---------------------------------------------------------------------------------------------------


# quote(..., safe="") of ASCII text as one str.translate (C), not urllib's per-byte join: what every part pays
_QUOTED_ASCII = {code: f"%{code:02X}" for code in range(128) if not (chr(code).isalnum() or chr(code) in "_.-~")}


def _key(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("PartitionKey or RowKey must be of type string.")
    text: str = value.replace("'", "''")
    if text.isascii():
        return text.translate(_QUOTED_ASCII)
    return quote(text, safe="")


class TransactionBody:
    """The multipart/mixed body of one transaction: a batch holding one changeset of every operation."""

    def __init__(
        self,
        base_url: str,
        table_name: str,
        api_version: str,
        operations: Iterable[Operation],
        *,
        cosmos: bool = False,
    ) -> None:
        self.batch_boundary = f"batch_{uuid.uuid4()}"
        changeset = f"changeset_{uuid.uuid4()}"
        entity_url = f"{base_url}/{quote(table_name, safe='')}"
        part_headers = f"x-ms-version: {api_version}\r\nDataServiceVersion: 3.0\r\n"
        opening = f"--{self.batch_boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode(
            "ascii"
        )
        chunks: list[bytes] = [opening]
        partition = None
        count = 0
        for index, (kind, entity) in enumerate(operations):
            pk, rk = entity.get("PartitionKey"), entity.get("RowKey")
            if pk is None or rk is None:
                raise ValueError("PartitionKey and/or RowKey were not provided in entity")
            if partition is None:
                partition = pk
            elif pk != partition:
                raise ValueError("Partition Keys in the batch must all be the same.")
            target = f"{entity_url}(PartitionKey='{_key(pk)}',RowKey='{_key(rk)}')"
            head = (
                f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: {index}\r\n\r\n"
            )
            if kind == "delete":
                # An entity read from the service carries its ETag: the delete then fails (412, the whole
                # transaction) if it was written again since; a bare key deletes whatever is there.
                metadata = getattr(entity, "metadata", None)
                etag = metadata.get("etag") if isinstance(metadata, Mapping) else None
                chunks.append(
                    f"{head}DELETE {target} HTTP/1.1\r\n{part_headers}"
                    f"Accept: application/json;odata=minimalmetadata\r\nIf-Match: {etag or '*'}\r\n\r\n\r\n".encode()
                )
            elif kind in ("upsert", "merge"):
                body = entity_json(entity)
                verb, tunnel = "PUT", ""
                if kind == "merge":  # Cosmos DB takes a merge as a POST that names it, as the SDK sends it there
                    verb, tunnel = ("POST", "X-HTTP-Method: MERGE\r\n") if cosmos else ("PATCH", "")
                chunks.append(
                    f"{head}{verb} {target} HTTP/1.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n{part_headers}Accept: application/json\r\n{tunnel}\r\n".encode()
                )
                chunks.append(body)
                chunks.append(b"\r\n")
            else:
                raise ValueError(f"Unrecognized operation: {kind}")
            count += 1
        if count > MAX_OPERATIONS:
            raise ValueError(f"a transaction holds at most {MAX_OPERATIONS} operations, not {count}")
        chunks.append(f"--{changeset}--\r\n\r\n--{self.batch_boundary}--\r\n".encode("ascii"))
        self.operations = count
        self.content = b"".join(chunks)

    @property
    def content_type(self) -> str:
        """The Content-Type header of the request."""
        return f"multipart/mixed; boundary={self.batch_boundary}"


def operations_of(entities: Iterable[Mapping[str, Any]], mode: UpdateMode) -> list[Operation]:
    """Upserts of ``entities`` replacing whole rows (REPLACE) or merging their properties (MERGE)."""
    kind = "upsert" if mode == UpdateMode.REPLACE else "merge"
    return [(kind, entity) for entity in entities]


def submit(table: TableClient, operations: Sequence[Operation]) -> list[dict[str, str]]:
    """Send one transaction; per operation, its answer's metadata (``etag``) as ``submit_transaction`` returns.

    Raises what ``TableClient.submit_transaction`` raises: ``TableTransactionError`` (an ``HttpResponseError``
    with the failed part's status, error code and ``index``; a missing table is its 404 ``TableNotFound``),
    ``RequestTooLargeError`` on 413, the SDK's decoded error for a request refused whole, azure-core's
    connection errors once the pipeline's retries are spent; ``TransactionTooLarge`` (nothing sent) for a body
    over 4 MiB, ``ValueError`` for more than 100 operations or two partitions.
    """
    if not operations:
        return []
    body = TransactionBody(
        f"{table.scheme}://{table._primary_hostname}",
        table.table_name,
        table.api_version,
        operations,
        cosmos=bool(table._cosmos_endpoint),
    )
    if len(body.content) > MAX_BODY_BYTES:
        raise TransactionTooLarge(f"the transaction body is {len(body.content)} bytes; the service allows 4 MiB")
    request = HttpRequest(
        "POST",
        f"{table.scheme}://{table._primary_hostname}/$batch",
        headers={
            "x-ms-version": table.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": body.content_type,
            "Accept": "application/json",
        },
        content=body.content,
    )
    response = table._client.send_request(request, stream=True)  # as the SDK: the pipeline leaves multipart alone
    if response.status_code == 413:
        raise _decode_error(
            response, error_message="The transaction request was too large", error_type=RequestTooLargeError
        )
    if response.status_code != 202:
        decoded = _decode_error(response)
        _validate_tablename_error(decoded, table.table_name)
        raise decoded
    parts = parse_answer(response.headers.get("Content-Type", ""), response.read())
    for part in parts:
        if not 200 <= part.status_code < 300:
            if part.status_code == 413:
                raise _decode_error(
                    part, error_message="The transaction request was too large", error_type=RequestTooLargeError
                )
            decoded = _decode_error(part, error_type=TableTransactionError)
            _validate_tablename_error(decoded, table.table_name)
            raise decoded
    if len(parts) != body.operations:
        raise TableTransactionError(
            message=f"the transaction answer holds {len(parts)} parts for {body.operations} operations"
        )
    return [{"etag": etag} if (etag := part.etag()) is not None else {} for part in parts]


# -- the answer ----------------------------------------------------------------------------------------------------


class AnswerPart:
    """One operation's answer in a transaction's response, shaped as the SDK's error decoder reads a response.

    Headers are parsed only when asked for (an error's); a success needs its status and ETag alone.
    """

    def __init__(self, status_code: int, reason: str, header_block: bytes, body: bytes) -> None:
        self.status_code = status_code
        self.reason = reason
        self._header_block = header_block
        self._body = body

    @cached_property
    def headers(self) -> CaseInsensitiveDict:
        """The part's headers."""
        return _headers(self._header_block)

    def etag(self) -> str | None:
        """The ETag header, found without parsing the others."""
        at = self._header_block.lower().find(b"etag:")
        if at < 0 or (at > 0 and self._header_block[at - 1 : at] != b"\n"):
            return self.headers.get("ETag")
        line = self._header_block[at + 5 :].split(b"\r\n", 1)[0]
        return line.decode("latin-1").strip()

    @property
    def content_type(self) -> str | None:
        """The part's Content-Type header."""
        return self.headers.get("Content-Type")

    def body(self) -> bytes:
        """The part's body."""
        return self._body

    def text(self, encoding: str | None = None) -> str:
        """The part's body as text."""
        return self._body.decode(encoding or "utf-8-sig", "replace")


def _boundary(content_type: str) -> bytes:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip().strip('"').encode("ascii")
    raise TableTransactionError(message=f"the transaction answer has no multipart boundary: {content_type[:200]!r}")


def _mime_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between ``--boundary`` delimiters (preamble and epilogue dropped), without their final CRLF."""
    delimiter = b"--" + boundary
    pieces = body.split(delimiter)
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break  # the close delimiter
        parts.append(piece.removeprefix(b"\r\n").removesuffix(b"\r\n"))
    return parts


def _headers(block: bytes) -> CaseInsensitiveDict:
    headers: CaseInsensitiveDict = CaseInsensitiveDict()
    for line in block.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers


def _http_answer(message: bytes) -> AnswerPart:
    head, _, body = message.partition(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    fields = status_line.decode("latin-1").split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit():
        raise TableTransactionError(message=f"unreadable part in the transaction answer: {status_line[:200]!r}")
    return AnswerPart(int(fields[1]), fields[2] if len(fields) > 2 else "", header_block, body)


def parse_answer(content_type: str, body: bytes) -> list[AnswerPart]:
    """Every operation's answer of a ``$batch`` response: its changeset's parts, in order."""
    answers: list[AnswerPart] = []
    for part in _mime_parts(body, _boundary(content_type)):
        head, _, content = part.partition(b"\r\n\r\n")
        headers = _headers(head)
        part_type = headers.get("Content-Type", "")
        if part_type.lower().startswith("multipart/mixed"):
            for inner in _mime_parts(content, _boundary(part_type)):
                _, _, message = inner.partition(b"\r\n\r\n")
                answers.append(_http_answer(message))
        else:  # an answer to the whole batch rather than a changeset
            answers.append(_http_answer(content))
    return answers
