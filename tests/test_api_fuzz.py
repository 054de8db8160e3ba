"""Fuzzing every route from the OpenAPI document through devhost.serve: no input ever gets a 5xx."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

import pytest
import schemathesis
from azure.data.tables import TableServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devhost.serve import make_server
from shared.api import Request, handle
from shared.api.openapi import GUID_PATTERN, document
from shared.settings import Settings
from shared.sync.jobs import JOB_NAMES
from shared.table_store import TableStore
from tests.api_data import (
    CUSTOMER,
    DAY,
    ENTITLEMENT,
    SUBSCRIPTION,
    many_utilization_records,
    rated_line,
    usage_record,
    usage_summary,
    write_rated_usage,
    write_run,
    write_subscription,
    write_usage_records,
    write_usage_summary,
    write_utilization,
)
from tests.stores import drop_tables

GUID = re.compile(GUID_PATTERN)
KEY = "fuzz-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def fuzz_store(azurite):
    """Real data on Azurite for the module: every route has something to read."""
    store = TableStore(
        TableServiceClient.from_connection_string(azurite.connection_string), prefix="t" + uuid.uuid4().hex[:12]
    )
    write_subscription(store, CUSTOMER, SUBSCRIPTION)
    write_usage_records(store, [usage_record(CUSTOMER)])
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    write_utilization(store, CUSTOMER, SUBSCRIPTION, many_utilization_records(40, first_day=DAY, meters=4))
    today = datetime.now(timezone.utc)
    days = [f"{today:%Y-%m}-{d:02d}" for d in range(1, today.day + 1)]
    texts = [
        rated_line(CUSTOMER, ENTITLEMENT, day, f"{n}.12345678901234567890", m)
        for n, day in enumerate(days)
        for m in ("a", "b")
    ]
    write_rated_usage(store, texts, now=today)
    for name in JOB_NAMES:
        write_run(store, name, started=datetime.now(timezone.utc))
    yield store
    drop_tables(store)


@pytest.fixture(scope="module")
def fuzz_server(azurite, fuzz_store):
    """The whole app behind devhost.serve, reading the module's tables."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("USAGE_STORAGE", azurite.connection_string)
        patch.setenv("TABLE_PREFIX", fuzz_store.prefix)
        patch.setenv("LOCAL_FUNCTION_KEY", KEY)
        patch.delenv("USAGE_STORAGE__tableServiceUri", raising=False)
        server = make_server(port=0)
        yield server
        server.shutdown()


schema = schemathesis.openapi.from_dict(document())
schema.config.phases.update(phases=["examples", "fuzzing"])


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_input_gets_a_server_error(case, fuzz_server):
    ids = case.path_parameters or {}
    positive = case.meta is None or case.meta.generation.mode.is_positive
    if positive and ids and all(isinstance(v, str) and GUID.fullmatch(v) for v in ids.values()):
        # Valid ids would nearly always be unknown (404); point them at the stored data instead so that
        # the fuzzed query values exercise the real reads, paging, CSV and ETags.
        stored = {"customer_id": CUSTOMER, "subscription_id": SUBSCRIPTION, "entitlement_id": ENTITLEMENT}
        case.path_parameters = {name: stored[name] for name in ids}
    response = case.call(base_url=fuzz_server.url, headers={"x-functions-key": KEY})
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert response.status_code != 401  # the key always goes in the header: the API itself answered
    case.validate_response(response)


SEGMENTS = st.sampled_from(
    [
        "v1",
        "customers",
        "usagerecords",
        "subscriptions",
        "usagesummary",
        "utilizations",
        "azure",
        "dailycost",
        "azureentitlements",
        "lineitems",
        ENTITLEMENT,
        "health",
        "openapi.json",
        CUSTOMER,
        SUBSCRIPTION,
        "",
        "..",
    ]
) | st.text(max_size=40)
NAMES = st.sampled_from(
    [
        "start_time",
        "end_time",
        "size",
        "granularity",
        "show_details",
        "seek_operation",
        "continuation_token",
        "billing_month",
        "billing_start",
        "format",
        "from",
        "to",
    ]
) | st.text(max_size=10)
HEADERS = st.sampled_from(["Accept", "If-None-Match", "MS-ContinuationToken"])


@given(
    method=st.sampled_from(["GET", "GET", "GET", "POST", "DELETE", "get", "X\u00ff"]),
    segments=st.lists(SEGMENTS, max_size=8),
    query=st.lists(st.tuples(NAMES, st.text(max_size=60)), max_size=6),
    headers=st.dictionaries(HEADERS, st.text(max_size=60), max_size=3),
)
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_any_request_in_process_gets_no_server_error(fuzz_store, method, segments, query, headers):
    request = Request.build(method, "/".join(segments), query=query, headers=headers)
    response = handle(request, fuzz_store, Settings(table_prefix=fuzz_store.prefix))
    assert response.status < 500, response.body[:300]
