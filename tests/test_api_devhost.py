"""devhost serve: function folders served over real HTTP with Azure's routes and function-level keys."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import pytest
import requests

from devhost.azurite import free_port
from devhost.funcapp import REPO_ROOT, FunctionAppError, discover, load_main, resolve_setting_refs
from devhost.serve import make_server, serve
from tests.api_data import CUSTOMER, SUBSCRIPTION, usage_record, usage_summary, write_usage_records, write_usage_summary

KEY = "test-key-" + uuid.uuid4().hex


@pytest.fixture
def app_env(store, azurite, monkeypatch):
    """Settings of this test's tables and a local function key, as app settings in the environment."""
    monkeypatch.setenv("USAGE_STORAGE", azurite.connection_string)
    monkeypatch.setenv("TABLE_PREFIX", store.prefix)
    monkeypatch.setenv("LOCAL_FUNCTION_KEY", KEY)
    monkeypatch.delenv("USAGE_STORAGE__tableServiceUri", raising=False)
    write_usage_records(store, [usage_record(CUSTOMER)])
    write_usage_summary(store, CUSTOMER, SUBSCRIPTION, usage_summary())
    return store


@pytest.fixture
def server(app_env):
    running = make_server(port=0)
    yield running
    running.shutdown()


def test_discover_reads_every_function_folder():
    specs = {spec.name: spec for spec in discover(REPO_ROOT)}
    api = specs["serve_usage"]
    assert api.trigger_type == "httpTrigger"
    assert api.trigger["route"] == "{*route}" and api.trigger["authLevel"] == "function"
    assert api.entry_point == "main" and api.module_name == "serve_usage"
    assert callable(load_main(api))


def test_setting_references_resolve_and_a_missing_one_is_named():
    assert resolve_setting_refs("%A% and %B%", {"A": "1", "B": "2"}) == "1 and 2"
    assert resolve_setting_refs("no refs", {}) == "no refs"
    with pytest.raises(FunctionAppError, match="USAGE_RECORDS_SCHEDULE"):
        resolve_setting_refs("%USAGE_RECORDS_SCHEDULE%", {})


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/usagerecords",
        "/v1/customers",
        "/v1/customers/a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1",
        "/v1/customers/a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1/subscriptions",
        "/v1/customers/a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1/subscriptions/11111111-2222-3333-4444-555555555555",
    ],
)
def test_without_a_key_or_with_a_wrong_one_it_is_401(server, path):
    url = server.url + path
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"x-functions-key": "wrong"}, timeout=10).status_code == 401
    assert requests.get(url, params={"code": KEY + "x"}, timeout=10).status_code == 401


def test_with_the_key_in_the_header_or_the_code_parameter_it_is_200(server):
    url = server.url + "/v1/customers/usagerecords"
    by_header = requests.get(url, headers={"x-functions-key": KEY}, timeout=10)
    assert by_header.status_code == 200
    assert by_header.headers["Content-Type"].startswith("application/json")
    assert '"totalCost":120.5682999999995904716' in by_header.text
    by_query = requests.get(url, params={"code": KEY}, timeout=10)
    assert by_query.status_code == 200 and by_query.headers["ETag"] == by_header.headers["ETag"]


def test_etag_304_and_405_come_through_the_host(server):
    url = server.url + "/v1/customers/usagerecords"
    headers = {"x-functions-key": KEY}
    tag = requests.get(url, headers=headers, timeout=10).headers["ETag"]
    again = requests.get(url, headers={**headers, "If-None-Match": tag}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    posted = requests.post(url, headers=headers, data=b"{}", timeout=10)
    assert posted.status_code == 405 and posted.headers["Allow"] == "GET"


def test_paths_outside_the_route_prefix_are_404(server):
    assert requests.get(server.url.removesuffix("/api") + "/v1/customers/usagerecords", timeout=10).status_code == 404


def test_sixteen_concurrent_requests_are_served(server):
    url = server.url + f"/v1/customers/{CUSTOMER}/subscriptions/{SUBSCRIPTION}/usagesummary"

    def fetch(_):
        with requests.Session() as session:
            return session.get(url, headers={"x-functions-key": KEY}, timeout=30).status_code

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(fetch, range(16))) == [200] * 16


