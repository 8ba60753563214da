"""Browser tests: headless Chromium (Playwright for Python driving /usr/bin/chromium) against
a real service: uvicorn ``backend.app:app`` (API + dashboard on one port) on a temporary
SQLite database, a real redis-server and one real celery worker, with two small finished
studies created through the API.

Skipped, with the reason, only where /usr/bin/chromium or the playwright package is missing
(``.ci/browser-setup`` installs both in CI). Screenshots of every page go to
``artifacts/screenshots/`` (``$CURVSCOPE_SCREENSHOTS`` overrides)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.backend.conftest import redis_server  # noqa: F401  (session-scoped real Redis)
from tests.backend.servers import service_env, start_api, start_worker, stop_process

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CURVSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update",
                 "--disable-sync"]
SCREENSHOTS = Path(os.environ.get("CURVSCOPE_SCREENSHOTS", ROOT / "artifacts" / "screenshots"))

#: a study with every method that finishes in seconds on a CPU
SMALL = {"preset": "quick", "model": {"hidden": [8]}, "training": {"epochs": 3},
         "groundtruth": {"n_subsets": 6, "n_seeds": 2, "n_bootstrap": 50}}


def _missing() -> str | None:
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (.ci/browser-setup installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (.ci/browser-setup: pip install playwright)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason is None:
        return
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.skip(reason=reason))


class Service:
    def __init__(self, base: str, logs: list[Path]):
        self.base, self.logs = base, logs
        self.http = httpx.Client(base_url=base, timeout=60)

    def submit(self, spec: dict) -> int:
        response = self.http.post("/api/v1/studies", json=spec)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def wait_done(self, study_id: int, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        study = {}
        while time.monotonic() < deadline:
            study = self.http.get(f"/api/v1/studies/{study_id}").json()
            if study["state"] in ("succeeded", "failed", "cancelled"):
                assert study["state"] == "succeeded", (study, self.log_tail())
                return study
            time.sleep(0.3)
        pytest.fail(f"study {study_id} did not finish: {study}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs
                         if p.exists())


@pytest.fixture(scope="session")
def service(tmp_path_factory, redis_server):  # noqa: F811
    if _missing():
        pytest.skip(_missing())
    tmp = tmp_path_factory.mktemp("browser-service")
    env = service_env(tmp / "data", f"sqlite:///{tmp / 'curvscope.db'}", redis_server.url(6),
                      CURVSCOPE_QUEUE_NAME="browser-tests")
    logs = [tmp / "api.log", tmp / "worker.log"]
    api, base = start_api(env, logs[0])
    worker = start_worker(env, "browser@itest", logs[1])
    svc = Service(base, logs)
    try:
        first = svc.submit(SMALL)
        second = svc.submit({**SMALL, "inverse": {"damping": 1e-2}})
        svc.studies = [svc.wait_done(first), svc.wait_done(second)]
        yield svc
    finally:
        svc.http.close()
        for process in (worker, api):
            stop_process(process, timeout=20)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, page, base: str):
        self.page, self.base = page, base
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def open(self, path: str) -> int | None:
        """Navigate; the HTTP status of the page."""
        response = self.page.goto(self.base + path)
        return response.status if response is not None else None

    def forget_own_404(self) -> None:
        """A page served with HTTP 404 (on purpose) makes Chromium log one console error
        for the document itself; drop exactly that one."""
        own = "console: Failed to load resource: the server responded with a status of 404"
        self.errors = [e for e in self.errors if not e.startswith(own)]

    def wait_graph(self, graph_id: str, timeout: float = 60_000, text: str | None = None):
        """Wait until the graph holds a real figure (optionally with ``text`` in its
        title); returns its traces as {name, type, n} dicts."""
        self.page.wait_for_function(
            """([id, text]) => {
                const gd = document.querySelector('#' + id + ' .js-plotly-plot');
                if (!gd || !gd._fullLayout || !gd.layout) { return false; }
                if (gd.layout.meta && gd.layout.meta.placeholder) { return false; }
                const title = (gd.layout.title && (gd.layout.title.text || gd.layout.title)) || '';
                return text === null || String(title).includes(text);
            }""", arg=[graph_id, text], timeout=timeout)
        return self.traces(graph_id)

    def traces(self, graph_id: str) -> list[dict]:
        return self.page.evaluate(
            """id => {
                const gd = document.querySelector('#' + id + ' .js-plotly-plot');
                // _fullData: arrays decoded (gd.data may hold base64 typed-array specs)
                return gd._fullData.map(t => ({name: t.name, type: t.type,
                                               n: t.y ? t.y.length : (t.z ? t.z.length : 0)}));
            }""", graph_id)

    def layout(self, graph_id: str) -> dict:
        return self.page.evaluate(
            """id => {
                const gd = document.querySelector('#' + id + ' .js-plotly-plot');
                return {title: gd.layout.title && (gd.layout.title.text || gd.layout.title),
                        paper_bgcolor: gd._fullLayout.paper_bgcolor};
            }""", graph_id)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        banner = self.page.locator("#global-error .alert")
        assert banner.count() == 0, banner.first.inner_text()
        assert not self.errors, self.errors


@pytest.fixture
def tab(browser, service):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield Page(page, service.base)
    context.close()

