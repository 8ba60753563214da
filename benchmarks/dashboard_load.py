"""Time from opening a study's page to all its figures drawn, measured in the browser.

What: the dashboard's study page (``/studies/<id>``) of a finished study, served by a running
API (``curvscope up``, or ``uvicorn backend.app:app``) or by a standalone dashboard.

How: headless Chromium (Playwright for Python, ``/usr/bin/chromium`` unless
``--chromium``) opens the page. The page is polled on every animation frame until every graph
on it holds a real figure (not the empty placeholder the layout starts with), no Dash callback
is pending and Plotly has drawn (``gd._fullLayout`` set); the clock is the page's own
``performance.now()``. Three ways of opening it, each timed ``1 + --repeats`` times:

* ``fresh``: a new browser context per visit (empty HTTP and code cache): from the
  navigation's start, so it includes fetching and compiling Dash's scripts and plotly.js;
* ``cached``: the same context again (a returning user: the browser's caches are warm);
* ``in-app``: from the dashboard's studies list, a click on the study's link (the page is a
  single-page app: scripts already loaded); from the click.

The first ``fresh`` visit is cold for the dashboard's server-side cache of results, arrays
and figures only if the server has not served this study since it started. No other warm-up.

``--baseline URL`` (the same study's page served by another build, e.g. an earlier commit on
another port) adds a comparison measured in the same run: fresh visits alternating between
the two pages (the order flipped each round, so a slow spell hits both), and the ratio of the
medians, baseline / this.

Usage::

    python benchmarks/dashboard_load.py http://127.0.0.1:8000/studies/1 --repeats 3
    python benchmarks/dashboard_load.py --base http://127.0.0.1:8000 --study 1
    python benchmarks/dashboard_load.py --base http://127.0.0.1:8000 --study 1 \
        --baseline http://127.0.0.1:8001/studies/1

Prints a line per visit and ends with ONE JSON line (like the other benchmarks).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import urllib.request

VIEWPORT = {"width": 1400, "height": 1000}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update",
                 "--disable-sync"]

#: true once every graph holds its real figure and Dash has no callback in flight
ALL_DRAWN_JS = """
() => {
  const graphs = Array.from(document.querySelectorAll('.dash-graph'));
  if (graphs.length === 0) { return false; }
  if (document.querySelector('[data-dash-is-loading="true"]')) { return false; }
  let visible = 0;
  for (const g of graphs) {
    if (g.offsetParent === null) { continue; }           // hidden (e.g. not applicable)
    visible += 1;
    const gd = g.querySelector('.js-plotly-plot');
    if (!gd || !gd._fullLayout) { return false; }
    const meta = gd.layout && gd.layout.meta;
    if (meta && meta.placeholder) { return false; }
  }
  if (visible === 0) { return false; }
  return {t: performance.now(), graphs: visible};
}
"""


def study_summary(base: str, study: int) -> dict:
    with urllib.request.urlopen(f"{base}/api/v1/studies/{study}", timeout=30) as response:
        return json.load(response)


def _watch(page, errors: list[str]) -> None:
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))


def visit(context, url: str, timeout_s: float, mode: str) -> dict:
    page = context.new_page()
    errors: list[str] = []
    _watch(page, errors)
    start = 0.0
    if mode == "in-app":
        base, _, rest = url.partition("/studies/")
        study = rest.split("?")[0]
        page.goto(base + "/")
        link = page.locator(f"a[href='/studies/{study}']").first
        link.wait_for(timeout=timeout_s * 1000)
        page.wait_for_timeout(300)  # let the list settle
        start = page.evaluate("() => performance.now()")
        link.click()
    else:
        page.goto(url, wait_until="commit")
    handle = page.wait_for_function(ALL_DRAWN_JS, polling="raf", timeout=timeout_s * 1000)
    drawn = handle.json_value()
    page.close()
    return {"seconds": (drawn["t"] - start) / 1000, "graphs": drawn["graphs"],
            "console_errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="the study page, e.g. http://h:8000/studies/1")
    parser.add_argument("--base", help="the dashboard's root, with --study")
    parser.add_argument("--study", type=int, help="study id, with --base")
    parser.add_argument("--repeats", type=int, default=3, help="visits after the first, per mode")
    parser.add_argument("--modes", nargs="+", default=["fresh", "cached", "in-app"],
                        choices=["fresh", "cached", "in-app"])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per visit")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--baseline", help="the same page served by another build: fresh "
                        "visits alternate between the two; prints the ratio of medians")
    args = parser.parse_args()
    if args.url:
        url = args.url
        base, _, rest = url.partition("/studies/")
        study = int(rest.split("?")[0].split("/")[0])
    elif args.base and args.study:
        base, study = args.base.rstrip("/"), args.study
        url = f"{base}/studies/{study}"
    else:
        parser.error("give the study page's URL, or --base and --study")

    from playwright.sync_api import sync_playwright

    try:
        detail = study_summary(base, study)
    except Exception as exc:  # the API may sit elsewhere (standalone dashboard)
        detail = {"name": "?", "state": "?", "preset": "?", "error": str(exc)}
    print(f"study {study} ({detail.get('name')}, preset {detail.get('preset')}, "
          f"{detail.get('state')}) at {url}")
    if detail.get("state") not in ("succeeded", "?"):
        sys.exit(f"study {study} is {detail.get('state')}: its figures need a finished study")
    times: dict[str, list[float]] = {}
    errors = 0
    graphs = None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            shared = browser.new_context(viewport=VIEWPORT)
            for mode in args.modes:
                for index in range(1 + args.repeats):
                    context = (browser.new_context(viewport=VIEWPORT) if mode == "fresh"
                               else shared)
                    result = visit(context, url, args.timeout, mode)
                    if mode == "fresh":
                        context.close()
                    since = "the click" if mode == "in-app" else "navigation start"
                    print(f"{mode:>7} {index + 1}: all {result['graphs']} figures drawn "
                          f"{result['seconds']:.2f} s after {since}"
                          + (f"  (console errors: {result['console_errors']})"
                             if result["console_errors"] else ""))
                    times.setdefault(mode, []).append(result["seconds"])
                    errors += len(result["console_errors"])
                    graphs = result["graphs"]
            shared.close()
            if args.baseline:
                compared = compare(browser, url, args.baseline, 1 + args.repeats, args.timeout)
                errors += compared.pop("console_errors")
        finally:
            browser.close()
    summary = {"benchmark": "dashboard_load", "study": study, "preset": detail.get("preset"),
               "url": url, "graphs": graphs, "console_errors": errors,
               **{f"{mode}_first_s": round(values[0], 3) for mode, values in times.items()},
               **{f"{mode}_median_s": round(statistics.median(values), 3)
                  for mode, values in times.items()}}
    for mode, values in times.items():
        print(f"{mode:>7}: first {values[0]:.2f} s, median {statistics.median(values):.2f} s "
              f"over {len(values)} visits (target < 2 s)")
    if args.baseline:
        summary["baseline"] = compared
        print(f"fresh, alternating with the baseline ({args.baseline}): this "
              f"{compared['this_median_s']:.2f} s, baseline {compared['baseline_median_s']:.2f} s"
              f" (medians of {compared['visits']}); baseline / this = {compared['ratio']:.2f}")
    print(json.dumps(summary))


def compare(browser, url: str, baseline: str, visits: int, timeout_s: float) -> dict:
    """Fresh visits alternating between ``url`` and ``baseline`` (each served once first,
    unmeasured, so that both servers' caches are warm); medians and their ratio."""
    times: dict[str, list[float]] = {url: [], baseline: []}
    errors = 0
    for index in range(-1, visits):
        for page_url in ((url, baseline) if index % 2 == 0 else (baseline, url)):
            context = browser.new_context(viewport=VIEWPORT)
            result = visit(context, page_url, timeout_s, "fresh")
            context.close()
            errors += len(result["console_errors"])
            if result["console_errors"]:
                print(f"  console errors on {page_url}: {result['console_errors']}")
            if index >= 0:
                times[page_url].append(result["seconds"])
    this, base = statistics.median(times[url]), statistics.median(times[baseline])
    return {"url": baseline, "visits": visits, "this_median_s": round(this, 3),
            "baseline_median_s": round(base, 3), "ratio": round(base / this, 2),
            "this_s": [round(t, 3) for t in times[url]],
            "baseline_s": [round(t, 3) for t in times[baseline]], "console_errors": errors}


if __name__ == "__main__":
    main()
