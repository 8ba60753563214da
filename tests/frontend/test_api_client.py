"""The REST client: where the API is, how its errors read, and the byte-bounded cache."""

import threading
import time

import httpx
import pytest

from frontend import api_client
from frontend.api_client import ApiError, error_from_response, origin_of_scope, split_api_url
from frontend.data import ByteLRU


def test_split_api_url():
    assert split_api_url("http://h:8000/api/v1/") == ("http://h:8000", "/api/v1")
    assert split_api_url("http://h:8000") == ("http://h:8000", "/api/v1")
    assert split_api_url("https://x.org/curv/api/v1", "api/v1") == ("https://x.org/curv",
                                                                     "/api/v1")


def test_origin_of_scope_is_the_socket_the_request_came_in_on():
    assert origin_of_scope({"server": ("127.0.0.1", 8123), "scheme": "http"}) == \
        "http://127.0.0.1:8123"
    assert origin_of_scope({"server": ("::1", 80), "scheme": "https"}) == "https://[::1]:80"
    assert origin_of_scope({"server": None}) is None


def _response(status, body=None, text=None, content_type="application/problem+json"):
    request = httpx.Request("GET", "http://api/api/v1/studies/9")
    if body is not None:
        return httpx.Response(status, json=body, request=request,
                              headers={"content-type": content_type})
    return httpx.Response(status, text=text or "", request=request)


def test_problem_json_becomes_a_readable_error():
    error = error_from_response(_response(422, {
        "type": "urn:curvscope:problem:invalid-spec", "title": "Invalid study spec",
        "status": 422, "detail": "The study spec is invalid: training.epochs: too small.",
        "errors": [{"field": "training.epochs", "message": "too small"},
                   {"field": "training.epochs", "message": "not an integer"}]}))
    assert error.status == 422 and error.title == "Invalid study spec"
    assert error.detail.startswith("The study spec is invalid")
    assert error.field_errors() == {"training.epochs": "too small; not an integer"}
    assert str(error) == "Invalid study spec (422): " + error.detail
    plain = error_from_response(_response(502, text="Bad gateway from the proxy"))
    assert plain.status == 502 and "Bad gateway from the proxy" in plain.detail


def test_an_unreachable_api_is_an_error_that_says_so():
    client = api_client.ApiClient("http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ApiError) as info:
        client.studies()
    assert info.value.unreachable and "Could not reach the API at http://127.0.0.1:9" in \
        info.value.detail
    client.close()


def test_where_the_api_is(monkeypatch):
    monkeypatch.setattr(api_client, "CONFIG", api_client.Config())
    monkeypatch.delenv("CURVSCOPE_API_URL", raising=False)
    with pytest.raises(ApiError, match="CURVSCOPE_API_URL"):
        api_client.api_location()
    token = api_client.set_request_origin({"server": ("127.0.0.1", 8001), "scheme": "http"})
    try:
        assert api_client.api_location() == ("http://127.0.0.1:8001", "/api/v1")
        monkeypatch.setenv("CURVSCOPE_API_URL", "http://api:8000/api/v1")
        assert api_client.api_location() == ("http://api:8000", "/api/v1")
        monkeypatch.setenv("CURVSCOPE_API_TOKEN", "the-apis-own-token")
        assert api_client.get_client().token is None     # a mounted dashboard never borrows it
        api_client.configure(api_url="http://other:9000", token="given")
        assert api_client.get_client().base == "http://other:9000/api/v1"
        assert api_client.get_client().token == "given"
    finally:
        api_client.reset_request_origin(token)
    assert api_client.download_href("/studies/3/results") == "/_download/studies/3/results"
    api_client.configure(mounted=True)
    assert api_client.download_href("/studies/3/results") == "/api/v1/studies/3/results"


def test_byte_lru_evicts_the_least_recent_and_fetches_once():
    cache = ByteLRU(max_bytes=100)
    cache.put("a", 1, 40)
    cache.put("b", 2, 40)
    assert cache.get("a") == 1                   # a is now the most recent
    cache.put("c", 3, 40)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.nbytes == 80
    cache.put("huge", 4, 1000)                   # larger than the cache: not kept
    assert cache.get("huge") is None

    calls = []

    def slow_fetch():
        calls.append(1)
        time.sleep(0.2)
        return "value"

    results = []
    threads = [threading.Thread(target=lambda: results.append(
        cache.get_or_fetch("k", slow_fetch, lambda v: 10))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["value"] * 4 and len(calls) == 1

    def failing():
        raise ApiError(404, "Not found", "nope")

    with pytest.raises(ApiError):
        cache.get_or_fetch("missing", failing, lambda v: 1)
    assert cache.get_or_fetch("missing", lambda: "later", lambda v: 1) == "later"
