"""Evaluation outputs: metrics.json, PNG plots, rollout strips, a GIF and the Markdown report.

    from infinipaint.evaluation import report
    report.write_all("eval/cpu", metrics, keep, title="Evaluation of cpu")
    report.write_comparison("eval/ab", [metrics_a, metrics_b])    # curves of several models, one plot
    report.headline(metrics)                                      # the numbers of SPEC §8

Plots use matplotlib's Agg backend (no display). The difference images are white where the
prediction equals the truth and darker with the error: 255 - min(255, 4 x largest channel error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from infinipaint.files import atomic_write
from infinipaint.minipaint import CONTROLS

from .scoring import DEFINITIONS, PHASES, SSIM_CLIFF

# The write-up's numbers (reference/infinipaint-writeup.txt) and the project's targets (SPEC §8).
WRITEUP = {"step1_ssim": 0.995, "step1_psnr": 36.0, "ssim_150": 0.95, "ssim_500": 0.85, "ssim_800": 0.6,
           "pen_late": 0.189, "onset": (146, 94), "tool_mid": 0.94, "eraser_click": (1.0, 0.947),
           "eraser_l1": (67.6, 59.4, 56.2), "empty_late": 0.376, "toolbar_mid": 0.92, "canvas_mid": 0.85}
TARGETS = {"step1_ssim": 0.995, "step1_psnr": 38.0, "ssim_150": 0.97, "ssim_500": 0.95, "ssim_1000": 0.90,
           "pen_late": 0.95}
DIFF_GAIN = 4


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())
    return path


def diff_image(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """White where equal, darker with the largest channel error (x4): uint8 (..., H, W, 3)."""
    d = np.abs(pred.astype(np.int16) - truth.astype(np.int16)).max(axis=-1)
    g = (255 - np.minimum(255, DIFF_GAIN * d)).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


# ------------------------------------------------------------------------------- headline
def value_at(metrics: dict[str, Any], key: str, step: int) -> tuple[float | None, int]:
    """Per-step mean at `step` and the number of episodes it averages (None, 0 if none)."""
    steps = metrics["steps"]
    if step < 1 or step > len(steps):
        return None, 0
    n = metrics.get("episodes_per_step", [1] * len(steps))[step - 1]
    return metrics[key][step - 1], n


def _resp(metrics: dict[str, Any], control: str, phase: str) -> float | None:
    return metrics["responses"].get(control, {}).get(phase, {}).get("value")


def headline(m: dict[str, Any]) -> dict[str, Any]:
    """The numbers the write-up and SPEC §8 talk about, from one metrics dict."""
    h: dict[str, Any] = {}
    h["step1_ssim"], _ = value_at(m, "ssim_mean", 1)
    h["step1_psnr"], _ = value_at(m, "psnr_mean", 1)
    h["step1_ssim_std"], _ = value_at(m, "ssim_std", 1)
    h["step1_psnr_std"], _ = value_at(m, "psnr_std", 1)
    for s in (150, 500, 800, 1000):
        h[f"ssim_{s}"], h[f"n_{s}"] = value_at(m, "ssim_mean", s)
    h["pen_late"] = _resp(m, "pen", "late")
    h["tool_mid"] = _resp(m, "tool", "mid")
    h["eraser_click"] = (_resp(m, "eraser", "early"), _resp(m, "eraser", "late"))
    h["onset"] = (m.get("onset_095_mean"), m.get("onset_095_std"), m.get("onset_095_never"))
    h["eraser_l1"] = tuple(m["eraser_l1"][p]["value"] for p, *_ in PHASES)
    h["empty_late"] = m["empty_pen_strokes"]["late"]["value"]
    h["toolbar_mid"], h["canvas_mid"] = m["regions"]["toolbar"]["mid"], m["regions"]["canvas"]["mid"]
    slips = m.get("toolbar_slips")  # absent from metrics written before it was measured
    h["slips"] = sum(v["slips"] for v in slips["phases"].values()) if slips else None
    return h


def _f(v: float | None, fmt: str = "{:.3f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _pm(v: float | None, s: float | None, fmt: str = "{:.3f}") -> str:
    return "n/a" if v is None else f"{fmt.format(v)} ± {_f(s, fmt)}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _check(v: float | None, target: float) -> str:
    return "" if v is None else (" ✓" if v >= target else " ✗")


def comparison_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, write-up, target, this model) rows of the report's main table."""
    h = headline(m)
    w, t = WRITEUP, TARGETS
    n = lambda s: f" (n={h[f'n_{s}']})" if h[f"n_{s}"] else ""  # noqa: E731
    onset = h["onset"]
    return [
        ("step-1 SSIM / PSNR", f"{w['step1_ssim']} / {w['step1_psnr']} dB", f"≥ {t['step1_ssim']} / ≥ {t['step1_psnr']:.0f} dB",
         f"{_f(h['step1_ssim'])}{_check(h['step1_ssim'], t['step1_ssim'])} / {_f(h['step1_psnr'], '{:.1f}')} dB"
         f"{_check(h['step1_psnr'], t['step1_psnr'])}"),
        ("mean SSIM at step 150", f"~{w['ssim_150']}", f"≥ {t['ssim_150']}", f"{_f(h['ssim_150'])}{_check(h['ssim_150'], t['ssim_150'])}{n(150)}"),
        ("mean SSIM at step 500", f"~{w['ssim_500']}", f"≥ {t['ssim_500']}", f"{_f(h['ssim_500'])}{_check(h['ssim_500'], t['ssim_500'])}{n(500)}"),
        ("mean SSIM at step 800", f"~{w['ssim_800']}", "—", f"{_f(h['ssim_800'])}{n(800)}"),
        ("mean SSIM at step 1000", f"(~{w['ssim_800']} at 800)", f"≥ {t['ssim_1000']:.2f}", f"{_f(h['ssim_1000'])}{_check(h['ssim_1000'], t['ssim_1000'])}{n(1000)}"),
        ("pen-click response, late phase", _pct(w["pen_late"]), f"≥ {_pct(t['pen_late'])}", f"{_pct(h['pen_late'])}{_check(h['pen_late'], t['pen_late'])}"),
        ("first step below SSIM 0.95", f"{w['onset'][0]} ± {w['onset'][1]}", "—",
         f"{_pm(onset[0], onset[1], '{:.0f}')} ({onset[2]} never)"),
        ("tool-click response, mid phase", f"~{_pct(w['tool_mid'])}", "—", _pct(h["tool_mid"])),
        ("eraser-click response, early → late", f"{_pct(w['eraser_click'][0])} → {_pct(w['eraser_click'][1])}", "—",
         f"{_pct(h['eraser_click'][0])} → {_pct(h['eraser_click'][1])}"),
        ("eraser L1, early / mid / late", " / ".join(str(v) for v in w["eraser_l1"]), "—",
         " / ".join(_f(v, "{:.1f}") for v in h["eraser_l1"])),
        ("empty pen strokes, late phase", _pct(w["empty_late"]), "—", _pct(h["empty_late"])),
        ("toolbar / canvas SSIM, mid phase", f"{w['toolbar_mid']} / {w['canvas_mid']}", "—",
         f"{_f(h['toolbar_mid'])} / {_f(h['canvas_mid'])}"),
        ("toolbar slips (steps where the toolbar goes wrong)", "—", "—", "n/a" if h["slips"] is None else str(h["slips"])),
    ]


