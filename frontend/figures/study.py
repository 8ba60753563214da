"""Figures of one study (DESIGN.md, Dashboard: study page)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

CHAIN = ["H", "GGN", "GGN-blockdiag", "EK-FAC", "K-FAC"]
METHOD_ORDER = [*CHAIN, "GGN-diag", "identity"]
METHOD_COLORS = {
    "H": "#1f77b4", "GGN": "#ff7f0e", "GGN-blockdiag": "#2ca02c", "EK-FAC": "#d62728",
    "K-FAC": "#9467bd", "GGN-diag": "#8c564b", "identity": "#7f7f7f",
}


#: every trace type the dashboard draws: the served plotly.js bundle has these only (a test checks)
TRACE_TYPES = ("bar", "heatmap", "scatter")


def _slim_template(name: str) -> go.layout.Template:
    """plotly's ``name`` template with the trace defaults of :data:`TRACE_TYPES` only.

    The full template carries defaults for some 25 trace types; every figure embeds it, and
    plotly validates and deep-copies it on assignment, which was most of the time the study
    page spent building its figures (about 60 %) and 7 kB of each figure's JSON."""
    full = pio.templates[name]
    return go.layout.Template(layout=full.layout,
                              data={kind: getattr(full.data, kind) for kind in TRACE_TYPES})


TEMPLATES = {"light": "curvscope_light", "dark": "curvscope_dark"}
pio.templates[TEMPLATES["light"]] = _slim_template("plotly_white")
pio.templates[TEMPLATES["dark"]] = _slim_template("plotly_dark")


def template(theme: str) -> str:
    """The registered plotly template of a theme: plotly_white / plotly_dark, slimmed."""
    return TEMPLATES["dark" if theme == "dark" else "light"]


def ordered_methods(names) -> list[str]:
    known = [m for m in METHOD_ORDER if m in names]
    return known + sorted(n for n in names if n not in METHOD_ORDER)


