"""shared.table_batch: the Entity Group Transaction written and read by the app, against Azurite and the SDK."""

from __future__ import annotations

import io
import json
import math
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import (
    EdmType,
    RequestTooLargeError,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)
from azure.data.tables._serialize import _add_entity_properties
from requests.adapters import BaseAdapter

from shared import table_batch
from shared.table_batch import MAX_BODY_BYTES, TransactionBody, TransactionTooLarge, entity_json, submit
from shared.table_store import MAX_BATCH_OPERATIONS

UNICODE_KEYS = ["é😀'x", "e\u0301 %27 ~ & = +", "𝄞 quote'' and \"double\"", "日本語 key", "<&> ; , $ @ !"]


class Colour(StrEnum):
    RED = "red"


@pytest.fixture
def table(azurite) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    name = "tb" + uuid.uuid4().hex[:12]
    client = service.create_table(name)
    yield client
    service.delete_table(name)


def _stored(table: TableClient, pk: str, rk: str) -> dict[str, Any]:
    return dict(table.get_entity(pk, rk))


def _error_code(error: HttpResponseError) -> object:
    """The code the SDK's ``_decode_error`` sets on an error, an attribute its types do not declare."""
    return vars(error)["error_code"]


# -- on Azurite -------------------------------------------------------------------------------------------------


def test_upsert_replaces_whole_rows_and_merge_keeps_the_other_properties(table):
    submit(table, [("upsert", {"PartitionKey": "p", "RowKey": str(i), "a": "1", "b": "2"}) for i in range(3)])
    submit(
        table,
        [
            ("upsert", {"PartitionKey": "p", "RowKey": "0", "a": "replaced"}),
            ("merge", {"PartitionKey": "p", "RowKey": "1", "a": "merged"}),
        ],
    )
    assert _stored(table, "p", "0") == {"PartitionKey": "p", "RowKey": "0", "a": "replaced"}
    assert _stored(table, "p", "1") == {"PartitionKey": "p", "RowKey": "1", "a": "merged", "b": "2"}
    assert _stored(table, "p", "2")["a"] == "1"


def test_submit_returns_each_operations_etag_as_the_sdk_does(table):
    answers = submit(table, [("upsert", {"PartitionKey": "p", "RowKey": str(i)}) for i in range(3)])
    assert len(answers) == 3
    assert all(a["etag"] == table.get_entity("p", str(i)).metadata["etag"] for i, a in enumerate(answers))


def test_deletes_in_one_transaction(table):
    submit(table, [("upsert", {"PartitionKey": "p", "RowKey": str(i)}) for i in range(5)])
    submit(table, [("delete", {"PartitionKey": "p", "RowKey": str(i)}) for i in range(4)])
    assert [e["RowKey"] for e in table.list_entities()] == ["4"]


def test_a_delete_of_a_missing_row_fails_the_transaction_with_404_and_its_index(table):
    submit(table, [("upsert", {"PartitionKey": "p", "RowKey": "here"})])
    with pytest.raises(TableTransactionError) as caught:
        submit(
            table,
            [("delete", {"PartitionKey": "p", "RowKey": "here"}), ("delete", {"PartitionKey": "p", "RowKey": "gone"})],
        )
    assert caught.value.status_code == 404 and caught.value.index == 1
    assert _error_code(caught.value) == "ResourceNotFound"
    assert _stored(table, "p", "here")["RowKey"] == "here"  # nothing of a failed transaction is applied


@pytest.mark.parametrize("key", UNICODE_KEYS)
def test_unicode_keys_and_values_round_trip(table, key):
    value = f'{key} • \U0001d518\U0001d52b\U0001d526 a\u0308\u0301 \u200d👩‍👩‍👧 \t\r\n\x01 \\ " \u2028'
    submit(
        table,
        [
            ("upsert", {"PartitionKey": key, "RowKey": key, "v": value}),
            ("merge", {"PartitionKey": key, "RowKey": "2", "v": key}),
        ],
    )
    assert _stored(table, key, key)["v"] == value
    assert _stored(table, key, "2")["v"] == key
    submit(table, [("delete", {"PartitionKey": key, "RowKey": key})])
    with pytest.raises(ResourceNotFoundError):
        table.get_entity(key, key)