def _write_function(root, name, *, route, auth="anonymous", methods=None):
    folder = root / name
    folder.mkdir()
    binding = {"authLevel": auth, "type": "httpTrigger", "direction": "in", "name": "request", "route": route}
    if methods:
        binding["methods"] = methods
    bindings = [binding, {"type": "http", "direction": "out", "name": "$return"}]
    (folder / "function.json").write_text(json.dumps({"scriptFile": "__init__.py", "bindings": bindings}))
    (folder / "__init__.py").write_text(
        "import json\n"
        "import azure.functions as func\n\n\n"
        "def main(request: func.HttpRequest) -> func.HttpResponse:\n"
        "    body = {'method': request.method, 'route': dict(request.route_params), 'params': dict(request.params),\n"
        "            'body': request.get_body().decode(), 'url': request.url}\n"
        "    return func.HttpResponse(json.dumps(body), mimetype='application/json', headers={'X-Name': '"
        + name
        + "'})\n"
    )


def test_route_templates_methods_and_anonymous_functions(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    suffix = uuid.uuid4().hex[:8]
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": "x"}}}))
    _write_function(tmp_path, f"items_{suffix}", route="items/{id:int}", methods=["get", "post"])
    _write_function(tmp_path, f"files_{suffix}", route="files/{*rest}")
    _write_function(tmp_path, f"keyed_{suffix}", route="keyed", auth="function")
    running = make_server(port=0, env={"LOCAL_FUNCTION_KEY": "k"}, root=tmp_path)
    try:
        base = f"http://127.0.0.1:{running.port}/x"
        item = requests.post(f"{base}/items/42?a=1&a=2", data=b"hello", timeout=10)
        assert item.status_code == 200 and item.headers["X-Name"] == f"items_{suffix}"
        assert item.json()["route"] == {"id": "42"} and item.json()["body"] == "hello"
        assert item.json()["params"] == {"a": "1"} and item.json()["url"].endswith("/x/items/42?a=1&a=2")
        assert requests.get(f"{base}/items/abc", timeout=10).status_code == 404  # int constraint
        assert requests.delete(f"{base}/items/42", timeout=10).status_code == 404  # not in methods
        files = requests.get(f"{base}/files/a/b%20c.txt", timeout=10).json()
        assert files["route"] == {"rest": "a/b c.txt"}
        assert requests.get(f"{base}/files", timeout=10).json()["route"] == {"rest": ""}
        assert requests.get(f"{base}/files/a%0Ab", timeout=10).json()["route"] == {"rest": "a\nb"}
        assert requests.get(f"{base}/keyed", timeout=10).status_code == 401
        assert requests.get(f"{base}/keyed?code=k", timeout=10).status_code == 200
        assert requests.get(f"http://127.0.0.1:{running.port}/api/keyed?code=k", timeout=10).status_code == 404
    finally:
        running.shutdown()


def test_serve_blocks_until_stopped_and_signals_ready(app_env):
    ready, stop = threading.Event(), threading.Event()
    port = free_port()
    thread = threading.Thread(target=serve, kwargs={"port": port, "ready": ready, "stop": stop}, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        response = requests.get(f"http://127.0.0.1:{port}/api/health", params={"code": KEY}, timeout=10)
        assert response.status_code == 503  # no runs recorded in this test's tables
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_the_function_main_answers_a_platform_request(app_env):
    from serve_usage import main

    def call(path, query=""):
        url = f"https://app.azurewebsites.net/api/{path}" + (f"?{query}" if query else "")
        request = func.HttpRequest("GET", url, headers={}, params={}, route_params={"route": path}, body=b"")
        return main(request)

    ok = call("v1/customers/usagerecords")
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("application/json")
    assert b"120.5682999999995904716" in ok.get_body()
    repeated = call("v1/customers/usagerecords", "billing_month=2024-05&billing_month=2024-04")
    assert repeated.status_code == 400


def test_a_misconfigured_app_is_a_500_without_details(app_env, monkeypatch):
    from serve_usage import main

    monkeypatch.setenv("TABLE_PREFIX", "1-not-a-prefix")
    request = func.HttpRequest("GET", "https://x/api/health", params={}, route_params={"route": "health"}, body=b"")
    response = main(request)
    assert response.status_code == 500
    body = json.loads(response.get_body())
    assert body["code"] == 900500 and "TABLE_PREFIX" not in response.get_body().decode()
