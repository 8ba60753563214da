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


def sci_axis(axis) -> None:
    """Ticks as researchers write them: 1e-4, never SI prefixes (1μ, 1p)."""
    axis.update(exponentformat="e", showexponent="all")


def _layout(fig: go.Figure, title: str, theme: str) -> go.Figure:
    fig.update_layout(title=title, template=template(theme), margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(exponentformat="e", showexponent="all")
    fig.update_yaxes(exponentformat="e", showexponent="all")
    return fig


#: methods whose matrix is positive semi-definite by construction: a negative eigenvalue of
#: theirs is round-off (H, the Hessian, is the only indefinite one)
INDEFINITE = {"H"}
#: eigenvalues below this fraction of the largest one drawn are numerically zero
SPECTRUM_FLOOR = 1e-10


def block_labels(results: dict) -> dict[str, str]:
    """Block name → the layer it is, by shape (``Linear 64→12``), from ``blocks`` (a stored
    ``label`` or ``shape`` wins) and the spec's hidden widths: a linear layer with bias has
    (d_in + 1)·d_out parameters. Names it cannot place are kept."""
    blocks = results.get("blocks") or []
    model = (results.get("spec") or {}).get("model") or {}
    hidden = list(model.get("hidden") or [])
    n_classes = results.get("n_classes")
    bias = model.get("bias", True)
    outs = [*hidden, n_classes]
    labels = {}
    for index, block in enumerate(blocks):
        name = block.get("name", str(index))
        if block.get("label"):
            labels[name] = str(block["label"])
            continue
        shape = block.get("shape")
        if isinstance(shape, list | tuple) and len(shape) == 2:
            labels[name] = f"Linear {shape[1]}→{shape[0]}"
            continue
        d_out = outs[index] if len(blocks) == len(outs) and index < len(outs) else None
        size = block.get("size")
        if isinstance(d_out, int) and d_out > 0 and isinstance(size, int) and \
                size % d_out == 0 and size // d_out - (1 if bias else 0) > 0:
            labels[name] = f"Linear {size // d_out - (1 if bias else 0)}→{d_out}"
        else:
            labels[name] = name
    return labels


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
    fig.update_layout(barmode="group",
                      yaxis_title="LDS (higher is better)")
    return _layout(fig, "Attribution quality: LDS with unpaired 95 % bootstrap intervals",
                   theme)


def log_spaced(n: int, max_points: int | None) -> np.ndarray:
    """Indices 0..n-1 thinned to about ``max_points``, evenly spaced on a log scale of the
    rank (the first and last always kept); all of them when ``max_points`` is None or ≥ n."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    picks = np.unique(np.round(np.geomspace(1, n, max_points)).astype(int) - 1)
    return np.union1d(picks, [0, n - 1])


def spectra_figure(arrays: dict, methods: list[str], block: str | None = None,
                   theme: str = "light", max_points: int | None = None,
                   floor: float = SPECTRUM_FLOOR, block_label: str | None = None) -> go.Figure:
    """Every method's eigenvalues sorted descending, on log |λ|, clipped at ``floor`` times
    the largest eigenvalue drawn: below it an eigenvalue is numerically zero (round-off of a
    rank-deficient matrix), and is counted, not drawn. H's negative eigenvalues (negative
    curvature) are a separate dotted curve of |λ|; the other methods are positive
    semi-definite by construction, so their negative values are round-off and counted with
    the zeros. Lines, not markers (a marker per point made this the slowest figure to draw).
    ``block`` picks one block. ``max_points`` thins each curve to about that many log-spaced
    ranks (exact values at those ranks). ``layout.meta`` holds the floor and the counts."""
    fig = go.Figure()
    scatter = go.Scatter  # SVG, in the cartesian plotly.js bundle the dashboard serves
    spectra = {}
    for name in ordered_methods(methods):
        key = f"eigenvalues/{name}" if block is None else f"block_eigenvalues/{name}/{block}"
        if key in arrays:
            spectra[name] = np.sort(np.asarray(arrays[key], dtype=float))[::-1]
    top = max((float(np.max(np.abs(v))) for v in spectra.values() if len(v)), default=0.0)
    cutoff = floor * top if top > 0 else 0.0
    zeros: dict[str, dict] = {}
    for name, values in spectra.items():
        rank = np.arange(1, len(values) + 1)
        positive = np.flatnonzero(values > cutoff)
        keep = positive[log_spaced(len(positive), max_points)]
        fig.add_trace(scatter(x=rank[keep], y=values[keep], mode="lines",
                              name=name, line=dict(color=METHOD_COLORS.get(name))))
        negative = np.flatnonzero(values < -cutoff) if name in INDEFINITE else np.array([], int)
        zeros[name] = {"n": int(len(values)), "zero": int(len(values) - len(positive)
                                                          - len(negative))}
        if len(negative):
            # the most negative first, so the thinning keeps the largest |λ| exactly
            negative = negative[::-1]
            keep = negative[log_spaced(len(negative), max_points)]
            fig.add_trace(scatter(x=rank[keep], y=-values[keep], mode="lines",
                                  name=f"{name} (negative, |λ|)",
                                  line=dict(color=METHOD_COLORS.get(name), dash="dot")))
            zeros[name]["negative"] = int(len(negative))
    fig.update_yaxes(type="log", title="|λ| (eigenvalue)")
    fig.update_xaxes(type="log", title="rank (largest first)")
    if cutoff > 0:
        fig.update_yaxes(range=[np.log10(cutoff), np.log10(top) + 0.3])
    where = "whole matrix" if block is None else f"block {block_label or block}"
    fig.update_layout(meta={"floor": floor, "cutoff": cutoff, "zeros": zeros})
    return _layout(fig, f"Eigen-spectra ({where})", theme)


def spectra_caption(meta: dict) -> str:
    """In words: the floor the spectra are clipped at and how many eigenvalues of each
    method lie below it (numerically zero), from :func:`spectra_figure`'s ``layout.meta``."""
    zeros = (meta or {}).get("zeros") or {}
    if not zeros:
        return ""
    counted = [f"{name} {z['zero']} of {z['n']}" for name, z in zeros.items() if z["zero"]]
    floor = meta.get("floor", SPECTRUM_FLOOR)
    text = (f"Clipped at {floor:.0e} × the largest eigenvalue ({meta.get('cutoff', 0):.1e}); "
            "below it an eigenvalue is numerically zero. ")
    text += ("Numerically zero (not drawn): " + ", ".join(counted) + "."
             if counted else "No eigenvalue lies below the floor.")
    negative = [f"{name} {z['negative']}" for name, z in zeros.items() if z.get("negative")]
    if negative:
        text += (" Negative eigenvalues (dotted, as |λ|; only H is indefinite): "
                 + ", ".join(negative) + ".")
    return text