EVERY_TYPE: dict[str, Any] = {
    "text": "plain",
    "empty": "",
    "int": 7,
    "negative": -(2**31),
    "int64": (2**40, EdmType.INT64),
    "int64_text": ("-9223372036854775808", "Edm.Int64"),
    "int32_explicit": (12, EdmType.INT32),
    "yes": True,
    "no": False,
    "bool_explicit": (False, EdmType.BOOLEAN),
    "float": 1.5,
    "whole_float": 2.0,
    "tiny": 5e-324,
    "nan": float("nan"),
    "inf": float("inf"),
    "neg_inf": float("-inf"),
    "double_explicit": (3.25, EdmType.DOUBLE),
    "when": datetime(2026, 11, 20, 12, 30, 5, 123456, tzinfo=timezone.utc),
    "when_whole": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    "when_text": ("2026-11-20T12:00:00Z", EdmType.DATETIME),
    "blob": b"\x00\x01\xfe\xff binary",
    "blob_empty": b"",
    "guid": uuid.UUID("c9da6455-213d-42c9-9a79-3e9149a57833"),
    "enum": Colour.RED,
    "string_explicit": ("typed text", EdmType.STRING),
    "skipped": None,
}


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, float) and math.isnan(ours):
        return isinstance(theirs, float) and math.isnan(theirs)
    return type(ours) is type(theirs) and ours == theirs


def test_every_property_type_is_stored_as_the_sdk_stores_it(table):
    submit(
        table,
        [
            ("upsert", {"PartitionKey": "p", "RowKey": "ours", **EVERY_TYPE}),
            ("upsert", {"PartitionKey": "p", "RowKey": "x"}),
        ],
    )
    table.submit_transaction(
        [
            ("upsert", {"PartitionKey": "p", "RowKey": "sdk", **EVERY_TYPE}),
            ("upsert", {"PartitionKey": "p", "RowKey": "y"}),
        ]
    )
    ours, sdk = table.get_entity("p", "ours"), table.get_entity("p", "sdk")
    assert set(ours) == set(sdk) == {"PartitionKey", "RowKey", *EVERY_TYPE} - {"skipped"}
    different = {
        name: (ours[name], sdk[name]) for name in ours if name != "RowKey" and not _same(ours[name], sdk[name])
    }
    assert different == {}
    assert ours["int64"].value == 2**40 and ours["when"] == EVERY_TYPE["when"]


def test_a_decimal_is_stored_as_its_exact_text(table):
    submit(
        table,
        [
            ("upsert", {"PartitionKey": "p", "RowKey": "r", "money": Decimal("120.5682999999995904716")}),
            ("upsert", {"PartitionKey": "p", "RowKey": "s"}),
        ],
    )
    assert _stored(table, "p", "r")["money"] == "120.5682999999995904716"


def test_a_refused_property_fails_the_transaction_naming_its_operation(table):
    rows = [{"PartitionKey": "p", "RowKey": f"r{i}", "v": "ok"} for i in range(5)]
    rows[3]["v"] = "x" * 40_000  # 80,000 bytes of UTF-16: over the 64 KiB a property may hold
    with pytest.raises(TableTransactionError) as caught:
        submit(table, table_batch.operations_of(rows, UpdateMode.REPLACE))
    assert caught.value.status_code == 400 and caught.value.index == 3
    assert _error_code(caught.value) == "PropertyValueTooLarge"
    assert list(table.list_entities()) == []


def test_the_batch_writer_quarantines_only_the_row_the_service_refuses(store):
    refused: list[tuple[str, str]] = []
    writer = store.writer("Things", on_refused=lambda row, reason: refused.append((row["RowKey"], reason)))
    for i in range(10):
        # the value is not a number: the app cannot see it, the service refuses it (400 InvalidInput)
        writer.add({"PartitionKey": "p", "RowKey": f"r{i}", "v": ("abc", EdmType.DOUBLE) if i == 6 else 1.0})
    assert writer.flush() == 9
    assert [rk for rk, _ in refused] == ["r6"] and "refused the row" in refused[0][1]
    assert len(list(store.partition("Things", "p"))) == 9


def test_100_operations_in_one_transaction_and_not_101(table):
    ops = [("upsert", {"PartitionKey": "p", "RowKey": f"{i:03d}", "n": i}) for i in range(MAX_BATCH_OPERATIONS)]
    assert len(submit(table, ops)) == 100
    assert len(list(table.list_entities())) == 100
    with pytest.raises(ValueError, match="at most 100"):
        submit(table, [*ops, ("upsert", {"PartitionKey": "p", "RowKey": "101"})])