def _layout(fig: go.Figure, title: str, theme: str) -> go.Figure:
    fig.update_layout(title=title, template=template(theme), margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def lds_figure(results: dict, theme: str = "light") -> go.Figure:
    """LDS per method with its 95 % bootstrap interval, one group per α, and the seed-noise
    ceiling of each α as a dashed reference line."""
    fig = go.Figure()
    methods = ordered_methods(results["methods"])
    gt = results.get("groundtruth")
    if not gt:
        fig.add_annotation(text="this study has no ground truth (groundtruth.enabled = false)",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return _layout(fig, "Attribution quality (LDS)", theme)
    alphas = [str(a) for a in gt["alphas"]]
    for name in methods:
        values = [results["methods"][name]["lds"][a] for a in alphas]
        fig.add_trace(go.Bar(
            name=name, x=[f"α = {a}" for a in alphas], y=[v["value"] for v in values],
            marker_color=METHOD_COLORS.get(name),
            error_y=dict(type="data", symmetric=False,
                         array=[v["ci_high"] - v["value"] for v in values],
                         arrayminus=[v["value"] - v["ci_low"] for v in values]),
            hovertemplate="%{x}<br>" + name + ": %{y:.3f}<extra></extra>"))
    for index, alpha in enumerate(alphas):
        ceiling = gt["ceiling"].get(alpha)
        if ceiling:
            fig.add_shape(type="line", xref="x", yref="y", x0=index - 0.45, x1=index + 0.45,
                          y0=ceiling["value"], y1=ceiling["value"],
                          line=dict(dash="dash", color="black" if theme != "dark" else "white"))
            fig.add_annotation(x=index, y=ceiling["value"], text="seed-noise ceiling",
                               showarrow=False, yshift=10, font=dict(size=10))
    fig.update_layout(barmode="group", yaxis_title="LDS (Spearman, mean over test points)")
    return _layout(fig, "Attribution quality: LDS with 95 % bootstrap intervals", theme)


def log_spaced(n: int, max_points: int | None) -> np.ndarray:
    """Indices 0..n-1 thinned to about ``max_points``, evenly spaced on a log scale of the
    rank (the first and last always kept); all of them when ``max_points`` is None or ≥ n."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    picks = np.unique(np.round(np.geomspace(1, n, max_points)).astype(int) - 1)
    return np.union1d(picks, [0, n - 1])


def spectra_figure(arrays: dict, methods: list[str], block: str | None = None,
                   theme: str = "light", max_points: int | None = None) -> go.Figure:
    """Every method's eigenvalues sorted descending, on log |λ|; negative eigenvalues (H's
    negative curvature) drawn as a separate dotted curve of |λ| (lines, not markers: a marker
    per point is what made this the slowest figure to draw). ``block`` picks one block.
    ``max_points`` thins each curve to about that many log-spaced ranks (exact values at
    those ranks), which keeps a large spectrum quick to send and draw as SVG."""
    fig = go.Figure()
    scatter = go.Scatter  # SVG, in the cartesian plotly.js bundle the dashboard serves
    for name in ordered_methods(methods):
        key = f"eigenvalues/{name}" if block is None else f"block_eigenvalues/{name}/{block}"
        if key not in arrays:
            continue
        values = np.sort(np.asarray(arrays[key]))[::-1]
        rank = np.arange(1, len(values) + 1)
        positive = np.flatnonzero(values > 0)
        keep = positive[log_spaced(len(positive), max_points)]
        fig.add_trace(scatter(x=rank[keep], y=values[keep], mode="lines",
                              name=name, line=dict(color=METHOD_COLORS.get(name))))
        negative = np.flatnonzero(values < 0)
        if len(negative):
            # the most negative first, so the thinning keeps the largest |λ| exactly
            negative = negative[::-1]
            keep = negative[log_spaced(len(negative), max_points)]
            fig.add_trace(scatter(x=rank[keep], y=-values[keep], mode="lines",
                                  name=f"{name} (negative, |λ|)",
                                  line=dict(color=METHOD_COLORS.get(name), dash="dot")))
    fig.update_yaxes(type="log", title="|λ|")
    fig.update_xaxes(type="log", title="rank")
    where = "whole matrix" if block is None else f"block {block}"
    return _layout(fig, f"Eigen-spectra ({where})", theme)


def alignment_figure(results: dict, kind: str = "eigenbasis", k: int | None = None,
                     theme: str = "light") -> go.Figure:
    """Eigenvalue or eigenbasis overlap with the GGN block, per block and method; for the
    eigenbasis, ``k`` picks a stored k (the study's own k by default)."""
    fig = go.Figure()
    blocks = [b["name"] for b in results["blocks"]]
    for name in ordered_methods(results["methods"]):
        entry = results["methods"][name]
        if kind == "eigenvalue":
            values = [entry["eigenvalue_overlap"][b] for b in blocks]
        elif k is None:
            values = [entry["eigenbasis_overlap"][b] for b in blocks]
        else:
            curves = entry.get("eigenbasis_overlap_by_k", {})
            values = [_at_k(curves.get(b, {}), k) for b in blocks]
        fig.add_trace(go.Bar(name=name, x=blocks, y=values, marker_color=METHOD_COLORS.get(name)))
    label = "eigenvalue overlap" if kind == "eigenvalue" else (
        f"eigenbasis overlap (top-{k or results['spec']['curvature']['eigenbasis_k']})")
    fig.update_layout(barmode="group", yaxis_title=label, xaxis_title="block")
    return _layout(fig, f"Alignment with the GGN block: {label}", theme)


def _at_k(curve: dict, k: int) -> float | None:
    """The stored overlap at the largest stored k ≤ the requested k."""
    stored = sorted(int(j) for j in curve)
    usable = [j for j in stored if j <= k] or stored[:1]
    return curve[str(usable[-1])] if usable else None


def waterfall_bars(labels: list[str], values: list, name: str) -> go.Bar:
    """A waterfall drawn as floating bars (each step starts where the previous ended), so it
    needs only the bar trace of plotly.js's cartesian bundle; green rises, red falls."""
    numbers = [0.0 if v is None else float(v) for v in values]
    bases = np.concatenate([[0.0], np.cumsum(numbers)[:-1]])
    return go.Bar(x=labels, y=numbers, base=bases, name=name, showlegend=False,
                  meta="waterfall", text=[f"{v:+.3g}" for v in numbers],
                  marker_color=["#2ca02c" if v >= 0 else "#d62728" for v in numbers])


def decomposition_figure(results: dict, alpha: str | None = None,
                         theme: str = "light") -> go.Figure:
    """Waterfalls along H → GGN → GGN-blockdiag → EK-FAC → K-FAC: the Frobenius error of each
    step (relative to ‖H‖, else ‖G‖) and the LDS lost at each step; plus the split of K-FAC's
    error into cross-layer, eigenbasis and eigenvalue shares."""
    decomposition = results.get("decomposition") or {}
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "Frobenius error per step", "LDS lost per step", "K-FAC error split"))
    steps = decomposition.get("chain_steps", [])
    if steps:
        relative = [s["relative_to_H"] if s["relative_to_H"] is not None else s[
            "relative_to_GGN"] for s in steps]
        fig.add_trace(waterfall_bars([f"{s['from']}→{s['to']}" for s in steps], relative,
                                     "‖ΔM‖ / ‖H‖"), row=1, col=1)
    lost = decomposition.get("lds_lost") or (results.get("groundtruth") or {}).get("lds_lost")
    if lost:
        key = alpha or str((results.get("groundtruth") or {}).get("alphas", [None])[0])
        fig.add_trace(waterfall_bars([f"{s['from']}→{s['to']}" for s in lost],
                                     [(s["lds_lost"].get(key) or {}).get("value") for s in lost],
                                     f"LDS lost (α = {key})"), row=1, col=2)
    shares = decomposition.get("ggn_to_kfac") or decomposition.get("kfac_error")
    if shares:
        labels = [("cross-layer", "cross_layer_share"), ("eigenbasis", "eigenbasis_share"),
                  ("eigenvalue", "eigenvalue_share")]
        present = [(label, shares[key]) for label, key in labels if key in shares]
        fig.add_trace(go.Bar(x=[p[0] for p in present], y=[100 * p[1] for p in present],
                             name="share of ‖G − K‖²", showlegend=False, meta="split",
                             text=[f"{100 * p[1]:.1f} %" for p in present]), row=1, col=3)
        fig.update_yaxes(title_text="% of ‖G − K‖²", row=1, col=3)
    return _layout(fig, "Error decomposition along the chain", theme)