def alignment_figure(results: dict, kind: str = "eigenbasis", k: int | None = None,
                     theme: str = "light") -> go.Figure:
    """Eigenvalue or eigenbasis overlap with the GGN block, per block and method; for the
    eigenbasis, ``k`` picks a stored k (the study's own k by default)."""
    fig = go.Figure()
    blocks = [b["name"] for b in results["blocks"]]
    labels = block_labels(results)
    for name in ordered_methods(results["methods"]):
        entry = results["methods"][name]
        if kind == "eigenvalue":
            values = [entry["eigenvalue_overlap"][b] for b in blocks]
        elif k is None:
            values = [entry["eigenbasis_overlap"][b] for b in blocks]
        else:
            curves = entry.get("eigenbasis_overlap_by_k", {})
            values = [_at_k(curves.get(b, {}), k) for b in blocks]
        fig.add_trace(go.Bar(name=name, x=[labels.get(b, b) for b in blocks], y=values,
                             marker_color=METHOD_COLORS.get(name)))
    label = "eigenvalue overlap" if kind == "eigenvalue" else (
        f"eigenbasis overlap (top-{k or results['spec']['curvature']['eigenbasis_k']})")
    fig.update_layout(barmode="group", yaxis_title=f"{label} (1 = aligned)",
                      xaxis_title="layer (block)")
    fig.update_yaxes(range=[0, 1.05])
    return _layout(fig, f"Alignment with the GGN block: {label}", theme)


def training_figure(results: dict, theme: str = "light") -> go.Figure:
    """The base model's training loss per epoch (``training.epoch_losses``: the mean
    cross-entropy on its training points after each epoch), and, when the study stores them
    (``training.retrained_loss_curves``), the spread of the ground truth's retrained models'
    running training losses (each model's mean minibatch loss over an epoch, on its own
    subset): per recorded epoch the 10 % and 90 % quantiles as a band and the median as a
    dotted line, at α = 0.5 when the study has it, else at its smallest α. A running loss is
    taken while the epoch's steps move θ, so early in training it sits above the loss after
    the epoch that the base curve shows."""
    training = results.get("training") or {}
    losses = [float(v) for v in training.get("epoch_losses") or []]
    fig = go.Figure()
    if not losses:
        fig.add_annotation(text="this study stored no training losses", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
        return _layout(fig, "Training loss", theme)
    epochs = list(range(1, len(losses) + 1))
    curves = training.get("retrained_loss_curves") or {}
    if curves:
        alpha = "0.5" if "0.5" in curves else sorted(curves, key=float)[0]
        spread = curves[alpha]
        at = [int(e) for e in spread.get("epochs") or []]
        fig.add_trace(go.Scatter(x=at, y=spread["p90"], mode="lines", meta="retrained-p90",
                                 line=dict(width=0), showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=at, y=spread["p10"], mode="lines", line=dict(width=0),
                                 fill="tonexty", fillcolor="rgba(127,127,127,0.25)",
                                 meta="retrained-p10",
                                 name=f"retrained models ({spread.get('n_models')}, α = "
                                      f"{alpha}): 10–90 %"))
        fig.add_trace(go.Scatter(x=at, y=spread["median"], mode="lines+markers",
                                 meta="retrained-median", marker=dict(size=4),
                                 line=dict(color="#7f7f7f", dash="dot"),
                                 name="retrained models: median"))
    fig.add_trace(go.Scatter(x=epochs, y=losses, mode="lines+markers", name="base model",
                             meta="base", line=dict(color="#1f77b4")))
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="training loss (cross-entropy)",
                     type="log" if min(losses) > 0 and max(losses) / min(losses) > 20
                     else "linear")
    final = training.get("test_accuracy")
    title = "Training loss of the base model"
    if isinstance(final, int | float):
        title += f" (test accuracy {100 * final:.1f} %)"
    return _layout(fig, title, theme)