def test_a_batch_of_nearly_4_mib_is_stored(table):
    # 100 rows of two 20,700-character properties: a body of ~4.15 MB, just under 4 MiB
    rows = [{"PartitionKey": "p", "RowKey": f"{i:03d}", "a": "a" * 20_700, "b": "b" * 20_700} for i in range(100)]
    body = TransactionBody(
        "http://h/a", table.table_name, table.api_version, table_batch.operations_of(rows, UpdateMode.REPLACE)
    )
    assert MAX_BODY_BYTES - 60_000 < len(body.content) <= MAX_BODY_BYTES
    submit(table, table_batch.operations_of(rows, UpdateMode.REPLACE))
    assert len(list(table.list_entities(select=["RowKey"]))) == 100


def test_a_body_over_4_mib_is_refused_before_sending(table):
    rows = [{"PartitionKey": "p", "RowKey": f"{i:03d}", "a": "a" * 21_000, "b": "b" * 21_000} for i in range(100)]
    with pytest.raises(TransactionTooLarge):
        submit(table, table_batch.operations_of(rows, UpdateMode.REPLACE))
    assert list(table.list_entities()) == []


def test_the_batch_writer_splits_rows_whose_utf8_body_outgrows_their_utf16_size(store):
    # CJK text: 2 bytes a character in UTF-16 (the service's size formula), 6 in the body (a \\u escape each)
    rows = [{"PartitionKey": "p", "RowKey": f"{i:03d}", "a": "日" * 15_000, "b": "本" * 15_000} for i in range(100)]
    assert store.upsert("Things", rows) == 100
    assert len(list(store.partition("Things", "p", select=["RowKey"]))) == 100
    assert store.stats.transactions >= 3  # split below 4 MiB of UTF-8


def test_a_missing_table_fails_as_it_fails_in_the_sdk(azurite):
    client = TableClient.from_connection_string(azurite.connection_string, "nosuchtable" + uuid.uuid4().hex[:8])
    row = {"PartitionKey": "p", "RowKey": "r"}
    with pytest.raises(HttpResponseError) as ours:
        submit(client, [("upsert", row)])
    with pytest.raises(HttpResponseError) as sdk:
        client.submit_transaction([("upsert", row, {"mode": UpdateMode.REPLACE})])
    assert type(ours.value) is type(sdk.value)
    assert (ours.value.status_code, _error_code(ours.value)) == (sdk.value.status_code, _error_code(sdk.value))


# -- the documented format, against the SDK's own body ----------------------------------------------------------------


class Recorder(BaseAdapter):
    """A requests adapter that records what the transport sends and answers from a queue."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]] | None = None) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []
        self.answers = answers or []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        status, headers, body = self.answers.pop(0) if self.answers else (599, {}, b"")
        response = requests.Response()
        response.status_code, response.reason, response.url = status, "stub", request.url or ""
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        response.request = request
        return response

    def close(self) -> None:
        pass


def _client(
    recorder: Recorder, *, credential: Any = None, url: str = "http://127.0.0.1:1/devstoreaccount1"
) -> TableClient:
    session = requests.Session()
    session.mount("http://", recorder)
    session.mount("https://", recorder)
    credential = credential or AzureNamedKeyCredential("devstoreaccount1", "a2V5")
    transport = RequestsTransport(session=session, session_owner=False)
    return TableClient(url, "things", credential=credential, transport=transport, retry_backoff_factor=0.0)


def _answer(*statuses: tuple[int, str], body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    parts = b"".join(
        b"--cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + f"HTTP/1.1 {status} {reason}\r\n".encode()
        + b"Content-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n"
        + (b"ETag: W/\"datetime'x'\"\r\n" if status < 300 else b"")
        + b"\r\n"
        + (body if status >= 300 else b"")
        + b"\r\n"
        for status, reason in statuses
    )
    content = b"--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n" + parts + b"--cs--\r\n--b--\r\n"
    return 202, {"Content-Type": "multipart/mixed; boundary=b"}, content


def _normalised(body: bytes) -> list[Any]:
    """A body's structure: boundaries, dates and lengths out, each JSON entity parsed without Edm.String marks."""
    text = body.decode("utf-8")
    text = re.sub(r"(batch|changeset)_[0-9a-f-]{36}", r"\1", text)
    out: list[Any] = []
    for line in text.split("\r\n"):
        if line.startswith(("x-ms-date:", "Date:", "Content-Length:")):
            continue
        if line.startswith("{"):
            entity = json.loads(line)
            out.append({k: v for k, v in entity.items() if not (k.endswith("@odata.type") and v == "Edm.String")})
        else:
            out.append(line)
    return out


