"""The Partner Center client against a real loopback server: what it sends and how it copes (API.md 1-7)."""

import json
import logging
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from werkzeug import Response

from shared.partner_center import DataNotReady, PartnerCenterClient, PartnerCenterError, RetryPolicy
from tests.fakes import FakeClock, StaticTokens, pc_json

UTIL = "/v1/customers/c1/subscriptions/s1/utilizations/azure"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def client(httpserver, clock):
    return PartnerCenterClient(
        base_url=httpserver.url_for("/").rstrip("/"),
        tokens=StaticTokens(),
        retry=RetryPolicy(random=lambda: 0.0),
        sleep=clock.sleep,
        clock=clock,
        correlation_id="corr-1",
        timeout=(2.0, 2.0),
    )


def respond(status=200, body="", headers=None):
    data = pc_json(body) if body else b""
    return Response(data, status=status, headers=headers or {}, content_type="application/json")


def sent(httpserver):
    return [req for req, _ in httpserver.log]


# 1. Byte-order mark -------------------------------------------------------------------------------------


def test_bodies_with_a_byte_order_mark_are_parsed(httpserver, client):
    httpserver.expect_request("/v1/customers/c1/subscriptions/s1/usagesummary").respond_with_response(
        respond(body='{"resourceId":"s1","billingStartDate":"2019-08-28T00:00:00-07:00","totalCost":1}')
    )
    assert client.usage_summary("c1", "s1")["resourceId"] == "s1"


# 2. Money keeps every digit -----------------------------------------------------------------------------


def test_money_is_parsed_as_decimal_with_every_digit(httpserver, client):
    httpserver.expect_request("/v1/customers/usagerecords").respond_with_response(
        respond(body='{"totalCount":1,"items":[{"id":"c1","totalCost":120.5682999999995904716,"percentUsed":0}]}')
    )
    (page,) = list(client.usage_records())
    cost = page.items[0]["totalCost"]
    assert isinstance(cost, Decimal) and str(cost) == "120.5682999999995904716"


# 3. Paging ----------------------------------------------------------------------------------------------


def _util_page(items, token=None, uri="customers/c1/subscriptions/s1/utilizations/azure?seek_operation=Next"):
    body = {"totalCount": len(items), "items": items, "links": {}}
    if token:
        body["links"]["next"] = {
            "uri": uri,
            "method": "GET",
            "headers": [{"key": "MS-ContinuationToken", "value": token}, {"key": "X-Extra", "value": "kept"}],
        }
    return json.dumps(body)


def test_links_next_is_resolved_against_v1_and_its_headers_sent_verbatim(httpserver, client):
    httpserver.expect_ordered_request(
        UTIL,
        query_string={
            "start_time": "2026-11-01T00:00:00Z",
            "end_time": "2026-11-02T00:00:00Z",
            "granularity": "daily",
            "show_details": "true",
            "size": "1000",
        },
    ).respond_with_response(respond(body=_util_page([{"n": 1}], token="tok+/=1")))
    httpserver.expect_ordered_request(UTIL, query_string="seek_operation=Next").respond_with_response(
        respond(body=_util_page([{"n": 2}]))
    )
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    pages = list(client.utilization("c1", "s1", start=start, end=start + timedelta(days=1)))
    assert [p.items for p in pages] == [[{"n": 1}], [{"n": 2}]]
    second = sent(httpserver)[1]
    assert second.headers["MS-ContinuationToken"] == "tok+/=1"
    assert second.headers["X-Extra"] == "kept"
    httpserver.check_assertions()


def test_paging_stops_when_no_next_link_is_given(httpserver, client):
    httpserver.expect_request(UTIL).respond_with_response(respond(body=_util_page([{"n": 1}])))
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert len(list(client.utilization("c1", "s1", start=start, end=start + timedelta(days=1)))) == 1
    assert len(httpserver.log) == 1