def _at_k(curve: dict, k: int) -> float | None:
    """The stored overlap at the largest stored k ≤ the requested k."""
    stored = sorted(int(j) for j in curve)
    usable = [j for j in stored if j <= k] or stored[:1]
    return curve[str(usable[-1])] if usable else None


BAD, GOOD = "#c5221f", "#1e8e3e"


def waterfall_bars(labels: list[str], values: list, name: str,
                   positive_is_bad: bool = True) -> go.Bar:
    """A waterfall drawn as floating bars (each step starts where the previous ended), so it
    needs only the bar trace of plotly.js's cartesian bundle. Coloured by meaning, not by
    sign: a step that adds error or loses LDS (``positive_is_bad``: a positive value) is red,
    one that removes error or gains LDS green."""
    numbers = [0.0 if v is None else float(v) for v in values]
    bases = np.concatenate([[0.0], np.cumsum(numbers)[:-1]])
    bad = [(v > 0) == positive_is_bad and v != 0 for v in numbers]
    return go.Bar(x=labels, y=numbers, base=bases, name=name, showlegend=False,
                  meta="waterfall", text=[f"{v:+.3g}" for v in numbers],
                  customdata=["worse" if b else "better" for b in bad],
                  hovertemplate="%{x}: %{y:+.3g} (%{customdata})<extra></extra>",
                  marker_color=[BAD if b else GOOD for b in bad])


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
        fig.update_yaxes(title_text="‖ΔM‖_F / ‖H‖_F, cumulative (lower is better)", row=1,
                         col=1)
    lost = decomposition.get("lds_lost") or (results.get("groundtruth") or {}).get("lds_lost")
    if lost:
        key = alpha or str((results.get("groundtruth") or {}).get("alphas", [None])[0])
        fig.add_trace(waterfall_bars([f"{s['from']}→{s['to']}" for s in lost],
                                     [(s["lds_lost"].get(key) or {}).get("value") for s in lost],
                                     f"LDS lost (α = {key})"), row=1, col=2)
        fig.update_yaxes(title_text=f"LDS lost at α = {key}, cumulative", row=1, col=2)
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


#: pixel rows under each digit of the examples mosaic, for its caption (index, label, τ)
CAPTION_ROWS = 4


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
    # columns: test, gap, helpful 1..top, gap, harmful 1..top; under each digit a caption row
    slots = ["test", None, *[f"helpful {i + 1}" for i in range(top)], None,
             *[f"harmful {i + 1}" for i in range(top)]]
    cell_h, cell_w = h + CAPTION_ROWS, w + 1
    z = np.full((len(methods) * cell_h - 1, len(slots) * cell_w - 1), np.nan)
    text = np.full(z.shape, "", dtype=object)
    labels_train, labels_test = arrays.get("labels/train"), arrays.get("labels/test")
    notes: list[dict] = []

    def put(row: int, col: int, image: np.ndarray, label: str, note: str) -> None:
        y0, x0 = row * cell_h, col * cell_w
        z[y0:y0 + h, x0:x0 + w] = image
        text[y0:y0 + h, x0:x0 + w] = label
        notes.append((x0 + (w - 1) / 2, y0 + h + 0.9, note))

    test_label = "" if labels_test is None else f", label {int(labels_test[test_index])}"
    put(0, 0, test_image, f"test point {test_index}{test_label}",
        f"test #{test_index}{test_label.replace(', label', ' ·')}")
    train = arrays["images/train"]
    for row, name in enumerate(methods):
        scores = scores_of_test_point(arrays, name, test_index)
        order = np.argsort(scores)
        picks = [*order[:top], *order[::-1][:top]]
        for slot, pick in enumerate(picks):
            col = 2 + slot if slot < top else 3 + slot
            label = "" if labels_train is None else f", label {int(labels_train[pick])}"
            put(row, col, np.asarray(train[pick], dtype=float),
                f"{name}, {slots[col]}: train #{pick}{label}, τ = {scores[pick]:.3g}",
                f"#{pick}{label.replace(', label', ' ·')} τ={scores[pick]:.2g}")
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
    # the captions as one text trace: far cheaper for the browser to lay out than one
    # annotation each (43 on the paper study)
    fig.add_trace(go.Scatter(x=[n[0] for n in notes], y=[n[1] for n in notes],
                             text=[n[2] for n in notes], mode="text", meta="captions",
                             textfont=dict(size=9), hoverinfo="skip", showlegend=False))
    fig.update_layout(height=95 * len(methods) + 140, plot_bgcolor="rgba(0,0,0,0)")
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