def scores_of_test_point(arrays: dict, method: str, test_index: int) -> np.ndarray:
    """τ(x_test, z_j) for every training point j: ``arrays["scores/<method>"]`` holds either
    all test points' scores (n_test, n_train), whose row ``test_index`` this takes, or that
    row alone (n_train,), as the dashboard fetches it (the API's ``?index=``)."""
    scores = np.asarray(arrays[f"scores/{method}"])
    return scores if scores.ndim == 1 else scores[test_index]


def groundtruth_scatter(arrays: dict, method: str, test_index: int, alpha: str,
                        theme: str = "light") -> go.Figure:
    """Predicted Σ_{j∈S_m} τ(x, z_j) against the retrained test loss (mean over seeds) over the
    subsets, for one test point and method, with its Spearman correlation."""
    from scipy.stats import spearmanr

    masks = np.asarray(arrays[f"masks/{alpha}"], dtype=float)
    scores = scores_of_test_point(arrays, method, test_index)
    predicted = masks @ scores
    retrained = np.asarray(arrays[f"retrained_losses/{alpha}"])[:, :, test_index].mean(axis=1)
    rho = spearmanr(predicted, retrained).statistic
    fig = go.Figure(go.Scatter(x=predicted, y=retrained, mode="markers", name=method,
                               marker=dict(color=METHOD_COLORS.get(method))))
    fig.update_xaxes(title="predicted: Σ τ over the subset")
    fig.update_yaxes(title="retrained test loss (mean over seeds)")
    return _layout(fig, f"{method}, test point {test_index}, α = {alpha}: Spearman ρ = {rho:.3f}",
                   theme)