def test_the_body_has_the_structure_of_the_sdks_own(table):
    entity = {k: v for k, v in EVERY_TYPE.items() if not isinstance(v, float) or math.isfinite(v)}
    operations: list[table_batch.Operation] = [
        ("upsert", {"PartitionKey": UNICODE_KEYS[0], "RowKey": UNICODE_KEYS[1], **entity}),
        ("merge", {"PartitionKey": UNICODE_KEYS[0], "RowKey": "m/e#r?g\\e", "s": "é"}),
        ("delete", {"PartitionKey": UNICODE_KEYS[0], "RowKey": "gone'"}),
    ]
    sdk_recorder, ours_recorder = (
        Recorder([_answer(*[(204, "No Content")] * 3)]),
        Recorder([_answer(*[(204, "No Content")] * 3)]),
    )
    mode = {"upsert": UpdateMode.REPLACE, "merge": UpdateMode.MERGE}
    _client(sdk_recorder).submit_transaction(
        [("upsert", e, {"mode": mode[k]}) if k in mode else (k, e) for k, e in operations]
    )
    submit(_client(ours_recorder), operations)
    sdk, ours = sdk_recorder.sent[0], ours_recorder.sent[0]
    assert _normalised(ours.body) == _normalised(sdk.body)  # type: ignore[arg-type]
    for header in ("x-ms-version", "DataServiceVersion", "MaxDataServiceVersion", "Accept"):
        assert ours.headers[header] == sdk.headers[header]
    assert ours.headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")
    assert ours.headers["Authorization"].startswith("SharedKey devstoreaccount1:")
    assert ours.url == sdk.url and ours.method == sdk.method == "POST"


def test_a_merge_on_cosmos_db_is_the_post_the_sdk_sends_there():
    operations: list[table_batch.Operation] = [
        ("merge", {"PartitionKey": "p", "RowKey": "m", "s": "x"}),
        ("upsert", {"PartitionKey": "p", "RowKey": "u", "n": 1}),
    ]
    url = "https://account.table.cosmos.azure.com"
    sdk_recorder, ours_recorder = (
        Recorder([_answer(*[(204, "No Content")] * 2)]),
        Recorder([_answer(*[(204, "No Content")] * 2)]),
    )
    _client(sdk_recorder, url=url).submit_transaction(
        [
            ("upsert", operations[0][1], {"mode": UpdateMode.MERGE}),
            ("upsert", operations[1][1], {"mode": UpdateMode.REPLACE}),
        ]
    )
    submit(_client(ours_recorder, url=url), operations)
    assert _normalised(ours_recorder.sent[0].body) == _normalised(sdk_recorder.sent[0].body)  # type: ignore[arg-type]
    assert b"X-HTTP-Method: MERGE" in ours_recorder.sent[0].body  # type: ignore[operator]


def test_delete_rows_deletes_the_rest_when_one_row_is_gone(store):
    store.upsert("Things", [{"PartitionKey": "p", "RowKey": str(i)} for i in range(5)])
    store.delete("Things", "p", "2")  # a rerun: gone already
    assert store.delete_rows("Things", [{"PartitionKey": "p", "RowKey": str(i)} for i in range(5)]) == 5
    assert list(store.partition("Things", "p")) == []


def test_entity_json_is_the_sdks_less_string_annotations():
    entity = {"PartitionKey": "p", "RowKey": "r", **EVERY_TYPE}
    theirs = {k: v for k, v in _add_entity_properties(entity).items() if v != "Edm.String"}
    ours = json.loads(entity_json(entity))
    assert ours.keys() == theirs.keys()
    assert all(_same(ours[k], theirs[k]) or ours[k] == theirs[k] for k in ours)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1])
def test_an_int_out_of_int32_range_is_refused_as_the_sdk_refuses_it(value):
    with pytest.raises(TypeError, match="too large to be cast"):
        entity_json({"n": value})
    with pytest.raises(TypeError, match="too large to be cast"):
        _add_entity_properties({"n": value})


def test_an_unsupported_type_is_refused():
    with pytest.raises(TypeError, match="not supported"):
        entity_json({"n": [1, 2]})


def test_operations_of_one_partition_only():
    with pytest.raises(ValueError, match="Partition Keys"):
        TransactionBody(
            "http://h",
            "t",
            "2019-02-02",
            [("upsert", {"PartitionKey": "a", "RowKey": "1"}), ("upsert", {"PartitionKey": "b", "RowKey": "1"})],
        )
    with pytest.raises(ValueError, match="Unrecognized operation"):
        TransactionBody("http://h", "t", "2019-02-02", [("insert", {"PartitionKey": "a", "RowKey": "1"})])