def test_pages_are_yielded_one_at_a_time(httpserver, client):
    httpserver.expect_ordered_request(UTIL).respond_with_response(respond(body=_util_page([1], token="a")))
    httpserver.expect_ordered_request(UTIL).respond_with_response(respond(body=_util_page([2])))
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    pages = client.utilization("c1", "s1", start=start, end=start + timedelta(days=1))
    next(pages)
    assert len(httpserver.log) == 1  # the second page is not fetched until asked for


def test_a_bare_continuation_token_is_sent_back_as_ms_continuation_token(httpserver, client):
    httpserver.expect_ordered_request("/v1/customers/usagerecords").respond_with_response(
        respond(body='{"totalCount":1,"items":[{"id":"a"}],"continuationToken":"ct-2"}')
    )
    httpserver.expect_ordered_request("/v1/customers/usagerecords").respond_with_response(
        respond(body='{"totalCount":1,"items":[{"id":"b"}]}')
    )
    ids = [item["id"] for page in client.usage_records() for item in page.items]
    assert ids == ["a", "b"]
    assert "MS-ContinuationToken" not in sent(httpserver)[0].headers
    assert sent(httpserver)[1].headers["MS-ContinuationToken"] == "ct-2"


def test_a_server_that_repeats_the_same_continuation_forever_is_stopped(httpserver, client):
    httpserver.expect_request(UTIL).respond_with_response(respond(body=_util_page([{"n": 1}], token="same")))
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(PartnerCenterError, match="RepeatedContinuation"):
        list(client.utilization("c1", "s1", start=start, end=start + timedelta(days=1)))
    assert len(httpserver.log) == 2


def test_times_are_sent_in_utc_with_z_never_a_raw_plus(httpserver, client):
    httpserver.expect_request(UTIL).respond_with_response(respond(body=_util_page([])))
    pacific = timezone(timedelta(hours=-7))
    list(
        client.utilization(
            "c1", "s1", start=datetime(2026, 11, 1, 17, tzinfo=pacific), end=datetime(2026, 11, 2, 17, tzinfo=pacific)
        )
    )
    args = sent(httpserver)[0].args
    assert args["start_time"] == "2026-11-02T00:00:00Z" and args["end_time"] == "2026-11-03T00:00:00Z"


# 4. 204 not ready ----------------------------------------------------------------------------------------


def test_204_waits_retry_after_then_returns_data_when_it_is_ready(httpserver, client, clock):
    httpserver.expect_ordered_request(UTIL).respond_with_response(respond(204, headers={"Retry-After": "7"}))
    httpserver.expect_ordered_request(UTIL).respond_with_response(respond(body=_util_page([{"n": 1}])))
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    pages = list(client.utilization("c1", "s1", start=start, end=start + timedelta(days=1)))
    assert pages[0].items == [{"n": 1}]
    assert clock.sleeps == [7.0]


def test_204_that_persists_is_not_ready_never_an_empty_result(httpserver, client, clock):
    httpserver.expect_request(UTIL).respond_with_response(respond(204, headers={"Retry-After": "5"}))
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(DataNotReady) as caught:
        list(client.utilization("c1", "s1", start=start, end=start + timedelta(days=1)))
    assert caught.value.retry_after == 5.0
    assert len(httpserver.log) == client.retry.not_ready_attempts
    assert clock.sleeps == [5.0] * (client.retry.not_ready_attempts - 1)


# 6. 429 and retries ----------------------------------------------------------------------------------------


ODD_429 = '{"statusCode":429,"message":"Rate limit is exceeded. Try again in 57 seconds."}'


def test_429_honours_retry_after_and_retries_with_the_same_request_id(httpserver, client, clock):
    httpserver.expect_ordered_request("/v1/customers").respond_with_response(
        respond(429, ODD_429, {"Retry-After": "57"})
    )
    httpserver.expect_ordered_request("/v1/customers").respond_with_response(
        respond(body='{"totalCount":0,"items":[]}')
    )
    list(client.customers())
    assert clock.sleeps == [57.0]
    first, second = sent(httpserver)
    assert first.headers["MS-RequestId"] == second.headers["MS-RequestId"]
    assert client.counters["throttled"] == 1 and client.counters["retries"] == 1


