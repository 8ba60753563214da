"""The dashboard's data layer (frontend.data) against the real API app: one test point's row
of an array fetched alone (?index=), or sliced from the whole array once that is cached."""

import httpx
import numpy as np
import pytest

from tests.backend.test_api import create, finish


class ThroughTestClient(httpx.BaseTransport):
    """The dashboard's httpx client served by the API's TestClient. Starlette's TestClient
    runs on httpx2 when that is installed (huggingface_hub, from the bench extra, pulls it
    in), whose transport the frontend's httpx cannot use directly: requests and responses
    are copied across."""

    def __init__(self, client):
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.client.request(request.method, str(request.url),
                                     headers=dict(request.headers), content=request.read())
        headers = [(k, v) for k, v in answer.headers.multi_items()  # content is decoded
                   if k.lower() not in ("content-encoding", "content-length")]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)


def test_load_rows_fetches_one_row_or_slices_the_cached_array(api, settings):
    from frontend.api_client import ApiClient, ApiError
    from frontend.data import CACHE, load_arrays, load_rows, study_key

    sid = create(api).json()["id"]
    finish(settings, sid)
    client = ApiClient("http://testserver", transport=ThroughTestClient(api))
    detail = client.study(sid)
    key = study_key(client, detail)
    CACHE.clear()
    row = load_rows(client, detail, ["scores/K-FAC", "scores/none"], 1)
    assert list(row) == ["scores/K-FAC"]                              # missing: left out
    np.testing.assert_array_equal(row["scores/K-FAC"], [3.0, 4.0, 5.0])
    assert CACHE.get(("row", *key, "scores/K-FAC", 1)) is not None    # fetched alone
    assert CACHE.get(("array", *key, "scores/K-FAC")) is None
    whole = load_arrays(client, detail, ["scores/K-FAC"])["scores/K-FAC"]
    np.testing.assert_array_equal(whole, np.arange(6.0).reshape(2, 3))
    first = load_rows(client, detail, ["scores/K-FAC"], 0)["scores/K-FAC"]
    np.testing.assert_array_equal(first, [0.0, 1.0, 2.0])
    assert CACHE.get(("row", *key, "scores/K-FAC", 0)) is None        # sliced, not fetched
    CACHE.clear()
    with pytest.raises(ApiError) as error:
        load_rows(client, detail, ["scores/K-FAC"], 2, missing_ok=False)
    assert error.value.status == 422 and "0 ≤ index < 2" in error.value.detail
    client.close()