# ---------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _arr(v: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)


def _band(ax, steps: np.ndarray, mean: np.ndarray, std: np.ndarray | None, label: str, color: str | None = None) -> str:
    (line,) = ax.plot(steps, mean, lw=1.4, label=label, color=color)
    if std is not None:
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2, color=line.get_color(), lw=0)
    return line.get_color()


def _phase_lines(ax, n: int) -> None:
    for _, lo, _hi in PHASES[1:]:
        if lo - 1 <= n:
            ax.axvline(lo - 1, color="0.75", lw=0.8, ls=":")


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(path: Path, runs: Sequence[dict[str, Any]]) -> Path:
    """SSIM and PSNR per step, mean with a ±std band, the VAE ceiling dashed; one line per run."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    n_max = max((len(m["steps"]) for m in runs), default=0)
    for m in runs:
        steps = np.asarray(m["steps"])
        label = m.get("model", {}).get("label", "model")
        for ax, key in zip(axes, ("ssim", "psnr")):
            c = _band(ax, steps, _arr(m[f"{key}_mean"]), _arr(m[f"{key}_std"]), label)
            ceil = _arr(m[f"ceiling_{key}"])
            ok = ~np.isnan(ceil)
            if ok.any():
                ax.plot(steps[ok], ceil[ok], ls="--", lw=1.0, color=c, label=f"{label}: VAE ceiling")
    axes[0].axhline(SSIM_CLIFF, color="0.5", lw=0.8, ls=":")
    axes[0].set(xlabel="step", ylabel="SSIM", title="SSIM (mean ± std over episodes)", ylim=(None, 1.0))
    axes[1].set(xlabel="step", ylabel="PSNR (dB)", title="PSNR (mean ± std over episodes)")
    for ax in axes:
        _phase_lines(ax, n_max)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_exact(path: Path, runs: Sequence[dict[str, Any]]) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for m in runs:
        _band(ax, np.asarray(m["steps"]), _arr(m["exact_share"]), _arr(m.get("exact_share_std", [None] * len(m["steps"]))),
              m.get("model", {}).get("label", "model"))
    ax.set(xlabel="step", ylabel="share of pixels", ylim=(0, 1.01),
           title="Pixels within 8/255 of the truth (mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_regions(path: Path, m: dict[str, Any]) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = np.asarray(m["steps"])
    for region in ("canvas", "toolbar"):
        ax.plot(steps, _arr(m["regions"][region]["per_step"]), lw=1.2, label=region)
    _phase_lines(ax, len(steps))
    ax.set(xlabel="step", ylabel="SSIM", title="SSIM per region (mean over episodes)", ylim=(None, 1.0))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_strips(path: Path, strips: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]], keys: list[str]) -> Path | None:
    """Rows truth / prediction / difference for each kept episode, columns the chosen steps."""
    if not strips:
        return None
    plt = _plt()
    eps = sorted(strips)
    cols = max(len(strips[e]) for e in eps)
    fig, axes = plt.subplots(3 * len(eps), cols, figsize=(1.7 * cols, 1.75 * 3 * len(eps)), squeeze=False)
    for r, e in enumerate(eps):
        for c in range(cols):
            for k in range(3):
                axes[3 * r + k, c].axis("off")
        for c, step in enumerate(sorted(strips[e])):
            truth, pred = strips[e][step]
            for k, (img, name) in enumerate(((truth, "truth"), (pred, "prediction"), (diff_image(truth, pred), "difference"))):
                ax = axes[3 * r + k, c]
                ax.imshow(img, interpolation="nearest")
                if k == 0:
                    ax.set_title(f"{keys[e]}  step {step}", fontsize=7)
                if c == 0:
                    ax.text(-8, 112, name, rotation=90, va="center", ha="right", fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_gif(path: Path, gif: list[tuple[int, np.ndarray, np.ndarray]]) -> Path | None:
    if not gif:
        return None
    from infinipaint.viewer.gif import write_gif as _write

    frames = [np.concatenate([t, p, diff_image(t, p)], axis=1) for _, t, p in gif]
    return _write(path, frames, fps=12.5)


# --------------------------------------------------------------------------------- report
def markdown(m: dict[str, Any], title: str, files: dict[str, str]) -> str:
    data, model = m.get("data", {}), m.get("model", {})
    lengths = data.get("lengths") or [len(m["steps"])]
    status = "complete" if m.get("complete", True) else f"INTERRUPTED after step {len(m['steps'])} (partial results)"
    lines = [f"# {title}", ""]
    lines.append(f"Model `{model.get('dir', '?')}` (VAE `{model.get('vae', {}).get('config', {}).get('preset', '?')}`, "
                 f"dynamics `{model.get('dynamics', {}).get('config', {}).get('preset', '?')}`, device {model.get('device', '?')}, "
                 f"bf16 {model.get('bf16', '?')}{', keep margin %g' % model['keep_margin'] if model.get('keep_margin') else ''}); data `{data.get('dir', data.get('actions', '?'))}` "
                 f"({data.get('split', 'action file')}: {len(lengths)} episode(s), {min(lengths)}–{max(lengths)} steps, "
                 f"layout {m.get('layout', 'default')}); "
                 f"{status}; {m.get('wall_s', 0):.0f} s.")
    lines += ["", "Produced by `infinipaint evaluate` (or `rollout`); every number below is in `metrics.json`.", ""]
    lines += ["## Against the write-up and the targets (SPEC §8)", "",
              "| what | write-up | our target | this model |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in comparison_rows(m)]
    lines += ["", "Latency and throughput targets are measured by `infinipaint bench`.", ""]
    lines += ["## Phases", "", "| phase | steps | frames | SSIM | PSNR (dB) | VAE ceiling SSIM / PSNR | exact share | canvas SSIM | toolbar SSIM |",
              "|---|---|---|---|---|---|---|---|---|"]
    for p, lo, hi in PHASES:
        ph = m["phases"][p]
        lines.append(f"| {p} | {lo}–{hi or ''} | {ph['frames']} | {_pm(ph['ssim'], ph['ssim_std'])} | "
                     f"{_pm(ph['psnr'], ph['psnr_std'], '{:.1f}')} | {_f(ph['ceiling_ssim'])} / "
                     f"{_f(ph['ceiling_psnr'], '{:.1f}')} | {_pct(ph['exact_share'])} | {_f(m['regions']['canvas'][p])} | "
                     f"{_f(m['regions']['toolbar'][p])} |")
    v = m["visible_error_onset"]
    lines += ["", "## Exactness", "",
              f"- First step below SSIM {SSIM_CLIFF}: {_pm(m['onset_095_mean'], m['onset_095_std'], '{:.1f}')} "
              f"({m['onset_095_never']} of {len(m['onset_095_per_episode'])} episodes never fall below).",
              f"- First step with a visible error ({DEFINITIONS['visible_error']}): {_pm(v['mean'], v['std'], '{:.1f}')} "
              f"({v['never']} never); the VAE alone (ceiling): {_pm(v['ceiling']['mean'], v['ceiling']['std'], '{:.1f}')} "
              f"({v['ceiling']['never']} never).", ""]
    lines += ["## Behaviour per phase", "", "| | " + " | ".join(p for p, *_ in PHASES) + " |", "|---|---|---|---|"]
    for c in (*CONTROLS, "tool", "color"):
        cells = [f"{_pct(m['responses'][c][p]['value'])} (n={m['responses'][c][p]['n']})" for p, *_ in PHASES]
        lines.append(f"| response: {c} | " + " | ".join(cells) + " |")
    lines.append("| eraser L1 (levels) | " + " | ".join(
        f"{_f(m['eraser_l1'][p]['value'], '{:.1f}')} (n={m['eraser_l1'][p]['n']})" for p, *_ in PHASES) + " |")
    lines.append("| empty pen strokes | " + " | ".join(
        f"{_pct(m['empty_pen_strokes'][p]['value'])} (n={m['empty_pen_strokes'][p]['n']})" for p, *_ in PHASES) + " |")
    if "pen_ink" in m:  # metrics.json of versions before 2026-12-02 have no pen_ink
        lines.append("| pen strokes: footprint in the true colour | " + " | ".join(
            f"{_pct(m['pen_ink'][p]['value'])} (n={m['pen_ink'][p]['n']})" for p, *_ in PHASES) + " |")
    slips = m.get("toolbar_slips")
    if slips:
        lines.append("| toolbar slips (wrong-state frames) | " + " | ".join(
            f"{slips['phases'][p]['slips']} ({_pct(slips['phases'][p]['wrong_share'])})" for p, *_ in PHASES) + " |")
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(slips["by_kind"].items(), key=lambda kv: -kv[1])) or "none"
        lines += ["", f"Toolbar slips by the kind of step they happened on: {kinds}."]
    behaviour = m.get("behaviour")  # absent from metrics written before it was measured
    if behaviour and any(v["right"]["n"] for g in behaviour.values() for v in g.values()):
        lines += ["", "Behaviour events (right / made up / missed; see Definitions):", "",
                  "| | " + " | ".join(p for p, *_ in PHASES) + " | all |", "|---|---|---|---|---|"]
        for group, phases in behaviour.items():
            lines.append(f"| {group.replace('_', ' ')} | " + " | ".join(
                f"{_pct(v['right']['value'])} / {_pct(v['made_up']['value'])} / {_pct(v['missed']['value'])} "
                f"(n={v['right']['n']})" for v in phases.values()) + " |")
    lines += ["", "## Figures", ""]
    for name, caption in (("curves", "SSIM and PSNR per step; dashed: the VAE ceiling (truth through the VAE alone)"),
                          ("exact", "share of pixels within 8/255 of the truth"), ("regions", "SSIM per region"),
                          ("strips", "truth / prediction / difference (white = equal, darker = larger error, x4)"),
                          ("gif", "the first episode: truth | prediction | difference")):
        if name in files:
            lines.append(f"![{caption}]({files[name]})  \n*{caption}*\n")
    lines += ["## Definitions", ""] + [f"- **{k}**: {d}" for k, d in DEFINITIONS.items()]
    return "\n".join(lines) + "\n"


def write_all(out: str | Path, metrics: dict[str, Any], keep: Any = None, title: str = "Evaluation") -> dict[str, str]:
    """Everything for one run into `out`; returns the written files by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics": write_json(out / "metrics.json", metrics).name}
    if metrics["steps"]:
        files["curves"] = plot_curves(out / "curves.png", [metrics]).name
        files["exact"] = plot_exact(out / "exact.png", [metrics]).name
        files["regions"] = plot_regions(out / "regions.png", metrics).name
    if keep is not None:
        keys = metrics.get("data", {}).get("episodes") or [str(i) for i in range(len(keep.episodes))]
        p = plot_strips(out / "strips.png", keep.strips, keys)
        if p:
            files["strips"] = p.name
        g = write_gif(out / "rollout.gif", keep.gif)
        if g:
            files["gif"] = g.name
    atomic_write(out / "report.md", markdown(metrics, title, files).encode())
    files["report"] = "report.md"
    return files


def write_comparison(out: str | Path, runs: Sequence[dict[str, Any]]) -> Path:
    """Several runs' curves on shared axes (compare.png, compare_exact.png) and a table (compare.md)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(out / "compare.png", runs)
    plot_exact(out / "compare_exact.png", runs)
    labels = [m.get("model", {}).get("label", f"run{i}") for i, m in enumerate(runs)]
    rows = [comparison_rows(m) for m in runs]
    lines = ["# Comparison", "", "| what | write-up | our target | " + " | ".join(labels) + " |",
             "|---|---|---|" + "---|" * len(runs)]
    for i, (what, w, t, _) in enumerate(rows[0]):
        lines.append(f"| {what} | {w} | {t} | " + " | ".join(r[i][3] for r in rows) + " |")
    lines += ["", "![SSIM and PSNR per step](compare.png)", "", "![exact share](compare_exact.png)", ""]
    atomic_write(out / "compare.md", ("\n".join(lines) + "\n").encode())
    return out / "compare.md"