def test_a_429_holds_back_the_next_call_of_every_worker(httpserver):
    slept: list[float] = []
    frozen = FakeClock()  # time stands still: a hold set by one call is still in force for the next
    client = PartnerCenterClient(
        base_url=httpserver.url_for("/").rstrip("/"), tokens=StaticTokens(), sleep=slept.append, clock=frozen
    )
    httpserver.expect_ordered_request("/v1/customers").respond_with_response(
        respond(429, ODD_429, {"Retry-After": "30"})
    )
    httpserver.expect_ordered_request("/v1/customers").respond_with_response(respond(body='{"items":[]}'))
    httpserver.expect_ordered_request("/v1/customers/c2/subscriptions").respond_with_response(
        respond(body='{"items":[]}')
    )
    list(client.customers())
    list(client.subscriptions("c2"))  # another worker's call, after the throttled one
    assert slept == [30.0, 30.0]


def test_retry_after_as_an_http_date_is_honoured(httpserver, client, clock):
    when = datetime.now(timezone.utc) + timedelta(seconds=120)
    httpserver.expect_ordered_request("/v1/customers").respond_with_response(
        respond(503, '{"code":"503","description":"busy"}', {"Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S GMT")})
    )
    httpserver.expect_ordered_request("/v1/customers").respond_with_response(respond(body='{"items":[]}'))
    list(client.customers())
    assert 100 < clock.sleeps[0] <= 120


def test_without_retry_after_backoff_is_exponential_and_capped(httpserver, client, clock):
    httpserver.expect_request("/v1/customers").respond_with_response(
        respond(500, '{"code":800003,"description":"Unexpected error","data":[],"source":"PartnerFD"}')
    )
    with pytest.raises(PartnerCenterError) as caught:
        list(client.customers())
    # jitter pinned to its lowest factor (0.5): 1, 2, 4, 8, 16 seconds times 0.5
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(httpserver.log) == client.retry.max_attempts
    assert caught.value.status == 500 and caught.value.code == "800003"
    ids = {req.headers["MS-RequestId"] for req in sent(httpserver)}
    assert len(ids) == 1


def test_backoff_never_exceeds_its_cap():
    policy = RetryPolicy(backoff_base=1, backoff_max=30, random=lambda: 0.999)
    assert policy.backoff(20) < 30


def test_a_retry_after_beyond_the_limit_fails_fast_instead_of_sleeping(httpserver, client, clock):
    httpserver.expect_request("/v1/customers").respond_with_response(respond(429, ODD_429, {"Retry-After": "3600"}))
    with pytest.raises(PartnerCenterError) as caught:
        list(client.customers())
    assert clock.sleeps == [] and caught.value.status == 429
    assert caught.value.code == "429" and "Rate limit" in (caught.value.description or "")


def test_a_read_timeout_is_retried(httpserver, clock):
    # The first answer is held until the client has timed out and is about to retry, and the retry is only sent
    # once that held answer is done: the test server handles one request at a time, so nothing here races.
    released, first_done = threading.Event(), threading.Event()
    calls = {"n": 0}

    def held_then_fast(request):
        calls["n"] += 1
        if calls["n"] == 1:
            released.wait(10)
            first_done.set()
        return respond(body='{"items":[{"id":"x"}]}')

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        released.set()
        first_done.wait(10)

    httpserver.expect_request("/v1/customers").respond_with_handler(held_then_fast)
    client = PartnerCenterClient(
        base_url=httpserver.url_for("/").rstrip("/"),
        tokens=StaticTokens(),
        retry=RetryPolicy(random=lambda: 0.0),
        sleep=sleep,
        clock=clock,
        timeout=(2.0, 0.3),
    )
    assert [i["id"] for page in client.pages("customers") for i in page.items] == ["x"]
    assert client.counters["retries"] == 1 and calls["n"] == 2


def test_other_client_errors_are_not_retried(httpserver, client, clock):
    httpserver.expect_request("/v1/customers/c1/subscriptions/s1/usagesummary").respond_with_response(
        respond(400, '{"code":3000,"description":"Customer does not have usage data","data":[],"source":"PartnerFD"}')
    )
    with pytest.raises(PartnerCenterError) as caught:
        client.usage_summary("c1", "s1")
    assert len(httpserver.log) == 1 and caught.value.code == "3000"