# -- every status of a failed part, through the pipeline -----------------------------------------------------------

ERROR = json.dumps(
    {"odata.error": {"code": "{code}", "message": {"lang": "en-US", "value": "1:{text}\nRequestId:r\nTime:t"}}}
)


def _error_body(code: str, text: str) -> bytes:
    return ERROR.replace("{code}", code).replace("{text}", text).encode()


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "InvalidInput"),
        (404, "ResourceNotFound"),
        (409, "EntityAlreadyExists"),
        (412, "UpdateConditionNotSatisfied"),
    ],
)
def test_a_failed_part_is_a_transaction_error_with_its_status_code_and_index(status, code):
    recorder = Recorder([_answer((status, "Failed"), body=_error_body(code, "what went wrong"))])
    with pytest.raises(TableTransactionError) as caught:
        submit(_client(recorder), [("upsert", {"PartitionKey": "p", "RowKey": str(i)}) for i in range(3)])
    error = caught.value
    assert (error.status_code, error.index, _error_code(error)) == (status, 1, code)
    assert "what went wrong" in error.message


def test_a_413_part_or_answer_is_request_too_large():
    part = Recorder([_answer((413, "Too Large"), body=_error_body("RequestBodyTooLarge", "too big"))])
    with pytest.raises(RequestTooLargeError) as caught:
        submit(_client(part), [("upsert", {"PartitionKey": "p", "RowKey": "r"})])
    assert caught.value.status_code == 413
    whole = Recorder([(413, {"Content-Type": "application/json"}, _error_body("RequestBodyTooLarge", "too big"))])
    with pytest.raises(RequestTooLargeError):
        submit(_client(whole), [("upsert", {"PartitionKey": "p", "RowKey": "r"})])


def test_an_answer_with_fewer_parts_than_operations_is_an_error():
    with pytest.raises(TableTransactionError, match="1 parts for 2"):
        submit(
            _client(Recorder([_answer((204, "No Content"))])),
            [("delete", {"PartitionKey": "p", "RowKey": str(i)}) for i in range(2)],
        )


def test_a_batch_answer_outside_a_changeset_is_read_too():
    content = (
        b"--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: application/json\r\n\r\n" + _error_body("InvalidInput", "bad") + b"\r\n--b--\r\n"
    )
    recorder = Recorder([(202, {"Content-Type": 'multipart/mixed; boundary="b"'}, content)])
    with pytest.raises(TableTransactionError) as caught:
        submit(_client(recorder), [("upsert", {"PartitionKey": "p", "RowKey": "r"})])
    assert caught.value.status_code == 400


# -- authentication and retries stay the pipeline's ------------------------------------------------------------------


class FakeCredential:
    """A TokenCredential that hands out one token and records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("entra-token-for-tests", 4_102_444_800)


def test_an_entra_token_credential_signs_the_transaction():
    credential = FakeCredential()
    recorder = Recorder([_answer((204, "No Content"))])
    client = _client(recorder, credential=credential, url="https://account.table.core.windows.net")
    submit(client, [("upsert", {"PartitionKey": "p", "RowKey": "r"})])
    sent = recorder.sent[0]
    assert sent.headers["Authorization"] == "Bearer entra-token-for-tests"
    assert credential.scopes == [("https://storage.azure.com/.default",)]
    assert sent.url == "https://account.table.core.windows.net/$batch"
    assert b"PUT https://account.table.core.windows.net/things(PartitionKey='p',RowKey='r') HTTP/1.1" in sent.body  # type: ignore[operator]


def test_the_pipelines_retry_policy_sends_the_same_transaction_again_after_a_503():
    busy = (503, {"Content-Type": "application/json"}, _error_body("ServerBusy", "busy"))
    recorder = Recorder([busy, _answer((204, "No Content"))])
    submit(_client(recorder), [("upsert", {"PartitionKey": "p", "RowKey": "r"})])
    assert len(recorder.sent) == 2
    assert recorder.sent[0].body == recorder.sent[1].body
    assert recorder.sent[0].headers["x-ms-client-request-id"] == recorder.sent[1].headers["x-ms-client-request-id"]


def test_no_operations_send_nothing():
    recorder = Recorder()
    assert submit(_client(recorder), []) == []
    assert recorder.sent == []
