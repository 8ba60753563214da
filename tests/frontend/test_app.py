"""The dashboard served from the API's own app (frontend.mount) and on its own
(frontend.app.create_app): pages at /, deep links, the API's routes and errors untouched."""

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def api_app(tmp_path_factory):
    from backend.app import create_app
    from backend.core.config import Settings
    from backend.db import dispose_engines

    tmp = tmp_path_factory.mktemp("dashboard")
    settings = Settings(data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'db.sqlite'}",
                        redis_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(settings)) as client:
        yield client
    dispose_engines()


def test_the_api_serves_the_dashboard_at_root(api_app):
    assert api_app.app.state.dashboard is True
    for path, status in (("/", 200), ("/compare?ids=1,2", 200), ("/new", 200),
                         ("/jobs", 200), ("/no/such/page", 404), ("/studies/x", 404),
                         ("/studies/3?method=K-FAC&test=4", None)):
        response = api_app.get(path)
        # (a study the API does not know is a 404 too: tests/browser checks it against a
        # real server; this test client cannot answer the dashboard's own API calls)
        assert status is None or response.status_code == status, path
        assert response.headers["content-type"].startswith("text/html")
        assert "_dash-renderer" in response.text or "dash_renderer" in response.text
        assert '<html lang="en">' in response.text
    layout = api_app.get("/_dash-layout")
    assert layout.status_code == 200 and "app-state" in layout.text
    assert api_app.get("/assets/style.css").status_code == 200


def test_the_index_page_loads_plotly_late_and_no_polyfill(api_app):
    """The page's scripts: regenerator-runtime in the place of Dash's @babel/polyfill (first,
    before React and Dash), plotly.js only through the preload script (no script tag), and
    both vendored files served."""
    import re

    page = api_app.get("/studies/1").text
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert not [s for s in scripts if "polyfill" in s], scripts
    assert scripts[0] == "/assets/vendor/regenerator-runtime.js", scripts
    assert not [s for s in scripts if "plotly" in s and "preload" not in s], scripts
    assert [s for s in scripts if "plotly-preload.js" in s]
    runtime = api_app.get("/assets/vendor/regenerator-runtime.js")
    assert runtime.status_code == 200 and "regeneratorRuntime = runtime" in runtime.text
    bundle = api_app.get("/assets/vendor/plotly-curvscope.min.js")
    assert bundle.status_code == 200 and "traces: bar, heatmap, scatter" in bundle.text[:600]


def test_the_api_keeps_its_routes_and_problem_json(api_app):
    missing = api_app.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "Nothing is served at GET /api/v1/no-such-thing" in missing.json()["detail"]
    assert api_app.get("/api/v1/studies").json() == {"data": [], "count": 0}
    assert api_app.get("/docs").status_code == 200
    assert api_app.get("/api/v1/openapi.json").json()["info"]["title"] == "curvscope"
    wrong_method = api_app.post("/api/v1/studies/validate/x")
    assert wrong_method.status_code in (404, 405)
    assert wrong_method.headers["content-type"] == "application/problem+json"


def test_standalone_dashboard(monkeypatch):
    from frontend import api_client
    from frontend.app import create_app

    monkeypatch.setattr(api_client, "CONFIG", api_client.Config())
    monkeypatch.delenv("CURVSCOPE_API_URL", raising=False)
    with pytest.raises(ValueError, match="CURVSCOPE_API_URL"):
        create_app()
    app = create_app("http://127.0.0.1:9/api/v1")
    assert api_client.CONFIG.api_url == "http://127.0.0.1:9/api/v1"
    assert not api_client.CONFIG.mounted
    with TestClient(app) as client:
        assert client.get("/_health").json()["status"] == "ok"
        assert client.get("/studies/1").headers["content-type"].startswith("text/html")
        assert client.get("/_download/studies/1/secrets").status_code == 404
        unreachable = client.get("/_download/studies/1/results")
        assert unreachable.status_code == 502 and "Could not reach the API" in unreachable.text