def examples_figure(arrays: dict, methods: list[str], test_index: int, top: int = 3,
                    theme: str = "light") -> go.Figure:
    """The test digit, and for each method its top helpful (most negative τ: up-weighting them
    lowers the test loss) and top harmful (most positive τ) training digits."""
    methods = ordered_methods(methods)
    if "images/test" not in arrays:
        fig = go.Figure()
        fig.add_annotation(text="this data set has no images", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        return _layout(fig, "Examples", theme)
    cols = 1 + 2 * top
    titles = ["test"] + [f"helpful {i + 1}" for i in range(top)] + [
        f"harmful {i + 1}" for i in range(top)]
    fig = make_subplots(rows=len(methods), cols=cols, horizontal_spacing=0.01,
                        vertical_spacing=0.04, subplot_titles=titles,
                        row_titles=methods)
    scale = "gray_r" if theme != "dark" else "gray"
    for row, name in enumerate(methods, start=1):
        scores = scores_of_test_point(arrays, name, test_index)
        order = np.argsort(scores)
        picks = [None, *order[:top], *order[::-1][:top]]
        for col, pick in enumerate(picks, start=1):
            image = arrays["images/test"][test_index] if pick is None else arrays[
                "images/train"][pick]
            hover = "test digit" if pick is None else f"train #{pick}: τ = {scores[pick]:.3g}"
            fig.add_trace(go.Heatmap(z=np.asarray(image)[::-1], colorscale=scale,
                                     showscale=False, hovertemplate=hover + "<extra></extra>"),
                          row=row, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(height=130 * len(methods) + 80)
    return _layout(fig, f"Most helpful and harmful training digits for test point {test_index}",
                   theme)


def heatmap_figure(results: dict, arrays: dict, name: str, theme: str = "light") -> go.Figure:
    """log10 |M| (downsampled by tile means) with the layer boundaries drawn."""
    z = np.asarray(arrays[f"heatmaps/{name}"])
    d = results["n_params"]
    scale = z.shape[0] / d
    fig = go.Figure(go.Heatmap(z=z, colorscale="Viridis", colorbar=dict(title="log10|·|"),
                               hovertemplate="tile (%{y}, %{x}): log10|·| = %{z:.3f}"
                                             "<extra></extra>"))
    for block in results["blocks"][1:]:
        position = block["start"] * scale - 0.5
        for axis in ("x", "y"):
            fig.add_shape(type="line", line=dict(color="white", width=1),
                          **({"x0": position, "x1": position, "y0": -0.5, "y1": z.shape[0] - 0.5}
                             if axis == "x" else
                             {"y0": position, "y1": position, "x0": -0.5, "x1": z.shape[1] - 0.5}))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return _layout(fig, f"log10 |{name}| (tile means; lines: layer boundaries)", theme)


def examples_grid(arrays: dict, methods: list[str], test_index: int, top: int = 3,
                  theme: str = "light") -> go.Figure:
    """The same picks as :func:`examples_figure` drawn as ONE heat map (a mosaic): the test
    digit top left, then per method (one row each) its top helpful and top harmful training
    digits. One trace instead of one subplot per image, so it builds and draws fast."""
    methods = ordered_methods(methods)
    if "images/test" not in arrays or not methods:
        fig = go.Figure()
        fig.add_annotation(text="this data set has no images" if methods else "no scores",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return _layout(fig, "Examples", theme)
    test_image = np.asarray(arrays["images/test"][test_index], dtype=float)
    h, w = test_image.shape
    # columns: test, gap, helpful 1..top, gap, harmful 1..top
    slots = ["test", None, *[f"helpful {i + 1}" for i in range(top)], None,
             *[f"harmful {i + 1}" for i in range(top)]]
    cell_h, cell_w = h + 1, w + 1
    z = np.full((len(methods) * cell_h - 1, len(slots) * cell_w - 1), np.nan)
    text = np.full(z.shape, "", dtype=object)

    def put(row: int, col: int, image: np.ndarray, label: str) -> None:
        y0, x0 = row * cell_h, col * cell_w
        z[y0:y0 + h, x0:x0 + w] = image
        text[y0:y0 + h, x0:x0 + w] = label

    put(0, 0, test_image, f"test point {test_index}")
    train = arrays["images/train"]
    for row, name in enumerate(methods):
        scores = scores_of_test_point(arrays, name, test_index)
        order = np.argsort(scores)
        picks = [*order[:top], *order[::-1][:top]]
        for slot, pick in enumerate(picks):
            col = 2 + slot if slot < top else 3 + slot
            put(row, col, np.asarray(train[pick], dtype=float),
                f"{name}, {slots[col]}: train #{pick}, τ = {scores[pick]:.3g}")
    scale = "gray_r" if theme != "dark" else "gray"
    fig = go.Figure(go.Heatmap(z=z, customdata=text, colorscale=scale, showscale=False,
                               hoverongaps=False,
                               hovertemplate="%{customdata}<extra></extra>"))
    centers_x = [c * cell_w + (w - 1) / 2 for c, s in enumerate(slots) if s]
    centers_y = [r * cell_h + (h - 1) / 2 for r in range(len(methods))]
    fig.update_xaxes(side="top", tickvals=centers_x, ticktext=[s for s in slots if s],
                     showgrid=False, zeroline=False)
    fig.update_yaxes(autorange="reversed", tickvals=centers_y, ticktext=methods,
                     showgrid=False, zeroline=False, scaleanchor="x")
    fig.update_layout(height=75 * len(methods) + 140, plot_bgcolor="rgba(0,0,0,0)")
    fig = _layout(fig, f"Most helpful and harmful training digits for test point {test_index}",
                  theme)
    fig.update_layout(margin=dict(l=110, r=20, t=110, b=20))
    return fig


def warm_up() -> None:
    """Build a throw-away figure with every kind of trace, subplot, shape and template the
    study page uses, and encode it: the first figure of a process otherwise pays for importing
    and initialising plotly's validators and encoder (about 0.1-0.2 s here). The dashboard
    runs this in the background when it starts, not on the first page someone opens."""
    fig = make_subplots(rows=1, cols=3)
    fig.add_trace(go.Bar(x=["a", "b"], y=[1.0, 2.0], base=[0.0, 1.0], text=["+1", "+2"],
                         error_y=dict(type="data", array=[0.1, 0.2], arrayminus=[0.1, 0.1]),
                         marker_color=["#2ca02c", "#d62728"]), row=1, col=1)
    fig.add_trace(go.Scatter(x=np.arange(1, 4), y=np.array([3.0, 2.0, 1.0]), mode="lines",
                             line=dict(color="#1f77b4", dash="dot")), row=1, col=2)
    fig.add_trace(go.Heatmap(z=np.zeros((2, 2), dtype=np.float32), colorscale="Viridis",
                             customdata=np.array([["a", "b"], ["c", "d"]], dtype=object),
                             colorbar=dict(title="t"), hovertemplate="%{z:.3f}"), row=1, col=3)
    fig.add_shape(type="line", x0=0, x1=1, y0=0, y1=1, line=dict(dash="dash"))
    fig.add_annotation(text="t", x=0, y=0, showarrow=False)
    fig.update_yaxes(type="log", autorange="reversed", scaleanchor="x")
    for theme in ("light", "dark"):
        pio.to_json(_layout(fig, "warm-up", theme))
    fig.to_plotly_json()