# 7. Errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["20002", '"20002"'])
def test_403_20002_is_recognisable_whether_the_code_is_a_number_or_a_string(httpserver, client, code):
    httpserver.expect_request("/v1/customers/c9/subscriptions").respond_with_response(
        respond(
            403,
            f'{{"code":{code},"description":"no relationship","data":[],"source":"PartnerFD"}}',
            {"MS-RequestId": "srv-req", "MS-CorrelationId": "corr-1"},
        )
    )
    with pytest.raises(PartnerCenterError) as caught:
        list(client.subscriptions("c9"))
    error = caught.value
    assert error.is_no_relationship and error.status == 403 and error.code == "20002"
    assert error.request_id == "srv-req" and error.correlation_id == "corr-1"


def test_404_20003_is_not_found(httpserver, client):
    httpserver.expect_request(UTIL).respond_with_response(
        respond(404, '{"code":20003,"description":"Subscription not found"}')
    )
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(PartnerCenterError) as caught:
        list(client.utilization("c1", "s1", start=start, end=start + timedelta(days=1)))
    assert caught.value.status == 404 and not caught.value.is_no_relationship


def test_a_non_json_error_body_still_gives_a_readable_error(httpserver, client):
    httpserver.expect_request("/v1/customers").respond_with_data("<html>gateway</html>", status=400)
    with pytest.raises(PartnerCenterError, match="status=400") as caught:
        list(client.customers())
    assert caught.value.description == "<html>gateway</html>"


def test_a_401_refreshes_the_token_once(httpserver, clock):
    httpserver.expect_ordered_request("/v1/customers").respond_with_response(
        respond(401, '{"code":800001,"description":"Missing partner token"}')
    )
    httpserver.expect_ordered_request("/v1/customers").respond_with_response(respond(body='{"items":[]}'))
    tokens = StaticTokens()
    client = PartnerCenterClient(
        base_url=httpserver.url_for("/").rstrip("/"), tokens=tokens, sleep=clock.sleep, clock=clock
    )
    list(client.customers())
    assert tokens.invalidated == 1


# Headers -----------------------------------------------------------------------------------------------------


def test_every_call_carries_the_run_correlation_id_and_its_own_request_id(httpserver, client):
    httpserver.expect_request("/v1/customers").respond_with_response(respond(body='{"items":[]}'))
    list(client.customers())
    list(client.customers())
    first, second = sent(httpserver)
    assert first.headers["MS-CorrelationId"] == second.headers["MS-CorrelationId"] == "corr-1"
    assert first.headers["MS-RequestId"] != second.headers["MS-RequestId"]
    assert first.headers["Accept"] == "application/json"
    assert first.headers["Authorization"].startswith("Bearer ")


def test_tokens_never_reach_logs_or_errors(httpserver, client, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/v1/customers").respond_with_response(respond(500, '{"code":1}'))
    with pytest.raises(PartnerCenterError) as caught:
        list(client.customers())
    assert "secret-token" not in caplog.text and "secret-token" not in str(caught.value)
    assert "request_id=" in caplog.text and "correlation_id=corr-1" in caplog.text


def test_usage_summary_is_accepted_bare_or_wrapped_in_a_collection(httpserver, client):
    summary = '{"resourceId":"s1","billingStartDate":"2019-08-28T00:00:00-07:00","totalCost":22.861172}'
    httpserver.expect_ordered_request("/v1/customers/c1/subscriptions/s1/usagesummary").respond_with_response(
        respond(body=summary)
    )
    httpserver.expect_ordered_request("/v1/customers/c1/subscriptions/s1/usagesummary").respond_with_response(
        respond(body=f'{{"totalCount":1,"items":[{summary}],"attributes":{{"objectType":"Collection"}}}}')
    )
    assert client.usage_summary("c1", "s1") == client.usage_summary("c1", "s1")
